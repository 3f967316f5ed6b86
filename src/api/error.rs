//! What can go wrong talking to the backend, split by what a caller does about it.
//!
//! - [`ApiError::Transport`]: nothing usable came back (refused, DNS, timeout, TLS). The
//!   backend may be down: serve from cache, queue writes, retry later.
//! - [`ApiError::Server`]: something came back but it is not a wxcard answer (non-2xx, HTML,
//!   truncated or invalid JSON, JSON without `status`, an oversized body). Treated like the
//!   backend being down, but worth a louder log: a proxy or the vendor is misbehaving.
//! - [`ApiError::Business`]: a well-formed answer with a status other than 200 (602 card does
//!   not exist, 603 lost, ...). Definitive: do not retry.

use std::time::Duration;

use super::Endpoint;
use super::status::Status;

/// Why a request got no usable answer at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Nothing listens at the address, or the connection was refused or reset while
    /// connecting.
    Refused,
    /// The connect phase timed out.
    ConnectTimeout,
    /// The host name did not resolve.
    Dns,
    /// The overall deadline passed before the answer was complete.
    Deadline,
    /// TLS failed (certificate, handshake).
    Tls,
    /// Another IO error on the socket.
    Io,
}

impl TransportKind {
    fn describe(self) -> &'static str {
        match self {
            TransportKind::Refused => "connection refused",
            TransportKind::ConnectTimeout => "connect timed out",
            TransportKind::Dns => "host name did not resolve",
            TransportKind::Deadline => "no complete answer before the deadline",
            TransportKind::Tls => "TLS failed",
            TransportKind::Io => "network error",
        }
    }
}

/// Why an answer that did come back is not a wxcard answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerFault {
    /// A non-2xx HTTP status. `body` is the start of the body, for the log.
    #[error("HTTP {code}: {body}")]
    HttpStatus {
        /// The HTTP status code.
        code: u16,
        /// The first bytes of the body, made printable, personal data masked
        /// ([`super::pii::body_snippet`]).
        body: String,
    },
    /// A 3xx redirect, never followed (the token must not leave for another host, and a
    /// write must not become a GET elsewhere). `location` is the target, escaped.
    #[error("HTTP {code} redirect to {location}, not followed")]
    Redirect {
        /// The HTTP status code.
        code: u16,
        /// The `Location` header, escaped and capped (empty when there was none).
        location: String,
    },
    /// The body is not JSON (an HTML error page, a proxy's login page, ...).
    #[error("the body is not JSON: {snippet}")]
    NotJson {
        /// The first bytes of the body, made printable, personal data masked
        /// ([`super::pii::body_snippet`]).
        snippet: String,
    },
    /// The body ends in the middle of the JSON.
    #[error("the JSON body is truncated")]
    Truncated,
    /// JSON, but without a `status` field.
    #[error("the JSON body has no `status`")]
    MissingStatus,
    /// `status` is neither a number nor a string of digits' kind (an object, a boolean...).
    #[error("the JSON body's `status` is not a status: {0}")]
    BadStatus(String),
    /// Status 200 but `data` is missing or not of the documented shape.
    #[error("the answer's data is not as documented: {0}")]
    BadData(String),
    /// The body is larger than the limit and was not read.
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
}

/// An error from one API call. Personal data never appears in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No usable answer: the backend may be down.
    #[error("{endpoint}: backend unreachable: {} ({detail})", kind.describe())]
    Transport {
        /// The endpoint called.
        endpoint: Endpoint,
        /// What kind of failure.
        kind: TransportKind,
        /// The underlying error, for the log.
        detail: String,
        /// How long the call took before failing.
        elapsed: Duration,
    },
    /// An answer that is not a wxcard answer.
    #[error("{endpoint}: backend answered badly: {fault}")]
    Server {
        /// The endpoint called.
        endpoint: Endpoint,
        /// What was wrong with the answer.
        fault: ServerFault,
    },
    /// A well-formed answer with a status other than 200.
    #[error("{endpoint}: backend said {status}{}", message_suffix(.message))]
    Business {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The status.
        status: Status,
        /// The server's message, possibly empty.
        message: String,
    },
    /// The request could not be built (a bad base URL, an invalid header value).
    #[error("{endpoint}: cannot build the request: {detail}")]
    Request {
        /// The endpoint called.
        endpoint: Endpoint,
        /// Why.
        detail: String,
    },
}

/// The backend's message, escaped and capped: this text reaches logs and terminals.
fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {}", wxcard_hal::text::untrusted(message))
    }
}

impl ApiError {
    /// True when the backend could not be reached or answered garbage: the caller should
    /// treat the backend as unavailable (serve cache, queue writes) rather than as having
    /// decided anything.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ApiError::Transport { .. } | ApiError::Server { .. })
    }

    /// Why the request itself cannot succeed however often it is sent: the backend answered
    /// 400, 413, 415 or 422 (a malformed or unacceptable request, as a proxy or the vendor
    /// reports it), or the request could not be built. A queued write with such an error is
    /// a dead letter, not something to retry forever.
    pub fn request_refused(&self) -> Option<String> {
        match self {
            ApiError::Server {
                fault: ServerFault::HttpStatus { code, body },
                ..
            } if matches!(code, 400 | 413 | 415 | 422) => Some(format!("HTTP {code}: {body}")),
            ApiError::Request { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }

    /// The HTTP status (401 or 403) when the backend refused the credentials: the token in the
    /// headers file is wrong or was revoked. Not an outage: retrying with the same token
    /// cannot help, an operator must fix the token.
    pub fn credentials_refused(&self) -> Option<u16> {
        match self {
            ApiError::Server {
                fault:
                    ServerFault::HttpStatus {
                        code: code @ (401 | 403),
                        ..
                    },
                ..
            } => Some(*code),
            _ => None,
        }
    }

    /// True when the backend answered 200 but the answer's `data` is not as documented: the
    /// request was carried out.
    pub fn is_accepted_with_bad_data(&self) -> bool {
        matches!(
            self,
            ApiError::Server {
                fault: ServerFault::BadData(_),
                ..
            }
        )
    }

    /// The business status, when the backend gave one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ApiError::Business { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The transport kind, for transport errors.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            ApiError::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
