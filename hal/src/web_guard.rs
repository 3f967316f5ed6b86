//! Host and Origin checks for the daemon's local HTTP listeners (the kiosk page, the control
//! protocol over WebSocket).
//!
//! Any web page the till's browser opens can make it send requests to 127.0.0.1. Two checks
//! stop that:
//! - **Host** (DNS rebinding): a page on `evil.example` whose name is re-pointed at 127.0.0.1
//!   sends `Host: evil.example:PORT`. Only the listen address itself, a loopback IP literal or
//!   the name `localhost` are accepted, always with the listen port. An IP literal cannot be
//!   rebound, so when the listener is on the unspecified address (`0.0.0.0`, `[::]`, remote
//!   access on purpose) any IP literal is accepted; names other than `localhost` never are.
//! - **Origin** (cross-site requests): must be exactly one of the configured origins. A
//!   request without `Origin` does not come from a web page (browsers always send it on
//!   WebSocket handshakes and cross-origin requests), so [`check_origin`] lets it through;
//!   such a client still needs whatever credential the listener asks for.
//!
//! Pure functions on strings, shared so that every listener applies the same rules.

use std::net::{IpAddr, SocketAddr};

/// Why a request was refused. The text is sent back to the client and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No Host header (HTTP/1.1 requires one).
    #[error("no Host header")]
    MissingHost,
    /// A Host that is not this listener (a DNS-rebinding page, or a wrong port).
    #[error(
        "Host {0:?} is not this listener ({1}): use 127.0.0.1, [::1] or localhost with its port"
    )]
    ForeignHost(String, SocketAddr),
    /// An Origin not in the allowed list.
    #[error("Origin {0:?} is not in allowed_origins")]
    ForeignOrigin(String),
}

/// Checks a request's `Host` header against the listener's address (see the module docs).
pub fn check_host(host: Option<&str>, listen: SocketAddr) -> Result<(), Refusal> {
    let host = host.ok_or(Refusal::MissingHost)?;
    let foreign = || Refusal::ForeignHost(truncate(host), listen);
    let (name, port) = split_host_port(host).ok_or_else(foreign)?;
    if port != listen.port() {
        return Err(foreign());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let ip: IpAddr = name.parse().map_err(|_| foreign())?;
    if ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified() {
        Ok(())
    } else {
        Err(foreign())
    }
}

/// Checks a request's `Origin` header: absent (not a web page) or exactly one of `allowed`.
/// An empty `allowed` refuses every page.
pub fn check_origin(origin: Option<&str>, allowed: &[String]) -> Result<(), Refusal> {
    match origin {
        None => Ok(()),
        Some(origin) if allowed.iter().any(|a| a == origin) => Ok(()),
        Some(origin) => Err(Refusal::ForeignOrigin(truncate(origin))),
    }
}

/// Whether `origin` is written as browsers send it: `scheme://host[:port]`, lower-case
/// scheme, no path, no trailing slash (for validating configured origins).
pub fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && split_host_port(rest).is_some()
}

/// Splits `host:port` (`[v6]:port` for IPv6); no port means 80.
fn split_host_port(host: &str) -> Option<(&str, u16)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, 80)),
            _ => Some((ip, after.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => Some((name, port.parse().ok()?)),
        Some(_) => None,
        None => Some((host, 80)),
    }
}

/// Bounds what a client sent before it is echoed or logged.
fn truncate(text: &str) -> String {
    text.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts() {
        let lo = addr("127.0.0.1:8765");
        for ok in [
            "127.0.0.1:8765",
            "localhost:8765",
            "LOCALHOST.:8765",
            "[::1]:8765",
            "127.1.2.3:8765",
        ] {
            assert_eq!(check_host(Some(ok), lo), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:8765",
            "localhost.evil.example:8765",
            "127.0.0.1:8766",
            "127.0.0.1",
            "192.168.1.5:8765",
            "[::1:8765",
            "",
        ] {
            assert!(check_host(Some(bad), lo).is_err(), "{bad}");
        }
        assert_eq!(check_host(None, lo), Err(Refusal::MissingHost));
        let lan = addr("192.168.1.5:8765");
        assert_eq!(check_host(Some("192.168.1.5:8765"), lan), Ok(()));
        assert!(check_host(Some("192.168.1.6:8765"), lan).is_err());
        let any = addr("0.0.0.0:80");
        assert_eq!(check_host(Some("10.0.0.9"), any), Ok(()));
        assert!(check_host(Some("till.example"), any).is_err());
    }

    #[test]
    fn origins() {
        let allowed = vec!["http://localhost:8069".to_owned()];
        assert_eq!(check_origin(None, &allowed), Ok(()));
        assert_eq!(
            check_origin(Some("http://localhost:8069"), &allowed),
            Ok(())
        );
        for bad in [
            "http://localhost:8070",
            "https://localhost:8069",
            "http://localhost:8069/",
            "null",
        ] {
            assert!(check_origin(Some(bad), &allowed).is_err(), "{bad}");
        }
        assert!(check_origin(Some("http://localhost:8069"), &[]).is_err());
        assert!(is_origin("http://localhost:8069"));
        assert!(is_origin("https://pos.example"));
        assert!(is_origin("http://[::1]:8069"));
        for bad in [
            "localhost:8069",
            "http://localhost:8069/",
            "null",
            "http://",
            "ftp://x",
            "http://a:b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
