//! Runs the configured scanners, each in its own task, and feeds their events to the engine.
//!
//! Each scanner's task hands its events to the engine itself, as they are read (no channel,
//! no consumer task between); on the one executor thread that is the order they were read, so
//! scan ids and `scan` events follow read order across the daemon.
//!
//! A scanner that is unplugged is an event (`scanner` disconnected), never a restart; the
//! hal backend reopens it by path. On SIGHUP the set is replaced only if `[[scanner]]`
//! changed.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxcard_hal::scanner::{self, AnyScanner, ScannerConfig, ScannerEvent, ScannerMessage};

use super::Engine;

/// The running scanners.
pub struct Scanners {
    configs: Vec<ScannerConfig>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    engine: Arc<Engine>,
}

impl Scanners {
    /// Starts every configured scanner and the task that hands their events to `engine`.
    pub fn start(configs: &[ScannerConfig], engine: Arc<Engine>) -> Self {
        let mut scanners = Scanners {
            configs: Vec::new(),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            engine,
        };
        scanners.spawn(configs);
        scanners
    }

    fn spawn(&mut self, configs: &[ScannerConfig]) {
        let (stop, _) = watch::channel(false);
        self.stop = stop;
        self.configs = configs.to_vec();
        for config in configs {
            let source = match AnyScanner::from_config(config) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("scanner {:?} cannot run: {e}", config.name);
                    continue;
                }
            };
            let engine = Arc::clone(&self.engine);
            let mut stop = self.stop.subscribe();
            let name = config.name.clone();
            self.tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let handle = move |message| {
                    handle(&engine, message);
                    true
                };
                if let Err(e) = scanner::run_with(source, handle, shutdown).await {
                    log::error!("scanner {name:?} stopped: {e}");
                }
            }));
        }
    }

    /// Applies a reloaded `[[scanner]]` list: restarts the scanners only if it changed.
    pub async fn reload(&mut self, configs: &[ScannerConfig]) {
        if configs == self.configs.as_slice() {
            return;
        }
        log::info!("scanners changed: restarting {} scanner(s)", configs.len());
        self.stop().await;
        self.spawn(configs);
    }

    /// Stops every scanner (releasing serial ports and grabs).
    pub async fn stop(&mut self) {
        self.stop.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// What the daemon does with a scanner's event, in the scanner's task as it is read.
fn handle(engine: &Arc<Engine>, ScannerMessage { scanner, event }: ScannerMessage) {
    let name = scanner.as_str();
    match event {
        ScannerEvent::Connected => {
            log::info!("scanner {name:?} connected");
            engine.scanner_state(name, "connected", None);
        }
        ScannerEvent::Disconnected { error } => {
            engine.scanner_state(name, "disconnected", Some(error.to_string()));
        }
        ScannerEvent::Rejected { reason } => {
            engine.publish(
                "scan_rejected",
                json!({"scanner": name, "reason": reason.to_string(), "reason_code": reason_code(&reason)}),
            );
        }
        ScannerEvent::Scan(scan) => {
            // The id and the `scan` event now, in read order; the lookup on its own task,
            // so a slow one never holds up the next scan's event. The engine puts the
            // outcomes back in scan order.
            let ticket =
                engine.begin_scan(scan.scanner.as_str(), scan.code.as_str(), scan.symbology);
            let engine = Arc::clone(engine);
            let outcome = Box::pin(async move {
                engine.finish_scanned(ticket).await;
            });
            finish_now_or_spawn(outcome);
        }
    }
}

/// Runs a scan's outcome as far as it goes without waiting, and spawns the rest. A card
/// answered from memory (offline, from the cache) is then published before this task yields,
/// so a subscriber's writer finds the `scan` and `card` lines together and sends them in one
/// write: one wake-up of the POS app instead of two, and no task spawned (BENCHMARKS.md,
/// "Issue 12", part 8). A lookup that waits (the network) is spawned as before and never holds
/// up the next scan. The first poll's waker is a no-op: the spawned task polls the future
/// again at once, which registers its own waker with whatever the future waits on.
fn finish_now_or_spawn(mut outcome: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if outcome.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(outcome);
    }
}

/// A short fixed name for why a frame was thrown away (`too_long`, `control_char`, ...): a
/// bounded label for the metrics, where the message with its numbers would not be.
fn reason_code(reason: &scanner::Reject) -> &'static str {
    use scanner::Reject;
    match reason {
        Reject::TooLong { .. } => "too_long",
        Reject::ControlChar { .. } => "control_char",
        Reject::InvalidUtf8 { .. } => "invalid_utf8",
        Reject::Empty => "empty",
        Reject::Unterminated { .. } => "unterminated",
        Reject::UnmappedKey { .. } => "unmapped_key",
        Reject::BadReport(_) => "bad_report",
        _ => "other",
    }
}
