//! Logging: `tracing` to stderr, human-readable by default or JSON lines on
//! request; `RUST_LOG` filters (default `info`, broker client quieter);
//! colours only on a terminal, and never with `NO_COLOR` set. And how
//! errors read in logs and in `/health`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,amq_protocol=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Whether log lines may carry colour codes: stderr is a terminal and
/// `NO_COLOR` (<https://no-color.org>) is not set.
pub fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error and its causes, `outer: inner: ...`, without repeating a cause
/// whose text an outer one already includes (the broker client's errors
/// print their source themselves).
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("Connection reset by peer");
        let error = anyhow::Error::new(io).context("IO error: Connection reset by peer");
        let error = error.context("receiving deliveries");
        assert_eq!(
            super::error_chain(&error),
            "receiving deliveries: IO error: Connection reset by peer"
        );
    }
}
