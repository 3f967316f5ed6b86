//! The pay-code lifecycle: fetch a code, show it, refresh it shortly before it expires for as
//! long as the POS keeps the pay screen open.
//!
//! On 606/704 (the code expired at the backend) a fresh code is fetched once, then the error
//! is shown. Offline, the screen says so: a stale pay code is never shown. The fetch is a
//! parameter so the timing is tested with tokio's paused clock.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wxcard_hal::display::{Message, PayCode, Screen, driver};

use crate::api::{ApiError, Status};

/// `[paycode]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayCodeConfig {
    /// How long a pay code is valid after it was fetched, in seconds (the backend does not
    /// say; set it to the backend's lifetime).
    pub ttl_s: u64,
    /// How long before expiry a fresh code is fetched, in seconds.
    pub refresh_before_s: u64,
}

impl Default for PayCodeConfig {
    fn default() -> Self {
        PayCodeConfig {
            ttl_s: 60,
            refresh_before_s: 5,
        }
    }
}

impl PayCodeConfig {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_s)
    }

    /// How long a code is shown before the next fetch.
    fn refresh_after(&self) -> Duration {
        Duration::from_secs(self.ttl_s.saturating_sub(self.refresh_before_s).max(1))
    }
}

/// What the first fetch gave, for the request that opened the pay screen.
#[derive(Debug)]
pub enum FirstCode {
    /// Shown.
    Shown(String),
    /// Not shown; the screen shows why.
    Failed(ApiError),
}

fn expired_at_backend(e: &ApiError) -> bool {
    matches!(
        e.status(),
        Some(Status::CardPayCodeExpired | Status::PayCodeExpired)
    )
}

/// The screen for a failed fetch.
fn failure_screen(e: &ApiError) -> Screen {
    if e.is_unavailable() {
        Screen::Message(Message::Offline)
    } else {
        match e.status() {
            Some(status) => Screen::Message(Message::Error(format!(
                "{} {}",
                status.meaning_zh(),
                status.meaning()
            ))),
            None => Screen::Message(Message::Offline),
        }
    }
}

/// Fetches a code (retrying once on 606/704), shows it, and returns what happened.
async fn fetch_and_show<F, Fut>(
    config: &PayCodeConfig,
    fetch: &F,
    show: &impl Fn(Screen),
) -> Result<String, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, ApiError>>,
{
    let result = match fetch().await {
        Err(e) if expired_at_backend(&e) => fetch().await,
        other => other,
    };
    match result {
        Ok(code) => match PayCode::new(&code, driver::now() + config.ttl()) {
            Ok(pay) => {
                show(Screen::PayCode(pay));
                Ok(code)
            }
            // A code no QR can carry is the backend's fault: the POS is told, not "shown".
            Err(e) => {
                show(Screen::Message(Message::Error(format!("QR: {e}"))));
                Err(ApiError::Server {
                    endpoint: crate::api::Endpoint::GetPayCode,
                    fault: crate::api::ServerFault::BadData(format!(
                        "the pay code cannot be drawn as a QR code: {e}"
                    )),
                })
            }
        },
        Err(e) => {
            show(failure_screen(&e));
            Err(e)
        }
    }
}

/// Shows the first code and returns it; then keeps refreshing in the future it returns,
/// which ends when a fetch fails (the error stays on screen). Drop or abort that future to
/// close the pay screen.
pub async fn open<F, Fut, S>(
    config: PayCodeConfig,
    fetch: F,
    show: S,
) -> (FirstCode, impl Future<Output = ()>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, ApiError>>,
    S: Fn(Screen),
{
    let first = match fetch_and_show(&config, &fetch, &show).await {
        Ok(code) => FirstCode::Shown(code),
        Err(e) => FirstCode::Failed(e),
    };
    let keep = matches!(first, FirstCode::Shown(_));
    let refresh = async move {
        if !keep {
            return;
        }
        loop {
            tokio::time::sleep(config.refresh_after()).await;
            if fetch_and_show(&config, &fetch, &show).await.is_err() {
                return;
            }
        }
    };
    (first, refresh)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::api::{Endpoint, TransportKind};

    type Script = Arc<Mutex<VecDeque<Result<String, ApiError>>>>;

    /// A fetch answering from `script`, then "backend down".
    fn scripted_fetch(script: Script) -> impl Fn() -> std::future::Ready<Result<String, ApiError>> {
        move || {
            let next = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Err(down()));
            std::future::ready(next)
        }
    }

    fn business(status: Status) -> ApiError {
        ApiError::Business {
            endpoint: Endpoint::GetPayCode,
            status,
            message: String::new(),
        }
    }

    fn down() -> ApiError {
        ApiError::Transport {
            endpoint: Endpoint::GetPayCode,
            kind: TransportKind::Refused,
            detail: "refused".into(),
            elapsed: Duration::ZERO,
        }
    }

    fn describe(screen: &Screen) -> String {
        match screen {
            Screen::PayCode(p) => format!("code {}", p.code()),
            Screen::Message(Message::Offline) => "offline".into(),
            Screen::Message(Message::Error(e)) => format!("error {e}"),
            other => format!("{other:?}"),
        }
    }

    /// Opens a pay screen whose fetches answer from `script` (then "backend down"); returns
    /// the first code, the refresher, and the screens shown so far (described).
    async fn open_scripted(
        config: PayCodeConfig,
        script: Vec<Result<String, ApiError>>,
    ) -> (FirstCode, impl Future<Output = ()>, Arc<Mutex<Vec<String>>>) {
        let script: Script = Arc::new(Mutex::new(script.into()));
        let shown = Arc::new(Mutex::new(Vec::new()));
        let fetch = scripted_fetch(script);
        let log = Arc::clone(&shown);
        let (first, refresh) = open(config, fetch, move |s: Screen| {
            log.lock().unwrap().push(describe(&s))
        })
        .await;
        (first, refresh, shown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_code_is_refreshed_before_it_expires_until_the_screen_closes() {
        let config = PayCodeConfig {
            ttl_s: 60,
            refresh_before_s: 5,
        };
        let start = tokio::time::Instant::now();
        let (first, refresh, shown) = open_scripted(
            config,
            vec![
                Ok("111111111111111111".into()),
                Ok("222222222222222222".into()),
                Ok("333333333333333333".into()),
            ],
        )
        .await;
        assert!(matches!(first, FirstCode::Shown(ref c) if c == "111111111111111111"));
        let task = tokio::spawn(refresh);
        // Just before the refresh point nothing new; at 55 s the second code.
        tokio::time::sleep(Duration::from_secs(54)).await;
        assert_eq!(shown.lock().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            shown.lock().unwrap().last().unwrap(),
            "code 222222222222222222"
        );
        tokio::time::sleep(Duration::from_secs(55)).await;
        assert_eq!(
            shown.lock().unwrap().last().unwrap(),
            "code 333333333333333333"
        );
        assert!(start.elapsed() >= Duration::from_secs(110));
        // Closing the pay screen stops the refreshing.
        task.abort();
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(shown.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_code_is_fetched_again_once_then_the_error_is_shown() {
        let (first, _, shown) = open_scripted(
            PayCodeConfig::default(),
            vec![
                Err(business(Status::PayCodeExpired)),
                Ok("444444444444444444".into()),
            ],
        )
        .await;
        assert!(matches!(first, FirstCode::Shown(_)));
        assert_eq!(*shown.lock().unwrap(), ["code 444444444444444444"]);

        let (first, refresh, shown) = open_scripted(
            PayCodeConfig::default(),
            vec![
                Err(business(Status::CardPayCodeExpired)),
                Err(business(Status::CardPayCodeExpired)),
                Ok("never".into()),
            ],
        )
        .await;
        assert!(matches!(first, FirstCode::Failed(_)));
        refresh.await; // ends at once: nothing to refresh
        let shown = shown.lock().unwrap();
        assert_eq!(shown.len(), 1);
        assert!(shown[0].starts_with("error 卡付款码超时"), "{shown:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_code_too_long_for_a_qr_is_an_error_to_the_pos() {
        let (first, _, shown) =
            open_scripted(PayCodeConfig::default(), vec![Ok("9".repeat(10_000))]).await;
        assert!(
            matches!(first, FirstCode::Failed(ApiError::Server { .. })),
            "{first:?}"
        );
        assert!(
            shown.lock().unwrap()[0].starts_with("error QR"),
            "{shown:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn offline_shows_a_message_never_an_old_code() {
        let (_, refresh, shown) = open_scripted(
            PayCodeConfig::default(),
            vec![Ok("555555555555555555".into()), Err(down())],
        )
        .await;
        refresh.await; // the refresh fails offline and ends
        assert_eq!(
            *shown.lock().unwrap(),
            ["code 555555555555555555", "offline"]
        );
    }

    /// The countdown bar of every code starts full, the first one and the refreshed one alike,
    /// wherever tokio's paused clock stands against the std clock (here 10 min ahead, then
    /// 55 s more): the lifetime is measured on the clock its expiry was computed on.
    #[tokio::test(start_paused = true)]
    async fn every_code_starts_with_a_full_bar_under_paused_time() {
        tokio::time::advance(Duration::from_secs(600)).await;
        let script: Script = Arc::new(Mutex::new(
            vec![
                Ok("111111111111111111".into()),
                Ok("222222222222222222".into()),
            ]
            .into(),
        ));
        let fetch = scripted_fetch(script);
        // What the customer sees at the moment each code is shown.
        let bars = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&bars);
        let show = move |s: Screen| {
            if let Screen::PayCode(p) = &s {
                let view = wxcard_hal::display::View::of(
                    &s,
                    &wxcard_hal::display::Texts::default(),
                    driver::now(),
                );
                log.lock().unwrap().push((
                    p.code().to_owned(),
                    p.lifetime(),
                    view.remaining_ms,
                    view.lifetime_ms,
                ));
            }
        };
        let config = PayCodeConfig::default();
        let (first, refresh) = open(config.clone(), fetch, show).await;
        assert!(matches!(first, FirstCode::Shown(_)), "{first:?}");
        let task = tokio::spawn(refresh);
        tokio::time::sleep(config.refresh_after() + Duration::from_secs(1)).await;
        task.abort();
        let bars = bars.lock().unwrap();
        assert_eq!(bars.len(), 2, "{bars:?}");
        for (code, lifetime, remaining_ms, lifetime_ms) in bars.iter() {
            assert_eq!(*lifetime, config.ttl(), "{code}: {bars:?}");
            assert_eq!(
                remaining_ms, lifetime_ms,
                "{code}: the bar starts full: {bars:?}"
            );
        }
    }
}
