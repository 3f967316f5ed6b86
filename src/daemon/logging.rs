//! Logging setup: env_logger, with journald priorities when running under systemd.
//!
//! systemd sets `JOURNAL_STREAM` when stdout/stderr go to the journal; then each line starts
//! with `<N>` (sd-daemon(3) priority prefix) so `journalctl -p warning` works, and the
//! timestamp is left to the journal. The HTTP and TLS crates are capped at info, so a
//! technician's `RUST_LOG=trace` never writes the API token into the journal.
//!
//! Every message goes through the one sanitizer ([`wxcard_hal::text`]) before it is written:
//! a backend string with a newline and `<0>` would otherwise be a journal line of its own at
//! priority 0 (broadcast to every terminal), and an escape sequence would reach whoever reads
//! the log on a terminal. One record is one line, at most [`MAX_LINE_CHARS`] characters.

use std::io::Write;

use wxcard_hal::text::sanitize;

/// The longest message one log line keeps, in characters.
pub const MAX_LINE_CHARS: usize = 4096;

/// The sd-daemon priority of a log level.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Initialises logging once; `RUST_LOG` overrides `default_filter`.
pub fn init(default_filter: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    // The HTTP and TLS crates dump request heads at debug/trace level, and a request head
    // carries the API token: whatever RUST_LOG says, they log at info at most.
    for module in ["ureq", "ureq_proto", "rustls"] {
        builder.filter_module(module, log::LevelFilter::Info);
    }
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                sanitize(&record.args().to_string(), MAX_LINE_CHARS)
            )
        });
    } else {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                sanitize(&record.args().to_string(), MAX_LINE_CHARS)
            )
        });
    }
    let _ = builder.try_init();
}
