//! The control socket server: a Unix stream socket speaking [`super::protocol`].
//!
//! Each connection is checked with SO_PEERCRED against the allowed uids and gids before
//! anything else (the socket file's 0660 mode and group are the first gate, this is the
//! second). A malformed line, an unknown command or a line over the size limit gets an
//! `ERROR` answer on that connection only. Subscribers get events through a bounded queue; one
//! that falls behind is told `overrun` and disconnected, so a slow client can never block the
//! daemon.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::protocol::{
    self, Command, ErrorCode, MAX_LINE_BYTES, ProtocolError, error_line, result_line,
};

/// What a command's handler answers: a result object, or an error code and message.
pub type Answer = Result<Value, (ErrorCode, String)>;

/// Carries out commands; the daemon's engine implements it.
pub trait Handler: Send + Sync + 'static {
    /// Carries out one command (never `subscribe`, which the server handles).
    fn handle(&self, command: Command) -> impl Future<Output = Answer> + Send;
}

/// Who may talk to the daemon.
#[derive(Debug, Clone, Default)]
pub struct Access {
    uids: HashSet<u32>,
    gids: HashSet<u32>,
}

impl Access {
    /// Allows exactly these uids and primary gids.
    pub fn new(uids: impl IntoIterator<Item = u32>, gids: impl IntoIterator<Item = u32>) -> Self {
        Access {
            uids: uids.into_iter().collect(),
            gids: gids.into_iter().collect(),
        }
    }

    /// Whether a peer with this uid and primary gid may connect: an allowed uid, an allowed
    /// primary gid, or (SO_PEERCRED carries only the primary group) membership of an allowed
    /// group in the group database, which is how `usermod -aG wxcard pos` grants access.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if self.uids.contains(&uid) || self.gids.contains(&gid) {
            return true;
        }
        let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
            return false;
        };
        self.gids.iter().any(|g| {
            matches!(
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*g)),
                Ok(Some(group)) if group.mem.contains(&user.name)
            )
        })
    }
}

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Subscribers at once.
    pub max_subscribers: usize,
    /// Event lines queued per subscriber before it is dropped.
    pub subscriber_queue: usize,
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process answers on the socket.
    #[error("{0}: another wxcardd is already listening there")]
    InUse(PathBuf),
    /// An IO error.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Binds the socket at `path` (removing a stale one), mode 0660, group `gid` if given.
pub async fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, BindError> {
    let io_err = |op| {
        let path = path.to_owned();
        move |source| BindError::Io { path, op, source }
    };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err("remove the stale socket"))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("create the socket's directory"))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("chmod 0660"))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown to the group"))?;
    }
    Ok(listener)
}

/// Serves connections until `shutdown` turns true.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    events: broadcast::Sender<Value>,
    access: Access,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let subscribers = Arc::new(AtomicUsize::new(0));
    let access = Arc::new(access);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!("control socket accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let conn = Connection {
            handler: Arc::clone(&handler),
            events: events.clone(),
            access: Arc::clone(&access),
            limits,
            subscribers: Arc::clone(&subscribers),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(conn.serve(stream));
    }
}

/// One client connection.
pub struct Connection<H> {
    handler: Arc<H>,
    events: broadcast::Sender<Value>,
    access: Arc<Access>,
    limits: Limits,
    subscribers: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
}

impl<H: Handler> Connection<H> {
    /// A connection handler outside [`serve`] (for tests over a socketpair).
    pub fn new(
        handler: Arc<H>,
        events: broadcast::Sender<Value>,
        access: Access,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            handler,
            events,
            access: Arc::new(access),
            limits,
            subscribers: Arc::new(AtomicUsize::new(0)),
            shutdown,
        }
    }

    /// Serves the connection to its end.
    pub async fn serve(mut self, stream: UnixStream) {
        let cred = stream.peer_cred();
        let (read, mut write) = stream.into_split();
        let allowed = match &cred {
            Ok(c) => {
                // The group database may be NSS-backed (files, but also LDAP): off the
                // executor.
                let (access, uid, gid) = (Arc::clone(&self.access), c.uid(), c.gid());
                tokio::task::spawn_blocking(move || access.allows(uid, gid))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => false,
        };
        if !allowed {
            let who = cred
                .map(|c| format!("uid {} gid {}", c.uid(), c.gid()))
                .unwrap_or_else(|e| format!("unknown peer ({e})"));
            log::warn!("control socket: refused a connection from {who}");
            let line = error_line(
                Value::Null,
                ErrorCode::Forbidden,
                &format!("{who} is not allowed; see control.allowed_uids / allowed_gids"),
            );
            let _ = write.write_all(&to_line(&line)).await;
            return;
        }

        // Everything written to the client goes through one bounded queue and one writer.
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(self.limits.subscriber_queue.max(1));
        let (overrun_tx, mut overrun_rx) = oneshot::channel::<String>();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&to_line(&protocol::version_line())).await;
            let mut overrun_pending = true;
            loop {
                tokio::select! {
                    line = out_rx.recv() => match line {
                        Some(line) => if write.write_all(&line).await.is_err() { return },
                        None => return,
                    },
                    reason = &mut overrun_rx, if overrun_pending => {
                        let Ok(reason) = reason else {
                            // The sender is gone without a reason: keep writing answers.
                            overrun_pending = false;
                            continue;
                        };
                        let line = error_line(Value::Null, ErrorCode::Overrun, &reason);
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            write.write_all(&to_line(&line)),
                        ).await;
                        let _ = write.shutdown().await;
                        return;
                    }
                }
            }
        });

        let mut reader = BufReader::new(read);
        let mut overrun_tx = Some(overrun_tx);
        let mut subscribed = false;
        let mut line = Vec::new();
        loop {
            let read = tokio::select! {
                r = read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES) => r,
                _ = self.shutdown.wait_for(|stop| *stop) => break,
            };
            let answer = match read {
                Ok(Some(LineRead::Line)) => match protocol::parse_request(&line) {
                    Ok(request) => {
                        let answer = match request.command {
                            Command::Subscribe => {
                                self.subscribe(&mut subscribed, &out, &mut overrun_tx)
                            }
                            command => self.handler.handle(command).await,
                        };
                        match answer {
                            Ok(result) => result_line(request.id, result),
                            Err((code, message)) => error_line(request.id, code, &message),
                        }
                    }
                    Err(e) => e.to_line(),
                },
                Ok(Some(LineRead::TooLong)) => ProtocolError {
                    id: Value::Null,
                    code: ErrorCode::TooLong,
                    message: format!("request longer than {MAX_LINE_BYTES} bytes"),
                }
                .to_line(),
                Ok(None) | Err(_) => break,
            };
            if out.send(to_line(&answer)).await.is_err() {
                break;
            }
        }
        if subscribed {
            self.subscribers.fetch_sub(1, Ordering::SeqCst);
        }
        drop(out);
        let _ = writer.await;
    }

    fn subscribe(
        &self,
        subscribed: &mut bool,
        out: &mpsc::Sender<Vec<u8>>,
        overrun: &mut Option<oneshot::Sender<String>>,
    ) -> Answer {
        if *subscribed {
            return Ok(serde_json::json!({"subscribed": true}));
        }
        let count = self.subscribers.fetch_add(1, Ordering::SeqCst);
        if count >= self.limits.max_subscribers {
            self.subscribers.fetch_sub(1, Ordering::SeqCst);
            return Err((
                ErrorCode::Failed,
                format!(
                    "too many subscribers (at most {})",
                    self.limits.max_subscribers
                ),
            ));
        }
        *subscribed = true;
        let mut events = self.events.subscribe();
        let out = out.clone();
        let overrun = overrun.take();
        tokio::spawn(async move {
            let reason = loop {
                match events.recv().await {
                    Ok(event) => match out.try_send(to_line(&event)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            break "too slow reading events: queue full, disconnected";
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        break "too slow reading events: missed some, disconnected";
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            };
            log::warn!("control socket: dropped a subscriber: {reason}");
            if let Some(overrun) = overrun {
                let _ = overrun.send(reason.to_owned());
            }
        });
        Ok(serde_json::json!({"subscribed": true}))
    }
}

fn to_line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

enum LineRead {
    Line,
    TooLong,
}

/// Reads one line into `line` (without the newline), keeping at most `max` bytes in memory:
/// a longer line is read to its end and discarded.
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<LineRead>> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => Some(LineRead::TooLong),
                (false, true) => None,
                (false, false) => Some(LineRead::Line),
            });
        }
        let (chunk, used, end) = match available.iter().position(|b| *b == b'\n') {
            Some(pos) => (&available[..pos], pos + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if end {
            return Ok(Some(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ErrorCode;

    struct Echo;
    impl Handler for Echo {
        async fn handle(&self, command: Command) -> Answer {
            Ok(serde_json::json!({"cmd": command.name()}))
        }
    }

    async fn first_line(access: Access) -> Value {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let (events, _) = broadcast::channel(4);
        let (_stop, stop_rx) = watch::channel(false);
        let limits = Limits {
            max_subscribers: 1,
            subscriber_queue: 4,
        };
        let conn = Connection::new(Arc::new(Echo), events, access, limits, stop_rx);
        tokio::spawn(conn.serve(server_end));
        let mut reader = BufReader::new(client_end);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn a_peer_outside_the_allow_list_is_refused() {
        let me = nix::unistd::getuid().as_raw();
        let my_gid = nix::unistd::getgid().as_raw();
        // An allow-list that names neither this process's uid nor any group it is in.
        let spoofed = Access::new([me.wrapping_add(4242)], [my_gid.wrapping_add(4242)]);
        let line = first_line(spoofed).await;
        assert_eq!(line["class"], "ERROR", "{line}");
        assert_eq!(
            line["error"]["code"],
            serde_json::json!(ErrorCode::Forbidden)
        );
        assert!(
            line["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("uid {me}"))
        );

        let allowed = first_line(Access::new([me], [])).await;
        assert_eq!(allowed["class"], "VERSION", "{allowed}");
    }
}
