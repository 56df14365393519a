//! Logs on stderr, as text or JSON lines.

use std::io::IsTerminal;

use crate::settings::cli::LogFormat;

/// The SDK's own crates stay at `warn` at every verbosity: their wire-level logs would print the
/// source credentials' signatures and the role's keys.
pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let base = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::new(format!("{base},credwrap={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
