//! The control protocol over a WebSocket on loopback, for POS apps that run in a browser.
//!
//! A web page cannot open a Unix socket, so `[control.web]` (off by default) serves the same
//! messages as [`super::server`] over a WebSocket: one JSON object per text frame, `VERSION`
//! first, requests with ids answered by `RESULT` or `ERROR`, `subscribe` and `EVENT`. Requests
//! go through the same parser ([`protocol::parse_request`]) and the same [`Handler`]; there
//! are no commands of its own.
//!
//! Any page the till's browser opens can reach 127.0.0.1, so a handshake must pass three
//! checks, in this order, before a single frame is read:
//! 1. `Host` is the listen address, a loopback IP or `localhost` (DNS rebinding),
//! 2. `Origin`, when present, is exactly one of `allowed_origins` (empty: no page at all),
//! 3. the per-install token (a file readable by the socket's group) is offered as the
//!    subprotocol `wxcard.token.<token>`, next to `wxcard.v1`, which the server selects.
//!
//! A Host or Origin refusal is an HTTP 403 whose body is the protocol's `ERROR` object
//! (code `forbidden`); a missing or wrong token is one `ERROR` frame (`forbidden`) and a close
//! (1008), so that a page from an allowed origin can tell its user why; past
//! `max_connections` the answer is HTTP 503 with an `ERROR` object (`busy`, as on the Unix
//! socket). Refusals are
//! logged once per burst. Subscribers have the same bounded queue as on the Unix socket and
//! are dropped with `overrun` when they do not read; a failing `accept` (out of descriptors)
//! backs off instead of spinning.
//!
//! axum provides the HTTP handshake and the WebSocket framing (tungstenite); this module only
//! adds the checks, the caps and the protocol loop.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use wxcard_hal::web_guard;

use super::protocol::{self, Command, ErrorCode, Event, MAX_LINE_BYTES, error_line, result_line};
use super::server::{Answer, Handler};

/// The subprotocol the server selects.
pub const SUBPROTOCOL: &str = "wxcard.v1";
/// The prefix of the subprotocol that carries the token.
pub const TOKEN_PREFIX: &str = "wxcard.token.";
/// A handshake's headers must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not take an answer or an event within this is disconnected (as on the
/// Unix socket).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections being refused (busy answers) at once; more are closed without an answer.
const MAX_REFUSING: usize = 16;
/// Refusals of one kind within this window after the first are counted, not logged.
const LOG_BURST: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// `[control.web]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the WebSocket at all.
    pub enabled: bool,
    /// Where to listen; loopback unless `allow_remote`.
    pub listen: SocketAddr,
    /// Allow a `listen` address that is not loopback.
    pub allow_remote: bool,
    /// Exact origins (`scheme://host[:port]`) whose pages may connect; empty: none.
    pub allowed_origins: Vec<String>,
    /// Connections at once (handshakes included).
    pub max_connections: usize,
    /// The per-install token, created (0640, the socket's group) at first start.
    pub token_file: PathBuf,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8766)),
            allow_remote: false,
            allowed_origins: Vec::new(),
            max_connections: 8,
            token_file: PathBuf::from("/var/lib/wxcardd-web/token"),
        }
    }
}

impl WebConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.allow_remote && !self.listen.ip().is_loopback() {
            return Err((
                "control.web.listen",
                format!(
                    "{} is not a loopback address (set allow_remote = true to mean it)",
                    self.listen
                ),
            ));
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| !web_guard::is_origin(o))
        {
            return Err((
                "control.web.allowed_origins",
                format!(
                    "{bad:?} is not an origin as browsers send it (scheme://host[:port], no path)"
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(("control.web.max_connections", "must be more than 0".into()));
        }
        Ok(())
    }
}

/// Why the WebSocket endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The token file exists but does not hold a token.
    #[error("{0}: not a wxcardd web token (64 hex digits); delete it to have a new one made")]
    BadToken(PathBuf),
    /// An IO error.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        /// The file or address.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Reads the token from `path`, or makes one there (32 random bytes in hex, mode 0640, group
/// `gid`) when the file does not exist.
pub fn load_or_create_token(path: &Path, gid: Option<u32>) -> Result<String, WebError> {
    let io_err = |op| {
        let path = path.display().to_string();
        move |source| WebError::Io { path, op, source }
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(token.to_ascii_lowercase())
            } else {
                Err(WebError::BadToken(path.to_owned()))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
                |_| io_err("get random bytes for")(io::Error::other("no system randomness")),
            )?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err("create the directory of"))?;
            }
            let tmp = path.with_extension("new");
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&tmp)
                .map_err(io_err("create"))?;
            io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
                .map_err(io_err("write"))?;
            if let Some(gid) = gid {
                std::os::unix::fs::fchown(&file, None, Some(gid))
                    .map_err(io_err("give the socket's group"))?;
            }
            // The daemon's umask (077) took the group's read bit away at creation.
            file.set_permissions(std::fs::Permissions::from_mode(0o640))
                .map_err(io_err("chmod 0640"))?;
            file.sync_all().map_err(io_err("fsync"))?;
            std::fs::rename(&tmp, path).map_err(io_err("rename into place"))?;
            log::info!("control.web: made a new token in {}", path.display());
            Ok(token)
        }
        Err(e) => Err(io_err("read")(e)),
    }
}

/// Binds the listener.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, WebError> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| WebError::Io {
            path: listen.to_string(),
            op: "listen on",
            source,
        })
}

/// What [`serve`] needs besides the listener.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// The address bound (the Host check compares with it).
    pub listen: SocketAddr,
    /// Whether any IP literal is a good Host (the listener is open to the network).
    pub allow_remote: bool,
    /// Exact origins allowed.
    pub allowed_origins: Vec<String>,
    /// The token a client must offer.
    pub token: String,
    /// Connections at once.
    pub max_connections: usize,
    /// Lines queued per connection (answers and events) before a subscriber is dropped.
    pub subscriber_queue: usize,
}

/// Counts refusals and logs the first of each burst, with how many were not logged before.
#[derive(Default)]
struct RefusalLog {
    bursts: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RefusalLog {
    fn note(&self, kind: &'static str, message: &str) {
        let mut bursts = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match bursts.get_mut(kind) {
            Some((since, quiet)) if now.duration_since(*since) < LOG_BURST => *quiet += 1,
            entry => {
                let quiet = entry.map(|(_, q)| *q).unwrap_or(0);
                let more = if quiet > 0 {
                    format!(" ({quiet} more like it not logged)")
                } else {
                    String::new()
                };
                log::warn!("control.web: {message}{more}");
                bursts.insert(kind, (now, 0));
            }
        }
    }
}

struct Shared<H> {
    handler: Arc<H>,
    events: broadcast::Sender<Event>,
    settings: WebSettings,
    refusals: RefusalLog,
    /// Connections being refused (busy, or a handshake refused), under [`MAX_REFUSING`].
    refusing: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
}

/// One counted place under a cap, given back on drop.
///
/// A refused handshake moves its place from the sessions' cap to the refusals' one
/// ([`Slot::move_to`]) before it answers: a page that reads its refusal and retries at once
/// must find its place free, not wait for the daemon to see the refused connection close.
struct Slot(std::sync::Mutex<Arc<AtomicUsize>>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        reserve(count, max).then(|| Slot(std::sync::Mutex::new(Arc::clone(count))))
    }

    /// Counts this place under `other` instead, if `other` has room under `max`; else keeps
    /// it where it is (the total stays bounded either way).
    fn move_to(&self, other: &Arc<AtomicUsize>, max: usize) {
        let mut count = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&count, other) && reserve(other, max) {
            count.fetch_sub(1, Ordering::SeqCst);
            *count = Arc::clone(other);
        }
    }
}

/// Adds one to `count` if it is under `max`.
fn reserve(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for Slot {
    fn drop(&mut self) {
        let count = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves WebSocket clients until `shutdown` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    events: broadcast::Sender<Event>,
    settings: WebSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    let max = settings.max_connections;
    let shared = Arc::new(Shared {
        handler,
        events,
        settings,
        refusals: RefusalLog::default(),
        refusing: Arc::clone(&refusing),
        shutdown: shutdown.clone(),
    });
    let app = Router::new()
        .route("/", get(handshake::<H>))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be given back.
                shared
                    .refusals
                    .note("accept", &format!("accept failed: {e}; pausing"));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        match Slot::take(&open, max) {
            Some(slot) => {
                let app = app.clone().layer(Extension(Arc::new(slot)));
                tokio::spawn(connection(stream, app, shutdown.clone()));
            }
            None => {
                shared.refusals.note(
                    "busy",
                    &format!("refused a connection: already {max} (control.web.max_connections)"),
                );
                if let Some(slot) = Slot::take(&refusing, MAX_REFUSING) {
                    tokio::spawn(refuse_busy(stream, max, slot));
                }
            }
        }
    }
}

/// The kernel's send buffer for a WebSocket connection. Event lines are small and a page
/// reads them at once; left to autotuning, loopback TCP grows the buffer to megabytes for a
/// client that stopped reading, so it was dropped (`overrun`) only after hundreds of kilobytes
/// of events, and holds that much kernel memory meanwhile. Fixed, a stalled client fills it,
/// then its bounded queue, within a few hundred events.
const SEND_BUFFER_BYTES: libc::c_int = 32 * 1024;

async fn connection(stream: TcpStream, app: Router, mut shutdown: watch::Receiver<bool>) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on the descriptor `stream` keeps open, with a c_int it reads.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&SEND_BUFFER_BYTES as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        log::debug!(
            "control.web: SO_SNDBUF: {}",
            std::io::Error::last_os_error()
        );
    }
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// The answer past the cap: HTTP 503 with an `ERROR` object, written without parsing the
/// request; then what the client sent is read and dropped for a moment, so that closing does
/// not reset the connection before the client has read the answer.
async fn refuse_busy(mut stream: TcpStream, max: usize, _slot: Slot) {
    let body = json_body(&error_line(
        Value::Null,
        ErrorCode::Busy,
        &format!("too many connections (at most {max}); try again later"),
    ));
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        io::Result::Ok(())
    })
    .await;
}

/// Resolves when the daemon stops (the guard of `wait_for` is not `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn not_found() -> Response {
    http_error(
        StatusCode::NOT_FOUND,
        ErrorCode::Malformed,
        "the WebSocket is at /",
    )
}

fn json_body(value: &Value) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

fn http_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_body(&error_line(Value::Null, code, message)),
    )
        .into_response()
}

/// Compares without stopping at the first difference.
fn same_token(offered: &str, token: &str) -> bool {
    offered.len() == token.len()
        && offered
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handshake<H: Handler>(
    State(shared): State<Arc<Shared<H>>>,
    Extension(slot): Extension<Arc<Slot>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    let settings = &shared.settings;
    let give_back = || slot.move_to(&shared.refusing, MAX_REFUSING);
    let refuse = |kind, refusal: web_guard::Refusal| {
        give_back();
        let message = refusal.to_string();
        shared
            .refusals
            .note(kind, &format!("refused a handshake: {message}"));
        http_error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, &message)
    };
    if let Err(r) =
        web_guard::check_host(text(header::HOST), settings.listen, settings.allow_remote)
    {
        return refuse("host", r);
    }
    if let Err(r) = web_guard::check_origin(text(header::ORIGIN), &settings.allowed_origins) {
        return refuse("origin", r);
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            give_back();
            return http_error(
                StatusCode::UPGRADE_REQUIRED,
                ErrorCode::Malformed,
                &format!("a WebSocket handshake is expected here ({e})"),
            );
        }
    };
    let token_ok = ws.requested_protocols().any(|p| {
        p.to_str()
            .ok()
            .and_then(|p| p.strip_prefix(TOKEN_PREFIX))
            .is_some_and(|t| same_token(t, &settings.token))
    });
    let offered_token = ws
        .requested_protocols()
        .any(|p| p.to_str().is_ok_and(|p| p.starts_with(TOKEN_PREFIX)));
    let ws = ws
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_LINE_BYTES)
        .max_frame_size(MAX_LINE_BYTES);
    if !token_ok {
        let message = if offered_token {
            "wrong token (the subprotocol wxcard.token.<token>; see control.web.token_file)"
        } else {
            "no token: offer the subprotocol wxcard.token.<token> (see control.web.token_file)"
        };
        give_back();
        shared
            .refusals
            .note("token", &format!("refused a handshake: {message}"));
        return ws.on_upgrade(move |socket| refuse_session(socket, message, slot));
    }
    ws.on_upgrade(move |socket| session(socket, shared, slot))
}

fn text_frame(value: &Value) -> Message {
    Message::text(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One `ERROR` frame and a close; nothing the client sent is parsed.
async fn refuse_session(mut socket: WebSocket, message: &'static str, _slot: Arc<Slot>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        socket
            .send(text_frame(&error_line(
                Value::Null,
                ErrorCode::Forbidden,
                message,
            )))
            .await?;
        socket
            .send(close_frame(close_code::POLICY, "forbidden"))
            .await?;
        // Wait for the client's close (discarding whatever else it sent) so that the
        // connection ends cleanly and the client reads the reason.
        while let Some(Ok(_)) = socket.recv().await {}
        Ok::<_, axum::Error>(())
    })
    .await;
}

async fn session<H: Handler>(socket: WebSocket, shared: Arc<Shared<H>>, _slot: Arc<Slot>) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(shared.settings.subscriber_queue.max(1));
    let (overrun_tx, overrun_rx) = watch::channel::<Option<&'static str>>(None);
    let mut writer_overrun = overrun_rx.clone();
    let writer = tokio::spawn(async move {
        if sink
            .send(text_frame(&protocol::version_line()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                biased;
                _ = writer_overrun.changed() => {
                    let reason = (*writer_overrun.borrow()).unwrap_or("overrun");
                    let line = error_line(Value::Null, ErrorCode::Overrun, reason);
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                        sink.send(text_frame(&line)).await?;
                        sink.send(close_frame(close_code::POLICY, "overrun")).await
                    })
                    .await;
                    return;
                }
                message = out_rx.recv() => match message {
                    Some(message) => {
                        match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return,
                            Err(_) => {
                                log::warn!("control.web: a client took nothing for {} s: disconnected", WRITE_TIMEOUT.as_secs());
                                return;
                            }
                        }
                    }
                    None => {
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                        return;
                    }
                },
            }
        }
    });

    let mut overrun_seen = overrun_rx;
    let mut overrun_tx = Some(overrun_tx);
    let mut shutdown = shared.shutdown.clone();
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    let mut writer = writer;
    let mut writer_done = false;
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = overrun_seen.changed() => break,
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            _ = stopped(&mut shutdown) => {
                let _ = out.try_send(close_frame(close_code::AWAY, "wxcardd is stopping"));
                break;
            }
        };
        let answer = match message {
            Some(Ok(Message::Text(text))) => match protocol::parse_request(text.as_bytes()) {
                Ok(request) => {
                    let answer = match request.command {
                        Command::Subscribe => {
                            subscribe(&shared, &mut forwarder, &out, &mut overrun_tx)
                        }
                        command => shared.handler.handle(command).await,
                    };
                    match answer {
                        Ok(result) => result_line(request.id, result),
                        Err((code, message)) => error_line(request.id, code, &message),
                    }
                }
                Err(e) => e.to_line(),
            },
            Some(Ok(Message::Binary(_))) => error_line(
                Value::Null,
                ErrorCode::Malformed,
                "requests are JSON objects in text frames, not binary",
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
        };
        match tokio::time::timeout(WRITE_TIMEOUT, out.send(text_frame(&answer))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                if let Some(overrun) = overrun_tx.take() {
                    overrun.send_replace(Some("not reading answers: disconnected"));
                }
                break;
            }
        }
    }
    if let Some(forwarder) = forwarder {
        forwarder.abort();
    }
    drop(out);
    // The writer ends once its queue is written, at once after an overrun, or when the peer
    // takes nothing for WRITE_TIMEOUT.
    if !writer_done {
        let _ = writer.await;
    }
}

fn subscribe<H>(
    shared: &Arc<Shared<H>>,
    forwarder: &mut Option<tokio::task::JoinHandle<()>>,
    out: &mpsc::Sender<Message>,
    overrun: &mut Option<watch::Sender<Option<&'static str>>>,
) -> Answer {
    if forwarder.is_some() {
        return Ok(serde_json::json!({"subscribed": true}));
    }
    let Some(overrun) = overrun.take() else {
        return Err((ErrorCode::Failed, "this connection is being closed".into()));
    };
    let mut events = shared.events.subscribe();
    let out = out.clone();
    *forwarder = Some(tokio::spawn(async move {
        let Some(reason) =
            super::server::forward_events(&mut events, &out, |e| Message::text(e.as_str())).await
        else {
            return;
        };
        log::warn!("control.web: dropped a subscriber: {reason}");
        overrun.send_replace(Some(reason));
    }));
    Ok(serde_json::json!({"subscribed": true}))
}

/// Where the endpoint listens and where its token is, while it runs (for `status`).
static ENDPOINT: Mutex<Option<(SocketAddr, PathBuf)>> = Mutex::new(None);

/// `{"url": "ws://...", "token_file": "..."}` while the endpoint runs, else null: the `status`
/// answer's `control_web`. Never the token itself: `wxcardctl status` run by root reads the
/// file.
pub fn current() -> Value {
    match &*ENDPOINT.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((listen, token_file)) => serde_json::json!({
            "url": format!("ws://{listen}/"),
            "token_file": token_file,
        }),
        None => Value::Null,
    }
}

/// Everything the daemon needs to start the endpoint, from the config: the token (made on
/// first start, group `gid`), the bound listener and the settings.
pub async fn prepare(
    config: &WebConfig,
    gid: Option<u32>,
    subscriber_queue: usize,
) -> Result<(TcpListener, WebSettings), WebError> {
    let token = load_or_create_token(&config.token_file, gid)?;
    let listener = bind(config.listen).await?;
    let listen = listener.local_addr().map_err(|source| WebError::Io {
        path: config.listen.to_string(),
        op: "read the bound address of",
        source,
    })?;
    log::info!(
        "control.web: WebSocket on ws://{listen}/ for origins {:?}",
        config.allowed_origins
    );
    *ENDPOINT.lock().unwrap_or_else(|e| e.into_inner()) = Some((listen, config.token_file.clone()));
    Ok((
        listener,
        WebSettings {
            listen,
            allow_remote: config.allow_remote,
            allowed_origins: config.allowed_origins.clone(),
            token,
            max_connections: config.max_connections,
            subscriber_queue,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_with_group_read_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/web-token");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let first = load_or_create_token(&path, None).unwrap();
        nix::sys::stat::umask(old);
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(load_or_create_token(&path, None).unwrap(), first);
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            load_or_create_token(&path, None),
            Err(WebError::BadToken(_))
        ));
    }

    #[test]
    fn the_section_is_validated() {
        let ok = WebConfig::default();
        assert!(ok.validate().is_ok());
        let remote = WebConfig {
            listen: "0.0.0.0:8766".parse().unwrap(),
            ..WebConfig::default()
        };
        assert_eq!(remote.validate().unwrap_err().0, "control.web.listen");
        assert!(
            WebConfig {
                allow_remote: true,
                ..remote
            }
            .validate()
            .is_ok()
        );
        let origins = WebConfig {
            allowed_origins: vec!["http://localhost:8069/".into()],
            ..WebConfig::default()
        };
        assert_eq!(
            origins.validate().unwrap_err().0,
            "control.web.allowed_origins"
        );
    }
}
