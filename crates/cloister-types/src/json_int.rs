//! JSON integers as JSON Schema defines them: a number with no fractional part, so `1.0` is
//! the integer 1 (OpenAPI 3.1's `"type": "integer"`), while `1.5`, `-1` for an unsigned field
//! and anything out of range are refused. For `#[serde(deserialize_with)]` on request fields.

use serde::de::{self, Deserializer, Visitor};

struct Integral<T>(std::marker::PhantomData<T>);

impl<'de, T> Visitor<'de> for Integral<T>
where
    T: TryFrom<u64>,
{
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a non-negative integer up to {}",
            std::any::type_name::<T>()
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} is negative")))
            .and_then(|u| self.visit_u64(u))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // Exactly representable integers only (2^53), with no fractional part.
        if v.fract() != 0.0 || !(0.0..=9_007_199_254_740_992.0).contains(&v) {
            return Err(E::custom(format!("{v} is not a non-negative integer")));
        }
        self.visit_u64(v as u64)
    }
}

/// An optional `u32` written as any JSON integer (`3` or `3.0`).
pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<U32>::deserialize(d).map(|o| o.map(|v| v.0))
}

/// An optional `u64` written as any JSON integer (`3` or `3.0`).
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<U64>::deserialize(d).map(|o| o.map(|v| v.0))
}

struct U32(u32);
struct U64(u64);

impl<'de> serde::Deserialize<'de> for U32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Integral::<u32>(std::marker::PhantomData))
            .map(U32)
    }
}

impl<'de> serde::Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Integral::<u64>(std::marker::PhantomData))
            .map(U64)
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_u32")]
        v: Option<u32>,
    }

    fn v(json: &str) -> Result<Option<u32>, serde_json::Error> {
        serde_json::from_str::<T>(json).map(|t| t.v)
    }

    #[test]
    fn integral_numbers_are_integers_and_nothing_else_is() {
        assert_eq!(v(r#"{"v":1}"#).unwrap(), Some(1));
        assert_eq!(v(r#"{"v":1.0}"#).unwrap(), Some(1));
        assert_eq!(v(r#"{"v":1e2}"#).unwrap(), Some(100));
        assert_eq!(v(r#"{"v":null}"#).unwrap(), None);
        assert_eq!(v(r#"{}"#).unwrap(), None);
        for bad in [
            r#"{"v":1.5}"#,
            r#"{"v":-1}"#,
            r#"{"v":-1.0}"#,
            r#"{"v":4294967296}"#,
            r#"{"v":1e300}"#,
            r#"{"v":"1"}"#,
            r#"{"v":true}"#,
        ] {
            assert!(v(bad).is_err(), "{bad}");
        }
    }
}
