//! Non-secret configuration of a function version (`fn deploy --env KEY=VALUE`): part of the
//! owner-signed manifest, visible to anyone who can read the function, and handed to the code
//! as `context.env`. Secrets belong in the keyvault, never here.

use std::collections::BTreeMap;

/// Most variables one version may carry.
pub const MAX_ENV_VARS: usize = 64;
/// Longest variable name, in bytes.
pub const MAX_ENV_KEY_BYTES: usize = 64;
/// Longest value, in characters (as JSON Schema's `maxLength` counts them).
pub const MAX_ENV_VALUE_CHARS: usize = 1024;

/// Why a function's configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// More variables than [`MAX_ENV_VARS`].
    #[error("{count} environment variables; the maximum is {MAX_ENV_VARS}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A name that is not `[A-Za-z_][A-Za-z0-9_]*` of at most [`MAX_ENV_KEY_BYTES`].
    #[error(
        "invalid environment variable name {name:?}: use 1-{MAX_ENV_KEY_BYTES} characters of A-Z, a-z, 0-9 and '_', not starting with a digit"
    )]
    BadName {
        /// The name (truncated; names are not secret).
        name: String,
    },
    /// A value longer than [`MAX_ENV_VALUE_CHARS`] or holding a NUL.
    #[error(
        "environment variable {name} has an invalid value: at most {MAX_ENV_VALUE_CHARS} characters, no NUL characters"
    )]
    BadValue {
        /// The variable's name.
        name: String,
    },
}

fn name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    k.len() <= MAX_ENV_KEY_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a function's configuration against the rules above.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), EnvError> {
    if env.len() > MAX_ENV_VARS {
        return Err(EnvError::TooMany { count: env.len() });
    }
    for (k, v) in env {
        if !name_ok(k) {
            return Err(EnvError::BadName {
                name: k.chars().take(80).collect(),
            });
        }
        if v.chars().count() > MAX_ENV_VALUE_CHARS || v.contains('\0') {
            return Err(EnvError::BadValue { name: k.clone() });
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the CLI's `--env`); the value may be empty and may hold `=`.
pub fn parse_assignment(s: &str) -> Result<(String, String), EnvError> {
    match s.split_once('=') {
        Some((k, v)) if name_ok(k) => Ok((k.to_owned(), v.to_owned())),
        Some((k, _)) => Err(EnvError::BadName {
            name: k.chars().take(80).collect(),
        }),
        None => Err(EnvError::BadName {
            name: s.chars().take(80).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_values_and_sizes_are_bounded() {
        assert_eq!(
            check_env(&env(&[("LOG_LEVEL", "debug"), ("_X1", "")])),
            Ok(())
        );
        for bad in ["", "1X", "A-B", "A B", "É", &"A".repeat(65)] {
            assert!(
                matches!(
                    check_env(&env(&[(bad, "v")])),
                    Err(EnvError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_env(&env(&[("A", "x\0y")])),
            Err(EnvError::BadValue { .. })
        ));
        let long = "v".repeat(MAX_ENV_VALUE_CHARS + 1);
        assert!(matches!(
            check_env(&env(&[("A", &long)])),
            Err(EnvError::BadValue { .. })
        ));
        // Characters, not bytes: 1024 four-byte characters are one value.
        let wide = "😀".repeat(MAX_ENV_VALUE_CHARS);
        assert_eq!(check_env(&env(&[("A", &wide)])), Ok(()));
        let many: BTreeMap<String, String> = (0..=MAX_ENV_VARS)
            .map(|i| (format!("K{i}"), String::new()))
            .collect();
        assert!(matches!(check_env(&many), Err(EnvError::TooMany { .. })));
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("URL=https://x/?a=b"),
            Ok(("URL".into(), "https://x/?a=b".into()))
        );
        assert_eq!(
            parse_assignment("EMPTY="),
            Ok(("EMPTY".into(), String::new()))
        );
        assert!(parse_assignment("NOVALUE").is_err());
        assert!(parse_assignment("9=x").is_err());
    }
}
