//! Client behaviour that needs a misbehaving peer the simulator does not play: a listener
//! whose accept queue is full (connects hang), and an endless body.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use wxcardd::api::{ApiConfig, ApiError, Client, ServerFault, TransportKind};

fn client_for(addr: std::net::SocketAddr, connect_ms: u64, deadline_ms: u64) -> Client {
    Client::new(&ApiConfig {
        base_url: format!("http://{addr}/"),
        connect_timeout_ms: connect_ms,
        deadline_ms,
        ..ApiConfig::default()
    })
    .unwrap()
}

#[test]
fn nothing_listening_is_a_transport_error() {
    // Bind then drop, so the port is very likely free.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = client_for(addr, 300, 5_000)
        .get_member_card(None, "1234", None)
        .unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(err.transport_kind(), Some(TransportKind::Refused), "{err}");
}

#[test]
fn a_connect_that_hangs_fails_at_the_connect_timeout_not_the_deadline() {
    // A listener that never accepts, with an accept queue of one: once it is full the kernel
    // drops further SYNs, so a connect hangs as it does to an unreachable host.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a socket we own, only changing its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut saw_hang = false;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => {
                saw_hang = true;
                break;
            }
        }
    }
    assert!(saw_hang, "could not fill the accept queue");

    let started = Instant::now();
    let err = client_for(addr, 300, 30_000)
        .get_member_card(None, "1234", None)
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::ConnectTimeout),
        "{err}"
    );
    // Far below the 30 s deadline: the connect timeout, not the deadline, ended it.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(took >= Duration::from_millis(250), "took {took:?}");
}

/// Serves one connection: reads the request head, then writes `head` and `body_len` bytes.
fn serve_once(head: String, body_len: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(head.as_bytes());
        let chunk = vec![b' '; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    addr
}

#[test]
fn an_oversized_body_is_refused_not_buffered() {
    let len = 50 * 1024 * 1024;
    let addr = serve_once(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        ),
        len,
    );
    let err = client_for(addr, 1_000, 10_000)
        .get_member_card(None, "1234", None)
        .unwrap_err();
    match err {
        ApiError::Server {
            fault: ServerFault::BodyTooLarge { limit },
            ..
        } => assert_eq!(limit, ApiConfig::default().max_body_bytes),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_cut_short_is_a_truncation() {
    let addr = serve_once(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"status\":200,\"data\":{\"cardCo".into(),
        0,
    );
    let err = client_for(addr, 1_000, 10_000)
        .get_member_card(None, "1234", None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Server {
                fault: ServerFault::Truncated,
                ..
            }
        ),
        "{err:?}"
    );
}
