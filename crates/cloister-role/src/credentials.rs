//! Internal credentials between platform roles: one random token per role pair
//! (gateway→executor, gateway→keyvault), never in an environment variable. `serve` hands the
//! executor and keyvault theirs through an inherited pipe they read once at start, and writes
//! the gateway's into a 0600 file in the data directory (the gateway is untrusted: its
//! operator holds its credentials by definition; they open no secret).
//!
//! Format, one `name=value` per line: the gateway's file names `executor` and `keyvault`;
//! the executor's and keyvault's pipe name `gateway` (the token they accept).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// File name of the gateway's credentials in the data directory.
pub const GATEWAY_CREDENTIALS_FILE: &str = "gateway.credentials";

/// Shortest accepted token.
const MIN_TOKEN_LEN: usize = 32;

/// Named credentials, zeroized on drop.
pub struct Credentials(BTreeMap<String, Zeroizing<String>>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// A fresh random token for each name.
    pub fn generate(names: &[&str]) -> Self {
        use rand::RngExt as _;
        let mut m = BTreeMap::new();
        for n in names {
            let mut b = Zeroizing::new([0u8; 32]);
            rand::rng().fill(&mut b[..]);
            m.insert((*n).to_owned(), Zeroizing::new(hex::encode(&b[..])));
        }
        Self(m)
    }

    /// The subset `names`, renamed by `(from, to)` pairs.
    pub fn pick(&self, pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .filter_map(|(from, to)| self.0.get(*from).map(|v| ((*to).to_owned(), v.clone())))
                .collect(),
        )
    }

    /// The token called `name`.
    pub fn get(&self, name: &str) -> anyhow::Result<&str> {
        let v = self
            .0
            .get(name)
            .with_context(|| format!("no `{name}` credential"))?;
        if v.len() < MIN_TOKEN_LEN {
            bail!("the `{name}` credential is shorter than {MIN_TOKEN_LEN} characters");
        }
        Ok(v.as_str())
    }

    /// Adds (or replaces) a value that is not a generated token, e.g. a database URL.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0
            .insert(name.to_owned(), Zeroizing::new(value.trim().to_owned()));
    }

    /// The value called `name`, if there is one (no minimum length: not a token).
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.as_str())
    }

    /// The text form.
    pub fn encode(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::new());
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut m = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .context("credentials are `name=value` lines")?;
            m.insert(k.trim().to_owned(), Zeroizing::new(v.trim().to_owned()));
        }
        Ok(Self(m))
    }

    /// Reads credentials from an inherited descriptor, closing it.
    pub fn from_fd(fd: RawFd) -> anyhow::Result<Self> {
        if fd < 3 {
            bail!("--credentials-fd must be an inherited descriptor above 2");
        }
        // SAFETY: `serve` passes this descriptor to this process only for this purpose; it
        // is read once here and closed when `file` drops.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(owned);
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text)
            .context("cannot read credentials from the inherited descriptor")?;
        Self::parse(&text)
    }

    /// Reads credentials from a file, refusing one others can read.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read credentials {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read credentials {}", path.display()))?,
        );
        Self::parse(&text)
    }

    /// Writes the credentials to `path`, mode 0600 (replacing the file).
    pub fn write_file(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(self.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// A pipe whose read end holds the encoded credentials (write end already closed).
    pub fn to_pipe(&self) -> anyhow::Result<OwnedFd> {
        use std::io::Write;
        let (r, w) = std::io::pipe().context("cannot create a credentials pipe")?;
        let mut w = w;
        // Far below the pipe buffer: the write never blocks.
        w.write_all(self.encode().as_bytes())?;
        drop(w);
        Ok(OwnedFd::from(r))
    }
}

/// Where a role gets its credentials (`--credentials-fd` or `--credentials-file`).
pub fn load(fd: Option<RawFd>, file: Option<&Path>) -> anyhow::Result<Credentials> {
    match (fd, file) {
        (Some(fd), _) => Credentials::from_fd(fd),
        (None, Some(p)) => Credentials::from_file(p),
        (None, None) => bail!(
            "internal credentials are required: --credentials-file FILE (mode 0600, `name=value` \
             lines) or --credentials-fd N; `cloister serve --dev` passes them itself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_pipe_and_a_file() {
        let c = Credentials::generate(&["executor", "keyvault"]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        c.write_file(&p).unwrap();
        let back = Credentials::from_file(&p).unwrap();
        assert_eq!(back.get("executor").unwrap(), c.get("executor").unwrap());
        let picked = c.pick(&[("keyvault", "gateway")]);
        let fd = picked.to_pipe().unwrap();
        use std::os::fd::IntoRawFd;
        let got = Credentials::from_fd(fd.into_raw_fd()).unwrap();
        assert_eq!(got.get("gateway").unwrap(), c.get("keyvault").unwrap());
        assert!(got.get("executor").is_err());
        assert!(!format!("{got:?}").contains(c.get("keyvault").unwrap()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Credentials::from_file(&p).is_err());
    }
}
