//! The daemon's configuration: one typed structure loaded from TOML, validated once at start
//! (and, later, on SIGHUP).
//!
//! Unknown keys are errors, so a typo is caught by `wxcardd check` instead of silently
//! ignored; errors name the key and the line. There is one validation, [`Config::load`],
//! used by `wxcardd check` and by the daemon's start alike, so `check` accepts exactly what
//! start accepts: it also builds the API client (reading the token and CA files) and every
//! scanner's settings, which start would otherwise refuse later.

pub mod dropins;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use wxcard_hal::display::DisplayConfig;
use wxcard_hal::scanner::{ClassifyConfig, ScannerConfig};

use crate::api::ApiConfig;
use crate::daemon::paycode::PayCodeConfig;
use crate::service::ServiceConfig;
use crate::store::StoreConfig;

/// The default config path.
pub const DEFAULT_PATH: &str = "/etc/wxcardd/wxcardd.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[api]`: the wxcard backend.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[service]`: the offline policy (deadlines, freshness, breaker, replay).
    #[serde(default)]
    pub service: ServiceConfig,
    /// `[store]`: where and how much the daemon keeps on disk.
    #[serde(default)]
    pub store: StoreSection,
    /// `[control]`: the local control socket.
    #[serde(default)]
    pub control: ControlConfig,
    /// `[[scanner]]`: the scanners, each named (docs/scanners.md).
    #[serde(default, rename = "scanner")]
    pub scanners: Vec<ScannerConfig>,
    /// `[classify]`: which scanned codes are member card codes (docs/scanners.md).
    #[serde(default)]
    pub classify: ClassifyConfig,
    /// `[display]`: the customer display (docs/display.md).
    #[serde(default)]
    pub display: DisplayConfig,
    /// `[paycode]`: pay-code lifetime and refresh.
    #[serde(default)]
    pub paycode: PayCodeConfig,
    /// `[metrics]`: Prometheus metrics (docs/metrics.md).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[till]`: which till this is, for a fleet.
    #[serde(default)]
    pub till: TillConfig,
}

/// `[till]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TillConfig {
    /// The till's id in `status`, the metrics and the support report; empty: the hostname.
    pub id: String,
}

impl TillConfig {
    /// The id, or the hostname when none is set (`unknown` if even that cannot be read).
    pub fn resolved(&self) -> String {
        let id = self.id.trim();
        if !id.is_empty() {
            return id.to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `[store]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The store's directory (created 0700).
    pub dir: PathBuf,
    /// sled's page cache budget, in bytes.
    pub cache_capacity_bytes: u64,
    /// Cards kept in the cache; the least recently used is evicted past this.
    pub max_cards: u64,
    /// Queued writes held at once (pending plus dead letters); past this a write is refused.
    pub max_outbox: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        let defaults = StoreConfig::default();
        StoreSection {
            dir: PathBuf::from("/var/lib/wxcardd/store"),
            cache_capacity_bytes: defaults.cache_capacity_bytes,
            max_cards: defaults.max_cards,
            max_outbox: defaults.max_outbox,
        }
    }
}

impl StoreSection {
    /// The store's own config.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            cache_capacity_bytes: self.cache_capacity_bytes,
            max_cards: self.max_cards,
            max_outbox: self.max_outbox,
            ..StoreConfig::default()
        }
    }
}

/// `[control]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The socket's path.
    pub socket: PathBuf,
    /// The group the socket file is given (mode 0660); its members may connect. Unset or a
    /// group that does not exist: the daemon's own group.
    pub group: Option<String>,
    /// Peer uids allowed besides root and the daemon's own uid (checked with SO_PEERCRED).
    pub allowed_uids: Vec<u32>,
    /// Peer primary gids allowed (checked with SO_PEERCRED); the socket's group is always
    /// allowed.
    pub allowed_gids: Vec<u32>,
    /// Event subscribers at once.
    pub max_subscribers: usize,
    /// Events queued for one subscriber before it is dropped as too slow.
    pub subscriber_queue: usize,
    /// Connections served at once; past this a new one is answered `ERROR busy` and closed.
    /// Any uid but root's and the daemon's own may hold a quarter of them; those two have 8
    /// more beyond the cap.
    pub max_connections: usize,
    /// `[control.web]`: the same protocol over a loopback WebSocket for browser POS apps.
    pub web: crate::control::web::WebConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from("/run/wxcardd/control.sock"),
            group: Some("wxcard".into()),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            max_subscribers: 16,
            subscriber_queue: 256,
            max_connections: 64,
            web: Default::default(),
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key; the message names the
    /// line and key.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and the offending text.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config {path}{}: `{key}` {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the key (or of its section when the key is not written and its
        /// default is what is wrong); none when neither is in the file.
        line: Option<usize>,
        /// The dotted key, e.g. `api.deadline_ms`; `scanner[1].device` for the second
        /// `[[scanner]]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Reads, parses and validates a config file, with the drop-ins in `conf.d/` next to it
    /// merged over it in name order ([`dropins`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dropins = dropins::files(path)?;
        if dropins.is_empty() {
            return Config::parse(&text, path);
        }
        dropins::load(path, text, &dropins)
    }

    /// Parses and validates config text; `path` is only used in messages (and to find files
    /// the config names relative to nothing: they are used as written).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // As the daemon does: the token comes from systemd's credential when the file names
        // none (under systemd `check` sees the same credential as the start).
        if config.api.headers_file.is_none() {
            config.api.headers_file = credential_headers();
        }
        if let Some((key, reason)) = config.problem() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, &key),
                key,
                reason,
            });
        }
        Ok(config)
    }

    /// Settings that are valid but probably not what was meant, or unsafe; `wxcardd check`
    /// prints them. Each is one sentence naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let web = &self.display.web;
        if self
            .display
            .backends
            .contains(&wxcard_hal::display::BackendKind::Web)
            && !web.listen.ip().is_loopback()
            && !web.allow_remote
        {
            warnings.push(format!(
                "display.web.listen {} is not a loopback address: the kiosk page will not \
                 start (anyone on the network could read the pay code); set \
                 display.web.allow_remote = true to serve it there behind a token \
                 (wxcardctl status prints the address with it)",
                web.listen
            ));
        }
        warnings
    }

    /// The first thing start would refuse: the dotted key and what is wrong with it.
    fn problem(&self) -> Option<(String, String)> {
        fn bad(key: &str, reason: impl Into<String>) -> Option<(String, String)> {
            Some((key.to_owned(), reason.into()))
        }
        let api = &self.api;
        let url = api.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return bad("api.base_url", "must start with http:// or https://");
        }
        if api.connect_timeout_ms == 0 {
            return bad("api.connect_timeout_ms", "must be more than 0");
        }
        if api.deadline_ms < api.connect_timeout_ms {
            return bad("api.deadline_ms", "must be at least api.connect_timeout_ms");
        }
        if api.max_body_bytes < 1024 {
            return bad("api.max_body_bytes", "must be at least 1024");
        }
        // What start does with [api]: build the client (token file, CA file).
        if let Err(e) = crate::api::Client::new(api) {
            let key = match &e {
                crate::api::ClientBuildError::BadBaseUrl(_) => "api.base_url",
                crate::api::ClientBuildError::File { what, .. } => what,
                crate::api::ClientBuildError::NoCertificate { .. } => "api.ca_file",
                crate::api::ClientBuildError::BadHeaderLine { .. } => "api.headers_file",
            };
            let hint = if api.headers_file.is_some() && api.headers_file == credential_headers() {
                " (systemd passes /etc/wxcardd/api-headers as this credential: fix that file)"
            } else {
                ""
            };
            return bad(key, format!("is unusable: {e}{hint}"));
        }
        let service = &self.service;
        if service.lookup_deadline_ms == 0 {
            return bad("service.lookup_deadline_ms", "must be more than 0");
        }
        if service.write_deadline_ms == 0 {
            return bad("service.write_deadline_ms", "must be more than 0");
        }
        if service.max_offline_age_s < service.fresh_for_s {
            return bad(
                "service.max_offline_age_s",
                "must be at least service.fresh_for_s",
            );
        }
        if service.breaker_failures == 0 {
            return bad("service.breaker_failures", "must be at least 1");
        }
        if service.probe_interval_ms < 100 {
            return bad("service.probe_interval_ms", "must be at least 100");
        }
        if service.replay_backoff_base_ms == 0 {
            return bad("service.replay_backoff_base_ms", "must be more than 0");
        }
        if service.replay_backoff_max_ms < service.replay_backoff_base_ms {
            return bad(
                "service.replay_backoff_max_ms",
                "must be at least service.replay_backoff_base_ms",
            );
        }
        if self.store.max_cards == 0 {
            return bad("store.max_cards", "must be more than 0");
        }
        if self.store.max_outbox == 0 {
            return bad("store.max_outbox", "must be more than 0");
        }
        if self.store.cache_capacity_bytes < 1024 * 1024 {
            return bad("store.cache_capacity_bytes", "must be at least 1 MiB");
        }
        if self.store.dir.as_os_str().is_empty() {
            return bad("store.dir", "must not be empty");
        }
        if self.control.socket.as_os_str().is_empty() {
            return bad("control.socket", "must not be empty");
        }
        if self.control.max_subscribers == 0 {
            return bad("control.max_subscribers", "must be more than 0");
        }
        if self.control.subscriber_queue == 0 {
            return bad("control.subscriber_queue", "must be more than 0");
        }
        if self.control.max_connections == 0 {
            return bad("control.max_connections", "must be more than 0");
        }
        let mut names = std::collections::HashSet::new();
        for (i, scanner) in self.scanners.iter().enumerate() {
            if let Err(e) = wxcard_hal::scanner::scanner_name(&scanner.name) {
                return bad(&format!("scanner[{i}].name"), e.to_string());
            }
            if !names.insert(scanner.name.as_str()) {
                return bad(
                    &format!("scanner[{i}].name"),
                    format!("{:?} is used twice", scanner.name),
                );
            }
            // What start does with a scanner: build it (nothing is opened yet).
            if let Err(e) = check_scanner(scanner) {
                return bad(&format!("scanner[{i}].device"), e);
            }
        }
        if let Err(e) = wxcard_hal::scanner::Classifier::new(&self.classify) {
            return bad("classify.rules", e.to_string());
        }
        let png = &self.display.png;
        if self
            .display
            .backends
            .contains(&wxcard_hal::display::BackendKind::Png)
            && (png.width == 0 || png.height == 0 || png.width > 8192 || png.height > 8192)
        {
            return bad("display.png.width", "and height must be 1 to 8192");
        }
        if self.till.id.len() > 64 || self.till.id.chars().any(|c| c.is_control()) {
            return bad(
                "till.id",
                "must be at most 64 characters, no control characters",
            );
        }
        if let Some(problem) = self.metrics.problem() {
            return Some(problem);
        }
        if self.paycode.ttl_s == 0 {
            return bad("paycode.ttl_s", "must be more than 0");
        }
        if self.paycode.refresh_before_s >= self.paycode.ttl_s {
            return bad(
                "paycode.refresh_before_s",
                "must be less than paycode.ttl_s",
            );
        }
        if let Err((key, why)) = self.control.web.validate() {
            return bad(key, why);
        }
        None
    }
}

/// Where systemd's `LoadCredential=api-headers:...` puts the token file.
pub fn credential_headers() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = Path::new(&dir).join("api-headers");
    path.exists().then_some(path)
}

/// Builds a scanner as the daemon does, without opening anything (standard input is not
/// touched: an empty reader stands in for it).
fn check_scanner(scanner: &ScannerConfig) -> Result<(), String> {
    use wxcard_hal::scanner::DeviceConfig;
    let built = match &scanner.device {
        DeviceConfig::Stdin => wxcard_hal::scanner::stdin::LineScanner::new(
            &scanner.name,
            tokio::io::empty(),
            &scanner.frame,
            std::time::Duration::from_millis(scanner.duplicate_window_ms),
        )
        .map(drop),
        _ => wxcard_hal::scanner::AnyScanner::from_config(scanner).map(drop),
    };
    built.map_err(|e| e.to_string())
}

/// The 1-based line of a dotted key (`scanner[1].device` for the second `[[scanner]]`) in
/// `text`: the key's own line, or the nearest enclosing table's written in the file.
fn line_of(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut offset = None;
    let mut table: &DeTable = doc.get_ref();
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        offset = Some(k.span().start);
        let value = match (v.get_ref(), index) {
            (DeValue::Array(items), Some(i)) => match items.get(i) {
                Some(item) => {
                    offset = Some(item.span().start);
                    item.get_ref()
                }
                None => break,
            },
            (value, _) => value,
        };
        match value {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    offset.map(|o| text[..o.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_config_takes_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[api]\nbase_url = \"http://x/\"\ndeadline_msec = 5\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("deadline_msec"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn errors_name_the_right_key_and_its_line() {
        let cases = [
            (
                "[service]\nwrite_deadline_ms = 0\n",
                "service.write_deadline_ms",
                2,
            ),
            (
                "[service]\nlookup_deadline_ms = 0\n",
                "service.lookup_deadline_ms",
                2,
            ),
            (
                "[store]\ndir = \"/x\"\nmax_cards = 0\n",
                "store.max_cards",
                3,
            ),
            ("[store]\nmax_outbox = 0\n", "store.max_outbox", 2),
            ("[paycode]\nttl_s = 0\n", "paycode.ttl_s", 2),
            (
                "[api]\nheaders_file = \"/nonexistent/api-headers\"\n",
                "api.headers_file",
                2,
            ),
            (
                "[[scanner]]\nname = \"a\"\ndevice = { kind = \"stdin\" }\n\n[[scanner]]\nname = \"b\"\n\
                 device = { kind = \"evdev\", path = \"\" }\n",
                "scanner[1].device",
                7,
            ),
        ];
        for (text, key, line) in cases {
            match parse(text) {
                Err(ConfigError::Invalid {
                    key: k, line: l, ..
                }) => {
                    assert_eq!((k.as_str(), l), (key, Some(line)), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("[api]\nbase_url = \"ftp://x/\"\n").unwrap_err();
        assert!(err.to_string().contains("api.base_url"), "{err}");
        let err = parse("[api]\nconnect_timeout_ms = 3000\ndeadline_ms = 1000\n").unwrap_err();
        assert!(err.to_string().contains("api.deadline_ms"), "{err}");
        let err = parse("[api]\ndeadline_ms = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("deadline_ms"), "{err}");
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// The shipped example is valid and shows the defaults (so README and the file agree
    /// with the code); its commented-out scanner and classify examples are valid too.
    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wxcardd.toml");
        let config = Config::load(&path).unwrap();
        let defaults = Config::default();
        assert_eq!(config.api, defaults.api);
        assert_eq!(config.service, defaults.service);
        assert_eq!(config.store, defaults.store);
        assert_eq!(config.control, defaults.control);
        assert_eq!(config.display, defaults.display);
        assert_eq!(config.paycode, defaults.paycode);
        assert_eq!(config.classify, defaults.classify);
        assert_eq!(config.metrics, defaults.metrics);
        assert_eq!(config.till, defaults.till);
        assert!(config.scanners.is_empty());

        // Uncomment the `# [[scanner]]`, `# [scanner.frame]` and `# [[classify.rules]]`
        // blocks: they must parse as shown.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut uncommented = String::new();
        let mut in_example = false;
        for line in text.lines() {
            let bare = line.strip_prefix("# ").unwrap_or(line);
            if bare.starts_with("[[scanner]]")
                || bare.starts_with("[scanner.frame]")
                || bare.starts_with("[[classify.rules]]")
            {
                in_example = true;
            } else if !line.starts_with('#') {
                in_example = false;
            }
            if in_example && line.starts_with("# ") {
                uncommented.push_str(bare);
            } else {
                uncommented.push_str(line);
            }
            uncommented.push('\n');
        }
        let config = Config::parse(&uncommented, &path).unwrap();
        assert_eq!(config.scanners.len(), 2);
        assert_eq!(config.classify, defaults.classify);
    }
}
