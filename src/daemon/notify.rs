//! The systemd notify protocol: READY, STATUS, STOPPING, RELOADING and the watchdog.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is unset, so the daemon runs the same by hand.
//!
//! The messages go out on one datagram socket, opened at the first (READY, at start) and
//! kept, not on a new socket per message as `sd_notify::notify` does: out of file descriptors
//! (EMFILE) no new socket can be opened, the watchdog would go unfed and systemd would kill
//! (`WatchdogSec=`) a daemon that still serves lookups from its cache, and a warning would be
//! logged at every ping.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::service::{BackendState, ServiceStatus};

/// The socket to the service manager, connected to `NOTIFY_SOCKET`.
static SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);

fn send(states: &[NotifyState]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let mut message = String::new();
    for state in states {
        let _ = writeln!(message, "{state}");
    }
    let mut socket = SOCKET.lock().unwrap_or_else(|p| p.into_inner());
    let sent = (|| {
        let socket = match &mut *socket {
            Some(socket) => socket,
            empty => {
                let fresh = UnixDatagram::unbound()?;
                fresh.connect(&path)?;
                empty.insert(fresh)
            }
        };
        socket.send(message.as_bytes())
    })();
    if let Err(e) = sent {
        // Opened again at the next message (the manager may have made its socket anew).
        *socket = None;
        log::warn!("sd_notify failed: {e}");
    }
}

/// READY=1 with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A STATUS= line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// WATCHDOG=1.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// STOPPING=1.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// RELOADING=1 with the monotonic time systemd 253+ requires.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if systemd asks for pings.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The STATUS= text for the service's state, e.g. `online, 0 queued`,
/// `offline 12 min, 3 queued, 1 dead` or
/// `backend refuses the token: fix /etc/wxcardd/api-headers, 3 queued`.
pub fn status_text(status: &ServiceStatus, now_ms: u64) -> String {
    let mut text = match status.offline_since_ms {
        _ if status.backend == BackendState::CredentialsRefused => {
            "backend refuses the token: fix /etc/wxcardd/api-headers".to_owned()
        }
        None if status.online => "online".to_owned(),
        Some(since) => format!("offline {} min", now_ms.saturating_sub(since) / 60_000),
        None => "offline".to_owned(),
    };
    text.push_str(&format!(", {} queued", status.outbox_pending));
    if status.dead_letters > 0 {
        text.push_str(&format!(", {} dead", status.dead_letters));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_reads_as_the_unit_documents() {
        let mut s = ServiceStatus {
            backend: BackendState::Online,
            online: true,
            offline_since_ms: None,
            consecutive_failures: 0,
            outbox_pending: 0,
            dead_letters: 0,
            outbox_max: 100,
            oldest_pending_age_ms: None,
        };
        assert_eq!(status_text(&s, 0), "online, 0 queued");
        s.online = false;
        s.offline_since_ms = Some(1_000);
        s.outbox_pending = 3;
        s.dead_letters = 1;
        assert_eq!(
            status_text(&s, 1_000 + 12 * 60_000 + 5),
            "offline 12 min, 3 queued, 1 dead"
        );
        s.backend = BackendState::CredentialsRefused;
        assert_eq!(
            status_text(&s, 0),
            "backend refuses the token: fix /etc/wxcardd/api-headers, 3 queued, 1 dead"
        );
    }
}
