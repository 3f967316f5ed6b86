//! The control socket server: a Unix stream socket speaking [`super::protocol`].
//!
//! Each connection is checked with SO_PEERCRED against the allowed uids and gids before
//! anything else (the socket file's 0660 mode and group are the first gate, this is the
//! second). A malformed line, an unknown command or a line over the size limit gets an
//! `ERROR` answer on that connection only. Subscribers get events through a bounded queue; one
//! that falls behind is told `overrun`, loses its subscriber slot and is disconnected at once,
//! so a slow client can never block the daemon.
//!
//! No local peer can take the daemon down by holding its resources (issue 10): connections
//! are capped (`control.max_connections`; any uid but root's and the daemon's own may hold a
//! quarter of them, and those two have a reserve beyond the cap), an over-cap connection is
//! answered `ERROR busy` and closed before anything is read from it, every task of a
//! connection ends with it, each write has a deadline, a failing `accept` (out of file
//! descriptors) backs off instead of spinning, and warnings a peer can trigger are logged at
//! most once per interval with a count.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::socket_io::{self, WriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch};

use super::protocol::{
    self, Command, ErrorCode, Event, EventLine, MAX_LINE_BYTES, ProtocolError, error_line,
    result_line,
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

    /// Whether the peer's uid or primary gid is on the lists: no lookup, so cheap enough to
    /// ask on the executor. Root, the daemon's own uid and its group always are (`run`), so
    /// a burst of connections from the POS app or `wxcardctl` needs no blocking thread.
    pub fn allows_listed(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }

    /// Whether a peer with this uid and primary gid may connect: an allowed uid, an allowed
    /// primary gid, or (SO_PEERCRED carries only the primary group) membership of an allowed
    /// group in the group database, which is how `usermod -aG wxcard pos` grants access.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if self.allows_listed(uid, gid) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
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
    /// Connections served at once (`control.max_connections`). Root and the daemon's own uid
    /// have [`RESERVED_CONNECTIONS`] more; any other uid may hold at most a quarter of this.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_subscribers: 16,
            subscriber_queue: 256,
            max_connections: 64,
        }
    }
}

/// Connections kept for root and the daemon's own uid beyond `max_connections`, so that a
/// technician (`sudo wxcardctl status`) always gets in.
pub const RESERVED_CONNECTIONS: usize = 8;

/// Each connection's read buffer. Requests are one short JSON line (a `lookup` is under 100
/// bytes); a longer one, up to [`MAX_LINE_BYTES`], is read in several fills. 8 KiB (tokio's
/// default) held by each of 200 open connections was 1.6 MB of RSS (BENCHMARKS.md, "Issue
/// 12", "RSS after a burst").
pub const READ_BUFFER_BYTES: usize = 1024;

/// The longest one write to a client may block before the client is disconnected: a peer
/// that stops reading never holds a task, a slot or a file descriptor for longer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Queued lines joined into one write, at most (then the next write takes the rest).
const COALESCE_BYTES: usize = 16 * 1024;

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

/// Exponential pause after a failed `accept` (10 ms doubling to 1 s), logged once per burst
/// of failures with a count. Out of file descriptors (EMFILE) the pending connection stays
/// in the backlog and `accept` fails again at once: without the pause the loop spins a core
/// and writes a log line per failure.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u64,
    delay: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure; returns how long to wait before the next `accept`.
    pub fn failed(&mut self, what: &str, error: &io::Error) -> Duration {
        if self.failures == 0 {
            log::warn!("{what}: accept failed: {error}; backing off (logged once per burst)");
        }
        self.failures += 1;
        self.delay = if self.delay.is_zero() {
            Self::FIRST
        } else {
            (self.delay * 2).min(Self::MAX)
        };
        self.delay
    }

    /// Records a success, ending a burst of failures (logged with its count).
    pub fn succeeded(&mut self, what: &str) {
        if self.failures > 0 {
            log::warn!(
                "{what}: accept works again after {} failed attempts",
                self.failures
            );
        }
        self.failures = 0;
        self.delay = Duration::ZERO;
    }
}

/// A warning that a peer can trigger at will (refused, too many connections, a dropped
/// subscriber): logged at most once per interval, with the count of those left out, so a
/// loop of hostile connections cannot fill the disk with log lines.
#[derive(Debug)]
struct Quiet {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Quiet {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Quiet {
            state: Mutex::new((None, 0)),
        }
    }

    fn warn(&self, message: std::fmt::Arguments<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, left_out) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < Self::INTERVAL) {
            *left_out += 1;
            return;
        }
        if *left_out > 0 {
            log::warn!("control socket: {message} ({left_out} more like it not logged)");
        } else {
            log::warn!("control socket: {message}");
        }
        *last = Some(Instant::now());
        *left_out = 0;
    }
}

/// Who holds the connections being served, to keep each uid within its share.
#[derive(Debug)]
struct Slots {
    limits: Limits,
    reserved_uids: [u32; 2],
    held: Mutex<Held>,
}

/// Connections held: in all, the most at once since the last time there were none, and per uid.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    peak: usize,
    per_uid: HashMap<Option<u32>, usize>,
}

/// Connections at once after which the last one's close asks for a malloc trim
/// ([`crate::memory::trim_soon`]): a burst's buffers and tasks are freed in many places of the
/// heap, which glibc keeps unless trimmed.
pub const BURST_CONNECTIONS: usize = 16;

/// One connection's place in [`Slots`]; freed on drop.
struct Slot {
    slots: Arc<Slots>,
    uid: Option<u32>,
}

impl Slots {
    /// Takes a slot for a peer with this uid, or `None` when over its cap.
    fn take(self: &Arc<Self>, uid: Option<u32>) -> Option<Slot> {
        let max = self.limits.max_connections;
        let reserved = uid.is_some_and(|u| self.reserved_uids.contains(&u));
        let (total_cap, uid_cap) = if reserved {
            (max + RESERVED_CONNECTIONS, usize::MAX)
        } else {
            (max, (max / 4).max(1))
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Held {
            total,
            peak,
            per_uid,
        } = &mut *held;
        let mine = per_uid.entry(uid).or_insert(0);
        if *total >= total_cap || *mine >= uid_cap {
            return None;
        }
        *mine += 1;
        *total += 1;
        *peak = (*peak).max(*total);
        Some(Slot {
            slots: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        let Held {
            total,
            peak,
            per_uid,
        } = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_uid.get_mut(&self.uid) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_uid.remove(&self.uid);
            }
        }
        if *total == 0 {
            if *peak >= BURST_CONNECTIONS {
                crate::memory::trim_soon();
            }
            *peak = 0;
        }
    }
}

/// Serves connections until `shutdown` turns true.
///
/// Over its cap (see [`Limits::max_connections`]) a new connection gets one `ERROR busy` line
/// and is closed before anything is read from it.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    events: broadcast::Sender<Event>,
    access: Access,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let subscribers = Arc::new(AtomicUsize::new(0));
    let access = Arc::new(access);
    let quiet = Arc::new(Quiet::new());
    let slots = Arc::new(Slots {
        limits,
        reserved_uids: [0, nix::unistd::getuid().as_raw()],
        held: Mutex::new(Held::default()),
    });
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.succeeded("control socket");
                stream
            }
            Err(e) => {
                let pause = backoff.failed("control socket", &e);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                continue;
            }
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let Some(slot) = slots.take(uid) else {
            quiet.warn(format_args!(
                "refused a connection from uid {}: too many connections",
                uid.map_or_else(|| "?".to_owned(), |u| u.to_string())
            ));
            let line = error_line(
                Value::Null,
                ErrorCode::Busy,
                &format!(
                    "too many connections (control.max_connections = {}); try again later",
                    limits.max_connections
                ),
            );
            // A fresh socket's buffer is empty: this never blocks. Then the socket is closed.
            let _ = stream.try_write(&to_line(&line));
            drop(stream);
            continue;
        };
        let conn = Connection {
            handler: Arc::clone(&handler),
            events: events.clone(),
            access: Arc::clone(&access),
            limits,
            subscribers: Arc::clone(&subscribers),
            shutdown: shutdown.clone(),
            quiet: Arc::clone(&quiet),
        };
        tokio::spawn(async move {
            conn.serve(stream).await;
            drop(slot);
        });
    }
}

/// One client connection.
pub struct Connection<H> {
    handler: Arc<H>,
    events: broadcast::Sender<Event>,
    access: Arc<Access>,
    limits: Limits,
    subscribers: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
    quiet: Arc<Quiet>,
}

/// A subscriber's place among `max_subscribers`; freed on drop.
struct SubscriberSlot(Arc<AtomicUsize>);

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Aborts the subscriber's task when the connection ends, whichever way it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<H: Handler> Connection<H> {
    /// A connection handler outside [`serve`] (for tests over a socketpair).
    pub fn new(
        handler: Arc<H>,
        events: broadcast::Sender<Event>,
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
            quiet: Arc::new(Quiet::new()),
        }
    }

    /// Serves the connection to its end.
    pub async fn serve(mut self, stream: UnixStream) {
        let cred = stream.peer_cred();
        let allowed = match &cred {
            Ok(c) if self.access.allows_listed(c.uid(), c.gid()) => true,
            Ok(c) => {
                // Only a peer that is not on the lists needs the group database, which may be
                // NSS-backed (files, but also LDAP): off the executor. One blocking thread per
                // such connection at most; listed peers (every burst the bench makes) none.
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
            self.quiet
                .warn(format_args!("refused a connection from {who}"));
            let line = error_line(
                Value::Null,
                ErrorCode::Forbidden,
                &format!("{who} is not allowed; see control.allowed_uids / allowed_gids"),
            );
            let mut stream = stream;
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&to_line(&line))).await;
            return;
        }
        // Registered for reading only: a subscriber reading its lines does not wake the
        // daemon (socket_io).
        let (read, write) = match socket_io::split(stream) {
            Ok(halves) => halves,
            Err(e) => {
                self.quiet.warn(format_args!(
                    "dropped a connection: cannot register it: {e}"
                ));
                return;
            }
        };

        // Everything written to the client goes through one bounded queue and one writer.
        // `closing` carries why the connection is being cut (a subscriber overrun); the
        // writer then sends that as the last line and shuts the socket down both ways, which
        // also ends the reading loop below.
        let (out, out_rx) = mpsc::channel::<Vec<u8>>(self.limits.subscriber_queue.max(1));
        let (closing_tx, closing) = watch::channel::<Option<&'static str>>(None);
        let writer = tokio::spawn(write_loop(write, out_rx, closing.clone()));

        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read);
        let mut closing_tx = Some(closing_tx);
        let mut subscription: Option<AbortOnDrop> = None;
        let mut cut = closing;
        let mut line = Vec::new();
        loop {
            let read = tokio::select! {
                r = read_line_bounded(&mut reader, &mut line, MAX_LINE_BYTES) => r,
                _ = self.shutdown.wait_for(|stop| *stop) => break,
                _ = closed(&mut cut) => break,
            };
            let answer = match read {
                Ok(Some(LineRead::Line)) => match protocol::parse_request(&line) {
                    Ok(request) => {
                        let answer = match request.command {
                            Command::Subscribe => {
                                self.subscribe(&mut subscription, &out, &mut closing_tx)
                            }
                            // Boxed: the handler's future lives only while a command
                            // runs, not inline in every idle connection's task.
                            command => Box::pin(self.handler.handle(command)).await,
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
            // The writer drains the queue within WRITE_TIMEOUT per line or cuts the
            // connection, so this wait is bounded too.
            let sent = tokio::select! {
                sent = out.send(to_line(&answer)) => sent.is_ok(),
                _ = closed(&mut cut) => false,
            };
            if !sent {
                break;
            }
            // A long line's buffer is not kept for the connection's life.
            if line.capacity() > READ_BUFFER_BYTES * 4 {
                line = Vec::new();
            }
        }
        // The subscriber's task ends with the connection (it would otherwise wait for the
        // next event, holding the queue and so the socket open).
        drop(subscription);
        drop(out);
        drop(reader);
        let _ = writer.await;
    }

    fn subscribe(
        &self,
        subscription: &mut Option<AbortOnDrop>,
        out: &mpsc::Sender<Vec<u8>>,
        closing: &mut Option<watch::Sender<Option<&'static str>>>,
    ) -> Answer {
        if subscription.is_some() {
            return Ok(serde_json::json!({"subscribed": true}));
        }
        let count = self.subscribers.fetch_add(1, Ordering::SeqCst);
        let slot = SubscriberSlot(Arc::clone(&self.subscribers));
        if count >= self.limits.max_subscribers {
            drop(slot);
            return Err((
                ErrorCode::Failed,
                format!(
                    "too many subscribers (at most {})",
                    self.limits.max_subscribers
                ),
            ));
        }
        let Some(closing) = closing.take() else {
            drop(slot);
            return Err((ErrorCode::Failed, "already subscribed once".into()));
        };
        let mut events = self.events.subscribe();
        let out = out.clone();
        let quiet = Arc::clone(&self.quiet);
        let task = tokio::spawn(async move {
            let Some(reason) = forward_events(&mut events, &out, event_to_line).await else {
                return;
            };
            // The slot is free from here on, whatever the peer does next.
            drop(slot);
            quiet.warn(format_args!("dropped a subscriber: {reason}"));
            closing.send_replace(Some(reason));
        });
        *subscription = Some(AbortOnDrop(task));
        Ok(serde_json::json!({"subscribed": true}))
    }
}

/// Writes queued lines to the client, each within [`WRITE_TIMEOUT`]. Ends when the queue
/// closes (the connection is over), a write fails or times out, or `closing` gets a reason;
/// in the last two cases the socket is shut down both ways at once.
async fn write_loop(
    write: WriteHalf,
    mut lines: mpsc::Receiver<Vec<u8>>,
    mut closing: watch::Receiver<Option<&'static str>>,
) {
    let mut line = Some(to_line(&protocol::version_line()));
    let mut cut_mid_line = false;
    loop {
        let Some(bytes) = line.take() else {
            line = tokio::select! {
                biased;
                _ = closed(&mut closing) => break,
                next = lines.recv() => match next {
                    Some(next) => Some(next),
                    None => {
                        let _ = write.shutdown();
                        return;
                    }
                },
            };
            continue;
        };
        // Lines already queued go out in the same write (no yield to wait for more: not
        // measurably faster on an idle till and one more syscall, BENCHMARKS.md "Issue 12"
        // part 7).
        let mut bytes = bytes;
        while bytes.len() < COALESCE_BYTES {
            match lines.try_recv() {
                Ok(more) => bytes.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        // Mostly the socket takes it all at once, and no timer is needed.
        let mut written = match write.try_write(&bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => break,
        };
        let done = written == bytes.len()
            || tokio::select! {
                biased;
                _ = closed(&mut closing) => false,
                done = tokio::time::timeout(WRITE_TIMEOUT, write_counting(&write, &bytes, &mut written)) => {
                    matches!(done, Ok(Ok(())))
                }
            };
        if !done {
            cut_mid_line = written > 0 && written < bytes.len();
            break;
        }
    }
    let reason = *closing.borrow();
    if let Some(reason) = reason {
        // Best effort and never waiting: the peer is not reading.
        let mut last = if cut_mid_line {
            b"\n".to_vec()
        } else {
            Vec::new()
        };
        last.extend(to_line(&error_line(
            Value::Null,
            ErrorCode::Overrun,
            reason,
        )));
        let _ = write.try_write(&last);
    }
    let fd = write.as_raw_fd();
    // SAFETY: shutdown(2) on the socket this task's write half keeps open; it changes no
    // memory. Both ways: the peer sees the end, and the connection's reader wakes to EOF.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Waits until the connection is being cut (forever if it never is).
async fn closed(closing: &mut watch::Receiver<Option<&'static str>>) {
    if closing.wait_for(|reason| reason.is_some()).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `write_all` that counts what was written, so a cut write can be told apart.
async fn write_counting(write: &WriteHalf, bytes: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < bytes.len() {
        let n = write.write(&bytes[*written..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += n;
    }
    Ok(())
}

/// Copies events to a subscriber's bounded queue until the subscriber falls behind (the
/// reason, for its `overrun` answer) or either side closes (`None`). Shared by the Unix socket
/// and the WebSocket, which differ only in how an event is framed.
pub(super) async fn forward_events<T>(
    events: &mut broadcast::Receiver<Event>,
    out: &mpsc::Sender<T>,
    frame: impl Fn(&EventLine) -> T,
) -> Option<&'static str> {
    loop {
        match events.recv().await {
            Ok(event) => match out.try_send(frame(&event)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Some("too slow reading events: queue full, disconnected");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return None,
            },
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Some("too slow reading events: missed some, disconnected");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

fn event_to_line(event: &EventLine) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(event.as_str().len() + 1);
    bytes.extend_from_slice(event.as_str().as_bytes());
    bytes.push(b'\n');
    bytes
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
            max_connections: 4,
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

    /// The read buffer is [`READ_BUFFER_BYTES`]; a request line many times longer (but under
    /// [`MAX_LINE_BYTES`]) is still read whole and answered, one over the limit gets
    /// `too_long`, and the connection goes on answering short lines after both.
    #[tokio::test]
    async fn lines_longer_than_the_read_buffer_are_read_whole() {
        let (server_end, client_end) = UnixStream::pair().unwrap();
        let (events, _) = broadcast::channel(4);
        let (_stop, stop_rx) = watch::channel(false);
        let me = nix::unistd::getuid().as_raw();
        let conn = Connection::new(
            Arc::new(Echo),
            events,
            Access::new([me], []),
            Limits::default(),
            stop_rx,
        );
        tokio::spawn(conn.serve(server_end));
        let (read, mut write) = client_end.into_split();
        let mut reader = BufReader::new(read);
        async fn next(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Value {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            serde_json::from_str(&line).unwrap()
        }
        assert_eq!(next(&mut reader).await["class"], "VERSION");

        let long_id = "7".repeat(READ_BUFFER_BYTES * 40);
        let request = format!("{{\"id\":\"{long_id}\",\"cmd\":\"status\"}}\n");
        assert!(request.len() < MAX_LINE_BYTES);
        write.write_all(request.as_bytes()).await.unwrap();
        let answer = next(&mut reader).await;
        assert_eq!(answer["class"], "RESULT", "{:.200}", answer.to_string());
        assert_eq!(answer["id"], long_id.as_str());

        let too_long = format!("{{\"id\":1,\"cmd\":\"{}\"}}\n", "x".repeat(MAX_LINE_BYTES));
        write.write_all(too_long.as_bytes()).await.unwrap();
        let answer = next(&mut reader).await;
        assert_eq!(
            answer["error"]["code"],
            serde_json::json!(ErrorCode::TooLong)
        );

        write
            .write_all(b"{\"id\":2,\"cmd\":\"status\"}\n")
            .await
            .unwrap();
        let answer = next(&mut reader).await;
        assert_eq!(answer["id"], 2, "{answer}");
        assert_eq!(answer["result"]["cmd"], "status", "{answer}");
    }
}
