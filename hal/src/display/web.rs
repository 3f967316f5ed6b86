//! Kiosk web page backend: a small local HTTP server for a kiosk browser on the customer
//! screen.
//!
//! `GET /` is one static page; `GET /events` is a Server-Sent Events stream that sends the
//! current screen on (re)connect and every change after it, the QR as inline SVG. The browser's
//! `EventSource` reconnects by itself (we ask for a retry after one second), so the page
//! recovers from a daemon restart without anyone touching the kiosk. The page runs the
//! countdown itself from the time left at push; the server pushes only when the screen
//! content changes. Listens on loopback unless configured otherwise; this is display output,
//! not a connection to the wxcard backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::config::WebConfig;
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
            left.saturating_sub(at.elapsed())
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
}

impl WebDisplay {
    /// Binds `config.listen` and serves the page on the current tokio runtime.
    pub fn start(config: &WebConfig, texts: Texts) -> Result<Self, DisplayError> {
        let addr = config.listen;
        let err = |reason: String| DisplayError::Web { addr, reason };
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
            clients: Arc::new(AtomicUsize::new(0)),
            max: config.max_clients.max(1),
            backoff: Duration::ZERO,
            failures: 0,
        };

        let blank = View::of(&Screen::Blank, &texts, Instant::now());
        let (current, rx) = watch::channel(Current {
            content: content_json(&blank, &texts).into(),
            remaining: None,
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
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
        log::info!("kiosk page on http://{local}/");
        Ok(Self {
            current,
            addr: local,
            texts,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
            let _ = stop.send(());
        }
    }
}

impl CustomerDisplay for WebDisplay {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        let view = View::of(screen, &self.texts, now);
        let content: Arc<str> = content_json(&view, &self.texts).into();
        let remaining = view
            .remaining_ms
            .map(|ms| (Duration::from_millis(ms), Instant::now()));
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

/// The kiosk's listener: at most `max` connections at once; past that a connection is
/// answered `503 Service Unavailable` and closed, so no local user can run the daemon out of
/// file descriptors (and so stop it answering on its control socket) through this port. A
/// failing `accept` backs off from 10 ms to 1 s and is logged once per burst.
struct CappedListener {
    inner: tokio::net::TcpListener,
    clients: Arc<AtomicUsize>,
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
            let taken = self.clients.fetch_add(1, Ordering::SeqCst);
            let guard = ClientSlot(Arc::clone(&self.clients));
            if taken >= self.max {
                drop(guard);
                // A fresh socket's send buffer is empty: this never blocks. Then it is closed.
                let _ = stream.try_write(BUSY);
                continue;
            }
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

/// A kiosk client's place among `max_clients`; freed when its connection is dropped.
struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

fn content_json(view: &View<'_>, texts: &Texts) -> String {
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
