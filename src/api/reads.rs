//! The cashier's reads (`getmembercard`, `getpaycode`) as tasks on the daemon's own executor.
//!
//! Why: the daemon runs one executor thread (src/daemon). The blocking ureq client
//! ([`super::client`]) has to run on tokio's blocking pool, so a lookup cost two thread
//! hand-offs (executor -> pool -> executor, each a futex wake-up and mostly a context switch)
//! plus ureq's per-request work (four `ioctl`s, two 1-byte peeks, two `setsockopt`s): on a
//! LAN, more than the HTTP exchange itself (BENCHMARKS.md, "Issue 12"). These two GETs are
//! what a cashier waits on, so here they are ordinary tasks on the executor, with the protocol
//! code ureq itself uses (`ureq-proto`, ureq's sans-IO HTTP/1.1 core) over tokio sockets. The
//! writes stay on ureq: they go through the outbox, off the cashier's path.
//!
//! Plain `http://` only (a backend on the shop's LAN, or a local gateway). An `https://`
//! backend is across the internet, where a round trip takes tens of milliseconds and the
//! thread hand-offs' tens of microseconds do not show; TLS here would have doubled the TLS
//! code in a binary held to 6 MB (issue 12). Those reads take ureq on the blocking pool, as
//! they do behind a proxy ([`super::client`]).
//!
//! The blocking client's rules hold here too: a connect timeout and an overall deadline, the
//! body read up to the limit and refused past it, redirects never followed (the caller gets
//! the status and `Location`), the token headers only ever sent to the base URL's host. A
//! response head over [`MAX_HEAD_BYTES`] is refused however it arrives (1xx answers before
//! the final one count: RFC 9110 lets a server send any number, and they are skipped).
//!
//! Connections: up to [`MAX_IDLE`] are kept alive, for at most [`MAX_IDLE_AGE`] idle (as
//! ureq's pool: a shop's router or NAT may forget a quiet connection without a word, and a
//! request into it would wait for the deadline). An idle one is checked for a close by the
//! server before reuse, and a request on a reused connection that gets no byte of answer
//! (the server closed it just then) is sent once more on a new connection: these are GETs,
//! safe to repeat. A host name is resolved (tokio's resolver, on a blocking thread) only when
//! a connection is opened, not per request.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ureq_proto::BodyMode;
use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http;

use super::error::{ServerFault, TransportKind};

/// Connections kept alive to the backend. Two: a lookup and a pay code at once (or two
/// scanners) each find one.
pub(super) const MAX_IDLE: usize = 2;

/// An idle connection older than this is closed rather than reused (ureq's default too).
pub(super) const MAX_IDLE_AGE: Duration = Duration::from_secs(15);

/// A response head larger than this is not a wxcard answer.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// The request head must fit here (our heads are a few hundred bytes).
const MAX_REQUEST_HEAD: usize = 8 * 1024;

type Conn = TcpStream;

/// Where requests go and how to connect there; the idle connections.
pub(super) struct Reads {
    /// Host as in the URL, without brackets, for a name lookup.
    host: String,
    port: u16,
    /// The address itself when the host is an IP address (no lookup).
    literal: Option<SocketAddr>,
    connect_timeout: Duration,
    /// Idle connections and since when they are idle (tokio's clock, so tests can move it).
    idle: Mutex<Vec<(Conn, tokio::time::Instant)>>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// An answer as it came: HTTP status, `Location` header, body.
pub(super) struct Answer {
    pub code: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Why an exchange gave no answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// Nothing usable came back.
    Transport(TransportKind, String),
    /// Something came back that is not a complete HTTP answer, or is too large.
    Server(ServerFault),
    /// A reused connection ended before any byte of answer: the server had closed it.
    Stale(String),
}

impl Reads {
    /// `base` is the base URL; `None` unless it is `http://`.
    pub(super) fn new(base: &http::Uri, connect_timeout: Duration) -> Option<Reads> {
        if base.scheme_str() != Some("http") {
            return None;
        }
        let authority = base.authority()?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = authority.port_u16().unwrap_or(80);
        let literal = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Some(Reads {
            host,
            port,
            literal,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends the GET that `build` makes (on a kept-alive connection when one is open) and
    /// reads the answer, its body up to `limit` bytes. No deadline of its own: the caller
    /// bounds it (a dropped future drops its connection, never returned to the pool).
    pub(super) async fn get(
        &self,
        build: &(dyn Fn() -> http::Request<()> + Sync),
        limit: u64,
    ) -> Result<Answer, Failure> {
        loop {
            let (conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match exchange(conn, build(), limit, reused).await {
                Ok((answer, keep)) => {
                    if let Some(conn) = keep {
                        self.put_idle(conn);
                    }
                    return Ok(answer);
                }
                // The next idle connection, or a new one: at most MAX_IDLE + 1 rounds.
                Err(Failure::Stale(why)) => log::debug!("kept-alive connection closed: {why}"),
                Err(e) => return Err(e),
            }
        }
    }

    /// An idle connection still open and idle for at most [`MAX_IDLE_AGE`]. One the server
    /// closed (or wrote to) while idle is readable now and goes.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() > MAX_IDLE_AGE {
                continue;
            }
            let mut probe = [0u8; 1];
            if matches!(conn.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, tokio::time::Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let addrs: Vec<SocketAddr> = match self.literal {
            Some(addr) => vec![addr],
            None => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| Failure::Transport(TransportKind::Dns, e.to_string()))?
                .collect(),
        };
        let mut last = Failure::Transport(TransportKind::Dns, "no address".into());
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // One small request, one small answer: no Nagle delay.
                    stream
                        .set_nodelay(true)
                        .map_err(|e| transport(&e, "TCP_NODELAY"))?;
                    return Ok(stream);
                }
                Ok(Err(e)) => last = transport(&e, &format!("connect {addr}")),
                Err(_) => {
                    last = Failure::Transport(
                        TransportKind::ConnectTimeout,
                        format!(
                            "connect {addr}: no answer within {} ms",
                            self.connect_timeout.as_millis()
                        ),
                    )
                }
            }
        }
        Err(last)
    }
}

/// An IO error as a transport failure.
fn transport(e: &io::Error, doing: &str) -> Failure {
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted => TransportKind::Refused,
        K::TimedOut => TransportKind::Deadline,
        _ => TransportKind::Io,
    };
    Failure::Transport(kind, format!("{doing}: {e}"))
}

/// Not an HTTP answer (a protocol error from ureq-proto, or a head too large).
fn not_http(detail: impl std::fmt::Display) -> Failure {
    Failure::Server(ServerFault::NotJson {
        snippet: format!("not an HTTP answer: {detail}"),
    })
}

/// Appends what the socket has (up to [`READ_CHUNK`] bytes) to `input`; 0 at end of stream.
async fn read_more(conn: &mut Conn, input: &mut Vec<u8>) -> io::Result<usize> {
    input.reserve(READ_CHUNK);
    conn.read_buf(input).await
}

/// One request and its answer on `conn`. Gives the connection back when it can carry another
/// request. `reused`: a failure before any byte of answer is [`Failure::Stale`].
async fn exchange(
    mut conn: Conn,
    request: http::Request<()>,
    limit: u64,
    reused: bool,
) -> Result<(Answer, Option<Conn>), Failure> {
    let early = |e: io::Error, doing: &str| {
        if reused {
            Failure::Stale(format!("{doing}: {e}"))
        } else {
            transport(&e, doing)
        }
    };
    let mut call = Call::new(request).map_err(not_http)?.proceed();
    // Written through a buffer on the stack (ureq-proto writes row by row; the head of a GET
    // is a few hundred bytes): no 8 KiB allocated and zeroed per request (BENCHMARKS.md,
    // "Issue 12", part 8).
    let head = {
        let too_long = || {
            Failure::Transport(
                TransportKind::Io,
                format!("request head over {MAX_REQUEST_HEAD} bytes"),
            )
        };
        let mut rows = [0u8; MAX_REQUEST_HEAD];
        let mut head = Vec::new();
        while !call.can_proceed() {
            let n = match call.write(&mut rows) {
                Ok(n) => n,
                Err(ureq_proto::Error::OutputOverflow) => return Err(too_long()),
                Err(e) => return Err(not_http(e)),
            };
            head.extend_from_slice(&rows[..n]);
            if n == 0 || head.len() > MAX_REQUEST_HEAD {
                return Err(too_long());
            }
        }
        head
    };
    conn.write_all(&head).await.map_err(|e| early(e, "send"))?;
    let mut call = match call.proceed().map_err(not_http)? {
        Some(SendRequestResult::RecvResponse(call)) => call,
        _ => return Err(not_http("a GET expects no request body")),
    };

    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut received = false;
    // The head's bytes taken so far: 1xx answers (which ureq-proto consumes and skips) count.
    let mut head_bytes = 0;
    let response = loop {
        let (used, response) = call.try_response(&input, false).map_err(not_http)?;
        input.drain(..used);
        head_bytes += used;
        // Complete or not, a head is never larger than the limit (however it arrived).
        let incomplete = if response.is_some() { 0 } else { input.len() };
        if head_bytes + incomplete > MAX_HEAD_BYTES {
            return Err(not_http(format!("a head over {MAX_HEAD_BYTES} bytes")));
        }
        if let Some(response) = response {
            break response;
        }
        if used > 0 {
            // A 1xx was taken: the final answer may be in `input` already.
            continue;
        }
        match read_more(&mut conn, &mut input).await {
            Ok(0) if !received && reused => {
                return Err(Failure::Stale("closed before answering".into()));
            }
            Ok(0) if !received => {
                return Err(Failure::Transport(
                    TransportKind::Io,
                    "the server closed the connection without answering".into(),
                ));
            }
            Ok(0) => return Err(not_http("the connection closed inside the head")),
            Ok(_) => received = true,
            Err(e) if !received => return Err(early(e, "receive")),
            Err(e) => return Err(transport(&e, "receive")),
        }
    };
    let code = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let mut body = Vec::new();
    let mut close_delimited = false;
    let cleanup = match call.proceed() {
        Some(RecvResponseResult::RecvBody(mut call)) => {
            close_delimited = matches!(call.body_mode(), BodyMode::CloseDelimited);
            loop {
                let mut pos = 0;
                loop {
                    // Decoded straight into `body`: never more bytes than are buffered.
                    let start = body.len();
                    body.resize(start + (input.len() - pos).max(1), 0);
                    let (used, made) = call
                        .read(&input[pos..], &mut body[start..])
                        .map_err(|e| not_http(format!("bad body framing: {e}")))?;
                    body.truncate(start + made);
                    pos += used;
                    if body.len() as u64 > limit {
                        return Err(Failure::Server(ServerFault::BodyTooLarge { limit }));
                    }
                    if used == 0 && made == 0 {
                        break;
                    }
                }
                input.drain(..pos);
                if call.can_proceed() && !close_delimited {
                    break;
                }
                match read_more(&mut conn, &mut input).await {
                    Ok(0) if close_delimited => break,
                    // The connection ended (or broke) before the body did.
                    Ok(0) | Err(_) => return Err(Failure::Server(ServerFault::Truncated)),
                    Ok(_) => {}
                }
            }
            match call.proceed() {
                Some(RecvBodyResult::Cleanup(call)) => Some(call),
                Some(RecvBodyResult::Redirect(call)) => Some(call.proceed()),
                None => None,
            }
        }
        Some(RecvResponseResult::Redirect(call)) => Some(call.proceed()),
        Some(RecvResponseResult::Cleanup(call)) => Some(call),
        None => None,
    };
    let reusable =
        !close_delimited && input.is_empty() && cleanup.is_some_and(|c| !c.must_close_connection());
    let answer = Answer {
        code,
        location,
        body,
    };
    Ok((answer, reusable.then_some(conn)))
}
