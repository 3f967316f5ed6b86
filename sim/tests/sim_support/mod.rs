//! Shared by the `sim_*` tests: spawns the real `wxcard-sim` binary and talks HTTP to it.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ACTIVE: &str = "812345678901234567";
pub const ACTIVE_GOLD: &str = "812345678901234568";
pub const ACTIVE_EMPTY: &str = "812345678901234569";
pub const INACTIVE: &str = "812345678901234570";
pub const LOST: &str = "812345678901234571";
pub const VOIDED: &str = "812345678901234572";
pub const UNAVAILABLE: &str = "812345678901234573";
pub const UNKNOWN: &str = "899999999999999999";

/// A running `wxcard-sim` process, stopped with SIGTERM on drop.
pub struct SimProcess {
    child: Option<Child>,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections(0)
        .build()
        .into()
}

/// The status and parsed JSON body of an answer; panics on a transport error.
pub fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = result.expect("an HTTP answer");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn addr_after(line: &str, key: &str) -> SocketAddr {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
        + key.len();
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].trim().parse().expect("an address")
}

impl SimProcess {
    /// Starts the binary with `--listen 127.0.0.1:0` plus `args`, and waits for its ready
    /// line (at most 20 s).
    pub fn spawn(args: &[&str]) -> SimProcess {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> SimProcess {
        let dir = tempfile::tempdir().expect("a temp dir");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_wxcard-sim"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("wxcard-sim starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a ready line within 20 s");
        assert!(line.starts_with("wxcard-sim listening api="), "{line:?}");
        assert!(line.ends_with('\n'), "{line:?}");
        SimProcess {
            child: Some(child),
            api: addr_after(&line, "api="),
            admin: addr_after(&line, "admin="),
            stderr_path,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/weixin/wxcard/{path}", self.api)
    }

    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        answer(
            agent(Duration::from_secs(10))
                .get(self.url(path_and_query))
                .call(),
        )
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        answer(
            agent(Duration::from_secs(10))
                .post(self.url(path))
                .header("content-type", "application/json")
                .send(body),
        )
    }

    pub fn member_card(&self, wx_code: &str) -> (u16, Value) {
        self.get(&format!("getmembercard?cardId=&wxCode={wx_code}"))
    }

    pub fn activate(&self, wx_code: &str) -> (u16, Value) {
        self.post("activemember", &format!(r#"{{"wxCode":"{wx_code}"}}"#))
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}/admin/{path}", self.admin)
    }

    pub fn admin_get(&self, path: &str) -> (u16, Value) {
        answer(
            agent(Duration::from_secs(10))
                .get(self.admin_url(path))
                .call(),
        )
    }

    pub fn admin_send(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let agent = agent(Duration::from_secs(10));
        let url = self.admin_url(path);
        answer(match method {
            "PUT" => agent.put(url).send(body),
            "POST" => agent.post(url).send(body),
            "DELETE" => agent.delete(url).call(),
            other => panic!("method {other}"),
        })
    }

    /// Sets the fault mode through the admin API (the answer comes once it is in force).
    pub fn set_mode(&self, mode: &str) {
        let (status, body) = self.admin_send("PUT", "faults", &format!(r#"{{"mode":"{mode}"}}"#));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mode"].as_str(), Some(mode));
    }

    pub fn clear(&self) {
        let (status, body) = self.admin_send("DELETE", "faults", "");
        assert_eq!(status, 200, "{body}");
    }

    pub fn counters(&self) -> Value {
        self.admin_get("counters").1
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

    pub fn requests(&self, endpoint: &str) -> u64 {
        self.counters()["requests"][endpoint].as_u64().unwrap_or(0)
    }

    /// Sends a signal and waits (at most 10 s) for the process to exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(pid, signal) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait");
            let _ = tx.send(status);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("wxcard-sim did not exit within 10 s of signal {signal}"))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop_with(libc::SIGTERM);
        }
    }
}

/// Polls `cond` until it holds, at most `limit`; for state that another process changes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Sends one raw HTTP/1.1 request on `stream` and reads until EOF or `Content-Length`.
/// Returns the head and the body bytes read, and whether the connection was closed.
pub fn raw_exchange(stream: &mut TcpStream, request: &str) -> (String, Vec<u8>) {
    stream.write_all(request.as_bytes()).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let len = content_length(&head);
            if data.len() >= end + 4 + len {
                return (head, data[end + 4..].to_vec());
            }
        }
    }
    match find(&data, b"\r\n\r\n") {
        Some(end) => (
            String::from_utf8_lossy(&data[..end]).to_string(),
            data[end + 4..].to_vec(),
        ),
        None => (String::from_utf8_lossy(&data).to_string(), Vec::new()),
    }
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}

pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}
