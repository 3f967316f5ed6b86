//! Logging setup: env_logger, with journald priorities when running under systemd.
//!
//! systemd sets `JOURNAL_STREAM` when stdout/stderr go to the journal; then each line starts
//! with `<N>` (sd-daemon(3) priority prefix) so `journalctl -p warning` works, and the
//! timestamp is left to the journal.

use std::io::Write;

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
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            )
        });
    }
    let _ = builder.try_init();
}
