//! The admin API: faults, counters, cards, pay codes and reset, on its own listener.
//!
//! It listens on a separate port so it keeps working while the API port is refusing or
//! hanging. Bodies are read as JSON whatever their content-type, so plain `curl -d` works.
//! Answers are plain JSON; errors are `{"error": "..."}` with HTTP 400 or 404.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::card::Card;
use super::fault::Faults;
use super::paycode::PayCodeCheck;
use super::wire::Endpoint;
use super::{ListenState, Shared, SimError, reset_all};

type AdminState = State<Arc<Shared>>;

/// The admin router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/health", get(health))
        .route(
            "/admin/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route("/admin/force", post(force))
        .route(
            "/admin/code-delays",
            get(get_code_delays).put(put_code_delays),
        )
        .route("/admin/counters", get(counters))
        .route("/admin/last-headers", get(last_headers))
        .route("/admin/reset", post(reset))
        .route("/admin/cards", get(list_cards).post(post_cards))
        .route("/admin/cards/{wx_code}", get(get_card).put(put_card))
        .route("/admin/paycodes/{code}", get(check_paycode))
        .route("/admin/orders", get(list_orders))
        .route("/admin/orders/{id}", get(get_order))
        .with_state(shared)
}

/// An admin error: an HTTP status and `{"error": "..."}`.
struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(message: impl std::fmt::Display) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message.to_string())
}

fn not_found(message: &str) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, message.to_owned())
}

fn failed(e: SimError) -> AdminError {
    AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type Answer = Result<axum::Json<Value>, AdminError>;

fn ok(v: Value) -> Answer {
    Ok(axum::Json(v))
}

fn parse(body: &Bytes) -> Result<Value, AdminError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))
}

async fn health(State(s): AdminState) -> Answer {
    let api = match &s.listen.borrow().state {
        ListenState::Up => "up".to_owned(),
        ListenState::Down => "down".to_owned(),
        ListenState::BindFailed(e) => format!("bind failed: {e}"),
        ListenState::Stopped => "stopped".to_owned(),
    };
    ok(json!({"api": api, "apiAddr": s.api_addr.to_string()}))
}

fn faults_json(s: &Shared) -> Value {
    let mut v = s.faults().to_json();
    v["forced"] = s.forced().to_json();
    v
}

async fn get_faults(State(s): AdminState) -> Answer {
    ok(faults_json(&s))
}

async fn put_faults(State(s): AdminState, body: Bytes) -> Answer {
    let faults = Faults::from_json(&parse(&body)?).map_err(bad)?;
    s.set_faults(faults).await.map_err(failed)?;
    ok(faults_json(&s))
}

async fn clear_faults(State(s): AdminState) -> Answer {
    s.forced().clear();
    s.set_faults(Faults::default()).await.map_err(failed)?;
    ok(faults_json(&s))
}

async fn force(State(s): AdminState, body: Bytes) -> Answer {
    let v = parse(&body)?;
    let usage = || bad(r#"expected {"endpoint": NAME, "status": CODE, "count": N}"#);
    let endpoint: Endpoint = v["endpoint"]
        .as_str()
        .ok_or_else(usage)?
        .parse()
        .map_err(bad)?;
    let status = v["status"]
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(usage)?;
    let count = match &v["count"] {
        Value::Null => 1,
        c => c
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(usage)?,
    };
    s.forced().set(endpoint, status, count);
    log::info!("forcing status {status} on the next {count} {endpoint} requests");
    ok(faults_json(&s))
}

async fn get_code_delays(State(s): AdminState) -> Answer {
    ok(json!(*s.code_delays()))
}

/// Replaces the per-wxCode read delays: `{"<wxCode>": ms, ...}` (`{}` clears them).
async fn put_code_delays(State(s): AdminState, body: Bytes) -> Answer {
    let usage = || bad(r#"expected {"<wxCode>": MS, ...}"#);
    let v = parse(&body)?;
    let mut delays = std::collections::BTreeMap::new();
    for (code, ms) in v.as_object().ok_or_else(usage)? {
        let ms = ms
            .as_u64()
            .filter(|ms| *ms <= super::fault::MAX_LATENCY_MS)
            .ok_or_else(usage)?;
        delays.insert(code.clone(), ms);
    }
    log::info!("read delays now on {} wxCode(s)", delays.len());
    *s.code_delays() = delays;
    ok(json!(*s.code_delays()))
}

async fn counters(State(s): AdminState) -> Answer {
    ok(s.state().counters().to_json())
}

async fn last_headers(State(s): AdminState) -> Answer {
    ok(json!(s.last_headers()))
}

async fn reset(State(s): AdminState) -> Answer {
    reset_all(&s).await.map_err(failed)?;
    ok(json!({"reset": true}))
}

async fn list_cards(State(s): AdminState) -> Answer {
    ok(Value::Array(s.state().cards().map(Card::to_json).collect()))
}

async fn get_card(State(s): AdminState, Path(wx_code): Path<String>) -> Answer {
    let card = s.state().card(&wx_code).map(Card::to_json);
    ok(card.ok_or_else(|| not_found("no such card"))?)
}

async fn put_card(State(s): AdminState, Path(wx_code): Path<String>, body: Bytes) -> Answer {
    let mut v = parse(&body)?;
    if let Some(obj) = v.as_object_mut() {
        match obj.get("wxCode") {
            None => {
                obj.insert("wxCode".into(), Value::String(wx_code.clone()));
            }
            Some(w) if w.as_str() != Some(wx_code.as_str()) => {
                return Err(bad("wxCode differs from the path"));
            }
            Some(_) => {}
        }
    }
    let card = Card::from_json(&v).map_err(bad)?;
    let out = card.to_json();
    s.state().put_card(card);
    ok(out)
}

async fn post_cards(State(s): AdminState, body: Bytes) -> Answer {
    let v = parse(&body)?;
    let list = match v {
        Value::Array(list) => list,
        single => vec![single],
    };
    let mut cards = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        cards.push(Card::from_json(entry).map_err(|e| bad(format!("card #{}: {e}", i + 1)))?);
    }
    let out: Vec<Value> = cards.iter().map(Card::to_json).collect();
    let mut state = s.state();
    for card in cards {
        state.put_card(card);
    }
    ok(Value::Array(out))
}

async fn check_paycode(State(s): AdminState, Path(code): Path<String>) -> Answer {
    let now = tokio::time::Instant::now().into_std();
    let check = s.state().check_paycode(&code, now);
    match check {
        PayCodeCheck::Valid { wx_code, remaining } => ok(json!({
            "status": 200, "message": "",
            "data": {"wxCode": wx_code, "expiresInMs": remaining.as_millis() as u64},
        })),
        PayCodeCheck::Expired { wx_code } => ok(json!({
            "status": 606, "message": "pay code expired", "data": {"wxCode": wx_code},
        })),
        PayCodeCheck::Unknown => Err(not_found("pay code never issued")),
    }
}

async fn list_orders(State(s): AdminState) -> Answer {
    ok(json!(s.state().order_ids()))
}

async fn get_order(State(s): AdminState, Path(id): Path<i64>) -> Answer {
    let order = s.state().order(id).cloned();
    ok(order.ok_or_else(|| not_found("no such order"))?)
}
