//! Log output of a server process: to stderr, `info` unless `RUST_LOG` says otherwise.

/// Installs the process-wide subscriber (`default` is the filter when `RUST_LOG` is unset).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
