//! Shared helpers for integration tests that spawn the real binaries.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// The backend simulator for the daemon tests. It runs in-process (the `wxcard-sim` library on
/// a thread of its own with its own runtime: tests of this package cannot name another
/// package's binary) and is driven over its admin HTTP API, as the tests drove the process.
pub struct SimProcess {
    sim: wxcard_sim::BlockingSim,
    /// Where the vendor API listens.
    pub api: std::net::SocketAddr,
    /// Where the admin API listens.
    pub admin: std::net::SocketAddr,
}

impl SimProcess {
    /// Starts the simulator with the built-in cards on free loopback ports. `extra_args` is
    /// kept for the callers' sake and must be empty (use [`SimProcess::with_cards`]).
    pub fn start(extra_args: &[&str]) -> SimProcess {
        assert!(extra_args.is_empty(), "unsupported: {extra_args:?}");
        Self::with_cards(wxcard_sim::default_cards())
    }

    /// Starts the simulator with `cards` on free loopback ports.
    pub fn with_cards(cards: Vec<wxcard_sim::Card>) -> SimProcess {
        let sim = wxcard_sim::Simulator::spawn_in_thread(wxcard_sim::SimConfig {
            cards,
            ..wxcard_sim::SimConfig::default()
        })
        .expect("the simulator starts");
        let (api, admin) = (sim.api_addr(), sim.admin_addr());
        SimProcess { sim, api, admin }
    }

    /// The base URL for a client.
    pub fn base_url(&self) -> String {
        self.sim.base_url()
    }

    /// Puts a fault mode in force (`none`, `refuse`, `http500`, ...), through the admin API
    /// (the answer comes once it is in force).
    pub fn set_fault(&self, mode: &str) {
        let (status, body) = self.admin_send("PUT", "faults", &format!(r#"{{"mode":"{mode}"}}"#));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mode"].as_str(), Some(mode));
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}/admin/{path}", self.admin)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .max_idle_connections(0)
            .build()
            .into()
    }

    fn answer(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, serde_json::Value) {
        let mut response = result.expect("an HTTP answer");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// GET on the admin API: the status and the parsed body.
    pub fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        Self::answer(Self::agent().get(self.admin_url(path)).call())
    }

    /// PUT, POST or DELETE on the admin API: the status and the parsed body.
    pub fn admin_send(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let agent = Self::agent();
        let url = self.admin_url(path);
        Self::answer(match method {
            "PUT" => agent.put(url).send(body),
            "POST" => agent.post(url).send(body),
            "DELETE" => agent.delete(url).call(),
            other => panic!("method {other}"),
        })
    }

    /// The admin API's counters.
    pub fn counters(&self) -> serde_json::Value {
        self.admin_get("counters").1
    }

    /// Requests the simulator received at `endpoint` (reads and writes alike).
    pub fn requests(&self, endpoint: &str) -> u64 {
        self.counters()["requests"][endpoint].as_u64().unwrap_or(0)
    }

    /// `(receipts, applications)` of one key of a write endpoint.
    pub fn write_count(&self, endpoint: &str, key: &str) -> (u64, u64) {
        let c = self.counters();
        let entry = &c[endpoint][key];
        (
            entry["receipts"].as_u64().unwrap_or(0),
            entry["applications"].as_u64().unwrap_or(0),
        )
    }
}

/// Writes a config file with the given `[api]` base URL into `dir`; returns its path.
pub fn write_config(dir: &std::path::Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("wxcardd.toml");
    std::fs::write(
        &path,
        format!(
            "[metrics]\ntextfile_path = \"{}\"\n\n\
             [api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 500\ndeadline_ms = 3000\n{extra}",
            dir.join("no-node-exporter/wxcardd.prom").display()
        ),
    )
    .unwrap();
    path
}

/// A running `wxcardd` process with its own notify socket, killed on drop.
pub struct DaemonProcess {
    /// The process.
    pub child: Child,
    /// Where systemd would listen: READY=1, WATCHDOG=1, STATUS= arrive here.
    pub notify: std::os::unix::net::UnixDatagram,
    /// The control socket.
    pub socket: std::path::PathBuf,
}

impl DaemonProcess {
    /// Starts `wxcardd --config CONFIG` and waits for READY=1 (up to 20 s).
    pub fn start(config: &std::path::Path, socket: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::start_logging_to(config, socket, env, None)
    }

    /// Like [`DaemonProcess::start`], with the daemon's log (stderr) going to `log` if given.
    pub fn start_logging_to(
        config: &std::path::Path,
        socket: &std::path::Path,
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let dir = config.parent().unwrap();
        let notify_path = dir.join(format!("notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&notify_path);
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(stderr)
            .spawn()
            .expect("wxcardd starts");
        let mut daemon = DaemonProcess {
            child,
            notify,
            socket: socket.to_owned(),
        };
        daemon.wait_notify("READY=1");
        daemon
    }

    /// Reads notify datagrams until one contains `what`; returns that datagram.
    pub fn wait_notify(&mut self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.notify.recv(&mut buf).unwrap_or_else(|e| {
                panic!("no {what} from wxcardd: {e}");
            });
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.lines().any(|l| l == what || l.starts_with(what)) {
                return text;
            }
        }
    }

    /// A connected control client.
    pub fn client(&self) -> wxcardd::control::client::ControlClient {
        wxcardd::control::client::ControlClient::connect(
            &self.socket,
            Some(std::time::Duration::from_secs(20)),
        )
        .expect("control socket")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: i32) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, signal) };
        self.child.wait().unwrap()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon config in `dir` against `base_url`, with the store and socket inside `dir`.
/// `store_extra` goes under `[store]`, `extra` after everything (new sections).
pub fn daemon_config(
    dir: &std::path::Path,
    base_url: &str,
    store_extra: &str,
    extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.join("control.sock");
    let text = format!(
        "[api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 300\ndeadline_ms = 2000\n\n\
         [service]\nlookup_deadline_ms = 500\nwrite_deadline_ms = 1000\nprobe_interval_ms = 100\n\
         replay_backoff_base_ms = 50\nreplay_backoff_max_ms = 200\n\n\
         [store]\ndir = \"{}\"\n{store_extra}\n\n[metrics]\ntextfile_path = \"{}\"\n\n\
         [control]\nsocket = \"{}\"\n{extra}",
        dir.join("store").display(),
        dir.join("no-node-exporter/wxcardd.prom").display(),
        socket.display()
    );
    let path = dir.join("wxcardd.toml");
    std::fs::write(&path, text).unwrap();
    (path, socket)
}

/// A daemon config in `dir` whose executor sleeps unless a peer acts: no scanner, no
/// display, no metrics file, no probe due. `control_extra` goes under `[control]`.
pub fn quiet_daemon_config(
    dir: &std::path::Path,
    base_url: &str,
    control_extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.join("control.sock");
    let config = dir.join("wxcardd.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{base_url}\"\n\n[service]\nprobe_interval_ms = 600000\n\n\
             [store]\ndir = \"{}\"\n\n[metrics]\ntextfile = false\n\n\
             [control]\nsocket = \"{}\"\n{control_extra}",
            dir.join("store").display(),
            socket.display()
        ),
    )
    .unwrap();
    (config, socket)
}

/// Reads one HTTP request head (up to the blank line; GETs have no body) from a scripted
/// backend's socket; None at end of stream.
pub fn read_http_head(stream: &mut impl std::io::Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Asserts that a log (the daemon's or a command's stderr, at trace level) holds none of
/// `secrets` (the API token, a member's personal data) and none of the HTTP and TLS crates'
/// debug or trace lines: they hex-dump request heads, the token included, split over lines
/// where a plain search would not find it.
pub fn assert_log_keeps_secrets(log: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    for noisy in [
        "ureq_proto::util",
        "DEBUG ureq",
        "TRACE ureq",
        "TRACE rustls",
        "DEBUG rustls",
    ] {
        assert!(!log.contains(noisy), "{noisy} lines in the log:\n{log}");
    }
}

/// The scanner tests' pty fixtures, shared rather than copied.
#[path = "../../hal/tests/common/mod.rs"]
pub mod hal_common;

/// Reads lines from a subscribed client until one satisfies `want` (events and answers).
pub fn wait_event(
    client: &mut wxcardd::control::client::ControlClient,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let line = client
            .read_line()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        if want(&line) {
            return line;
        }
    }
}

/// The display tests' QR decoding (rqrr, independent of the `qrcode` encoder), shared.
#[path = "../../hal/tests/display_support/mod.rs"]
pub mod display_support;
