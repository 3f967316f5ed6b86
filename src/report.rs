//! `wxcardctl report`: what support needs from a till in one text file a technician can send:
//! version and commit, `status`, the outbox summary, scanner and display states with their
//! udev properties, the config with secrets removed, the unit's last 500 journal lines, disk
//! and store sizes.
//!
//! What it must never carry: the API token (the headers file is never read; config keys that
//! name a secret and a URL's userinfo are replaced), the kiosk page's token (cut from its
//! URL), member data (the outbox rows are the daemon's summaries, which hold none) and full
//! card codes (every string that looks like one, in any section, keeps only its last 4
//! characters). A part that cannot be had (the daemon down, no journalctl, no permission) is
//! a line saying so; the report is still written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use serde_json::Value;
use toml::Table;

use crate::config::Config;
use crate::control::client::ControlClient;
use crate::control::protocol::Command;

/// Journal lines included.
pub const JOURNAL_LINES: usize = 500;

/// Builds the report: `socket` is the daemon's control socket, `config` its main config file.
pub fn build(socket: &Path, config: &Path, timeout: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "wxcardd support report");
    let _ = writeln!(
        out,
        "generated: {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let _ = writeln!(out, "wxcardctl: {}", crate::VERSION);
    let _ = writeln!(
        out,
        "host: {}",
        mask_codes(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
        )
    );

    let mut client = ControlClient::connect(socket, Some(timeout));
    let mut ask = |command: &Command| -> Result<Value, String> {
        let client = client.as_mut().map_err(|e| e.to_string())?;
        let answer = client.request(command).map_err(|e| e.to_string())?;
        if answer["class"] == "ERROR" {
            return Err(answer["error"]["message"].to_string());
        }
        Ok(answer["result"].clone())
    };

    section(&mut out, "status");
    let status = ask(&Command::Status);
    match &status {
        Ok(status) => {
            let mut status = status.clone();
            scrub_json(&mut status);
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            );
        }
        Err(e) => {
            let _ = writeln!(out, "daemon not reachable on {}: {e}", socket.display());
        }
    }

    section(&mut out, "outbox (no personal data)");
    // `outbox_list` answers `{"entries": [...]}`.
    let rows = ask(&Command::OutboxList).map(|mut answer| match answer.get_mut("entries") {
        Some(entries) => entries.take(),
        None => answer,
    });
    match rows {
        Ok(Value::Array(rows)) if rows.is_empty() => {
            let _ = writeln!(out, "empty");
        }
        Ok(Value::Array(rows)) => {
            for mut row in rows {
                scrub_json(&mut row);
                let _ = writeln!(out, "{row}");
            }
        }
        Ok(other) => {
            let _ = writeln!(out, "unexpected answer: {}", mask_codes(&other.to_string()));
        }
        Err(e) => {
            let _ = writeln!(out, "not available: {e}");
        }
    }

    let loaded = Config::load(config);
    section(&mut out, "config (secrets removed)");
    let mut files = vec![config.to_owned()];
    files.extend(crate::config::dropins::files(config).unwrap_or_default());
    for file in &files {
        let _ = writeln!(out, "# file: {}", file.display());
        match std::fs::read_to_string(file) {
            Ok(text) => match toml::from_str::<Table>(&text) {
                Ok(mut table) => {
                    redact_table(&mut table);
                    let text = toml::to_string(&table).unwrap_or_default();
                    let _ = writeln!(out, "{}", mask_codes(&text));
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "does not parse (not included): {}",
                        mask_codes(&e.to_string())
                    );
                }
            },
            Err(e) => {
                let _ = writeln!(out, "cannot read: {e}");
            }
        }
    }
    match &loaded {
        Ok(_) => {
            let _ = writeln!(out, "# wxcardd check: valid");
        }
        Err(e) => {
            let _ = writeln!(out, "# wxcardd check: {}", mask_codes(&e.to_string()));
        }
    }

    section(&mut out, "scanners and displays");
    if let Ok(status) = &status {
        for scanner in status["scanners"].as_array().into_iter().flatten() {
            let mut scanner = scanner.clone();
            scrub_json(&mut scanner);
            let _ = writeln!(out, "state: {scanner}");
        }
        let mut displays = status["display_backends"].clone();
        scrub_json(&mut displays);
        let _ = writeln!(out, "displays: {displays}");
    }
    if let Ok(config) = &loaded {
        for scanner in &config.scanners {
            use wxcard_hal::scanner::DeviceConfig;
            let path = match &scanner.device {
                DeviceConfig::Serial(c) => Some(PathBuf::from(&c.path)),
                DeviceConfig::Evdev(c) => Some(PathBuf::from(&c.path)),
                DeviceConfig::Hidpos(c) => Some(PathBuf::from(&c.path)),
                _ => None,
            };
            let Some(path) = path else {
                let _ = writeln!(out, "scanner {:?}: no device path", scanner.name);
                continue;
            };
            let _ = writeln!(
                out,
                "scanner {:?} {}: udev properties:",
                scanner.name,
                path.display()
            );
            out.push_str(&indent(&udev_properties(&path)));
        }
        for fb in ["/dev/fb0"] {
            if Path::new(fb).exists() {
                let _ = writeln!(out, "{fb}: udev properties:");
                out.push_str(&indent(&udev_properties(Path::new(fb))));
            }
        }
    }

    section(
        &mut out,
        &format!("journal (last {JOURNAL_LINES} lines of wxcardd.service)"),
    );
    out.push_str(&mask_codes(&run(
        "journalctl",
        &[
            "-u",
            "wxcardd.service",
            "-n",
            &JOURNAL_LINES.to_string(),
            "--no-pager",
            "-o",
            "short-iso",
        ],
    )));

    section(&mut out, "disk");
    let store = loaded
        .as_ref()
        .map(|c| c.store.dir.clone())
        .unwrap_or_else(|_| PathBuf::from("/var/lib/wxcardd/store"));
    let _ = writeln!(out, "store {}: {}", store.display(), dir_size(&store));
    for path in [store.as_path(), Path::new("/var/lib"), Path::new("/run")] {
        let _ = writeln!(
            out,
            "filesystem of {}: {}",
            path.display(),
            free_space(path)
        );
    }
    out
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n== {title} ==");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A command's output (stdout and stderr), or why it could not run.
fn run(program: &str, args: &[&str]) -> String {
    match Process::new(program).args(args).output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            // Line by line through the one sanitizer: no escape sequence reaches whoever
            // reads the report on a terminal.
            text.lines()
                .map(|l| wxcard_hal::text::sanitize(l, 4096) + "\n")
                .collect()
        }
        Err(e) => format!("{program} not available: {e}\n"),
    }
}

fn udev_properties(path: &Path) -> String {
    mask_codes(&run(
        "udevadm",
        &[
            "info",
            "--query=property",
            &format!("--name={}", path.display()),
        ],
    ))
}

fn dir_size(dir: &Path) -> String {
    fn walk(dir: &Path) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += if meta.is_dir() {
                walk(&entry.path())?
            } else {
                meta.len()
            };
        }
        Ok(total)
    }
    match walk(dir) {
        Ok(bytes) => format!("{bytes} bytes"),
        Err(e) => format!("not readable: {e}"),
    }
}

fn free_space(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "bad path".into();
    };
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: statvfs writes into the struct we own; the path is a valid C string.
    let rc = unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return format!("unknown: {}", std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // The fields are u64 on the 64-bit Linux targets the daemon ships for.
    let block = stat.f_frsize;
    format!(
        "{} bytes free of {} ({} bytes available to users)",
        stat.f_bfree * block,
        stat.f_blocks * block,
        stat.f_bavail * block
    )
}

/// Whether a config key names a secret (its value is replaced).
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.ends_with("_file")
        && !key.ends_with("_path")
        && [
            "token",
            "secret",
            "password",
            "passwd",
            "credential",
            "auth",
            "apikey",
        ]
        .iter()
        .any(|s| key.contains(s))
}

/// Removes secrets from a config table: values of keys naming a secret, and a URL's userinfo
/// and query.
fn redact_table(table: &mut Table) {
    for (key, value) in table.iter_mut() {
        redact_value(key, value);
    }
}

fn redact_value(key: &str, value: &mut toml::Value) {
    match value {
        toml::Value::String(s) if secret_key(key) => *s = "<redacted>".into(),
        toml::Value::String(s) => *s = redact_url(s),
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => {
            for item in items {
                redact_value(key, item);
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/path?query` -> `scheme://<redacted>@host/path?<redacted>`.
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?<redacted>"),
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// Masks card codes and cuts tokens in every string of a JSON value.
fn scrub_json(value: &mut Value) {
    match value {
        Value::String(s) => *s = mask_codes(&cut_kiosk_token(s)),
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        Value::Object(map) => map.values_mut().for_each(scrub_json),
        _ => {}
    }
}

/// The kiosk page's URL without its token (`/k/TOKEN/` -> `/k/<redacted>/`).
fn cut_kiosk_token(s: &str) -> String {
    match s.find("/k/") {
        Some(i) => {
            let rest = &s[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}/k/<redacted>{}", &s[..i], &rest[end..])
        }
        None => s.to_owned(),
    }
}

/// Replaces everything that looks like a card code (a run of 10 or more letters and digits
/// holding at least 8 digits) by the one masked form the display, `wxcardctl` and the logs
/// use (`**** 4570`).
pub fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let digits = word.bytes().filter(u8::is_ascii_digit).count();
        if word.len() >= 10 && digits >= 8 {
            let masked = wxcard_hal::display::MaskedCardNumber::new(word.as_str());
            out.push_str(&masked.to_string());
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_urls_and_secret_keys_are_masked() {
        assert_eq!(
            mask_codes("activate card 812345678901234567 at 12:00, v1"),
            "activate card **** 4567 at 12:00, v1"
        );
        assert_eq!(
            redact_url("https://u:p@h.example/api?token=x"),
            "https://<redacted>@h.example/api?<redacted>"
        );
        assert_eq!(
            cut_kiosk_token("http://10.0.0.2:8765/k/abcdef/"),
            "http://10.0.0.2:8765/k/<redacted>/"
        );
        assert!(secret_key("api_token") && !secret_key("token_file"));
    }
}
