//! Log output of a server process: to stderr, `info` unless `RUST_LOG` says otherwise, as
//! text (ANSI colours only on a terminal, and never with `NO_COLOR` set) or as one JSON object
//! per line (`CLOISTER_LOG_FORMAT=json`, or `--log-format json` on `serve` and `gateway`,
//! which pass it on to the roles they start).

use std::io::IsTerminal;

/// Environment variable choosing the log format (`text` or `json`).
pub const LOG_FORMAT_ENV: &str = "CLOISTER_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields flattened).
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }

    /// The format named by [`LOG_FORMAT_ENV`] (text when unset or unknown).
    pub fn from_env() -> Self {
        std::env::var(LOG_FORMAT_ENV)
            .ok()
            .and_then(|v| Self::parse(&v))
            .unwrap_or_default()
    }
}

/// Installs the process-wide subscriber in the format from the environment (`default` is
/// the filter when `RUST_LOG` is unset).
pub fn init(default: &str) {
    init_with(default, LogFormat::from_env());
}

/// Installs the process-wide subscriber in `format`.
pub fn init_with(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn formats_parse_by_name_and_nothing_else() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse(" TEXT "), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(LogFormat::parse(f.as_str()), Some(f));
        }
    }
}
