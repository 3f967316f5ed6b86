//! Host and Origin checks for the daemon's local HTTP listeners (the kiosk page, the control
//! protocol over WebSocket).
//!
//! Any web page the till's browser opens can make it send requests to 127.0.0.1. Two checks
//! stop that:
//! - **Host** (DNS rebinding): a page on `evil.example` whose name is re-pointed at 127.0.0.1
//!   sends `Host: evil.example:PORT`. Only the listen address itself, a loopback IP literal or
//!   the name `localhost` are accepted, with the listen port when one is given. An IP literal
//!   cannot be rebound, so a listener open to the network on purpose (`allow_remote`) accepts
//!   any IP literal; names other than `localhost` never are.
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

/// Whether `authority` (a `Host` header, or an origin without its scheme) names a listener
/// on `listen`: `localhost`, a loopback IP, the listen IP, or with `any_ip` any IP literal; the
/// port, when given, must be the listen port. A DNS name other than `localhost` never does: a
/// page on a rebound name is another site.
pub fn names_listener(authority: &str, listen: SocketAddr, any_ip: bool) -> bool {
    let Some((host, port)) = split_host_port(authority) else {
        return false;
    };
    if port.is_some_and(|p| p != listen.port()) {
        return false;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == listen.ip() || any_ip,
        Err(_) => false,
    }
}

/// Checks a request's `Host` header with [`names_listener`].
pub fn check_host(host: Option<&str>, listen: SocketAddr, any_ip: bool) -> Result<(), Refusal> {
    let host = host.ok_or(Refusal::MissingHost)?;
    if names_listener(host, listen, any_ip) {
        Ok(())
    } else {
        Err(Refusal::ForeignHost(truncate(host), listen))
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
        && split_host_port(rest).is_some_and(|(host, _)| !host.is_empty())
}

/// Splits `host[:port]` (`[v6][:port]`, or a bare IPv6 address without a port); None when
/// the port is not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, None)),
            _ => Some((ip, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((name, _)) if name.contains(':') => Some((authority, None)),
        Some((name, port)) => Some((name, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Bounds and escapes what a client sent before it is echoed or logged.
fn truncate(text: &str) -> String {
    crate::text::sanitize(text, 100).into_owned()
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
            "127.0.0.1",
            "localhost:8765",
            "LOCALHOST.:8765",
            "[::1]:8765",
            "::1",
            "127.1.2.3:8765",
        ] {
            assert_eq!(check_host(Some(ok), lo, false), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:8765",
            "localhost.evil.example:8765",
            "127.0.0.1:8766",
            "localhost:",
            "192.168.1.5:8765",
            "[::1:8765",
            "",
        ] {
            assert!(check_host(Some(bad), lo, false).is_err(), "{bad}");
        }
        assert_eq!(check_host(None, lo, false), Err(Refusal::MissingHost));
        // What a client sent is echoed and logged bounded and escaped.
        let hostile = format!("evil\n<0>forged\u{202e}{}", "x".repeat(500));
        let said = check_host(Some(&hostile), lo, false)
            .unwrap_err()
            .to_string();
        assert!(!said.contains('\n') && !said.contains('\u{202e}'), "{said}");
        assert!(said.len() < 400, "{said}");
        let lan = addr("192.168.1.5:8765");
        assert_eq!(check_host(Some("192.168.1.5:8765"), lan, false), Ok(()));
        assert!(check_host(Some("192.168.1.6:8765"), lan, false).is_err());
        let any = addr("0.0.0.0:80");
        assert_eq!(check_host(Some("10.0.0.9"), any, true), Ok(()));
        assert!(check_host(Some("10.0.0.9"), any, false).is_err());
        assert!(check_host(Some("till.example"), any, true).is_err());
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
