//! `/metrics` over HTTP on a loopback address (`[metrics] listen`), for a scraper on the till
//! itself (a local agent, or node_exporter-less setups).
//!
//! The same rules as the kiosk page: only a loopback address is accepted by the config; a
//! request whose `Host` is not a loopback name or address with this port is refused with 421
//! (DNS rebinding: a web page on a rebound name cannot read the metrics); at most
//! [`MAX_CONNECTIONS`] connections at once, past that 503 and closed; a request head must
//! arrive within [`HEAD_DEADLINE`] and fit in [`MAX_HEAD`] bytes. One request per connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::service::CardService;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// The longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Binds `addr` (which the config checked is loopback).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` until `stop` turns true.
pub async fn serve(listener: TcpListener, service: CardService, mut stop: watch::Receiver<bool>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (mut stream, _) = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => { backoff = Duration::from_millis(10); pair }
                Err(e) => {
                    log::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = answer(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    "busy\n",
                )
                .await;
            });
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ =
                tokio::time::timeout(HEAD_DEADLINE * 2, handle(&mut stream, port, &service)).await;
        });
    }
}

async fn handle(stream: &mut TcpStream, port: u16, service: &CardService) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(HEAD_DEADLINE, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Err(std::io::Error::other("request head too large"));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::Other => {
            return answer(
                stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        _ => return Ok(()),
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned());
    if let Some(host) = &host
        && !names_us(host, port)
    {
        return answer(
            stream,
            "421 Misdirected Request",
            "text/plain",
            "not this address\n",
        )
        .await;
    }
    if method != "GET" {
        return answer(stream, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    if path != "/metrics" {
        return answer(stream, "404 Not Found", "text/plain", "see /metrics\n").await;
    }
    match super::render_now(service).await {
        Some(body) => {
            answer(
                stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        None => {
            answer(
                stream,
                "500 Internal Server Error",
                "text/plain",
                "store unreadable\n",
            )
            .await
        }
    }
}

/// Whether a `Host` header names this listener: a loopback name or address, with this port
/// if it has one. Another DNS name never does (a rebound name is another site).
pub fn names_us(authority: &str, port: u16) -> bool {
    let (host, given_port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return false,
        }
    } else if authority.matches(':').count() == 1 {
        let (h, p) = authority.split_once(':').unwrap_or((authority, ""));
        (h, Some(p))
    } else {
        (authority, None)
    };
    if let Some(p) = given_port
        && p.parse::<u16>().ok() != Some(port)
    {
        return false;
    }
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn answer(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::names_us;

    #[test]
    fn host_must_be_loopback_with_our_port() {
        for ok in [
            "127.0.0.1:9",
            "localhost:9",
            "[::1]:9",
            "127.0.0.1",
            "::1",
            "LOCALHOST",
        ] {
            assert!(names_us(ok, 9), "{ok}");
        }
        for bad in [
            "evil.example:9",
            "127.0.0.1:10",
            "10.0.0.1:9",
            "[::1]:8",
            "[::1",
            "",
        ] {
            assert!(!names_us(bad, 9), "{bad}");
        }
    }
}
