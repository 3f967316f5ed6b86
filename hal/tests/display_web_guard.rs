//! The kiosk page serves the live pay code only to the kiosk (issue 10, part 3), over real
//! HTTP on 127.0.0.1: a DNS-rebinding request (`Host: attacker.example`) and a cross-origin
//! one are refused; a non-loopback address needs `allow_remote` and then the token kept 0600
//! in the state directory.

mod display_support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use display_support::{CODE, pay_code};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxcard_hal::display::config::WebConfig;
use wxcard_hal::display::web::WebDisplay;
use wxcard_hal::display::{CustomerDisplay, Texts};

/// Sends one HTTP/1.0 request with `headers` and returns the status line and what of the
/// body arrives within a second (an event stream never ends by itself).
async fn get(addr: SocketAddr, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n{headers}Accept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        // The first screen event is all these tests need.
        if String::from_utf8_lossy(&got).contains("\n\n") && got.len() > 200 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    (status, text)
}

/// Whether `body` carries the pay code's digits (the page groups them with spaces).
fn leaks(body: &str) -> bool {
    body.replace(' ', "").contains(CODE)
}

async fn showing_a_pay_code(config: WebConfig) -> WebDisplay {
    let mut web = WebDisplay::start(&config, Texts::default()).unwrap();
    web.show(&pay_code(CODE, Instant::now()), Instant::now())
        .unwrap();
    web
}

fn loopback() -> WebConfig {
    WebConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..WebConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_rebinding_request_is_refused_and_the_kiosk_still_served() {
    let web = showing_a_pay_code(loopback()).await;
    let addr = web.local_addr();

    let (status, body) = get(addr, "/events", "Host: attacker.example\r\n").await;
    assert!(
        status.contains(" 421 ") || status.contains(" 403 "),
        "a request for attacker.example got {status:?}"
    );
    assert!(!leaks(&body), "the pay code leaked: {body}");
    let (status, _) = get(addr, "/", "Host: attacker.example:80\r\n").await;
    assert!(
        status.contains(" 421 "),
        "the page for attacker.example: {status:?}"
    );

    // Another site's page in the kiosk's own browser: Origin is checked on the stream.
    let host = format!("Host: {addr}\r\n");
    let (status, body) = get(
        addr,
        "/events",
        &format!("{host}Origin: http://attacker.example\r\n"),
    )
    .await;
    assert!(
        status.contains(" 403 "),
        "cross-origin stream got {status:?}"
    );
    assert!(!leaks(&body), "the pay code leaked: {body}");

    // The kiosk itself: its own address, localhost, or the same origin.
    for headers in [
        host.clone(),
        format!("Host: localhost:{}\r\n", addr.port()),
        format!("{host}Origin: http://{addr}\r\n"),
    ] {
        let (status, body) = get(addr, "/events", &headers).await;
        assert!(status.contains(" 200 "), "{headers:?} got {status:?}");
        assert!(leaks(&body), "{headers:?}: no pay code in {body}");
    }
    // The wrong port is another site too.
    let (status, _) = get(addr, "/", "Host: 127.0.0.1:1\r\n").await;
    assert!(status.contains(" 421 "), "another port: {status:?}");
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_allow_remote_and_then_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("state/kiosk-token");
    let open = WebConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], 0)),
        token_file: token_file.clone(),
        ..WebConfig::default()
    };
    let refused = WebDisplay::start(&open, Texts::default());
    assert!(
        refused.is_err(),
        "0.0.0.0 without allow_remote was accepted"
    );
    assert!(
        refused.err().unwrap().to_string().contains("allow_remote"),
        "the error names the key"
    );

    let remote = WebConfig {
        allow_remote: true,
        ..open
    };
    let web = showing_a_pay_code(remote.clone()).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], web.local_addr().port()));
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert!(token.len() >= 32, "token {token:?}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    // This page's own address: `current_url()` is the process's newest page, and the other
    // test here starts one at the same time.
    let url = web.url();
    assert!(url.ends_with(&format!("/k/{token}/")), "{url}");

    let host = format!("Host: 192.0.2.7:{}\r\n", addr.port());
    for path in ["/", "/events", "/k/00000000000000000000000000000000/events"] {
        let (status, body) = get(addr, path, &host).await;
        assert!(
            status.contains(" 403 ") || status.contains(" 404 "),
            "{path}: {status:?}"
        );
        assert!(!leaks(&body), "{path}: the pay code leaked");
    }
    let (status, body) = get(addr, &format!("/k/{token}/events"), &host).await;
    assert!(status.contains(" 200 "), "with the token: {status:?}");
    assert!(leaks(&body), "with the token: {body}");
    let (status, body) = get(addr, &format!("/k/{token}/"), &host).await;
    assert!(
        status.contains(" 200 ") && body.contains("EventSource"),
        "{status:?}"
    );
    // A DNS name is still refused, token or not: the token is not a licence to rebind.
    let (status, _) = get(
        addr,
        &format!("/k/{token}/events"),
        &format!("Host: attacker.example:{}\r\n", addr.port()),
    )
    .await;
    assert!(status.contains(" 421 "), "{status:?}");
    web.stop().await;

    // The token is per install: the next start keeps it.
    let again = WebDisplay::start(&remote, Texts::default()).unwrap();
    let kept = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(kept.trim(), token);
    again.stop().await;
}
