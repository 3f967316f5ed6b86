//! `wxcardd probe`, the technician's install-time check, run as the real binary against the
//! real simulator binary.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{SimProcess, write_config};

fn probe(config: &std::path::Path, wx_code: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["probe", "--config"])
        .arg(config)
        .args(["--wx-code", wx_code])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn probe_prints_the_balance_of_an_active_card() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url(), "");
    let (code, text) = probe(&config, "812345678901234567");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("balance 128.50"), "{text}");
    assert!(
        text.contains("card **** 1001:"),
        "card number masked: {text}"
    );
    assert!(!text.contains("M0001001"), "card number masked: {text}");
}

#[test]
fn probe_says_a_lost_card_is_reported_lost() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.base_url(), "");
    let (code, text) = probe(&config, "812345678901234571");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("reported lost"), "{text}");
    assert!(text.contains("603"), "{text}");
}

#[test]
fn probe_says_unreachable_and_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("http://127.0.0.1:{port}/"), "");
    let started = Instant::now();
    let (code, text) = probe(&config, "812345678901234567");
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("unreachable"), "{text}");
    // Refused at once: well within the 500 ms connect timeout plus process start-up.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn probe_with_a_bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:1/", "bogus_key = 1\n");
    let (code, text) = probe(&config, "812345678901234567");
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("bogus_key"), "{text}");
}

#[test]
fn the_api_token_never_reaches_the_log_even_at_trace() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("api-headers");
    std::fs::write(
        &headers,
        "# the vendor's token\nX-Api-Token: TOPSECRET456\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        &format!("headers_file = \"{}\"\n", headers.display()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["probe", "--config"])
        .arg(&config)
        .args(["--wx-code", "812345678901234567"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The trace log is really on: the client's own debug line is there.
    assert!(text.contains("getmembercard: HTTP 200"), "{text}");
    support::assert_log_keeps_secrets(&text, &["TOPSECRET456"]);
    // ...and it did reach the backend, as a request header.
    let (status, headers) = sim.admin_get("last-headers");
    assert_eq!(status, 200, "{headers}");
    assert_eq!(headers["x-api-token"], "TOPSECRET456", "{headers}");
}
