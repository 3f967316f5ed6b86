//! Prometheus metrics: what a fleet's head office watches (which tills are offline, which
//! queues grow, which scanner is unplugged) in the format its monitoring already reads.
//!
//! Counters are kept in one process-wide [`Metrics`] ([`global`]). Most are fed from the
//! daemon's own event lines ([`Metrics::on_event`]: scans, rejected frames, lookups, scanner
//! and display states), counted by the one function that publishes them, so counting needs no
//! hook of its own where the events happen and no count is lost to a lagging subscriber;
//! backend request durations come from the API client, and the outbox's deliveries, dead
//! letters and expiries from the service directly (they also happen at start, before
//! anything subscribes to events). Gauges of the service's state (backend, outbox, cache) are
//! read when the metrics are written.
//!
//! Two ways out, both in Prometheus's text format ([`exposition`]):
//! - a textfile for node_exporter's textfile collector (Debian's `prometheus-node-exporter`
//!   reads `/var/lib/prometheus/node-exporter/*.prom`), rewritten atomically every
//!   `interval_s` (a temporary file renamed over the old one, mode 0644 so the collector can
//!   read it); node_exporter's own `node_textfile_mtime_seconds` tells when it went stale;
//! - optionally `/metrics` over HTTP on a loopback address ([`http`]).
//!
//! Labels never carry a card code, a member's data or anything unbounded: scanner and
//! display names come from the config, every other label value from a fixed set, and a
//! family stops taking new label sets past [`MAX_SERIES`].
//!
//! docs/metrics.md lists every metric.

pub mod exposition;
pub mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Endpoint;
use crate::service::{BackendState, ServiceStatus};
use exposition::{Exposition, Kind};

/// The most label sets one family takes; later ones are not counted (and logged once).
pub const MAX_SERIES: usize = 64;

/// Backend request duration buckets, in seconds (the lookup deadline is 1.5 s by default,
/// the write deadline 5 s).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The default textfile, where Debian's node_exporter looks.
pub const DEFAULT_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/wxcardd.prom";

/// `[metrics]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Write the metrics to `textfile_path` every `interval_s`.
    pub textfile: bool,
    /// The textfile; its directory is node_exporter's `--collector.textfile.directory`.
    pub textfile_path: PathBuf,
    /// How often the textfile is rewritten, in seconds.
    pub interval_s: u64,
    /// Serve `/metrics` over HTTP on this loopback address (none: not served).
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            textfile: true,
            textfile_path: PathBuf::from(DEFAULT_TEXTFILE),
            interval_s: 15,
            listen: None,
        }
    }
}

impl MetricsConfig {
    /// The first thing wrong with the section: the dotted key and why.
    pub fn problem(&self) -> Option<(String, String)> {
        if self.interval_s == 0 || self.interval_s > 3600 {
            return Some(("metrics.interval_s".into(), "must be 1 to 3600".into()));
        }
        if self.textfile && self.textfile_path.file_name().is_none() {
            return Some(("metrics.textfile_path".into(), "must name a file".into()));
        }
        if self.textfile
            && self
                .textfile_path
                .extension()
                .is_none_or(|ext| ext != "prom")
        {
            return Some((
                "metrics.textfile_path".into(),
                "must end in .prom (node_exporter reads only those)".into(),
            ));
        }
        if let Some(listen) = self.listen
            && !listen.ip().is_loopback()
        {
            return Some((
                "metrics.listen".into(),
                "must be a loopback address (127.0.0.1 or ::1): node_exporter or a local \
                 agent scrapes it"
                    .into(),
            ));
        }
        None
    }
}

/// A latency histogram with fixed buckets.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, le) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

type Labels2 = (String, String);

#[derive(Debug, Default)]
struct State {
    till: String,
    scans: BTreeMap<Labels2, u64>,
    rejected: BTreeMap<Labels2, u64>,
    lookups: BTreeMap<Labels2, u64>,
    backend: BTreeMap<&'static str, Histogram>,
    outbox_delivered: u64,
    dead_lettered: BTreeMap<&'static str, u64>,
    dead_letters_expired: u64,
    scanners: BTreeMap<String, bool>,
    displays: BTreeMap<String, bool>,
    overflow_logged: bool,
}

/// The daemon's counters; see the module docs.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The daemon's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// The service's state when the metrics are written.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// The service's status.
    pub status: ServiceStatus,
    /// Cards in the cache.
    pub cache_cards: u64,
}

/// Times one backend request; the duration is observed when it is dropped.
pub struct BackendTimer {
    endpoint: Endpoint,
    started: std::time::Instant,
}

impl BackendTimer {
    /// Starts timing a request to `endpoint`.
    pub fn start(endpoint: Endpoint) -> Self {
        BackendTimer {
            endpoint,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for BackendTimer {
    fn drop(&mut self) {
        global().observe_backend(self.endpoint, self.started.elapsed().as_secs_f64());
    }
}

fn bump(map: &mut BTreeMap<Labels2, u64>, a: &str, b: &str, overflow: &mut bool, family: &str) {
    // Found without building a key: a count per scan allocates nothing once its labels exist
    // (a family holds at most MAX_SERIES label sets).
    if let Some(n) = map
        .iter_mut()
        .find_map(|((x, y), n)| (x == a && y == b).then_some(n))
    {
        *n += 1;
    } else if map.len() < MAX_SERIES {
        map.insert((a.to_owned(), b.to_owned()), 1);
    } else if !*overflow {
        *overflow = true;
        log::warn!("metrics: {family} has {MAX_SERIES} label sets; new ones are not counted");
    }
}

impl Metrics {
    /// Empty counters.
    pub fn new() -> Self {
        Metrics::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the till's id (`[till] id`, else the hostname): the `till` label of
    /// `wxcardd_build_info`, and what `status` reports.
    pub fn set_till(&self, till: &str) {
        self.lock().till = till.to_owned();
    }

    /// The till's id as last set.
    pub fn till(&self) -> String {
        self.lock().till.clone()
    }

    /// The configured scanners: each has `wxcardd_scanner_connected` from the start (0 until
    /// it connects); scanners no longer configured go.
    pub fn set_scanners<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut state = self.lock();
        let old = std::mem::take(&mut state.scanners);
        for name in names.into_iter().take(MAX_SERIES) {
            let up = old.get(name).copied().unwrap_or(false);
            state.scanners.insert(name.to_owned(), up);
        }
    }

    /// The configured display backends, each down until it opens.
    pub fn set_displays<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut state = self.lock();
        let old = std::mem::take(&mut state.displays);
        for name in names.into_iter().take(MAX_SERIES) {
            let up = old.get(name).copied().unwrap_or(false);
            state.displays.insert(name.to_owned(), up);
        }
    }

    /// One backend request took `seconds`.
    pub fn observe_backend(&self, endpoint: Endpoint, seconds: f64) {
        self.lock()
            .backend
            .entry(endpoint.name())
            .or_default()
            .observe(seconds);
    }

    /// A queued write was delivered on replay.
    pub fn delivered(&self) {
        self.lock().outbox_delivered += 1;
    }

    /// A queued write was set aside as a dead letter (`rejected` or `undecodable`).
    pub fn dead_lettered(&self, reason: &'static str) {
        *self.lock().dead_lettered.entry(reason).or_default() += 1;
    }

    /// A dead letter was dropped after its retention.
    pub fn dead_letter_expired(&self) {
        self.lock().dead_letters_expired += 1;
    }

    /// A scan read from `scanner`, of `kind` (the `scan` event).
    pub fn on_scan(&self, scanner: &str, kind: &str) {
        let state = &mut *self.lock();
        let overflow = &mut state.overflow_logged;
        bump(
            &mut state.scans,
            scanner,
            kind,
            overflow,
            "wxcardd_scans_total",
        );
    }

    /// A lookup answered from `source` with `outcome` (the `card` event).
    pub fn on_lookup(&self, source: &str, outcome: &str) {
        let state = &mut *self.lock();
        let overflow = &mut state.overflow_logged;
        bump(
            &mut state.lookups,
            source,
            outcome,
            overflow,
            "wxcardd_lookups_total",
        );
    }

    /// Counts what an event line of the control socket says happened: `event` with the
    /// fields of `body`.
    pub fn on_event(&self, event: &str, body: &Value) {
        let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("unknown");
        match event {
            "scan" => return self.on_scan(text("scanner"), text("kind")),
            "card" => return self.on_lookup(text("source"), text("outcome")),
            _ => {}
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let overflow = &mut state.overflow_logged;
        match event {
            "scan_rejected" => bump(
                &mut state.rejected,
                text("scanner"),
                text("reason_code"),
                overflow,
                "wxcardd_scans_rejected_total",
            ),
            "scanner" => {
                let name = text("scanner");
                if state.scanners.contains_key(name) || state.scanners.len() < MAX_SERIES {
                    state
                        .scanners
                        .insert(name.to_owned(), text("state") == "connected");
                }
            }
            "display" => {
                let name = text("backend");
                if state.displays.contains_key(name) || state.displays.len() < MAX_SERIES {
                    state
                        .displays
                        .insert(name.to_owned(), text("state") == "open");
                }
            }
            _ => {}
        }
    }

    /// Every metric, in Prometheus's text format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let state = self.lock();
        let mut out = Exposition::new();
        out.family(
            "wxcardd_build_info",
            Kind::Gauge,
            "The running wxcardd: its version, the commit it was built from and the till's id; always 1.",
        )
        .sample(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::COMMIT),
                ("till", &state.till),
            ],
            1.0,
        );
        let mut f = out.family(
            "wxcardd_scans_total",
            Kind::Counter,
            "Codes read, by scanner and kind (wechat_member_code, merchant_card_number, other).",
        );
        for ((scanner, kind), n) in &state.scans {
            f.sample(&[("scanner", scanner), ("kind", kind)], *n as f64);
        }
        let mut f = out.family(
            "wxcardd_scans_rejected_total",
            Kind::Counter,
            "Frames a scanner sent that were thrown away, by scanner and reason.",
        );
        for ((scanner, reason), n) in &state.rejected {
            f.sample(&[("scanner", scanner), ("reason", reason)], *n as f64);
        }
        let mut f = out.family(
            "wxcardd_lookups_total",
            Kind::Counter,
            "Card lookups answered, by source (api, cache) and outcome (card, card_state, rejected, offline).",
        );
        for ((source, outcome), n) in &state.lookups {
            f.sample(&[("source", source), ("outcome", outcome)], *n as f64);
        }
        let mut f = out.family(
            "wxcardd_backend_request_duration_seconds",
            Kind::Histogram,
            "Time of requests to the wxcard backend until answered or failed, by endpoint.",
        );
        let empty = Histogram::default();
        for endpoint in Endpoint::ALL {
            let name = endpoint.name();
            let h = state.backend.get(name).unwrap_or(&empty);
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let le = exposition::bound(*le);
                f.sample_named("_bucket", &[("endpoint", name), ("le", &le)], n as f64);
            }
            f.sample_named(
                "_bucket",
                &[("endpoint", name), ("le", "+Inf")],
                h.count as f64,
            );
            f.sample_named("_sum", &[("endpoint", name)], h.sum);
            f.sample_named("_count", &[("endpoint", name)], h.count as f64);
        }
        let status = &gauges.status;
        let mut f = out.family(
            "wxcardd_backend_state",
            Kind::Gauge,
            "The backend's state: 1 for the current one of online, offline, credentials_refused.",
        );
        for (name, state_) in [
            ("online", BackendState::Online),
            ("offline", BackendState::Offline),
            ("credentials_refused", BackendState::CredentialsRefused),
        ] {
            f.sample(
                &[("state", name)],
                f64::from(u8::from(status.backend == state_)),
            );
        }
        out.family(
            "wxcardd_outbox_pending",
            Kind::Gauge,
            "Writes queued on disk waiting to be sent.",
        )
        .sample(&[], status.outbox_pending as f64);
        out.family(
            "wxcardd_outbox_oldest_age_seconds",
            Kind::Gauge,
            "Age of the oldest queued write; 0 when none is queued.",
        )
        .sample(
            &[],
            status.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0,
        );
        out.family(
            "wxcardd_outbox_capacity",
            Kind::Gauge,
            "How many writes the outbox holds (queued plus dead letters) before refusing more.",
        )
        .sample(&[], status.outbox_max as f64);
        out.family(
            "wxcardd_outbox_delivered_total",
            Kind::Counter,
            "Queued writes the backend accepted on replay.",
        )
        .sample(&[], state.outbox_delivered as f64);
        out.family(
            "wxcardd_dead_letters",
            Kind::Gauge,
            "Writes set aside (refused by the backend, or unreadable) waiting for an operator.",
        )
        .sample(&[], status.dead_letters as f64);
        let mut f = out.family(
            "wxcardd_dead_letters_total",
            Kind::Counter,
            "Writes set aside as dead letters, by reason (rejected, undecodable).",
        );
        for reason in ["rejected", "undecodable"] {
            let n = state.dead_lettered.get(reason).copied().unwrap_or(0);
            f.sample(&[("reason", reason)], n as f64);
        }
        out.family(
            "wxcardd_dead_letters_expired_total",
            Kind::Counter,
            "Dead letters dropped unattended after service.dead_letter_retention_s.",
        )
        .sample(&[], state.dead_letters_expired as f64);
        let mut f = out.family(
            "wxcardd_scanner_connected",
            Kind::Gauge,
            "1 while a configured scanner's device is open, 0 while it is absent.",
        );
        for (name, up) in &state.scanners {
            f.sample(&[("scanner", name)], f64::from(u8::from(*up)));
        }
        let mut f = out.family(
            "wxcardd_display_up",
            Kind::Gauge,
            "1 while a configured customer display backend is open, 0 while it is not.",
        );
        for (name, up) in &state.displays {
            f.sample(&[("backend", name)], f64::from(u8::from(*up)));
        }
        out.family(
            "wxcardd_cache_cards",
            Kind::Gauge,
            "Card answers in the offline cache.",
        )
        .sample(&[], gauges.cache_cards as f64);
        out.family(
            "wxcardd_metrics_written_timestamp_seconds",
            Kind::Gauge,
            "When these metrics were written (unix time).",
        )
        .sample(&[], unix_now());
        out.finish()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// Why the textfile could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    /// The directory does not exist (node_exporter is not installed).
    #[error("directory {0} does not exist")]
    NoDirectory(PathBuf),
    /// Writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, mode 0644 (the
/// daemon's umask is 077; node_exporter runs as another user), renamed over `path`. A reader
/// sees the old file or the new one, never half of one.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), TextfileError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(TextfileError::NoDirectory(dir.to_owned()));
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // node_exporter reads only *.prom: the temporary name is never read half-written.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |source| TextfileError::Io {
        path: path.to_owned(),
        source,
    };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads the gauges from the service and renders every metric.
pub async fn render_now(service: &crate::service::CardService) -> Option<String> {
    let status = match service.status().await {
        Ok(status) => status,
        Err(e) => {
            log::warn!("metrics: cannot read the service's state: {e}");
            return None;
        }
    };
    let store = std::sync::Arc::clone(service.store());
    let cache_cards = tokio::task::spawn_blocking(move || store.card_count())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    Some(global().render(&Gauges {
        status,
        cache_cards,
    }))
}

/// When `[metrics] textfile` is on, rewrites the textfile every `interval_s` until `stop`
/// turns true. A missing directory (node_exporter not installed) is one warning, then skipped
/// quietly until it appears. Events are counted where they are published
/// ([`Metrics::on_event`]).
pub async fn run(
    config: MetricsConfig,
    service: crate::service::CardService,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_s.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            _ = tick.tick(), if config.textfile => {
                let Some(text) = render_now(&service).await else { continue };
                let path = config.textfile_path.clone();
                match tokio::task::spawn_blocking(move || write_textfile(&path, &text)).await {
                    Ok(Ok(())) => warned = false,
                    Ok(Err(e)) => {
                        if !warned {
                            warned = true;
                            match &e {
                                TextfileError::NoDirectory(_) => log::warn!(
                                    "metrics textfile not written: {e} (install \
                                     prometheus-node-exporter, or set [metrics] textfile = false); \
                                     retried quietly"
                                ),
                                TextfileError::Io { .. } => log::warn!(
                                    "metrics textfile not written: {e}; retried quietly \
                                     (docs/install.md, \"Monitoring a fleet\")"
                                ),
                            }
                        }
                    }
                    Err(e) => log::error!("metrics textfile task failed: {e}"),
                }
            }
        }
    }
}
