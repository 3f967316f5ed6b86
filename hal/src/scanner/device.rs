//! The loop serial and evdev scanners share: open a device by path, read it, and when it
//! goes away report that once and reopen the same path with bounded backoff.
//!
//! A USB scanner that is unplugged leaves a descriptor that reads 0 bytes (or EIO) forever,
//! and udev recreates its `/dev/serial/by-id` or `/dev/input/by-id` symlink when it comes
//! back. So a read of 0 bytes or a read error closes the descriptor, and the path is tried
//! again after 100 ms, 200 ms, ... up to the configured maximum (2 s by default): the CPU
//! stays idle while the device is gone, and a scanner plugged back in works within the
//! maximum delay without restarting anything. A device that hangs up again within the maximum
//! delay of opening (a node left behind during teardown) keeps the delay growing rather than
//! flapping every 100 ms; one that stayed up longer starts again from the first delay.

use std::{
    future::Future,
    io,
    time::{Duration, Instant},
};

use super::{Assembler, ErrorKind, ScannerError, ScannerEvent};

/// Read buffer size. A scanner sends a frame or two per read; the buffer also bounds the
/// events one read can queue (at most one per two bytes), since nothing is read while events
/// are pending.
const READ_BUFFER: usize = 1024;

// Scheduling (reopen times) runs on tokio's clock, so tests can pause it; the instants
// handed to the parser are `std` ones, as `Scan::at` is.

/// An opened device of one backend.
pub(crate) trait Device: Sized + Send {
    /// Reads what the device has; 0 bytes means it hung up. Must be cancel-safe.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Turns bytes read into input for the frame parser.
    fn feed(&mut self, bytes: &[u8], now: Instant, assembler: &mut Assembler);

    /// What the device says it is, for the connect log line.
    fn describe(&self) -> Option<String> {
        None
    }

    /// When the backend's own partial input times out (a HID POS code whose continuation
    /// never came), if it holds any.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Ends the backend's partial input if its deadline passed by `now`.
    fn poll_idle(&mut self, _now: Instant, _assembler: &mut Assembler) {}

    /// The device is going away: report partial input the backend holds as cut short.
    fn lost(&mut self, _assembler: &mut Assembler) {}
}

/// Opens a device; the backend's own settings are captured by the closure.
pub(crate) type Opener<D> = Box<dyn Fn(&str) -> Result<D, ScannerError> + Send + Sync>;

/// Reopen delays: doubling from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

enum State<D> {
    Open {
        device: D,
        opened_at: tokio::time::Instant,
        /// The delay before the attempt that opened it, carried over when it fails at once.
        delay: Duration,
    },
    Closed {
        retry_at: tokio::time::Instant,
        delay: Duration,
        /// Whether this disconnection was already reported (and logged).
        reported: bool,
    },
}

/// A scan source over a device that can come and go.
pub(crate) struct DeviceSource<D: Device> {
    path: String,
    opener: Opener<D>,
    backoff: Backoff,
    assembler: Assembler,
    state: State<D>,
    buf: Box<[u8]>,
}

impl<D: Device> DeviceSource<D> {
    pub(crate) fn new(
        path: String,
        opener: Opener<D>,
        backoff: Backoff,
        assembler: Assembler,
    ) -> Self {
        DeviceSource {
            path,
            opener,
            backoff,
            assembler,
            state: State::Closed {
                retry_at: tokio::time::Instant::now(),
                delay: backoff.initial,
                reported: false,
            },
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        }
    }

    pub(crate) fn assembler(&self) -> &Assembler {
        &self.assembler
    }

    pub(crate) async fn next_event(&mut self) -> Result<ScannerEvent, ScannerError> {
        loop {
            if let Some(event) = self.assembler.pop() {
                return Ok(event);
            }
            let name = self.assembler.name();
            match &mut self.state {
                State::Closed {
                    retry_at,
                    delay,
                    reported,
                } => {
                    tokio::time::sleep_until(*retry_at).await;
                    match (self.opener)(&self.path) {
                        Ok(device) => {
                            match device.describe() {
                                Some(what) => {
                                    log::info!("scanner {name}: {} connected ({what})", self.path)
                                }
                                None => log::info!("scanner {name}: {} connected", self.path),
                            }
                            self.state = State::Open {
                                device,
                                opened_at: tokio::time::Instant::now(),
                                delay: *delay,
                            };
                            return Ok(ScannerEvent::Connected);
                        }
                        Err(error) if error.kind() == ErrorKind::Config => return Err(error),
                        Err(error) => {
                            *retry_at = tokio::time::Instant::now() + *delay;
                            *delay = (*delay * 2).min(self.backoff.max);
                            if !*reported {
                                *reported = true;
                                log::warn!("scanner {name}: {error}; retrying until it is back");
                                return Ok(ScannerEvent::Disconnected { error });
                            }
                            log::debug!("scanner {name}: still gone: {error}");
                        }
                    }
                }
                State::Open {
                    device,
                    opened_at,
                    delay,
                } => {
                    let deadline = match (self.assembler.deadline(), device.deadline()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let read = tokio::select! {
                        read = device.read(&mut self.buf) => Some(read),
                        () = sleep_until(deadline) => None,
                    };
                    let now = Instant::now();
                    let error = match read {
                        None => {
                            self.assembler.poll_idle(now);
                            device.poll_idle(now, &mut self.assembler);
                            continue;
                        }
                        Some(Ok(0)) => ScannerError::HungUp {
                            path: self.path.clone(),
                        },
                        Some(Ok(n)) => {
                            device.feed(&self.buf[..n], now, &mut self.assembler);
                            continue;
                        }
                        Some(Err(e))
                            if matches!(
                                e.kind(),
                                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                            ) =>
                        {
                            continue;
                        }
                        Some(Err(source)) => ScannerError::Read {
                            path: self.path.clone(),
                            source,
                        },
                    };
                    log::warn!("scanner {name}: {error}; retrying until it is back");
                    device.lost(&mut self.assembler);
                    // A device that fails right after opening (a node left behind during
                    // teardown) keeps the backoff growing instead of flapping every 100 ms.
                    let clock = tokio::time::Instant::now();
                    let wait = if clock.duration_since(*opened_at) < self.backoff.max {
                        (*delay).min(self.backoff.max)
                    } else {
                        self.backoff.initial
                    };
                    self.state = State::Closed {
                        retry_at: clock + wait,
                        delay: (wait * 2).min(self.backoff.max),
                        reported: true,
                    };
                    // A frame cut short is reported first, then the disconnection.
                    self.assembler.device_lost();
                    self.assembler.report(ScannerEvent::Disconnected { error });
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn default_reopen_initial_ms() -> u64 {
    100
}
pub(crate) fn default_reopen_max_ms() -> u64 {
    2000
}

pub(crate) fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
    let initial = Duration::from_millis(initial_ms.max(1));
    Backoff {
        initial,
        max: Duration::from_millis(max_ms).max(initial),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };

    use tokio::time::Instant as Clock;

    use super::*;
    use crate::scanner::{FrameConfig, ScannerName};

    /// A device that hangs up at once (reads 0 bytes), like a node left behind in teardown.
    struct HangsUp;

    impl Device for HangsUp {
        async fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }

        fn feed(&mut self, _bytes: &[u8], _now: Instant, _assembler: &mut Assembler) {}
    }

    struct Fixture {
        source: DeviceSource<HangsUp>,
        attempts: Arc<Mutex<Vec<Clock>>>,
        plugged: Arc<AtomicBool>,
    }

    fn fixture() -> Fixture {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let plugged = Arc::new(AtomicBool::new(false));
        let (log, present) = (attempts.clone(), plugged.clone());
        let opener: Opener<HangsUp> = Box::new(move |path: &str| {
            log.lock().unwrap().push(Clock::now());
            if present.load(Ordering::SeqCst) {
                Ok(HangsUp)
            } else {
                Err(ScannerError::Open {
                    path: path.into(),
                    message: "No such file or directory".into(),
                    kind: ErrorKind::Gone,
                })
            }
        });
        let name = ScannerName::try_from("t").unwrap();
        let assembler = Assembler::new(name, &FrameConfig::default(), Duration::ZERO).unwrap();
        Fixture {
            source: DeviceSource::new("/dev/x".into(), opener, backoff(100, 2000), assembler),
            attempts,
            plugged,
        }
    }

    fn gaps_ms(attempts: &Mutex<Vec<Clock>>) -> Vec<u128> {
        let attempts = attempts.lock().unwrap();
        attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reopen_backs_off_from_100_ms_to_2_s_and_reports_once() {
        let mut f = fixture();
        let first = f.source.next_event().await.unwrap();
        assert!(
            matches!(first, ScannerEvent::Disconnected { .. }),
            "{first:?}"
        );
        // Nothing more is reported while it stays gone: 7.2 s pass in silence.
        let quiet = tokio::time::timeout(Duration::from_millis(7200), f.source.next_event()).await;
        assert!(quiet.is_err(), "reported again: {quiet:?}");
        assert_eq!(gaps_ms(&f.attempts), [100, 200, 400, 800, 1600, 2000, 2000]);
        f.plugged.store(true, Ordering::SeqCst);
        let back = f.source.next_event().await.unwrap();
        assert!(matches!(back, ScannerEvent::Connected), "{back:?}");
        assert_eq!(gaps_ms(&f.attempts).last(), Some(&2000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_hangs_up_at_once_does_not_flap_every_100_ms() {
        let mut f = fixture();
        f.plugged.store(true, Ordering::SeqCst);
        for _ in 0..6 {
            let up = f.source.next_event().await.unwrap();
            assert!(matches!(up, ScannerEvent::Connected), "{up:?}");
            let down = f.source.next_event().await.unwrap();
            assert!(
                matches!(down, ScannerEvent::Disconnected { .. }),
                "{down:?}"
            );
        }
        assert_eq!(gaps_ms(&f.attempts), [100, 200, 400, 800, 1600]);
    }
}
