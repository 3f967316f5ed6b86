//! The engine: carries out control requests and scans on the card service, and turns what
//! happens into events. It owns no policy: the service decides online/offline/cache.
//!
//! Scans keep their order. [`Engine::begin_scan`] runs in the order scans are read (the
//! scanner consumer calls it before it reads the next one): it gives the scan its `scan_id`
//! and publishes the `scan` event at once. The lookup then runs on its own, so a slow one
//! holds up no later scan event, but its outcome (the screen, then the `card` event) waits
//! until every earlier scan's outcome is out: each scan holds a baton the next one waits
//! for. The display therefore only moves forward, and `card` events leave in scan order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, oneshot};
use wxcard_hal::display::{Message, Screen};
use wxcard_hal::scanner::{Classifier, CodeKind, Symbology};

use super::display::CustomerScreen;
use crate::control::protocol::{Command, ErrorCode, Event, EventLine, MessageLevel};
use crate::control::server::{Answer, Handler};
use crate::service::{CardService, Lookup, LookupAnswer, ServiceError, WriteOutcome};

/// The daemon's request handler and event source.
pub struct Engine {
    service: CardService,
    events: broadcast::Sender<Event>,
    classifier: Mutex<Arc<Classifier>>,
    scanners: Mutex<BTreeMap<String, Value>>,
    screen: Arc<CustomerScreen>,
    pay_code_after_scan: bool,
    show_other_codes: bool,
    started: Instant,
    in_flight: AtomicUsize,
    idle: Notify,
    next_scan_id: AtomicU64,
    /// Resolves when the latest scan's outcome is out (or its task is gone).
    last_scan_done: Mutex<Option<oneshot::Receiver<()>>>,
}

/// A scan whose `scan` event is out and whose outcome is yet to come.
pub struct ScanTicket {
    /// The scan's id, monotonic within a daemon run.
    pub id: u64,
    scanner: String,
    code: String,
    kind: CodeKind,
    /// Resolves when the previous scan's outcome is out.
    previous: Option<oneshot::Receiver<()>>,
    /// Dropped (with the ticket) once this scan's outcome is out: lets the next one go.
    _done: oneshot::Sender<()>,
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
        events: broadcast::Sender<Event>,
        classifier: Classifier,
        screen: Arc<CustomerScreen>,
        pay_code_after_scan: bool,
        show_other_codes: bool,
    ) -> Self {
        Engine {
            service,
            events,
            classifier: Mutex::new(Arc::new(classifier)),
            scanners: Mutex::new(BTreeMap::new()),
            screen,
            pay_code_after_scan,
            show_other_codes,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            next_scan_id: AtomicU64::new(1),
            last_scan_done: Mutex::new(None),
        }
    }

    /// The card service.
    pub fn service(&self) -> &CardService {
        &self.service
    }

    /// Publishes an event line to subscribers (dropped when nobody listens).
    pub fn publish(&self, event: &str, body: Value) {
        publish(&self.events, event, body);
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
                    self.publish(event.channel(), to_value(&event));
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

    /// A scan from a scanner or from manual entry, in the order scans are read: its
    /// `scan_id` and `scan` event now, its outcome from [`Engine::finish_scan`].
    pub fn begin_scan(
        &self,
        scanner: &str,
        code: &str,
        symbology: Option<Symbology>,
    ) -> ScanTicket {
        let kind = lock(&self.classifier).classify(code, symbology);
        let (done, next_waits) = oneshot::channel();
        // One lock around the id and the baton: ids and batons are handed out in one order.
        let mut last = lock(&self.last_scan_done);
        let id = self.next_scan_id.fetch_add(1, Ordering::SeqCst);
        let previous = last.replace(next_waits);
        // Written from a struct: the one event every scan has, with `card` (no `Value`).
        #[derive(Serialize)]
        struct ScanEvent<'a> {
            scan_id: u64,
            scanner: &'a str,
            code: &'a str,
            symbology: Option<String>,
            kind: &'static str,
        }
        let event = ScanEvent {
            scan_id: id,
            scanner,
            code,
            symbology: symbology.map(|s| s.to_string()),
            kind: kind_name(kind),
        };
        crate::metrics::global().on_scan(scanner, event.kind);
        let _ = self.events.send(Event::new(EventLine::new("scan", &event)));
        drop(last);
        ScanTicket {
            id,
            scanner: scanner.to_owned(),
            code: code.to_owned(),
            kind,
            previous,
            _done: done,
        }
    }

    /// Looks a scanned code up (for a WeChat member code or a known card number) and, once
    /// every earlier scan's outcome is out, shows it and publishes the `card` event.
    pub async fn finish_scan(&self, ticket: ScanTicket) -> Answer {
        self.finish(ticket, true).await
    }

    /// [`Engine::finish_scan`] for a scanner's scan, whose answer nobody reads: the `card`
    /// event is published without a copy of it kept for an answer.
    pub async fn finish_scanned(&self, ticket: ScanTicket) {
        let _ = self.finish(ticket, false).await;
    }

    async fn finish(&self, mut ticket: ScanTicket, answer_wanted: bool) -> Answer {
        let scan_id = ticket.id;
        let code = ticket.code.clone();
        let kind_name = kind_name(ticket.kind);
        // The lookup runs now, concurrently with earlier scans' lookups.
        let found = match ticket.kind {
            CodeKind::WechatMemberCode => Some(self.service.lookup(&code, None).await.map(Some)),
            CodeKind::MerchantCardNumber => Some(self.service.lookup_card_code(&code).await),
            CodeKind::Other => None,
        };
        if let Some(previous) = ticket.previous.take() {
            // An error only means the earlier scan's task ended: its outcome is out too.
            let _ = previous.await;
        }
        let answer = match found {
            None => {
                if self.show_other_codes {
                    let _ = self.screen.show_for_scan(
                        scan_id,
                        Screen::Message(Message::Info(format!(
                            "不是会员码 Not a member card code: {code}"
                        ))),
                    );
                }
                Ok(json!({"scan_id": scan_id, "code": code, "kind": kind_name,
                          "looked_up": false}))
            }
            Some(Err(e)) => Err(failed(e)),
            Some(Ok(Some(lookup))) => {
                // The screen first, then the event: whoever sees the `card` event finds the
                // screen already on it.
                let shown = self.screen.show_lookup(scan_id, &lookup).is_ok();
                publish_card(&self.events, Some(scan_id), &lookup);
                let card = if answer_wanted {
                    let mut card = to_value(&lookup);
                    card["scan_id"] = json!(scan_id);
                    card
                } else {
                    Value::Null
                };
                if shown
                    && self.pay_code_after_scan
                    && ticket.kind == CodeKind::WechatMemberCode
                    && matches!(lookup.answer, LookupAnswer::Card { .. })
                {
                    self.pay_code_later(scan_id, code.clone());
                }
                Ok(card)
            }
            Some(Ok(None)) => {
                let _ = self.screen.show_for_scan(
                    scan_id,
                    Screen::Message(Message::Info(
                        "请出示微信会员卡 Please show your WeChat member card".into(),
                    )),
                );
                Ok(
                    json!({"scan_id": scan_id, "code": code, "kind": kind_name, "looked_up": false,
                          "reason": "card number not seen before: scan the WeChat member code"}),
                )
            }
        };
        log::debug!("scan {scan_id} from {:?} done", ticket.scanner);
        drop(ticket);
        answer
    }

    /// Opens the pay screen of a scanned card after the customer had time to read the card
    /// (the demo), unless another screen replaced the card meanwhile.
    fn pay_code_later(&self, scan_id: u64, code: String) {
        let screen = Arc::clone(&self.screen);
        let service = self.service.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            if !screen.shows_scan(scan_id) {
                return;
            }
            if let Err(e) = screen.show_pay_code(&service, &code).await {
                log::warn!("pay code for the scanned card: {e}");
            }
        });
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
        publish_card(&self.events, None, &lookup);
        Ok(lookup)
    }

    fn status(&self, service: Value) -> Value {
        let scanners: Vec<Value> = lock(&self.scanners).values().cloned().collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "till": crate::metrics::global().till(),
            "uptime_s": self.started.elapsed().as_secs(),
            "service": service,
            "scanners": scanners,
            "displays": self.screen.backends(),
            "kiosk_url": wxcard_hal::display::web::current_url(),
            "display_backends": self.screen.report(),
            "display_font": wxcard_hal::display::font_in_use(),
            "screen": self.screen.current(),
            "control_web": crate::control::web::current(),
            "runtime": super::runtime_report(),
        })
    }
}

/// Counts an event for the metrics and sends it to subscribers (dropped when nobody listens).
/// Counted here, where it is made, rather than by a subscriber task: no count is lost to a
/// lagging receiver, and no task wakes twice per scan to count (BENCHMARKS.md, "Issue 12",
/// part 8).
pub(super) fn publish(events: &broadcast::Sender<Event>, event: &str, body: Value) {
    crate::metrics::global().on_event(event, &body);
    let _ = events.send(Event::new(EventLine::new(event, &body)));
}

/// The `card` event of a lookup, written from the lookup itself (the one event every scan
/// has, with `scan`: no `Value` built for it), and counted.
fn publish_card(events: &broadcast::Sender<Event>, scan_id: Option<u64>, lookup: &Lookup) {
    #[derive(Serialize)]
    struct CardEvent<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        scan_id: Option<u64>,
        #[serde(flatten)]
        lookup: &'a Lookup,
    }
    crate::metrics::global().on_lookup(lookup.source.as_str(), lookup.answer.outcome());
    let line = EventLine::new("card", &CardEvent { scan_id, lookup });
    let _ = events.send(Event::new(line));
}

fn kind_name(kind: CodeKind) -> &'static str {
    match kind {
        CodeKind::WechatMemberCode => "wechat_member_code",
        CodeKind::MerchantCardNumber => "merchant_card_number",
        CodeKind::Other => "other",
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
                if !self.screen.configured() {
                    return Err((
                        ErrorCode::Failed,
                        "no customer display is configured ([display] backends is empty): \
                         the pay code was not shown"
                            .into(),
                    ));
                }
                match self.screen.show_pay_code(&self.service, &p.wx_code).await {
                    Ok(code) => {
                        let shown_on = self
                            .screen
                            .drawn_by(std::time::Duration::from_secs(2))
                            .await;
                        if shown_on.is_empty() {
                            return Err((
                                ErrorCode::Failed,
                                format!(
                                    "no customer display is working, the pay code was not \
                                     shown: {}",
                                    self.screen.report()
                                ),
                            ));
                        }
                        Ok(json!({
                            "wx_code": p.wx_code,
                            "pay_code": code,
                            "displays": shown_on.len(),
                            "shown_on": shown_on,
                        }))
                    }
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
            Command::Scan(p) => {
                let ticket = self.begin_scan(&p.scanner, &p.code, None);
                self.finish_scan(ticket).await
            }
            Command::Status => {
                let status = self.service.status().await.map_err(failed)?;
                Ok(self.status(to_value(&status)))
            }
            Command::OutboxList => {
                let rows = self.service.outbox_list().await.map_err(failed)?;
                Ok(json!({"entries": rows}))
            }
            Command::OutboxRetry(p) => {
                let was = self.service.outbox_retry(p.entry).await.map_err(failed)?;
                Ok(json!({"entry": p.entry, "retried": true, "was": was}))
            }
            Command::OutboxDrop(p) => {
                let was = self.service.outbox_drop(p.entry).await.map_err(failed)?;
                Ok(json!({"entry": p.entry, "dropped": true, "was": was}))
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
