//! The customer display as the daemon uses it: one current screen, shown by every configured
//! backend through a driver task of its own, and the pay-code refresher.
//!
//! Displays are devices like scanners: each backend is opened by its own task, retried with
//! backoff while it cannot open (a framebuffer that appears late at boot), drawn with the
//! current screen as soon as it opens, and reported in `status` and by `display` events. One
//! that fails never takes the others down. On SIGHUP an unchanged backend keeps running; a
//! changed one is closed before its replacement opens (a kiosk port must be free to bind
//! again), and the log says which backends work afterwards.
//!
//! Every screen carries the `scan_id` of the scan that caused it (none for the POS app's
//! screens). The display only moves forward: a screen for an older scan never replaces that
//! of a newer one. Each backend reports the scan id of the screen it last drew, which is how
//! `status` (and the ordering tests) know what the customer really sees.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use wxcard_hal::display::driver::{Shows, drive_reporting};
use wxcard_hal::display::{
    self, BackendKind, CardSummary, CustomerDisplay, DisplayConfig, DisplayError, MaskedCardNumber,
    Message, Screen,
};

use super::paycode::{self, FirstCode, PayCodeConfig};
use crate::api::ApiError;
use crate::control::protocol::Event;
use crate::service::{CardService, Lookup, LookupAnswer};

/// The first wait before reopening a display that would not open; doubled up to
/// [`OPEN_RETRY_MAX`].
const OPEN_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between attempts to open a display.
const OPEN_RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a reload waits for a reopened backend before it reports it as failing.
const RELOAD_WAIT: Duration = Duration::from_secs(3);

/// A screen and the scan that caused it.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The screen.
    pub screen: Screen,
    /// The scan it shows the outcome of; `None` for screens the POS app asked for.
    pub scan_id: Option<u64>,
    /// Counts every screen published, so a backend's report says which one it drew.
    pub seq: u64,
}

impl Shows for Shown {
    fn screen(&self) -> &Screen {
        &self.screen
    }
}

/// Why a screen for a scan was not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superseded;

/// One backend's state, as `status` and `display` events report it.
#[derive(Debug, Clone, PartialEq)]
struct BackendState {
    /// `opening`, `open`, `failing` (could not open or draw; retried) or `closed`.
    state: &'static str,
    reason: Option<String>,
    /// The scan id of the screen it last drew.
    scan_id: Option<u64>,
    /// The `seq` of the screen it last drew.
    seq: u64,
}

struct Backend {
    kind: BackendKind,
    config: DisplayConfig,
    screens: watch::Sender<Shown>,
    state: watch::Receiver<BackendState>,
    task: JoinHandle<()>,
}

/// The customer display.
pub struct CustomerScreen {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
}

struct Inner {
    current: Shown,
    /// The newest scan whose screen was shown.
    last_scan: u64,
    config: DisplayConfig,
    paycode: PayCodeConfig,
    refresher: Option<JoinHandle<()>>,
    backends: Vec<Backend>,
}

fn kind_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Framebuffer => "framebuffer",
        BackendKind::Terminal => "terminal",
        BackendKind::Web => "web",
        BackendKind::Png => "png",
    }
}

/// Whether a backend of `kind` draws the same under `a` and `b` (its own section and the
/// texts every backend draws).
fn same_backend(kind: BackendKind, a: &DisplayConfig, b: &DisplayConfig) -> bool {
    let section = match kind {
        BackendKind::Framebuffer => a.framebuffer == b.framebuffer,
        BackendKind::Terminal => a.terminal == b.terminal,
        BackendKind::Web => a.web == b.web,
        BackendKind::Png => a.png == b.png,
    };
    let font = match kind {
        BackendKind::Framebuffer | BackendKind::Png => {
            a.font == b.font && a.font_face == b.font_face
        }
        BackendKind::Terminal | BackendKind::Web => true,
    };
    section
        && font
        && a.shop_name == b.shop_name
        && a.labels == b.labels
        && (a.accent, &a.logo, a.dpi, a.diagonal_in) == (b.accent, &b.logo, b.dpi, b.diagonal_in)
}

impl Backend {
    fn start(
        kind: BackendKind,
        config: &DisplayConfig,
        current: Shown,
        events: broadcast::Sender<Event>,
    ) -> Backend {
        let (screens, rx) = watch::channel(current);
        let (state_tx, state) = watch::channel(BackendState {
            state: "opening",
            reason: None,
            scan_id: None,
            seq: 0,
        });
        let task = tokio::spawn(run_backend(kind, config.clone(), rx, state_tx, events));
        Backend {
            kind,
            config: config.clone(),
            screens,
            state,
            task,
        }
    }

    /// Closes the backend and waits until its device (or port) is released.
    async fn close(self) {
        drop(self.screens);
        let _ = self.task.await;
    }

    fn report(&self) -> Value {
        let s = self.state.borrow();
        json!({"backend": kind_name(self.kind), "state": s.state, "reason": s.reason,
               "scan_id": s.scan_id})
    }
}

/// Records a backend's state; a change of `state` (not of what it draws) is logged and
/// published as a `display` event.
fn set_state(
    kind: BackendKind,
    tx: &watch::Sender<BackendState>,
    events: &broadcast::Sender<Event>,
    new: BackendState,
) {
    let old = tx.send_replace(new.clone());
    if old.state == new.state && old.reason == new.reason {
        return;
    }
    let name = kind_name(kind);
    match (new.state, &new.reason) {
        ("failing", Some(reason)) => log::warn!("customer display {name}: {reason}"),
        (state, _) => log::info!("customer display {name}: {state}"),
    }
    super::engine::publish(
        events,
        "display",
        json!({"backend": name, "state": new.state, "reason": new.reason}),
    );
}

/// Opens one backend, retrying with backoff, then keeps it on the current screen until its
/// screen sender is dropped.
async fn run_backend(
    kind: BackendKind,
    config: DisplayConfig,
    mut screens: watch::Receiver<Shown>,
    state: watch::Sender<BackendState>,
    events: broadcast::Sender<Event>,
) {
    let texts = config.texts();
    let mut wait = OPEN_RETRY_FIRST;
    let report = {
        let state = state.clone();
        let events = events.clone();
        move |shown: &Shown, result: Result<(), &DisplayError>| {
            let new = match result {
                Ok(()) => BackendState {
                    state: "open",
                    reason: None,
                    scan_id: shown.scan_id,
                    seq: shown.seq,
                },
                Err(e) => BackendState {
                    state: "failing",
                    reason: Some(e.to_string()),
                    ..state.borrow().clone()
                },
            };
            set_state(kind, &state, &events, new);
        }
    };
    loop {
        // Opening is quick (a device node, a bind); the web backend must be opened inside
        // the runtime, so it happens here rather than on the blocking pool.
        let opened = if kind == BackendKind::Web {
            display::web::WebDisplay::start(&config.web, texts.clone()).map(|w| {
                let w = w
                    .with_accent(config.accent)
                    .with_logo(config.logo.as_deref());
                Opened::Web(Box::new(w))
            })
        } else {
            display::open_one(kind, &config, &texts).map(Opened::Other)
        };
        match opened {
            Ok(Opened::Web(web)) => {
                let web = drive_reporting(web, screens, report).await;
                // Waits until the port is free, so a replacement can bind it at once.
                (*web).stop().await;
                break;
            }
            Ok(Opened::Other(other)) => {
                drop(drive_reporting(other, screens, report).await);
                break;
            }
            Err(e) => {
                let new = BackendState {
                    state: "failing",
                    reason: Some(format!("cannot open: {e}; retrying")),
                    ..state.borrow().clone()
                };
                set_state(kind, &state, &events, new);
                // Wait, unless the backend is closed meanwhile.
                let closed = tokio::select! {
                    () = tokio::time::sleep(wait) => false,
                    closed = async {
                        loop {
                            if screens.changed().await.is_err() {
                                return true;
                            }
                        }
                    } => closed,
                };
                if closed {
                    break;
                }
                wait = (wait * 2).min(OPEN_RETRY_MAX);
            }
        }
    }
    let new = BackendState {
        state: "closed",
        reason: None,
        ..state.borrow().clone()
    };
    set_state(kind, &state, &events, new);
}

enum Opened {
    Web(Box<display::web::WebDisplay>),
    Other(Box<dyn CustomerDisplay>),
}

impl CustomerScreen {
    /// Starts a task for every configured display on the idle screen; none of them holds up
    /// the caller, and one that cannot open is retried.
    pub fn start(
        config: &DisplayConfig,
        paycode: PayCodeConfig,
        events: broadcast::Sender<Event>,
    ) -> Arc<Self> {
        let current = Shown {
            screen: Screen::Idle,
            scan_id: None,
            seq: 0,
        };
        let backends = config
            .backends
            .iter()
            .map(|kind| Backend::start(*kind, config, current.clone(), events.clone()))
            .collect();
        Arc::new(CustomerScreen {
            inner: Mutex::new(Inner {
                current,
                last_scan: 0,
                config: config.clone(),
                paycode,
                refresher: None,
                backends,
            }),
            events,
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many display backends are open and drawing.
    pub fn backends(&self) -> usize {
        self.inner()
            .backends
            .iter()
            .filter(|b| b.state.borrow().state == "open")
            .count()
    }

    /// The names of the backends that are open and drawing.
    pub fn working(&self) -> Vec<&'static str> {
        self.inner()
            .backends
            .iter()
            .filter(|b| b.state.borrow().state == "open")
            .map(|b| kind_name(b.kind))
            .collect()
    }

    /// Waits (at most `limit`) until every backend that is not failing has drawn the
    /// current screen; returns the names of those that did.
    pub async fn drawn_by(&self, limit: Duration) -> Vec<&'static str> {
        let (seq, states) = {
            let inner = self.inner();
            let states: Vec<_> = inner
                .backends
                .iter()
                .map(|b| (kind_name(b.kind), b.state.clone()))
                .collect();
            (inner.current.seq, states)
        };
        let mut drawn = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        for (name, mut state) in states {
            let done = tokio::time::timeout_at(
                deadline,
                state.wait_for(|s| s.seq >= seq || s.state == "failing" || s.state == "closed"),
            )
            .await;
            if matches!(done, Ok(Ok(ref s)) if s.seq >= seq) {
                drawn.push(name);
            }
        }
        drawn
    }

    /// Whether any display is configured at all.
    pub fn configured(&self) -> bool {
        !self.inner().backends.is_empty()
    }

    /// Every configured backend with its state and the scan id of what it last drew.
    pub fn report(&self) -> Value {
        Value::Array(self.inner().backends.iter().map(Backend::report).collect())
    }

    /// The current screen: its kind and the scan that caused it.
    pub fn current(&self) -> Value {
        let inner = self.inner();
        let kind = match &inner.current.screen {
            Screen::Blank => "blank",
            Screen::Idle => "idle",
            Screen::Card(_) => "card",
            Screen::PayCode(_) => "paycode",
            Screen::Message(_) => "message",
        };
        json!({"kind": kind, "scan_id": inner.current.scan_id})
    }

    fn publish(inner: &mut Inner, screen: Screen, scan_id: Option<u64>) {
        let shown = Shown {
            screen,
            scan_id,
            seq: inner.current.seq + 1,
        };
        for backend in &inner.backends {
            backend.screens.send_replace(shown.clone());
        }
        inner.current = shown;
    }

    /// Shows a screen the POS app asked for, closing any pay screen.
    pub fn show(&self, screen: Screen) {
        let mut inner = self.inner();
        if let Some(task) = inner.refresher.take() {
            task.abort();
        }
        Self::publish(&mut inner, screen, None);
    }

    /// Shows the outcome of scan `scan_id`, unless a newer scan's screen was shown already
    /// (the display only moves forward).
    pub fn show_for_scan(&self, scan_id: u64, screen: Screen) -> Result<(), Superseded> {
        let mut inner = self.inner();
        if scan_id < inner.last_scan {
            log::debug!(
                "screen of scan {scan_id} not shown: scan {} is newer",
                inner.last_scan
            );
            return Err(Superseded);
        }
        inner.last_scan = scan_id;
        if let Some(task) = inner.refresher.take() {
            task.abort();
        }
        Self::publish(&mut inner, screen, Some(scan_id));
        Ok(())
    }

    /// Whether the screen is still the one scan `scan_id` caused.
    pub fn shows_scan(&self, scan_id: u64) -> bool {
        self.inner().current.scan_id == Some(scan_id)
    }

    /// Shows what a scan found.
    pub fn show_lookup(&self, scan_id: u64, lookup: &Lookup) -> Result<(), Superseded> {
        self.show_for_scan(scan_id, screen_for(lookup))
    }

    /// Opens the pay screen for `wx_code`: the first code now, refreshed in the background
    /// until [`CustomerScreen::show`] replaces it.
    pub async fn show_pay_code(
        self: &Arc<Self>,
        service: &CardService,
        wx_code: &str,
    ) -> Result<String, ApiError> {
        let config = {
            let mut inner = self.inner();
            if let Some(task) = inner.refresher.take() {
                task.abort();
            }
            inner.paycode.clone()
        };
        let fetch = {
            let service = service.clone();
            let wx = wx_code.to_owned();
            move || {
                let service = service.clone();
                let wx = wx.clone();
                async move { service.pay_code(&wx).await.map(|c| c.0) }
            }
        };
        let publish = {
            let me = Arc::downgrade(self);
            move |screen: Screen| {
                if let Some(me) = me.upgrade() {
                    Self::publish(&mut me.inner(), screen, None);
                }
            }
        };
        let (first, refresh) = paycode::open(config, fetch, publish).await;
        match first {
            FirstCode::Shown(code) => {
                self.inner().refresher = Some(tokio::spawn(refresh));
                Ok(code)
            }
            FirstCode::Failed(e) => Err(e),
        }
    }

    /// Applies a reloaded `[display]` and `[paycode]`. A backend whose settings did not
    /// change keeps running; one that changed or went away is closed (its device or port
    /// released) before the new set opens. Returns what the log says: which backends work.
    pub async fn reload(&self, config: &DisplayConfig, paycode: PayCodeConfig) -> String {
        let (to_close, current) = {
            let mut inner = self.inner();
            inner.paycode = paycode;
            if inner.config == *config {
                return "customer display unchanged".into();
            }
            let old = std::mem::take(&mut inner.backends);
            let (keep, close): (Vec<_>, Vec<_>) = old.into_iter().partition(|b| {
                config.backends.contains(&b.kind) && same_backend(b.kind, &b.config, config)
            });
            inner.backends = keep;
            inner.config = config.clone();
            (close, inner.current.clone())
        };
        for backend in to_close {
            backend.close().await;
        }
        let mut opened = Vec::new();
        {
            let mut inner = self.inner();
            let mut backends = Vec::new();
            for kind in &config.backends {
                match inner.backends.iter().position(|b| b.kind == *kind) {
                    Some(i) => backends.push(inner.backends.remove(i)),
                    None => {
                        let b = Backend::start(*kind, config, current.clone(), self.events.clone());
                        opened.push(b.state.clone());
                        backends.push(b);
                    }
                }
            }
            inner.backends = backends;
        }
        // Report what is true: wait (a little) for the reopened backends to open.
        for mut state in opened {
            let _ = tokio::time::timeout(RELOAD_WAIT, state.wait_for(|s| s.state == "open")).await;
        }
        let report: Vec<String> = self
            .inner()
            .backends
            .iter()
            .map(|b| {
                let s = b.state.borrow();
                match &s.reason {
                    Some(reason) => format!("{} {} ({reason})", kind_name(b.kind), s.state),
                    None => format!("{} {}", kind_name(b.kind), s.state),
                }
            })
            .collect();
        let working = self.backends();
        let total = config.backends.len();
        let line = format!(
            "customer display reloaded: {working} of {total} backend(s) working{}{}",
            if report.is_empty() { "" } else { ": " },
            report.join(", ")
        );
        if working < total {
            log::warn!("{line}");
        } else {
            log::info!("{line}");
        }
        line
    }

    /// Leaves the display on the idle screen and stops driving it (at shutdown).
    pub async fn stop(&self) {
        self.show(Screen::Idle);
        let backends = std::mem::take(&mut self.inner().backends);
        for backend in backends {
            // The driver shows the idle screen before it sees its sender gone.
            backend.close().await;
        }
    }
}

/// The screen a lookup leads to. The customer sees the card even when it came from the
/// cache; the cashier sees the staleness in the POS.
pub fn screen_for(lookup: &Lookup) -> Screen {
    match &lookup.answer {
        LookupAnswer::Card { card } => Screen::Card(CardSummary {
            card: MaskedCardNumber::new(&card.card_code),
            balance: card.balance.to_string(),
            // getmembercard does not report points: the line is left out.
            points: None,
            member_price: card.can_member_price,
            discount: card.discount.to_string(),
        }),
        LookupAnswer::CardState {
            status, meaning, ..
        } => Screen::Message(Message::Error(format!("{} {meaning}", status.meaning_zh()))),
        LookupAnswer::Rejected { status, .. } => Screen::Message(Message::Error(format!(
            "{} {}",
            status.meaning_zh(),
            status.meaning()
        ))),
        LookupAnswer::Offline { .. } => Screen::Message(Message::Error(
            "离线 Offline: 暂无会员信息 no card data".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxcard_hal::display::Colour;
    use wxcard_hal::display::config::Positive;

    #[test]
    fn a_changed_accent_logo_or_panel_size_reopens_every_backend_on_reload() {
        let a = DisplayConfig::default();
        let kinds = [
            BackendKind::Framebuffer,
            BackendKind::Terminal,
            BackendKind::Web,
            BackendKind::Png,
        ];
        for kind in kinds {
            assert!(same_backend(kind, &a, &a.clone()));
        }
        let changes: [fn(&mut DisplayConfig); 4] = [
            |c| c.accent = Colour(1, 2, 3),
            |c| c.logo = Some("/etc/wxcardd/logo.png".into()),
            |c| c.dpi = Some(Positive(133.0)),
            |c| c.diagonal_in = Some(Positive(7.0)),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            for kind in kinds {
                assert!(!same_backend(kind, &a, &b), "change {i}, {kind:?}");
            }
        }
    }
}
