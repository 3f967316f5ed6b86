//! Keeps a display showing the latest screen, with a live countdown.
//!
//! The daemon publishes screens on a `tokio::sync::watch` channel and forgets about them;
//! [`drive`] shows each one, redraws a pay code exactly when its countdown text changes
//! (and at expiry, when it turns into the "expired" message), and retries a failed display
//! every few seconds. `show` does blocking IO (a stuck tty can block), so it runs on tokio's
//! blocking pool, never on the executor. Time is `tokio::time::Instant`, so tests pause it:
//! every instant of the displays (a pay code's expiry and lifetime, the `now` shown at, the
//! kiosk page's countdown) is taken with [`now`], tokio's clock as a std `Instant`.
//! Fetching and refreshing pay codes stays in the daemon.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{CustomerDisplay, DisplayError, Screen};

/// How long to wait before retrying a display that failed.
pub const RETRY: Duration = Duration::from_secs(5);

/// The current instant on tokio's clock (paused in tests), as a std `Instant`.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// When the text on `screen` next changes by itself: the next countdown step of a live pay
/// code (its expiry included); `None` for screens that do not change.
pub fn next_change(screen: &Screen, now: Instant) -> Option<Instant> {
    match screen {
        Screen::PayCode(p) if !p.is_expired(now) => {
            let frac = p.remaining(now).subsec_nanos();
            let step = if frac == 0 {
                Duration::from_secs(1)
            } else {
                Duration::from_nanos(frac.into())
            };
            Some(now + step)
        }
        _ => None,
    }
}

/// What a driver can show: a [`Screen`], or a screen with whatever the caller tags it with
/// (the daemon tags each screen with the scan that caused it, and reads the tag back in
/// [`drive_reporting`]'s reports to know what a display really drew).
pub trait Shows: Clone + Send + Sync + 'static {
    /// The screen itself.
    fn screen(&self) -> &Screen;
}

impl Shows for Screen {
    fn screen(&self) -> &Screen {
        self
    }
}

/// Shows every screen published on `screens` until its sender is dropped, then hands the
/// display back.
pub async fn drive<D: CustomerDisplay + 'static, S: Shows>(
    display: D,
    screens: watch::Receiver<S>,
) -> D {
    drive_reporting(display, screens, |_, _| {}).await
}

/// Like [`drive`], and calls `report` after every attempt to show a screen with what was
/// shown and how it went, so the caller can tell which displays work and what they show.
pub async fn drive_reporting<D: CustomerDisplay + 'static, S: Shows>(
    mut display: D,
    mut screens: watch::Receiver<S>,
    mut report: impl FnMut(&S, Result<(), &DisplayError>) + Send,
) -> D {
    let mut failing = false;
    loop {
        let current = screens.borrow_and_update().clone();
        let at = now();
        let shown = current.clone();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = display.show(shown.screen(), at);
            (display, r)
        })
        .await
        .expect("display show panicked");
        display = back;
        report(&current, result.as_ref().map(|_| ()));
        let wake = match result {
            Ok(()) => {
                if failing {
                    log::info!("customer display {} works again", display.name());
                    failing = false;
                }
                next_change(current.screen(), at)
            }
            Err(e) => {
                if !failing {
                    log::warn!(
                        "customer display {}: {e}; retrying every {RETRY:?}",
                        display.name()
                    );
                    failing = true;
                }
                Some(at + RETRY)
            }
        };
        let wake = wake.map(tokio::time::Instant::from_std);
        tokio::select! {
            changed = screens.changed() => {
                if changed.is_err() {
                    return display;
                }
            }
            () = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await },
                if wake.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::view::{Texts, View};
    use crate::display::{Message, PayCode};
    use tokio::sync::mpsc;

    /// Records what a customer would read: the heading and countdown, and when.
    struct Recorder {
        seen: mpsc::UnboundedSender<(Duration, String)>,
        start: Instant,
        fail_first: usize,
    }

    impl CustomerDisplay for Recorder {
        fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
            if self.fail_first > 0 {
                self.fail_first -= 1;
                return Err(DisplayError::io(
                    "/dev/fb9",
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            let v = View::of(screen, &Texts::default(), now);
            let text = format!("{} {}", v.kind, v.countdown.unwrap_or_default());
            let _ = self
                .seen
                .send((now - self.start, text.trim_end().to_owned()));
            Ok(())
        }

        fn name(&self) -> &'static str {
            "recorder"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn countdown_ticks_on_the_second_and_expires_on_time() {
        let start = now();
        let (seen, mut rx) = mpsc::unbounded_channel();
        let (tx, screens) = watch::channel(Screen::Idle);
        let task = tokio::spawn(drive(
            Recorder {
                seen,
                start,
                fail_first: 0,
            },
            screens,
        ));
        assert_eq!(rx.recv().await.unwrap(), (Duration::ZERO, "idle".into()));

        tokio::time::sleep(Duration::from_millis(250)).await;
        let expiry = now() + Duration::from_millis(2500);
        tx.send(Screen::PayCode(PayCode::new("12345678", expiry).unwrap()))
            .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            rx.recv().await.unwrap(),
            (ms(250), "paycode 有效期 Expires in 0:03".into())
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            (ms(750), "paycode 有效期 Expires in 0:02".into())
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            (ms(1750), "paycode 有效期 Expires in 0:01".into())
        );
        assert_eq!(
            rx.recv().await.unwrap(),
            (ms(2750), "expired".into()),
            "expired on time"
        );

        // Nothing more happens on an expired code; a new screen shows at once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err());
        tx.send(Screen::Message(Message::Offline)).unwrap();
        assert_eq!(rx.recv().await.unwrap(), (ms(62_750), "offline".into()));
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_display_is_retried() {
        let start = now();
        let (seen, mut rx) = mpsc::unbounded_channel();
        let (tx, screens) = watch::channel(Screen::Idle);
        let task = tokio::spawn(drive(
            Recorder {
                seen,
                start,
                fail_first: 2,
            },
            screens,
        ));
        assert_eq!(rx.recv().await.unwrap(), (2 * RETRY, "idle".into()));
        drop(tx);
        let back = task.await.unwrap();
        assert_eq!(back.name(), "recorder");
    }
}
