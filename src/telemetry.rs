//! Structured logging through `tracing`.
//!
//! Logs go to **stderr**, so that `tenant-operator crd` and `render` can print YAML on stdout
//! with logging enabled; container runtimes collect both streams.

use tracing_subscriber::EnvFilter;

/// Used when `RUST_LOG` is unset or empty. The kube crates log every watch restart at info,
/// which is noise in an operator's log; their warnings and errors still show.
pub const DEFAULT_FILTER: &str = "info,kube=warn,kube_client=warn,kube_runtime=warn,tower=warn,hyper=warn,rustls=warn";

/// Log line format, chosen with `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, fields flattened, for log collectors.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInitialised(String),
}

/// Builds the filter from a `RUST_LOG`-style value. A value that does not parse is an error
/// rather than silently ignored: an operator started with a typo in its log filter would
/// otherwise log something other than what its owner asked for.
pub fn env_filter(spec: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let spec = match spec.map(str::trim) {
        Some(s) if !s.is_empty() => s,
        _ => DEFAULT_FILTER,
    };
    EnvFilter::try_new(spec).map_err(|source| TelemetryError::Filter { filter: spec.to_owned(), source })
}

/// Installs the global subscriber, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]).
/// Call once, early in `main`.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = env_filter(std::env::var("RUST_LOG").ok().as_deref())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn default_filter_parses_and_empty_means_default() {
        assert!(env_filter(None).is_ok());
        assert!(env_filter(Some("  ")).is_ok());
        assert!(env_filter(Some("debug,tenant_operator=trace")).is_ok());
    }

    #[test]
    fn bad_filter_is_reported_with_its_text() {
        let err = env_filter(Some("info,kube=notalevel")).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("kube=notalevel"), "{msg}");
    }

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("xml", true).is_err());
    }
}
