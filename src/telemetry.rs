//! Tracing subscriber set-up: text or JSON lines on stderr, filtered by `log.level` unless
//! `RUST_LOG` is set.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that build several applications in one process do not panic.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_dependencies(&config.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people at a terminal; log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// async-nats reports every failed reconnect attempt at `info`; while NATS is down (a normal
/// state: events wait in the outbox) that would be a line every two seconds. catalogd logs
/// the outage itself, so the client's own chatter starts at `warn` unless the level names it.
fn quiet_dependencies(level: &str) -> String {
    if level.contains("async_nats") {
        level.to_owned()
    } else {
        format!("{level},async_nats=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::quiet_dependencies;

    #[test]
    fn nats_client_chatter_is_quiet_unless_asked_for() {
        assert_eq!(quiet_dependencies("info"), "info,async_nats=warn");
        assert_eq!(
            quiet_dependencies("debug,async_nats=trace"),
            "debug,async_nats=trace"
        );
    }
}
