//! The daemon: wires the store, the API client, the card service and the control socket
//! together on tokio, talks to systemd, and handles signals.
//!
//! Start-up order is what READY=1 promises: config, store, socket. Scanners and displays never
//! delay readiness. SIGTERM stops taking requests, lets in-flight ones finish or queue within
//! a deadline, syncs the store and exits 0. SIGHUP re-reads the config without touching the
//! outbox or the socket, and rebuilds the API client (so a fixed token file takes effect). A
//! reload never stops the daemon: whatever fails is logged and shown in STATUS=, and the
//! daemon keeps running on its previous configuration.

#[cfg(feature = "demo")]
mod demo;
mod display;
mod engine;
pub mod logging;
pub mod notify;
pub mod paycode;
mod scanners;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, watch};

#[cfg(feature = "demo")]
pub use demo::demo;
pub use engine::Engine;

use crate::api::Client;
use crate::config::Config;
use crate::control::server::{self, Access, Limits};
use crate::service::{CardService, Clock, SystemClock};
use crate::store::Store;

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file, re-read on SIGHUP (none for the demo's built-in config).
    pub config_path: Option<PathBuf>,
    /// After a scanned card is shown, open its pay screen as a POS app would (the demo).
    pub pay_code_after_scan: bool,
    /// Show a scanned code that is not a member code on the customer display, as feedback to
    /// whoever typed it (the demo; at a till, product barcodes are the POS app's business).
    pub show_other_codes: bool,
}

/// The daemon's tokio runtime: one executor thread (`current_thread`) and the blocking pool
/// for sled's writes and ureq's requests.
///
/// Why not a multi-thread executor: a till has one or two cores, and everything on the
/// executor is short (parse a frame, a sled read from memory, a JSON line). With two workers,
/// a scan hopped between them (the scanner's task woken on one, the lookup's on the other, the
/// socket writer's on the first again), each hop a futex wake-up and a context switch that
/// cost more than the work (BENCHMARKS.md, "Issue 12"). On one thread those hand-offs are
/// queue pushes. Work that blocks still goes to the pool, which `status` reports as
/// `runtime`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .thread_name("wxcardd-blocking")
        .max_blocking_threads(16)
        .enable_all()
        .build()
}

/// The executor's shape, for `status`: `{"flavor": "current_thread", "workers": 1}`.
pub fn runtime_report() -> serde_json::Value {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let flavor = match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
                tokio::runtime::RuntimeFlavor::MultiThread => "multi_thread",
                _ => "other",
            };
            serde_json::json!({"flavor": flavor, "workers": handle.metrics().num_workers()})
        }
        Err(_) => serde_json::Value::Null,
    }
}

/// A start-up failure caused by the configuration (or the token file): the binary exits 78
/// (EX_CONFIG), which the unit does not restart, instead of crash-looping on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

/// Set to `1` to leave the process dumpable (a core for debugging; docs/install.md).
pub const CORE_DUMPS_ENV: &str = "WXCARDD_CORE_DUMPS";

/// Makes the process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core file, and
/// /proc/PID/mem, environ and fd are root's only, so neither a crash nor a same-uid process
/// can read members' personal data or the API token out of memory. `WXCARDD_CORE_DUMPS=1`
/// leaves it dumpable, for a developer who needs a core (docs/install.md).
pub fn forbid_core_dumps() {
    if std::env::var_os(CORE_DUMPS_ENV).is_some_and(|v| v == "1") {
        log::warn!(
            "{CORE_DUMPS_ENV}=1: core dumps allowed; a core holds personal data and the API token"
        );
        return;
    }
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and changes only this process's
    // dumpable flag.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        log::warn!(
            "cannot make the process non-dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
}

use crate::config::credential_headers;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut config: Config, options: RunOptions) -> anyhow::Result<()> {
    // Files the daemon creates (the store) are private; the socket is chmod-ed explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if config.api.headers_file.is_none() {
        config.api.headers_file = credential_headers();
    }

    let store_dir = config.store.dir.clone();
    let store_config = config.store.store_config();
    let (store, report) =
        tokio::task::spawn_blocking(move || Store::open(&store_dir, &store_config))
            .await?
            .with_context(|| format!("cannot open the store in {}", config.store.dir.display()))?;
    log::info!("store open in {}: {report:?}", config.store.dir.display());
    let store = Arc::new(store);

    let client = Client::new(&config.api).map_err(|e| {
        let from_credential = config.api.headers_file.as_deref() == credential_headers().as_deref();
        let hint = if from_credential {
            " (systemd passes /etc/wxcardd/api-headers as this credential: fix that file)"
        } else {
            ""
        };
        ConfigProblem(format!("cannot set up the API client: {e}{hint}"))
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = CardService::new(client, store, config.service.clone(), clock.clone());

    let (events, _) = broadcast::channel(1024);
    let classifier = wxcard_hal::scanner::Classifier::new(&config.classify)
        .map_err(|e| ConfigProblem(format!("invalid [classify] rules: {e}")))?;
    let screen =
        display::CustomerScreen::start(&config.display, config.paycode.clone(), events.clone());
    let engine = Arc::new(Engine::new(
        service.clone(),
        events.clone(),
        classifier,
        Arc::clone(&screen),
        options.pay_code_after_scan,
        options.show_other_codes,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);

    let gid = match config.control.group.as_deref().filter(|g| !g.is_empty()) {
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Some(group.gid.as_raw()),
            _ => {
                log::warn!(
                    "control.group {name:?} does not exist; the socket keeps the daemon's group"
                );
                None
            }
        },
        None => None,
    };
    let listener = server::bind(&config.control.socket, gid)
        .await
        .context("cannot set up the control socket")?;
    let own_uid = nix::unistd::getuid().as_raw();
    let own_gid = nix::unistd::getgid().as_raw();
    let access = Access::new(
        [0, own_uid]
            .into_iter()
            .chain(config.control.allowed_uids.iter().copied()),
        [own_gid]
            .into_iter()
            .chain(gid)
            .chain(config.control.allowed_gids.iter().copied()),
    );
    let limits = Limits {
        max_subscribers: config.control.max_subscribers,
        subscriber_queue: config.control.subscriber_queue,
        max_connections: config.control.max_connections,
    };
    let server_task = tokio::spawn(server::serve(
        listener,
        Arc::clone(&engine),
        events.clone(),
        access,
        limits,
        stop_rx.clone(),
    ));
    let web_task = match config.control.web.enabled {
        true => {
            let (listener, settings) =
                crate::control::web::prepare(&config.control.web, gid, limits.subscriber_queue)
                    .await
                    .map_err(|e| match e {
                        e @ crate::control::web::WebError::BadToken(_) => {
                            anyhow::Error::new(ConfigProblem(format!("[control.web]: {e}")))
                        }
                        e => anyhow::Error::new(e).context("cannot set up [control.web]"),
                    })?;
            let (engine, events, stop) = (Arc::clone(&engine), events.clone(), stop_rx.clone());
            Some(tokio::spawn(crate::control::web::serve(
                listener, engine, events, settings, stop,
            )))
        }
        false => None,
    };
    let background = {
        let service = service.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { service.run_background(stop).await })
    };
    tokio::spawn(Arc::clone(&engine).forward_service_events());
    let metrics_task = start_metrics(&config, &service, &stop_rx).await?;
    // Scanners start after the socket but never hold up readiness: an absent scanner is
    // reported and waited for by its own task.
    let mut scanners = scanners::Scanners::start(&config.scanners, Arc::clone(&engine));

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    // Set while the last reload failed: STATUS= says so until a reload succeeds.
    let mut reload_problem: Option<&'static str> = None;
    let status_line = |status, problem: Option<&str>| {
        let mut text = notify::status_text(&status, clock.now_ms());
        if let Some(problem) = problem {
            text.push_str(&format!(
                "; last reload failed ({problem}): running on the previous config, see journalctl -u wxcardd"
            ));
        }
        text
    };
    let mut service_events = service.subscribe();
    // On the one executor thread, the tasks spawned above have not run yet: let each take its
    // first step, so that what opens at once (the kiosk page's listener and token, a serial
    // port) is open at READY=1, as it was when other workers ran them meanwhile. Nothing here
    // waits for a device that is absent or slow.
    tokio::task::yield_now().await;
    let first = service.status().await?;
    notify::ready(&status_line(first, None));
    log::info!(
        "wxcardd {} ready: control socket {}, backend {}",
        env!("CARGO_PKG_VERSION"),
        config.control.socket.display(),
        config.api.base_url
    );

    let mut watchdog =
        tokio::time::interval(notify::watchdog_interval().unwrap_or(Duration::from_secs(3600)));
    let watchdog_on = notify::watchdog_interval().is_some();
    let mut status_tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                notify::reloading();
                reload_problem = None;
                match reload(&options, &config) {
                    Ok(Some(new)) => {
                        scanners.reload(&new.scanners).await;
                        if let Ok(classifier) = wxcard_hal::scanner::Classifier::new(&new.classify) {
                            engine.set_classifier(classifier);
                        }
                        let _ = screen.reload(&new.display, new.paycode.clone()).await;
                        // The token file is read again (a revoked token replaced), and [api]
                        // changes apply; a client that cannot be built keeps the old one.
                        match Client::new(&new.api) {
                            Ok(client) => {
                                service.replace_client(client);
                                config.api = new.api;
                                log::info!("SIGHUP: API client rebuilt (token file re-read)");
                            }
                            Err(e) => {
                                log::error!(
                                    "SIGHUP: keeping the running API client: cannot set up the new one: {e}"
                                );
                                reload_problem = Some("API client");
                            }
                        }
                        crate::metrics::global()
                            .set_scanners(new.scanners.iter().map(|s| s.name.as_str()));
                        crate::metrics::global().set_till(&new.till.resolved());
                        config.scanners = new.scanners;
                        config.classify = new.classify;
                        config.display = new.display;
                        config.paycode = new.paycode;
                    }
                    Ok(None) => {}
                    Err(()) => reload_problem = Some("config file"),
                }
                // A store that cannot report its state is logged, never a reason to exit.
                let text = match service.status().await {
                    Ok(status) => status_line(status, reload_problem),
                    Err(e) => {
                        log::error!("SIGHUP: cannot read the store's state: {e}");
                        reload_problem = Some("store state unreadable");
                        "store state unreadable; last reload incomplete, see journalctl -u wxcardd".to_owned()
                    }
                };
                notify::ready(&text);
            }
            event = service_events.recv() => {
                // Backend state changes show in STATUS= at once, not at the next tick.
                if matches!(&event, Ok(e) if e.channel() == "backend") {
                    if let Ok(status) = service.status().await {
                        notify::status(&status_line(status, reload_problem));
                    }
                }
            }
            _ = watchdog.tick(), if watchdog_on => notify::watchdog(),
            _ = status_tick.tick() => {
                if let Ok(status) = service.status().await {
                    notify::status(&status_line(status, reload_problem));
                }
            }
        }
    }

    log::info!("stopping: no new requests; finishing those in flight");
    notify::stopping();
    stop_tx.send_replace(true);
    scanners.stop().await;
    let _ = server_task.await;
    if let Some(web_task) = web_task {
        let _ = web_task.await;
    }
    // In-flight writes end within their own deadline (sent, or queued on disk).
    let drain = Duration::from_millis(config.service.write_deadline_ms + 2_000);
    if tokio::time::timeout(drain, engine.drained()).await.is_err() {
        log::warn!(
            "some requests were still running after {} s",
            drain.as_secs()
        );
    }
    let _ = background.await;
    let _ = metrics_task.await;
    screen.stop().await;
    service
        .sync()
        .await
        .context("cannot sync the store at shutdown")?;
    let _ = std::fs::remove_file(&config.control.socket);
    log::info!("stopped");
    Ok(())
}

/// Sets up the metrics' labels and starts the textfile writer and the `/metrics` listener
/// (docs/metrics.md). Events are counted where they are published (`engine::publish`).
async fn start_metrics(
    config: &Config,
    service: &CardService,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let metrics = crate::metrics::global();
    metrics.set_till(&config.till.resolved());
    metrics.set_scanners(config.scanners.iter().map(|s| s.name.as_str()));
    metrics.set_displays(config.display.backends.iter().map(|b| match b {
        wxcard_hal::display::BackendKind::Framebuffer => "framebuffer",
        wxcard_hal::display::BackendKind::Terminal => "terminal",
        wxcard_hal::display::BackendKind::Web => "web",
        wxcard_hal::display::BackendKind::Png => "png",
    }));
    if let Some(addr) = config.metrics.listen {
        let listener = crate::metrics::http::bind(addr)
            .await
            .map_err(|e| ConfigProblem(format!("metrics.listen {addr}: cannot listen: {e}")))?;
        log::info!("metrics: http://{addr}/metrics");
        tokio::spawn(crate::metrics::http::serve(
            listener,
            service.clone(),
            stop.clone(),
        ));
    }
    Ok(tokio::spawn(crate::metrics::run(
        config.metrics.clone(),
        service.clone(),
        stop.clone(),
    )))
}

/// Re-reads the config file; a bad file is logged and the running config kept (`Err`).
/// Returns the new config, whose reloadable parts (scanners, classification, display, the API
/// client) the caller applies.
fn reload(options: &RunOptions, config: &Config) -> Result<Option<Config>, ()> {
    let Some(path) = &options.config_path else {
        log::info!("SIGHUP: no config file to reload");
        return Ok(None);
    };
    match Config::load(path) {
        Ok(mut new) => {
            // As at start: the token comes from systemd's credential when the file names none.
            if new.api.headers_file.is_none() {
                new.api.headers_file = credential_headers();
            }
            for (what, changed) in [
                ("[store]", new.store != config.store),
                ("[control]", new.control != config.control),
                ("[service]", new.service != config.service),
            ] {
                if changed {
                    log::warn!("SIGHUP: changes to {what} take effect at the next restart");
                }
            }
            log::info!("SIGHUP: config reloaded from {}", path.display());
            Ok(Some(new))
        }
        Err(e) => {
            log::error!("SIGHUP: keeping the running config: {e}");
            Err(())
        }
    }
}
