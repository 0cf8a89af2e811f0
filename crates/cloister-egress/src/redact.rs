//! Redaction of egress-only secret values echoed back in a response, before the function
//! sees it: the value itself and the forms a server commonly echoes it in (base64 in both
//! alphabets and at every alignment inside a longer base64 text, hex, percent-encoding,
//! JSON escaping). docs/EGRESS.md lists what it cannot catch.

use base64::Engine as _;
use zeroize::Zeroizing;

/// What an echoed value is replaced with.
pub const MARK: &[u8] = b"[redacted]";

/// Values shorter than this are redacted literally only: their encodings are a few
/// characters that would match unrelated text.
const MIN_ENCODED: usize = 6;
/// Shortest base64 fragment looked for inside longer base64 text.
const MIN_FRAGMENT: usize = 8;
/// Any run of this many bytes of a value is redacted wherever it appears (a server that
/// echoes part of a header, cut where the function's padding chose, gives back no more than
/// this many bytes less one at each end).
pub const FRAGMENT: usize = 8;

/// The forms of a set of secret values, longest first.
#[derive(Default)]
pub struct Redactor {
    forms: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// A redactor for `values`.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        for v in values {
            for w in v.windows(FRAGMENT).filter(|_| v.len() > FRAGMENT) {
                if !forms.iter().any(|g| g.as_slice() == w) {
                    forms.push(Zeroizing::new(w.to_vec()));
                }
            }
            for f in forms_of(v) {
                if !f.is_empty() && !forms.iter().any(|g| **g == *f) {
                    forms.push(f);
                }
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        Self { forms }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `data` with every stretch covered by a form (or a fragment) replaced by one
    /// [`MARK`]: overlapping and adjacent matches merge, so a value is never left half shown.
    pub fn apply(&self, data: Vec<u8>) -> Vec<u8> {
        let mut covered: Vec<(usize, usize)> = Vec::new();
        for f in &self.forms {
            covered
                .extend(memchr::memmem::find_iter(&data, f.as_slice()).map(|i| (i, i + f.len())));
        }
        if covered.is_empty() {
            return data;
        }
        covered.sort_unstable();
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        let mut current: Option<(usize, usize)> = None;
        for (start, end) in covered {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    out.extend_from_slice(&data[pos..s]);
                    out.extend_from_slice(MARK);
                    pos = e;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = current {
            out.extend_from_slice(&data[pos..s]);
            out.extend_from_slice(MARK);
            pos = e;
        }
        out.extend_from_slice(&data[pos..]);
        // The text that held the value is wiped before it is freed.
        let mut data = data;
        zeroize::Zeroize::zeroize(&mut data);
        out
    }

    /// [`Redactor::apply`] on text (the result stays UTF-8: forms and the mark are).
    pub fn apply_str(&self, s: String) -> String {
        let out = self.apply(s.into_bytes());
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn forms_of(v: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let z = |b: Vec<u8>| Zeroizing::new(b);
    let mut out = vec![z(v.to_vec())];
    if v.len() < MIN_ENCODED {
        return out;
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(z(engine.encode(v).into_bytes()));
    }
    // Inside a longer base64 text the value starts at one of three alignments; only the
    // characters that depend on its bytes alone are looked for.
    for (a, engine) in [
        (0usize, &STANDARD_NO_PAD),
        (1, &STANDARD_NO_PAD),
        (2, &STANDARD_NO_PAD),
    ]
    .into_iter()
    .chain([
        (0, &URL_SAFE_NO_PAD),
        (1, &URL_SAFE_NO_PAD),
        (2, &URL_SAFE_NO_PAD),
    ]) {
        let mut padded = Zeroizing::new(vec![0u8; a]);
        padded.extend_from_slice(v);
        let enc = Zeroizing::new(engine.encode(padded.as_slice()).into_bytes());
        let start = (8 * a).div_ceil(6);
        let end = (8 * (a + v.len())) / 6;
        if end > start && end - start >= MIN_FRAGMENT {
            out.push(z(enc[start..end].to_vec()));
        }
    }
    out.push(z(hex::encode(v).into_bytes()));
    out.push(z(hex::encode_upper(v).into_bytes()));
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let mut upper = Vec::new();
    let mut lower = Vec::new();
    let mut form = Vec::new();
    for &b in v {
        if unreserved(b) {
            upper.push(b);
            lower.push(b);
            form.push(b);
        } else {
            upper.extend_from_slice(format!("%{b:02X}").as_bytes());
            lower.extend_from_slice(format!("%{b:02x}").as_bytes());
            if b == b' ' {
                form.push(b'+');
            } else {
                form.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
    }
    out.extend([z(upper), z(lower), z(form)]);
    if let Ok(s) = std::str::from_utf8(v) {
        if let Ok(json) = serde_json::to_string(s) {
            let inner = json.as_bytes()[1..json.len() - 1].to_vec();
            out.push(z(String::from_utf8_lossy(&inner)
                .replace('/', "\\/")
                .into_bytes()));
            out.push(z(inner));
        }
        let mut ascii = String::new();
        for c in s.chars() {
            match c {
                '"' => ascii.push_str("\\\""),
                '\\' => ascii.push_str("\\\\"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        ascii.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => ascii.push(c),
            }
        }
        out.push(z(ascii.into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const SECRET: &str = "sk_live/Zq9+Xä \"4p\"";

    fn clean(r: &Redactor, text: String) -> String {
        r.apply_str(text)
    }

    #[test]
    fn every_common_echo_of_the_value_is_redacted() {
        let r = Redactor::new([SECRET.as_bytes()]);
        let json = serde_json::to_string(&serde_json::json!({ "echo": SECRET })).unwrap();
        let pct: String = url_encode(SECRET);
        let basic = STANDARD.encode(format!("user:{SECRET}"));
        let shifted = URL_SAFE_NO_PAD.encode(format!("xy{SECRET}zz"));
        for echo in [
            format!("Bearer {SECRET}"),
            json.clone(),
            json.replace('/', "\\/"),
            format!("q={pct}"),
            format!("Basic {basic}"),
            format!("token {shifted}"),
            format!("hex {}", hex::encode(SECRET)),
            format!("HEX {}", hex::encode_upper(SECRET)),
            format!("b64 {}", STANDARD.encode(SECRET)),
        ] {
            let out = clean(&r, echo.clone());
            assert!(out.contains("[redacted]"), "{echo} -> {out}");
            assert!(!out.contains(SECRET), "{out}");
            assert!(!out.contains(&STANDARD.encode(SECRET)[..16]), "{out}");
        }
        // Unrelated text is left alone.
        assert_eq!(clean(&r, "nothing here".into()), "nothing here");
    }

    #[test]
    fn a_partial_echo_is_redacted_too() {
        let secret = "sk_live_ABCDEFGH12345678";
        let r = Redactor::new([secret.as_bytes()]);
        // A server that cut the header where the caller's padding put the end.
        let out = clean(&r, "error: header was 'Bearer sk_live_ABCDEFGH1234'".into());
        assert_eq!(out, "error: header was 'Bearer [redacted]'");
        let out = clean(&r, "tail: DEFGH12345678.".into());
        assert_eq!(out, "tail: [redacted].");
        // Under eight bytes of it: left alone (and said so in docs/EGRESS.md).
        assert_eq!(clean(&r, "sk_live".into()), "sk_live");
    }

    #[test]
    fn short_values_are_redacted_literally_only() {
        let r = Redactor::new([b"abc".as_slice()]);
        assert_eq!(clean(&r, "xabcx YWJj".into()), "x[redacted]x YWJj");
        assert!(Redactor::new(std::iter::empty()).is_empty());
    }

    fn url_encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}
