//! The customer display as the daemon uses it: one current screen, published on a watch
//! channel that hal's driver shows (with the live countdown), and the pay-code refresher.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxcard_hal::display::{
    self, CardSummary, DisplayConfig, Displays, MaskedCardNumber, Message, Screen,
};

use super::paycode::{self, FirstCode, PayCodeConfig};
use crate::api::ApiError;
use crate::service::{CardService, Lookup, LookupAnswer};

/// The customer display.
pub struct CustomerScreen {
    inner: Mutex<Inner>,
}

struct Inner {
    screens: watch::Sender<Screen>,
    driver: Option<JoinHandle<Displays>>,
    config: DisplayConfig,
    paycode: PayCodeConfig,
    refresher: Option<JoinHandle<()>>,
    backends: usize,
}

fn start_driver(
    config: &DisplayConfig,
) -> (watch::Sender<Screen>, Option<JoinHandle<Displays>>, usize) {
    let (tx, rx) = watch::channel(Screen::Idle);
    if config.backends.is_empty() {
        return (tx, None, 0);
    }
    match display::open(config) {
        Ok(displays) => {
            let n = displays.len();
            (
                tx,
                Some(tokio::spawn(display::driver::drive(displays, rx))),
                n,
            )
        }
        Err(e) => {
            log::error!("customer display cannot be opened: {e}; running without it");
            (tx, None, 0)
        }
    }
}

impl CustomerScreen {
    /// Opens the configured displays (a failure is logged, never fatal) on the idle screen.
    pub fn start(config: &DisplayConfig, paycode: PayCodeConfig) -> Arc<Self> {
        let (screens, driver, backends) = start_driver(config);
        Arc::new(CustomerScreen {
            inner: Mutex::new(Inner {
                screens,
                driver,
                config: config.clone(),
                paycode,
                refresher: None,
                backends,
            }),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many display backends are running.
    pub fn backends(&self) -> usize {
        self.inner().backends
    }

    /// Shows a screen, closing any pay screen.
    pub fn show(&self, screen: Screen) {
        let mut inner = self.inner();
        if let Some(task) = inner.refresher.take() {
            task.abort();
        }
        inner.screens.send_replace(screen);
    }

    /// Shows what a scan found.
    pub fn show_lookup(&self, lookup: &Lookup) {
        self.show(screen_for(lookup));
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
                    me.inner().screens.send_replace(screen);
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

    /// Applies a reloaded `[display]` and `[paycode]`: reopens the displays only if
    /// `[display]` changed, keeping the current screen.
    pub async fn reload(&self, config: &DisplayConfig, paycode: PayCodeConfig) {
        let old_driver = {
            let mut inner = self.inner();
            inner.paycode = paycode;
            if inner.config == *config {
                return;
            }
            let current = inner.screens.borrow().clone();
            let (screens, driver, backends) = start_driver(config);
            screens.send_replace(current);
            inner.config = config.clone();
            inner.backends = backends;
            // Dropping the old sender ends the old driver, which hands its displays back.
            inner.screens = screens;
            std::mem::replace(&mut inner.driver, driver)
        };
        if let Some(old) = old_driver {
            drop(old.await);
        }
        log::info!("customer display reloaded");
    }

    /// Leaves the display on the idle screen and stops driving it (at shutdown).
    pub async fn stop(&self) {
        self.show(Screen::Idle);
        let driver = {
            let mut inner = self.inner();
            let (tx, _) = watch::channel(Screen::Idle);
            // Replacing the sender drops the driver's: it shows the idle screen, then ends.
            inner.screens = tx;
            inner.driver.take()
        };
        if let Some(driver) = driver {
            drop(driver.await);
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
            // getmembercard does not report points.
            points: "-".into(),
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
