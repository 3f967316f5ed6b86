//! The vendor API over HTTP: routing, wire checks, and the faults applied around each answer.
//!
//! Every request goes through [`dispatch`]: count it, add latency, hang if told to, answer
//! with an HTML 500 or a forced status if told to, otherwise run the endpoint's logic, and
//! finally render the envelope (with a string status, or cut short, if told to). Only the
//! endpoint, wxCode or order id and the status are logged: never a request body.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body::Frame;

use super::Shared;
use super::fault::{FaultMode, OVERSIZED_BODY_BYTES};
use super::wire::{
    CardIssueOrder, Endpoint, MemberInfo, Reply, StatusForm, WireError, is_json_content_type,
};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The request as the endpoint's logic needs it.
enum Input {
    Body(HeaderMap, Bytes),
    Query(Params),
}

/// The router of the five endpoints.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let write = |endpoint: Endpoint| {
        post(
            move |State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| {
                s.record_headers(&headers);
                dispatch(s, endpoint, Input::Body(headers, body))
            },
        )
    };
    let read = |endpoint: Endpoint| {
        get(
            move |State(s): State<Arc<Shared>>, headers: HeaderMap, params: Params| {
                s.record_headers(&headers);
                dispatch(s, endpoint, Input::Query(params))
            },
        )
    };
    Router::new()
        .route(&Endpoint::SaveCardId.path(), write(Endpoint::SaveCardId))
        .route(
            &Endpoint::CreateMemberCard.path(),
            write(Endpoint::CreateMemberCard),
        )
        .route(
            &Endpoint::ActiveMember.path(),
            write(Endpoint::ActiveMember),
        )
        .route(&Endpoint::GetPayCode.path(), read(Endpoint::GetPayCode))
        .route(
            &Endpoint::GetMemberCard.path(),
            read(Endpoint::GetMemberCard),
        )
        .with_state(shared)
}

/// The HTML page of the `http500` fault, like a reverse proxy's error page.
pub(crate) const HTML_401: &str = "<!DOCTYPE html>\n<html><head><title>401 Unauthorized\
</title></head><body><h1>401 Unauthorized</h1><p>invalid or revoked token</p></body></html>\n";

pub(crate) const HTML_500: &str = "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error\
    </title></head><body><h1>Internal Server Error</h1><p>The server encountered an internal \
    error.</p><hr><address>wxcard-sim</address></body></html>\n";

/// The page of the `not_json` fault, like a captive portal's (answered with HTTP 200).
pub(crate) const HTML_PORTAL: &str = "<!DOCTYPE html>\n<html><head><title>Login</title></head>\
    <body><form action=\"/login\"><input name=\"user\"><input type=\"submit\"></form></body>\
    </html>\n";

async fn dispatch(shared: Arc<Shared>, endpoint: Endpoint, input: Input) -> Response {
    *shared
        .state()
        .counters_mut()
        .requests
        .entry(endpoint)
        .or_default() += 1;
    let (_, latency) = shared.faults().for_endpoint(endpoint);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let code_delay = match &input {
        Input::Query(Ok(Query(p))) => p
            .get("wxCode")
            .and_then(|c| shared.code_delays().get(c).copied()),
        _ => None,
    };
    if let Some(ms) = code_delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut faults = shared.faults.subscribe();
    let hangs = |f: &super::FaultsVersion| f.faults.for_endpoint(endpoint).0 == FaultMode::Hang;
    if hangs(&faults.borrow()) {
        log::debug!("{endpoint}: hanging");
        // Released when the mode changes; if the simulator stops, the task is aborted.
        let _ = faults.wait_for(|f| !hangs(f)).await;
    }
    let (mode, _) = shared.faults().for_endpoint(endpoint);
    if let Some((status, page)) = match mode {
        FaultMode::Http500 => Some((StatusCode::INTERNAL_SERVER_ERROR, HTML_500)),
        FaultMode::NotJson => Some((StatusCode::OK, HTML_PORTAL)),
        FaultMode::Unauthorized => Some((StatusCode::UNAUTHORIZED, HTML_401)),
        _ => None,
    } {
        count_faulted(&shared, endpoint);
        log::debug!("{endpoint}: fault {mode}");
        let mut response = (status, page).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
    }
    let forced = shared.forced().take(endpoint);
    let reply = match forced {
        Some(status) => {
            count_faulted(&shared, endpoint);
            Reply::status(status, "forced by the simulator")
        }
        None => answer(&shared, endpoint, input),
    };
    if matches!(
        mode,
        FaultMode::Truncated | FaultMode::NoStatus | FaultMode::Oversized
    ) {
        count_faulted(&shared, endpoint);
    }
    render(&reply, mode)
}

fn count_faulted(shared: &Shared, endpoint: Endpoint) {
    *shared
        .state()
        .counters_mut()
        .faulted
        .entry(endpoint)
        .or_default() += 1;
}

fn body_of(input: Input) -> Result<Bytes, Reply> {
    let Input::Body(headers, body) = input else {
        return Err(Reply::bad_request("expected a body"));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_content_type(content_type) {
        return Err(Reply::bad_request(WireError::ContentType));
    }
    Ok(body)
}

fn params_of(input: Input, required: &[&str]) -> Result<HashMap<String, String>, Reply> {
    let Input::Query(params) = input else {
        return Err(Reply::bad_request("expected query parameters"));
    };
    let Query(params) = params.map_err(|e| Reply::bad_request(e.body_text()))?;
    if let Some(unknown) = params
        .keys()
        .find(|k| !["cardId", "wxCode"].contains(&k.as_str()))
    {
        return Err(Reply::bad_request(WireError::UnknownField(unknown.clone())));
    }
    for name in required {
        match params.get(*name) {
            None => return Err(Reply::bad_request(WireError::Missing((*name).into()))),
            Some(v) if v.is_empty() => {
                return Err(Reply::bad_request(WireError::Empty((*name).into())));
            }
            Some(_) => {}
        }
    }
    Ok(params)
}

/// Runs the endpoint's logic; logs the endpoint, key and status only.
fn answer(shared: &Shared, endpoint: Endpoint, input: Input) -> Reply {
    let now = tokio::time::Instant::now().into_std();
    let (key, reply) = match endpoint {
        Endpoint::GetMemberCard | Endpoint::GetPayCode => {
            // cardId is optional: an empty or absent cardId matches any template.
            match params_of(input, &["wxCode"]) {
                Err(reply) => (String::new(), reply),
                Ok(p) => {
                    let wx_code = p["wxCode"].clone();
                    let mut state = shared.state();
                    let reply = if endpoint == Endpoint::GetPayCode {
                        state.get_pay_code(&wx_code, now)
                    } else {
                        state.get_member_card(p.get("cardId").map(String::as_str), &wx_code)
                    };
                    (wx_code, reply)
                }
            }
        }
        Endpoint::ActiveMember | Endpoint::CreateMemberCard => {
            match body_of(input).and_then(|b| MemberInfo::parse(&b).map_err(Reply::bad_request)) {
                Err(reply) => (String::new(), reply),
                Ok(info) => {
                    let mut state = shared.state();
                    let reply = if endpoint == Endpoint::ActiveMember {
                        state.active_member(&info)
                    } else {
                        state.create_member_card(&info)
                    };
                    (info.wx_code, reply)
                }
            }
        }
        Endpoint::SaveCardId => {
            match body_of(input).and_then(|b| CardIssueOrder::parse(&b).map_err(Reply::bad_request))
            {
                Err(reply) => (String::new(), reply),
                Ok(order) => {
                    let id = order.id.to_string();
                    (id, shared.state().save_card_id(order))
                }
            }
        }
    };
    if reply.http == 200 {
        log::debug!("{endpoint} {key}: {} {}", reply.status, reply.message);
    } else {
        // The message names fields and types, never their values.
        log::warn!("{endpoint}: HTTP {}: {}", reply.http, reply.message);
    }
    reply
}

/// Renders the envelope, applying the faults that change an answer's bytes.
fn render(reply: &Reply, mode: FaultMode) -> Response {
    let form = match mode {
        FaultMode::StringStatus => StatusForm::String,
        FaultMode::NoStatus => StatusForm::Absent,
        _ => StatusForm::Number,
    };
    let text = serde_json::to_vec(&reply.body(form)).unwrap_or_else(|_| b"{}".to_vec());
    let status = StatusCode::from_u16(reply.http).unwrap_or(StatusCode::OK);
    let (body, full_len) = match mode {
        FaultMode::Truncated => {
            let full_len = text.len() as u64;
            let half = Bytes::from(text[..text.len() / 2].to_vec());
            let body = Body::new(Truncated {
                part: Some(half),
                flushed: false,
            });
            (body, full_len)
        }
        FaultMode::Oversized => {
            let prefix = format!(r#"{{"status":{},"message":""#, reply.status);
            let suffix = "\"}";
            let padding = OVERSIZED_BODY_BYTES - (prefix.len() + suffix.len()) as u64;
            let body = Body::new(Padded {
                prefix: Some(Bytes::from(prefix)),
                padding,
                suffix: Some(Bytes::from_static(suffix.as_bytes())),
            });
            (body, OVERSIZED_BODY_BYTES)
        }
        _ => {
            let full_len = text.len() as u64;
            (Body::from(text), full_len)
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
    response
}

/// A valid JSON body of a given length, streamed in chunks rather than built in memory.
struct Padded {
    prefix: Option<Bytes>,
    padding: u64,
    suffix: Option<Bytes>,
}

static PADDING_CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl http_body::Body for Padded {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if self.padding > 0 {
            let n = self.padding.min(PADDING_CHUNK.len() as u64);
            self.padding -= n;
            let chunk = Bytes::from_static(&PADDING_CHUNK[..n as usize]);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.suffix.take().map(|s| Ok(Frame::data(s))))
    }
}

/// A body that yields its first half and then fails, so hyper closes the connection with
/// fewer bytes sent than Content-Length announced. Between the two it is pending once, so
/// hyper flushes the head and the half body to the socket before it closes it.
struct Truncated {
    part: Option<Bytes>,
    flushed: bool,
}

impl http_body::Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(part) = self.part.take() {
            return Poll::Ready(Some(Ok(Frame::data(part))));
        }
        if !self.flushed {
            self.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::other(
            "truncated by the simulator",
        ))))
    }
}
