//! The wxcard client: blocking calls on ureq 3, and the two reads a cashier waits on
//! (`getmembercard`, `getpaycode`) also as async calls on the daemon's executor
//! ([`super::reads`], ureq's protocol core over tokio sockets, for a plain-HTTP backend
//! reached directly; otherwise those run ureq on the blocking pool).
//!
//! One [`Client`] holds one connection pool per kind. Every call has a connect timeout and an
//! overall deadline (from config, or a shorter one per call for lookups the cashier waits on).
//! A response body is read up to a limit and refused past it. ureq is blocking: the daemon
//! calls it from `spawn_blocking`, never on the async executor's thread.
//!
//! Redirects are never followed: ureq would resend the token headers (it strips only
//! `Authorization` and `Cookie`) to whatever host a `Location` names, over plain http too,
//! and turn a POST into a body-less GET whose 200 would read as "delivered". A 3xx is a
//! [`ServerFault::Redirect`] naming the target, so the operator fixes `api.base_url`.
//!
//! Name resolution: ureq resolves the host on every request, pooled connection or not, and
//! its default resolver starts a thread for it whenever a timeout is set (ours always is),
//! even for an IP address: a thread start per card lookup. [`LiteralFirst`] answers an IP
//! address itself and leaves names to ureq's resolver.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::error::{ApiError, ServerFault, TransportKind};
use super::reads::{self, Reads};
use super::status::Status;
use super::types::{CardIssueOrder, CreatedMember, MemberCard, MemberInfo, PayCode};
use super::{ApiConfig, Endpoint};

/// Why a [`Client`] could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL is not `http://` or `https://`.
    #[error("api.base_url {0:?} must start with http:// or https://")]
    BadBaseUrl(String),
    /// A file named in config could not be read.
    #[error("cannot read {what} {path}: {source}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line of the headers file is not `Name: value`.
    #[error("{path} line {line}: expected `Header-Name: value`")]
    BadHeaderLine {
        /// The headers file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The CA file holds no certificate.
    #[error("{path}: no PEM certificate found")]
    NoCertificate {
        /// The CA file.
        path: PathBuf,
    },
}

/// An extra request header; the value is a secret (an API token) and never printed.
#[derive(Clone)]
struct SecretHeader {
    name: String,
    value: String,
}

impl Drop for SecretHeader {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl std::fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{} bytes hidden>", self.name, self.value.len())
    }
}

/// A wxcard API client.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    headers: Vec<SecretHeader>,
    deadline: Duration,
    max_body_bytes: u64,
    /// The async reads' connections (shared by clones, like ureq's pool). None for an
    /// `https://` backend (see [`super::reads`]) and when ureq would go through a proxy named
    /// in the environment (`HTTP_PROXY`, `ALL_PROXY`, ..., `NO_PROXY` honoured): the reads
    /// then take ureq too, on the blocking pool, so every request leaves the till the same way.
    reads: Option<Arc<Reads>>,
}

/// Sent as `User-Agent` by both kinds of call.
const USER_AGENT: &str = concat!("wxcardd/", env!("CARGO_PKG_VERSION"));

impl Client {
    /// Builds a client: reads the headers file and, for `https://`, the platform's root
    /// certificates plus the optional extra CA file.
    pub fn new(config: &ApiConfig) -> Result<Client, ClientBuildError> {
        let base = config.base_url.trim();
        let https = base.starts_with("https://");
        if !https && !base.starts_with("http://") {
            return Err(ClientBuildError::BadBaseUrl(config.base_url.clone()));
        }
        let mut base_url = base.to_owned();
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        let headers = match &config.headers_file {
            Some(path) => read_headers(path)?,
            None => Vec::new(),
        };
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // 0: the 3xx answer itself comes back, and nothing is sent to its `Location`.
            .max_redirects(0)
            .timeout_connect(Some(config.connect_timeout()))
            .timeout_global(Some(config.deadline()))
            .max_idle_connections_per_host(4)
            .user_agent(USER_AGENT);
        if https {
            let roots = root_certs(config.ca_file.as_deref())?;
            builder = builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    // ureq's `rustls-no-provider` feature (no webpki-roots): the provider is
                    // ours to give.
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            );
        }
        let uri: ureq::http::Uri = base_url
            .parse()
            .map_err(|_| ClientBuildError::BadBaseUrl(config.base_url.clone()))?;
        let proxied = ureq::Proxy::try_from_env().is_some_and(|proxy| !proxy.is_no_proxy(&uri));
        let reads = if proxied {
            log::info!("api: requests go through the proxy named in the environment");
            None
        } else {
            Reads::new(&uri, config.connect_timeout()).map(Arc::new)
        };
        Ok(Client {
            agent: ureq::Agent::with_parts(
                builder.build(),
                DefaultConnector::default(),
                LiteralFirst::default(),
            ),
            base_url,
            headers,
            deadline: config.deadline(),
            max_body_bytes: config.max_body_bytes,
            reads,
        })
    }

    /// `getmembercard` as a task on the caller's executor (see [`super::reads`]): no thread
    /// hand-off; otherwise as [`Client::get_member_card`].
    pub async fn get_member_card_async(
        &self,
        card_id: Option<&str>,
        wx_code: &str,
        deadline: Option<Duration>,
    ) -> Result<MemberCard, ApiError> {
        if self.reads.is_none() {
            let (client, card_id, wx_code) =
                (self.clone(), card_id.map(str::to_owned), wx_code.to_owned());
            return on_blocking_pool(Endpoint::GetMemberCard, move || {
                client.get_member_card(card_id.as_deref(), &wx_code, deadline)
            })
            .await;
        }
        let query = [("cardId", card_id.unwrap_or("")), ("wxCode", wx_code)];
        self.get_async(Endpoint::GetMemberCard, &query, deadline)
            .await?
            .ok_or_else(|| no_data(Endpoint::GetMemberCard))
    }

    /// `getpaycode` as a task on the caller's executor; otherwise as [`Client::get_pay_code`].
    pub async fn get_pay_code_async(
        &self,
        wx_code: &str,
        deadline: Option<Duration>,
    ) -> Result<PayCode, ApiError> {
        if self.reads.is_none() {
            let (client, wx_code) = (self.clone(), wx_code.to_owned());
            return on_blocking_pool(Endpoint::GetPayCode, move || {
                client.get_pay_code(&wx_code, deadline)
            })
            .await;
        }
        let code: PayCode = self
            .get_async(Endpoint::GetPayCode, &[("wxCode", wx_code)], deadline)
            .await?
            .ok_or_else(|| no_data(Endpoint::GetPayCode))?;
        pay_code_not_empty(code)
    }

    /// One GET on the async connections, classified as [`Client::call`] does.
    async fn get_async<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        query: &[(&str, &str)],
        deadline: Option<Duration>,
    ) -> Result<Option<T>, ApiError> {
        let started = Instant::now();
        let answer = self.get_answer(endpoint, query, deadline, started).await?;
        let result = classify::<T>(endpoint, answer.code, &answer.body);
        log_answer(endpoint, answer.code, answer.body.len(), started, &result);
        result
    }

    /// The HTTP answer to one GET, a redirect refused; not generic, so its future is
    /// compiled once for both reads.
    async fn get_answer(
        &self,
        endpoint: Endpoint,
        query: &[(&str, &str)],
        deadline: Option<Duration>,
        started: Instant,
    ) -> Result<reads::Answer, ApiError> {
        let _timer = crate::metrics::BackendTimer::start(endpoint);
        let deadline = deadline.unwrap_or(self.deadline).min(self.deadline);
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let url = format!("{}{}?{query}", self.base_url, endpoint.path());
        let build = || {
            let mut request =
                ureq::http::Request::get(url.as_str()).header("user-agent", USER_AGENT);
            for h in &self.headers {
                request = request.header(h.name.as_str(), h.value.as_str());
            }
            // The URL and the header names were checked when the client was built.
            request.body(()).unwrap_or_default()
        };
        let Some(reads) = &self.reads else {
            unreachable!("get_async is called only with the async reads on");
        };
        let answer =
            match tokio::time::timeout(deadline, reads.get(&build, self.max_body_bytes)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(failure)) => return Err(read_failure(endpoint, failure, started)),
                Err(_) => {
                    return Err(ApiError::Transport {
                        endpoint,
                        kind: TransportKind::Deadline,
                        detail: format!("no complete answer within {} ms", deadline.as_millis()),
                        elapsed: started.elapsed(),
                    });
                }
            };
        if (300..400).contains(&answer.code) {
            return Err(redirect(
                endpoint,
                answer.code,
                answer.location.as_deref().unwrap_or_default(),
            ));
        }
        Ok(answer)
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `getmembercard`: the card's state. `card_id` is the WeChat card template id.
    pub fn get_member_card(
        &self,
        card_id: Option<&str>,
        wx_code: &str,
        deadline: Option<Duration>,
    ) -> Result<MemberCard, ApiError> {
        let query = [("cardId", card_id.unwrap_or("")), ("wxCode", wx_code)];
        self.call_data(Endpoint::GetMemberCard, Body::Query(&query), deadline)
    }

    /// `getpaycode`: a fresh pay code for the member's card.
    pub fn get_pay_code(
        &self,
        wx_code: &str,
        deadline: Option<Duration>,
    ) -> Result<PayCode, ApiError> {
        let code: PayCode = self.call_data(
            Endpoint::GetPayCode,
            Body::Query(&[("wxCode", wx_code)]),
            deadline,
        )?;
        pay_code_not_empty(code)
    }

    /// `activemember`: activates a member's card.
    pub fn activate_member(
        &self,
        member: &MemberInfo,
        deadline: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.call_no_data(
            Endpoint::ActiveMember,
            &json(Endpoint::ActiveMember, member)?,
            deadline,
        )
    }

    /// `createmembercard`: creates a member and their card.
    pub fn create_member_card(
        &self,
        member: &MemberInfo,
        deadline: Option<Duration>,
    ) -> Result<CreatedMember, ApiError> {
        let body = json(Endpoint::CreateMemberCard, member)?;
        self.call_data(Endpoint::CreateMemberCard, Body::Json(&body), deadline)
    }

    /// `savecardid`: records an order of issued cards. A repeated order id answers 801.
    pub fn save_card_id(
        &self,
        order: &CardIssueOrder,
        deadline: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.call_no_data(
            Endpoint::SaveCardId,
            &json(Endpoint::SaveCardId, order)?,
            deadline,
        )
    }

    fn call_no_data(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        deadline: Option<Duration>,
    ) -> Result<(), ApiError> {
        self.call::<IgnoredAny>(endpoint, Body::Json(body), deadline)
            .map(|_| ())
    }

    fn call_data<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        body: Body<'_>,
        deadline: Option<Duration>,
    ) -> Result<T, ApiError> {
        self.call::<T>(endpoint, body, deadline)?
            .ok_or_else(|| no_data(endpoint))
    }

    /// Sends one request and classifies the answer. `Ok(None)` is a 200 without `data`.
    fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        body: Body<'_>,
        deadline: Option<Duration>,
    ) -> Result<Option<T>, ApiError> {
        let started = Instant::now();
        let _timer = crate::metrics::BackendTimer::start(endpoint);
        let url = format!("{}{}", self.base_url, endpoint.path());
        let deadline = deadline.unwrap_or(self.deadline).min(self.deadline);
        let result = match body {
            Body::Query(pairs) => {
                let mut req = self.agent.get(&url);
                for h in &self.headers {
                    req = req.header(&h.name, &h.value);
                }
                for (k, v) in pairs {
                    req = req.query(k, v);
                }
                req.config().timeout_global(Some(deadline)).build().call()
            }
            Body::Json(bytes) => {
                let mut req = self.agent.post(&url);
                for h in &self.headers {
                    req = req.header(&h.name, &h.value);
                }
                req.config()
                    .timeout_global(Some(deadline))
                    .build()
                    .content_type("application/json")
                    .send(bytes)
            }
        };
        let mut response = result.map_err(|e| transport_error(endpoint, e, started))?;
        let code = response.status().as_u16();
        if (300..400).contains(&code) {
            let location = response
                .headers()
                .get("location")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(redirect(endpoint, code, &location));
        }
        let bytes = read_body(response.body_mut(), self.max_body_bytes)
            .map_err(|e| body_error(endpoint, e, self.max_body_bytes, started))?;
        let answer = classify::<T>(endpoint, code, &bytes);
        log_answer(endpoint, code, bytes.len(), started, &answer);
        answer
    }
}

/// A blocking call on tokio's blocking pool (the reads when a proxy is in use).
async fn on_blocking_pool<T: Send + 'static>(
    endpoint: Endpoint,
    call: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ApiError::Request {
            endpoint,
            detail: format!("the runtime is shutting down: {e}"),
        }),
    }
}

fn log_answer<T>(
    endpoint: Endpoint,
    code: u16,
    bytes: usize,
    started: Instant,
    answer: &Result<T, ApiError>,
) {
    if log::log_enabled!(log::Level::Debug) {
        log::debug!(
            "{endpoint}: HTTP {code}, {bytes} bytes, {} ms, {}",
            started.elapsed().as_millis(),
            match answer {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            }
        );
    }
}

/// A 3xx: never followed (see the module docs); the target is named for the operator.
fn redirect(endpoint: Endpoint, code: u16, location: &str) -> ApiError {
    let error = ApiError::Server {
        endpoint,
        fault: ServerFault::Redirect {
            code,
            location: wxcard_hal::text::untrusted(location).into_owned(),
        },
    };
    log::debug!("{endpoint}: HTTP {code}, not followed: {error}");
    error
}

fn no_data(endpoint: Endpoint) -> ApiError {
    ApiError::Server {
        endpoint,
        fault: ServerFault::BadData("status 200 without `data`".into()),
    }
}

fn pay_code_not_empty(code: PayCode) -> Result<PayCode, ApiError> {
    if code.0.is_empty() {
        return Err(ApiError::Server {
            endpoint: Endpoint::GetPayCode,
            fault: ServerFault::BadData("empty pay code".into()),
        });
    }
    Ok(code)
}

/// An async read's failure as the blocking client would report it.
fn read_failure(endpoint: Endpoint, failure: reads::Failure, started: Instant) -> ApiError {
    match failure {
        reads::Failure::Server(fault) => ApiError::Server { endpoint, fault },
        reads::Failure::Transport(kind, detail) => ApiError::Transport {
            endpoint,
            kind,
            detail,
            elapsed: started.elapsed(),
        },
        // Not left over by `Reads::get`, which retries; kept for completeness.
        reads::Failure::Stale(detail) => ApiError::Transport {
            endpoint,
            kind: TransportKind::Io,
            detail,
            elapsed: started.elapsed(),
        },
    }
}

/// ureq's resolver, except that an IP address (`http://127.0.0.1:8080/`,
/// `http://[::1]/`) is answered at once, on the calling thread.
#[derive(Debug, Default)]
struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match ip_literal(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The socket address of a URI whose host is an IP address, with the scheme's default port.
fn ip_literal(uri: &ureq::http::Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let port = match (authority.port_u16(), uri.scheme_str()?) {
        (Some(port), _) => port,
        (None, "http") => 80,
        (None, "https") => 443,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

enum Body<'a> {
    Query(&'a [(&'a str, &'a str)]),
    Json(&'a [u8]),
}

fn json<T: Serialize>(endpoint: Endpoint, value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::Request {
        endpoint,
        detail: e.to_string(),
    })
}

/// Reads at most `limit` bytes; one byte more is an error, so an endless or huge body is
/// refused rather than buffered.
fn read_body(body: &mut ureq::Body, limit: u64) -> Result<Vec<u8>, ureq::Error> {
    let mut out = Vec::new();
    let mut reader = body.with_config().limit(limit.saturating_add(1)).reader();
    reader.read_to_end(&mut out).map_err(ureq::Error::from)?;
    if out.len() as u64 > limit {
        return Err(ureq::Error::BodyExceedsLimit(limit));
    }
    Ok(out)
}

/// Turns an HTTP answer into a typed result: HTTP status, JSON shape, business status, data.
fn classify<T: DeserializeOwned>(
    endpoint: Endpoint,
    code: u16,
    bytes: &[u8],
) -> Result<Option<T>, ApiError> {
    let server = |fault| ApiError::Server { endpoint, fault };
    if !(200..300).contains(&code) {
        return Err(server(ServerFault::HttpStatus {
            code,
            body: snippet(bytes),
        }));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() && !bytes.is_empty() {
            server(ServerFault::Truncated)
        } else {
            server(ServerFault::NotJson {
                snippet: snippet(bytes),
            })
        }
    })?;
    // Owned: `data` is taken out, not cloned (a lookup's answer is parsed once).
    let Value::Object(mut object) = value else {
        return Err(server(ServerFault::NotJson {
            snippet: snippet(bytes),
        }));
    };
    let status = match object.remove("status") {
        None | Some(Value::Null) => return Err(server(ServerFault::MissingStatus)),
        Some(raw) => serde_json::from_value::<Status>(raw)
            .map_err(|e| server(ServerFault::BadStatus(without_values(&e.to_string()))))?,
    };
    let message = match object.remove("message") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    if !status.is_success() {
        return Err(ApiError::Business {
            endpoint,
            status,
            message,
        });
    }
    match object.remove("data") {
        None | Some(Value::Null) => Ok(None),
        Some(data) => serde_json::from_value::<T>(data)
            .map(Some)
            .map_err(|e| server(ServerFault::BadData(without_values(&e.to_string())))),
    }
}

/// A deserializer's message about a value in an answer, without the value: it may be a
/// member's personal data where a card's field or `data` should be.
fn without_values(message: &str) -> String {
    super::pii::without_values(message)
}

/// The first bytes of a body, printable and without personal data, for a log line.
fn snippet(bytes: &[u8]) -> String {
    super::pii::body_snippet(bytes, 120)
}

fn transport_error(endpoint: Endpoint, error: ureq::Error, started: Instant) -> ApiError {
    use std::io::ErrorKind as Io;
    use ureq::Timeout;
    let kind = match &error {
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => TransportKind::ConnectTimeout,
        ureq::Error::Timeout(_) => TransportKind::Deadline,
        ureq::Error::HostNotFound => TransportKind::Dns,
        ureq::Error::ConnectionFailed => TransportKind::Refused,
        // rustls reports a refused certificate or handshake as an IO error wrapping its own.
        ureq::Error::Io(e)
            if e.get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            TransportKind::Tls
        }
        ureq::Error::Io(e) => match e.kind() {
            Io::ConnectionRefused | Io::ConnectionReset | Io::ConnectionAborted => {
                TransportKind::Refused
            }
            Io::TimedOut | Io::WouldBlock => TransportKind::Deadline,
            _ => TransportKind::Io,
        },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => TransportKind::Tls,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            return ApiError::Request {
                endpoint,
                detail: error.to_string(),
            };
        }
        // A malformed HTTP answer is the server's fault, not the network's.
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            return ApiError::Server {
                endpoint,
                fault: ServerFault::NotJson {
                    snippet: format!("not an HTTP answer: {error}"),
                },
            };
        }
        _ => TransportKind::Io,
    };
    ApiError::Transport {
        endpoint,
        kind,
        detail: error.to_string(),
        elapsed: started.elapsed(),
    }
}

fn body_error(endpoint: Endpoint, error: ureq::Error, limit: u64, started: Instant) -> ApiError {
    match error {
        ureq::Error::BodyExceedsLimit(_) => ApiError::Server {
            endpoint,
            fault: ServerFault::BodyTooLarge { limit },
        },
        ureq::Error::Timeout(_) => transport_error(endpoint, error, started),
        // The connection ended before the body did.
        _ => ApiError::Server {
            endpoint,
            fault: ServerFault::Truncated,
        },
    }
}

/// Reads `Name: value` lines; blank lines and `#` comments are skipped.
fn read_headers(path: &Path) -> Result<Vec<SecretHeader>, ClientBuildError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientBuildError::File {
        what: "api.headers_file",
        path: path.to_owned(),
        source,
    })?;
    let text = zeroize::Zeroizing::new(text);
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ClientBuildError::BadHeaderLine {
            path: path.to_owned(),
            line: i + 1,
        };
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !valid_name {
            return Err(bad());
        }
        headers.push(SecretHeader {
            name: name.to_owned(),
            value: value.trim().to_owned(),
        });
    }
    Ok(headers)
}

/// The platform's roots plus the optional extra CA file.
fn root_certs(
    ca_file: Option<&Path>,
) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientBuildError> {
    use ureq::tls::{Certificate, PemItem};
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        log::warn!("some platform root certificates could not be loaded: {e}");
    }
    let mut roots: Vec<Certificate<'static>> = native
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| ClientBuildError::File {
            what: "api.ca_file",
            path: path.to_owned(),
            source,
        })?;
        let before = roots.len();
        roots.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        }));
        if roots.len() == before {
            return Err(ClientBuildError::NoCertificate {
                path: path.to_owned(),
            });
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_resolve_in_place_and_names_do_not() {
        let at = |url: &str| ip_literal(&url.parse().unwrap());
        assert_eq!(
            at("http://127.0.0.1:8080/x"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            at("http://10.0.0.2/x"),
            Some("10.0.0.2:80".parse().unwrap())
        );
        assert_eq!(
            at("https://10.0.0.2/x"),
            Some("10.0.0.2:443".parse().unwrap())
        );
        assert_eq!(at("http://[::1]:81/x"), Some("[::1]:81".parse().unwrap()));
        assert_eq!(
            at("https://[fe80::1]/"),
            Some("[fe80::1]:443".parse().unwrap())
        );
        assert_eq!(at("http://localhost:8080/x"), None);
        assert_eq!(at("https://api.example.com/x"), None);
        assert_eq!(at("http://1.2.3.4.example/"), None);
    }

    #[test]
    fn classify_separates_faults_from_business_statuses() {
        let ep = Endpoint::GetMemberCard;
        let fault = |code, body: &str| match classify::<MemberCard>(ep, code, body.as_bytes()) {
            Err(ApiError::Server { fault, .. }) => fault,
            other => panic!("{body}: {other:?}"),
        };
        assert!(matches!(
            fault(500, "<html>oops</html>"),
            ServerFault::HttpStatus { code: 500, .. }
        ));
        assert!(matches!(
            fault(200, "<html>login</html>"),
            ServerFault::NotJson { .. }
        ));
        assert_eq!(
            fault(200, r#"{"status":200,"data":{"card"#),
            ServerFault::Truncated
        );
        assert_eq!(fault(200, r#"{"message":"x"}"#), ServerFault::MissingStatus);
        assert!(matches!(fault(200, "[1,2]"), ServerFault::NotJson { .. }));
        // A 200 without data is not an error at this level; `call_data` refuses it.
        assert!(matches!(
            classify::<MemberCard>(ep, 200, br#"{"status":200}"#),
            Ok(None)
        ));
        assert!(matches!(
            classify::<MemberCard>(ep, 200, br#"{"status":200,"data":{"cardCode":1}}"#),
            Err(ApiError::Server {
                fault: ServerFault::BadData(_),
                ..
            })
        ));
        match classify::<MemberCard>(ep, 200, br#"{"status":"603","message":"lost"}"#) {
            Err(ApiError::Business {
                status, message, ..
            }) => {
                assert_eq!(status, Status::CardLost);
                assert_eq!(message, "lost");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_file_is_parsed_and_values_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers");
        std::fs::write(&path, "# token\nX-Api-Token: s3cr3t-value\n\nX-Shop: 12\n").unwrap();
        let headers = read_headers(&path).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].value, "s3cr3t-value");
        let printed = format!("{headers:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        std::fs::write(&path, "no colon here\n").unwrap();
        assert!(matches!(
            read_headers(&path),
            Err(ClientBuildError::BadHeaderLine { line: 1, .. })
        ));
    }
}
