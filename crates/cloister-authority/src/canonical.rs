//! Deterministic CBOR (RFC 8949 §4.2.1): definite lengths, shortest integer forms (ciborium
//! always emits them) and map keys sorted by their encoded bytes. Decoding accepts only input
//! that re-encodes to the same bytes, so one value has exactly one signed form.

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AuthorityError;

/// Encodes `v` deterministically.
pub fn to_vec<T: Serialize>(v: &T) -> Result<Vec<u8>, AuthorityError> {
    let value = Value::serialized(v).map_err(|e| AuthorityError::Malformed(e.to_string()))?;
    encode(sort(value)?)
}

/// Decodes `bytes`, refusing anything that is not the deterministic encoding of the result.
pub fn from_slice<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, AuthorityError> {
    let v: T = ciborium::from_reader(bytes)
        .map_err(|e| AuthorityError::Malformed(format!("CBOR: {e}")))?;
    if to_vec(&v)? != bytes {
        return Err(AuthorityError::Malformed(
            "not deterministic CBOR (RFC 8949 §4.2.1), or unknown fields".into(),
        ));
    }
    Ok(v)
}

fn encode(v: Value) -> Result<Vec<u8>, AuthorityError> {
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).map_err(|e| AuthorityError::Malformed(e.to_string()))?;
    Ok(out)
}

fn sort(v: Value) -> Result<Value, AuthorityError> {
    Ok(match v {
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (k, val) in entries {
                let k = sort(k)?;
                keyed.push((encode(k.clone())?, k, sort(val)?));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(AuthorityError::Malformed("duplicate map key".into()));
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort).collect::<Result<_, _>>()?),
        Value::Tag(t, inner) => Value::Tag(t, Box::new(sort(*inner)?)),
        Value::Float(_) => {
            return Err(AuthorityError::Malformed(
                "floating-point values are not allowed in signed data".into(),
            ));
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct T {
        zz: u64,
        a: String,
        bb: Vec<u8>,
    }

    #[test]
    fn keys_sorted_by_encoding_and_round_trip() {
        let t = T {
            zz: 1,
            a: "x".into(),
            bb: vec![1, 2],
        };
        let bytes = to_vec(&t).unwrap();
        // Map of 3: "a" (1 byte key) < "bb" < "zz" (2-byte keys compare bytewise).
        assert_eq!(bytes[0], 0xa3);
        assert_eq!(&bytes[1..3], &[0x61, b'a']);
        assert_eq!(from_slice::<T>(&bytes).unwrap(), t);
    }

    #[test]
    fn non_canonical_input_is_refused() {
        // Same map with keys in serde's declaration order (not sorted).
        let mut unsorted = Vec::new();
        ciborium::into_writer(
            &T {
                zz: 1,
                a: "x".into(),
                bb: vec![],
            },
            &mut unsorted,
        )
        .unwrap();
        assert!(from_slice::<T>(&unsorted).is_err());
        // A non-shortest integer (0x18 0x01 for 1).
        let mut good = to_vec(&1u64).unwrap();
        assert_eq!(good, vec![0x01]);
        good = vec![0x18, 0x01];
        assert!(from_slice::<u64>(&good).is_err());
    }
}
