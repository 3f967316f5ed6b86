//! The loop serial and evdev scanners share: open a device by path, read it, and when it
//! goes away report that once and reopen the same path with bounded backoff.
//!
//! A USB scanner that is unplugged leaves a descriptor that reads 0 bytes (or EIO) forever,
//! and udev recreates its `/dev/serial/by-id` or `/dev/input/by-id` symlink when it comes
//! back. So a read of 0 bytes or a read error closes the descriptor, and the path is tried
//! again after 100 ms, 200 ms, ... up to the configured maximum (2 s by default): the CPU
//! stays idle while the device is gone, and a scanner plugged back in works within the
//! maximum delay without restarting anything.

use std::{
    future::Future,
    io,
    time::{Duration, Instant},
};

use super::{Assembler, ErrorKind, ScannerError, ScannerEvent};

/// Read buffer size: a frame's worth of bytes many times over, small enough to keep on the
/// heap once per scanner.
const READ_BUFFER: usize = 4096;

/// An opened device of one backend.
pub(crate) trait Device: Sized + Send {
    /// Reads what the device has; 0 bytes means it hung up. Must be cancel-safe.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Turns bytes read into input for the frame parser.
    fn feed(&mut self, bytes: &[u8], now: Instant, assembler: &mut Assembler);
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
    Open(D),
    Closed {
        retry_at: Instant,
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
                retry_at: Instant::now(),
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
                    tokio::time::sleep_until((*retry_at).into()).await;
                    match (self.opener)(&self.path) {
                        Ok(device) => {
                            log::info!("scanner {name}: {} connected", self.path);
                            self.state = State::Open(device);
                            return Ok(ScannerEvent::Connected);
                        }
                        Err(error) if error.kind() == ErrorKind::Config => return Err(error),
                        Err(error) => {
                            *retry_at = Instant::now() + *delay;
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
                State::Open(device) => {
                    let deadline = self.assembler.deadline();
                    let read = tokio::select! {
                        read = device.read(&mut self.buf) => Some(read),
                        () = sleep_until(deadline) => None,
                    };
                    let now = Instant::now();
                    let error = match read {
                        None => {
                            self.assembler.poll_idle(now);
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
                    self.state = State::Closed {
                        retry_at: now + self.backoff.initial,
                        delay: self.backoff.initial * 2,
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
