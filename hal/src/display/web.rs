//! Kiosk web page backend: a small local HTTP server for a kiosk browser on the customer
//! screen.
//!
//! `GET /` is one static page; `GET /events` is a Server-Sent Events stream that sends the
//! current screen on (re)connect and every change after it, the QR as inline SVG. The browser's
//! `EventSource` reconnects by itself (we ask for a retry after one second), so the page
//! recovers from a daemon restart without anyone touching the kiosk. The page runs the
//! countdown itself from the time left at push; the server pushes only when the screen
//! content changes. This is display output, not a connection to the wxcard backend.
//!
//! The page shows a live pay code, so it is served only to the kiosk (issue 10): a request
//! whose `Host` is not a loopback name, the listen address or (with `allow_remote`) an IP
//! address gets 421, so a DNS-rebinding page in a browser on the LAN cannot read it; a
//! request with another site's `Origin` gets 403. A non-loopback `listen` needs
//! `allow_remote = true` and then a per-install token in the path (`/k/<token>/`), made at
//! first start and kept 0600 in `token_file`. At most `max_clients` connections are served
//! at once, one local user (or all other machines together) at most half of them; past that
//! a connection gets 503 and is closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use zeroize::Zeroizing;

use super::config::{Colour, WebConfig};
use super::view::{Texts, Tone, View};
use super::{CustomerDisplay, DisplayError, Screen};

const PAGE: &str = include_str!("kiosk.html");

/// What the page is showing: the screen as JSON without its clock, and the time left.
#[derive(Clone, PartialEq, Eq)]
struct Current {
    content: Arc<str>,
    remaining: Option<(Duration, Instant)>,
}

impl Current {
    fn event(&self) -> Event {
        let remaining_ms = self.remaining.map(|(left, at)| {
            left.saturating_sub(super::driver::now().saturating_duration_since(at))
                .as_millis()
                .min(u64::MAX as u128) as u64
        });
        let data = format!(
            r#"{{"remaining_ms":{},"screen":{}}}"#,
            json!(remaining_ms),
            self.content
        );
        Event::default()
            .event("screen")
            .retry(Duration::from_secs(1))
            .data(data)
    }
}

/// The kiosk page server and the screen it serves.
pub struct WebDisplay {
    current: watch::Sender<Current>,
    addr: SocketAddr,
    texts: Texts,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    url: Zeroizing<String>,
    accent: Colour,
    /// The logo file's bytes, served as `logo.png` next to the page.
    logo: Arc<Mutex<Option<Arc<[u8]>>>>,
}

/// A logo larger than this is not served (it would be a slow first paint on the kiosk).
const MAX_LOGO_BYTES: usize = 2 << 20;

impl WebDisplay {
    /// Paints the page's header band in `accent` from the next screen on.
    pub fn with_accent(mut self, accent: Colour) -> Self {
        self.accent = accent;
        self
    }

    /// Binds `config.listen` and serves the page on the current tokio runtime.
    pub fn start(config: &WebConfig, texts: Texts) -> Result<Self, DisplayError> {
        let addr = config.listen;
        let err = |reason: String| DisplayError::Web { addr, reason };
        if !addr.ip().is_loopback() && !config.allow_remote {
            return Err(err(
                "not a loopback address: anyone on the network could read the pay code; set \
                 [display.web] allow_remote = true to serve it there behind a token"
                    .into(),
            ));
        }
        let token = if config.allow_remote {
            Some(Arc::new(load_or_create_token(&config.token_file).map_err(
                |e| err(format!("kiosk token {}: {e}", config.token_file.display())),
            )?))
        } else {
            None
        };
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| err("must be started inside a tokio runtime".into()))?;
        let _guard = handle.enter();
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| err(e.to_string()))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| err(e.to_string()))?;
        let local = std_listener.local_addr().map_err(|e| err(e.to_string()))?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| err(e.to_string()))?;
        let listener = CappedListener {
            inner: listener,
            clients: Arc::new(Mutex::new(Held::default())),
            max: config.max_clients.max(1),
            backoff: Duration::ZERO,
            failures: 0,
        };

        let blank = View::of(&Screen::Blank, &texts, super::driver::now());
        let (current, rx) = watch::channel(Current {
            content: content_json(&blank, &texts, Colour::DEFAULT_ACCENT, false).into(),
            remaining: None,
        });
        let guard = Arc::new(Guard {
            port: local.port(),
            listen_ip: local.ip(),
            allow_remote: config.allow_remote,
            token: token.clone(),
        });
        let (root, stream, logo_path) = if token.is_some() {
            ("/k/{token}/", "/k/{token}/events", "/k/{token}/logo.png")
        } else {
            ("/", "/events", "/logo.png")
        };
        let logo: Arc<Mutex<Option<Arc<[u8]>>>> = Arc::default();
        let served_logo = logo.clone();
        let app = Router::new()
            .route(root, get(page))
            .route(stream, get(events))
            .route(
                logo_path,
                get(move || {
                    let bytes = served_logo.lock().ok().and_then(|l| l.clone());
                    async move {
                        match bytes {
                            Some(b) => (
                                StatusCode::OK,
                                [(header::CONTENT_TYPE, "image/png")],
                                b.to_vec(),
                            )
                                .into_response(),
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(guard, check_request))
            .with_state(rx);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = handle.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                log::error!("kiosk page server on {local}: {e}");
            }
        });
        let url = match &token {
            Some(token) => format!("http://{local}/k/{}/", token.as_str()),
            None => format!("http://{local}/"),
        };
        if token.is_some() {
            // The token is a secret: the log names where it is, not what it is.
            log::info!(
                "kiosk page on http://{local}/k/<token>/ (the token is in {}; wxcardctl status \
                 prints the whole address)",
                config.token_file.display()
            );
        } else {
            log::info!("kiosk page on {url}");
        }
        let url = Zeroizing::new(url);
        set_current_url(Some(url.to_string()));
        Ok(Self {
            url,
            accent: Colour::DEFAULT_ACCENT,
            logo,
            current,
            addr: local,
            texts,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Serves the PNG at `path` as the page's logo from the next screen on; a file that
    /// cannot be read, is not a PNG or is over 2 MiB is a warning and no logo is shown.
    pub fn with_logo(self, path: Option<&std::path::Path>) -> Self {
        let bytes = path.and_then(|p| match std::fs::read(p) {
            Ok(b) if b.len() <= MAX_LOGO_BYTES && b.starts_with(b"\x89PNG\r\n\x1a\n") => {
                Some(Arc::<[u8]>::from(b))
            }
            Ok(b) => {
                log::warn!(
                    "display logo {}: not a PNG of at most 2 MiB ({} bytes); the kiosk page shows none",
                    p.display(),
                    b.len()
                );
                None
            }
            Err(e) => {
                log::warn!(
                    "display logo {}: {e}; the kiosk page shows none",
                    p.display()
                );
                None
            }
        });
        if let Ok(mut l) = self.logo.lock() {
            *l = bytes;
        }
        self
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This page's address, with `/k/<token>/` when it has a token ([`current_url`] says the
    /// same while this is the newest kiosk page of the process).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server and waits until the port is free again: event streams end, pages
    /// start reconnecting.
    pub async fn stop(mut self) {
        // Ending the event streams lets the graceful shutdown finish.
        let blank = Current {
            content: Arc::from("null"),
            remaining: None,
        };
        drop(std::mem::replace(
            &mut self.current,
            watch::channel(blank).0,
        ));
        clear_current_url(&self.url);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for WebDisplay {
    fn drop(&mut self) {
        // Dropping `current` ends every event stream; this ends the accept loop.
        if let Some(stop) = self.stop.take() {
            clear_current_url(&self.url);
            let _ = stop.send(());
        }
    }
}

impl CustomerDisplay for WebDisplay {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        let view = View::of(screen, &self.texts, now);
        let has_logo = self.logo.lock().is_ok_and(|l| l.is_some());
        let content: Arc<str> = content_json(&view, &self.texts, self.accent, has_logo).into();
        let remaining = view
            .remaining_ms
            .map(|ms| (Duration::from_millis(ms), super::driver::now()));
        self.current.send_if_modified(|cur| {
            if *cur.content == *content {
                return false;
            }
            *cur = Current { content, remaining };
            true
        });
        Ok(())
    }

    fn name(&self) -> &'static str {
        "web"
    }
}

/// The address of the running kiosk page, with its token if it has one (what `wxcardctl
/// status` prints). Zeroed when replaced.
static CURRENT_URL: std::sync::Mutex<Option<Zeroizing<String>>> = std::sync::Mutex::new(None);

fn set_current_url(url: Option<String>) {
    let mut current = CURRENT_URL.lock().unwrap_or_else(|e| e.into_inner());
    *current = url.map(Zeroizing::new);
}

/// Forgets the current address if it is `url` (a newer page may have replaced it).
fn clear_current_url(url: &str) {
    let mut current = CURRENT_URL.lock().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|c| c.as_str() == url) {
        *current = None;
    }
}

/// The address of the kiosk page being served now (with `/k/<token>/` when it has a token),
/// or `None` when no kiosk page runs in this process.
pub fn current_url() -> Option<String> {
    let current = CURRENT_URL.lock().unwrap_or_else(|e| e.into_inner());
    current.as_ref().map(|u| u.to_string())
}

/// Reads the per-install kiosk token from `path`, or creates it (0600, 24 random bytes as
/// hex) if the file does not exist. A file others can read is made 0600 again.
pub fn load_or_create_token(path: &std::path::Path) -> std::io::Result<Zeroizing<String>> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = Zeroizing::new(text.trim().to_owned());
            drop(Zeroizing::new(text));
            if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a token (32 or more hex digits); delete it to have a new one made",
                ));
            }
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = Zeroizing::new([0u8; 24]);
            let mut filled = 0;
            while filled < bytes.len() {
                // SAFETY: getrandom writes at most the given length into the buffer.
                let n = unsafe {
                    libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                    continue;
                }
                filled += n as usize;
            }
            let mut token = Zeroizing::new(String::with_capacity(48));
            for b in bytes.iter() {
                token.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                token.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            log::info!("kiosk page: made a new token in {}", path.display());
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// What a request to the kiosk page must show to be served.
struct Guard {
    port: u16,
    listen_ip: IpAddr,
    allow_remote: bool,
    token: Option<Arc<Zeroizing<String>>>,
}

impl Guard {
    /// Whether `authority` (a Host header, or an Origin without its scheme) names this page:
    /// a loopback name or address, the listen address, or with `allow_remote` any IP address.
    /// A DNS name other than `localhost` never does: a page on a rebound name is another site.
    fn names_us(&self, authority: &str) -> bool {
        let listen = std::net::SocketAddr::new(self.listen_ip, self.port);
        crate::web_guard::names_listener(authority, listen, self.allow_remote)
    }

    /// Whether `path` carries the token (compared in constant time), when there is one.
    fn token_ok(&self, path: &str) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = path
            .strip_prefix("/k/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("");
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// Refuses requests that a browser sent for another site (DNS rebinding: `Host` is the
/// attacker's name, 421), from another site's page (`Origin`, 403) or without the token
/// (403).
async fn check_request(
    State(guard): State<Arc<Guard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST)
        && !host.to_str().is_ok_and(|h| guard.names_us(h))
    {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "421 not this page's address\n",
        )
            .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|h| guard.names_us(h))
    {
        return (StatusCode::FORBIDDEN, "403 cross-origin request\n").into_response();
    }
    if !guard.token_ok(request.uri().path()) {
        return (StatusCode::FORBIDDEN, "403 token required\n").into_response();
    }
    next.run(request).await
}

/// The kiosk's listener: at most `max` connections at once; past that a connection is
/// answered `503 Service Unavailable` and closed, so no local user can run the daemon out of
/// file descriptors (and so stop it answering on its control socket) through this port. One
/// local user (found from the kernel's socket table) may hold at most half of them, and
/// clients from other machines together another half, so no one of them can lock the kiosk
/// browser out. A failing `accept` backs off from 10 ms to 1 s and is logged once per burst.
struct CappedListener {
    inner: tokio::net::TcpListener,
    clients: Arc<Mutex<Held>>,
    max: usize,
    backoff: Duration,
    failures: u64,
}

/// What an over-cap connection gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
    Retry-After: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";

impl axum::serve::Listener for CappedListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    if self.failures == 0 {
                        log::warn!(
                            "kiosk page: accept failed: {e}; backing off (logged once per burst)"
                        );
                    }
                    self.failures += 1;
                    self.backoff =
                        (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::time::sleep(self.backoff).await;
                    continue;
                }
            };
            if self.failures > 0 {
                log::warn!(
                    "kiosk page: accept works again after {} failed attempts",
                    self.failures
                );
                self.failures = 0;
            }
            self.backoff = Duration::ZERO;
            let uid = match stream.local_addr() {
                Ok(local) => peer_uid(local, addr),
                Err(_) => None,
            };
            let Some(guard) = ClientSlot::take(&self.clients, uid, self.max) else {
                // A fresh socket's send buffer is empty: this never blocks. Then it is closed.
                let _ = stream.try_write(BUSY);
                continue;
            };
            return (
                Counted {
                    stream,
                    _slot: guard,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Connections held: in all, and per local uid (`None`: a peer on another machine).
#[derive(Default)]
struct Held {
    total: usize,
    per_uid: HashMap<Option<u32>, usize>,
}

/// A kiosk client's place among `max_clients`; freed when its connection is dropped.
struct ClientSlot {
    held: Arc<Mutex<Held>>,
    uid: Option<u32>,
}

impl ClientSlot {
    fn take(held: &Arc<Mutex<Held>>, uid: Option<u32>, max: usize) -> Option<ClientSlot> {
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = h.per_uid.get(&uid).copied().unwrap_or(0);
        if h.total >= max || mine >= max.div_ceil(2) {
            return None;
        }
        h.total += 1;
        *h.per_uid.entry(uid).or_insert(0) += 1;
        Some(ClientSlot {
            held: Arc::clone(held),
            uid,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.total = h.total.saturating_sub(1);
        if let Some(n) = h.per_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.per_uid.remove(&self.uid);
            }
        }
    }
}

/// The uid that owns the client end of a loopback TCP connection from `peer` to `local`, from
/// the kernel's socket table (`/proc/self/net/tcp` and `tcp6`, readable under the unit's
/// `ProcSubset=pid`); `None` for a peer on another machine or when it cannot be told.
fn peer_uid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    // The table's addresses are the raw 32-bit words in host byte order, `%08X`, then the
    // port: the client's socket has `peer` as its local address and `local` as its remote.
    fn hex(addr: SocketAddr) -> String {
        let words: Vec<String> = match addr.ip() {
            IpAddr::V4(ip) => vec![format!("{:08X}", u32::from_ne_bytes(ip.octets()))],
            IpAddr::V6(ip) => ip
                .octets()
                .chunks_exact(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        };
        format!("{}:{:04X}", words.concat(), addr.port())
    }
    let table = match peer {
        SocketAddr::V4(_) => "/proc/self/net/tcp",
        SocketAddr::V6(_) => "/proc/self/net/tcp6",
    };
    let (want_local, want_remote) = (hex(peer), hex(local));
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want_local.as_str())
            && fields.get(2) == Some(&want_remote.as_str()))
        .then(|| fields.get(7)?.parse().ok())
        .flatten()
    })
}

/// A kiosk connection holding its slot.
struct Counted {
    stream: tokio::net::TcpStream,
    _slot: ClientSlot,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn content_json(view: &View<'_>, texts: &Texts, accent: Colour, logo: bool) -> String {
    let rows: Vec<_> = view
        .rows
        .iter()
        .map(|r| json!({"label": r.label, "value": r.value}))
        .collect();
    json!({
        "kind": view.kind,
        "alert": view.tone == Tone::Alert,
        "heading": view.heading,
        "rows": rows,
        "svg": view.qr.map(|q| q.matrix.to_svg()),
        "modules": view.qr.map(|q| q.matrix.padded_size()),
        "digits": view.digits,
        "lifetime_ms": view.lifetime_ms,
        "shop": view.shop,
        "accent": accent.hex(),
        "accent_ink": accent.ink().hex(),
        "logo": logo,
        "expires_in": texts.labels.expires_in,
        "expired": texts.labels.expired,
    })
    .to_string()
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

async fn events(
    State(rx): State<watch::Receiver<Current>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let event = rx.borrow_and_update().event();
        Some((Ok(event), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
