//! The engine: carries out control requests and scans on the card service, and turns what
//! happens into events. It owns no policy: the service decides online/offline/cache.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use wxcard_hal::display::{Message, Screen};
use wxcard_hal::scanner::{Classifier, CodeKind, Symbology};

use super::display::CustomerScreen;
use crate::control::protocol::{Command, ErrorCode, MessageLevel, event_line};
use crate::control::server::{Answer, Handler};
use crate::service::{CardService, Lookup, LookupAnswer, ServiceError, ServiceEvent, WriteOutcome};

/// The daemon's request handler and event source.
pub struct Engine {
    service: CardService,
    events: broadcast::Sender<Value>,
    classifier: Mutex<Arc<Classifier>>,
    scanners: Mutex<BTreeMap<String, Value>>,
    screen: Arc<CustomerScreen>,
    pay_code_after_scan: bool,
    started: Instant,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Counts a request in flight for the shutdown drain.
struct InFlight<'a>(&'a Engine);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Engine {
    /// An engine over the service, publishing event lines on `events`.
    pub fn new(
        service: CardService,
        events: broadcast::Sender<Value>,
        classifier: Classifier,
        screen: Arc<CustomerScreen>,
        pay_code_after_scan: bool,
    ) -> Self {
        Engine {
            service,
            events,
            classifier: Mutex::new(Arc::new(classifier)),
            scanners: Mutex::new(BTreeMap::new()),
            screen,
            pay_code_after_scan,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// The card service.
    pub fn service(&self) -> &CardService {
        &self.service
    }

    /// Publishes an event line to subscribers (dropped when nobody listens).
    pub fn publish(&self, event: &str, body: Value) {
        let _ = self.events.send(event_line(event, body));
    }

    /// Waits until no request is being carried out.
    pub async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Forwards the service's events to subscribers until the service goes away.
    pub async fn forward_service_events(self: Arc<Self>) {
        let mut events = self.service.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    let name = match event {
                        ServiceEvent::Offline | ServiceEvent::Online { .. } => "backend",
                        ServiceEvent::Delivered { .. } | ServiceEvent::DeadLettered { .. } => {
                            "outbox"
                        }
                    };
                    self.publish(name, to_value(&event));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("{n} service events were not forwarded");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Replaces the classification rules (SIGHUP).
    pub fn set_classifier(&self, classifier: Classifier) {
        *lock(&self.classifier) = Arc::new(classifier);
    }

    /// Records and publishes a scanner's connection state.
    pub fn scanner_state(&self, scanner: &str, state: &str, reason: Option<String>) {
        let body = json!({"scanner": scanner, "state": state, "reason": reason});
        lock(&self.scanners).insert(scanner.to_owned(), body.clone());
        self.publish("scanner", body);
    }

    /// A scan from a scanner or from manual entry: a `scan` event with the code's kind; for
    /// a WeChat member code, the lookup and a `card` event.
    pub async fn on_scan(&self, scanner: &str, code: &str, symbology: Option<Symbology>) -> Answer {
        let kind = lock(&self.classifier).classify(code, symbology);
        let kind_name = match kind {
            CodeKind::WechatMemberCode => "wechat_member_code",
            CodeKind::MerchantCardNumber => "merchant_card_number",
            CodeKind::Other => "other",
        };
        self.publish(
            "scan",
            json!({
                "scanner": scanner,
                "code": code,
                "symbology": symbology.map(|s| s.to_string()),
                "kind": kind_name,
            }),
        );
        match kind {
            CodeKind::WechatMemberCode => {
                let lookup = self.lookup(code, None).await?;
                self.screen.show_lookup(&lookup);
                if self.pay_code_after_scan && matches!(lookup.answer, LookupAnswer::Card { .. }) {
                    // Let the customer read the card first, then the pay code (the demo).
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    if let Err(e) = self.screen.show_pay_code(&self.service, code).await {
                        log::warn!("pay code for the scanned card: {e}");
                    }
                }
                Ok(to_value(&lookup))
            }
            CodeKind::MerchantCardNumber => {
                match self.service.lookup_card_code(code).await.map_err(failed)? {
                    Some(lookup) => {
                        self.publish("card", to_value(&lookup));
                        self.screen.show_lookup(&lookup);
                        Ok(to_value(&lookup))
                    }
                    None => {
                        self.screen.show(Screen::Message(Message::Info(
                            "请出示微信会员卡 Please show your WeChat member card".into(),
                        )));
                        Ok(json!({"code": code, "kind": kind_name, "looked_up": false,
                                  "reason": "card number not seen before: scan the WeChat member code"}))
                    }
                }
            }
            CodeKind::Other => Ok(json!({"code": code, "kind": kind_name, "looked_up": false})),
        }
    }

    async fn lookup(
        &self,
        wx_code: &str,
        card_id: Option<&str>,
    ) -> Result<Lookup, (ErrorCode, String)> {
        let lookup = self
            .service
            .lookup(wx_code, card_id)
            .await
            .map_err(failed)?;
        self.publish("card", to_value(&lookup));
        Ok(lookup)
    }

    fn status(&self, service: Value) -> Value {
        let scanners: Vec<Value> = lock(&self.scanners).values().cloned().collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "service": service,
            "scanners": scanners,
            "displays": self.screen.backends(),
            "kiosk_url": wxcard_hal::display::web::current_url(),
            "control_web": crate::control::web::current(),
        })
    }
}

impl Handler for Engine {
    async fn handle(&self, command: Command) -> Answer {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(self);
        match command {
            Command::Lookup(p) => Ok(to_value(
                &self.lookup(&p.wx_code, p.card_id.as_deref()).await?,
            )),
            Command::Activate(p) => write_answer(self.service.activate(p.member).await),
            Command::Create(p) => write_answer(self.service.create(p.member).await),
            Command::Issue(p) => write_answer(self.service.issue(p.order).await),
            Command::PayCodeShow(p) => {
                match self.screen.show_pay_code(&self.service, &p.wx_code).await {
                    Ok(code) => Ok(json!({
                        "wx_code": p.wx_code,
                        "pay_code": code,
                        "displays": self.screen.backends(),
                    })),
                    Err(e) => Err((ErrorCode::Failed, e.to_string())),
                }
            }
            Command::PayCodeClear | Command::DisplayIdle => {
                self.screen.show(Screen::Idle);
                Ok(json!({"screen": "idle", "displays": self.screen.backends()}))
            }
            Command::DisplayMessage(p) => {
                let message = match p.level {
                    MessageLevel::Info => Message::Info(p.text),
                    MessageLevel::Error => Message::Error(p.text),
                };
                self.screen.show(Screen::Message(message));
                Ok(json!({"screen": "message", "displays": self.screen.backends()}))
            }
            Command::Scan(p) => self.on_scan(&p.scanner, &p.code, None).await,
            Command::Status => {
                let status = self.service.status().await.map_err(failed)?;
                Ok(self.status(to_value(&status)))
            }
            Command::OutboxList => {
                let rows = self.service.outbox_list().await.map_err(failed)?;
                Ok(json!({"entries": rows}))
            }
            Command::OutboxRetry(p) => {
                self.service.outbox_retry(p.entry).await.map_err(failed)?;
                Ok(json!({"entry": p.entry, "retried": true}))
            }
            Command::OutboxDrop(p) => {
                let dropped = self.service.outbox_drop(p.entry).await.map_err(failed)?;
                if dropped {
                    Ok(json!({"entry": p.entry, "dropped": true}))
                } else {
                    Err((ErrorCode::Failed, format!("no dead letter {}", p.entry)))
                }
            }
            Command::Subscribe => Err((ErrorCode::Failed, "handled by the server".into())),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_answer(result: Result<WriteOutcome, ServiceError>) -> Answer {
    result.map(|o| to_value(&o)).map_err(failed)
}

fn failed(e: ServiceError) -> (ErrorCode, String) {
    match e {
        ServiceError::Invalid(_) => (ErrorCode::BadParams, e.to_string()),
        _ => (ErrorCode::Failed, e.to_string()),
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
