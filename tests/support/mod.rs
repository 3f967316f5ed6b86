//! Shared helpers for integration tests that spawn the real binaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `wxcard-sim` process, killed on drop.
pub struct SimProcess {
    child: Child,
    /// The vendor API's address.
    pub api: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
}

impl SimProcess {
    /// Starts `wxcard-sim` on free loopback ports and waits for its ready line.
    pub fn start(extra_args: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxcard-sim"))
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wxcard-sim starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in ready line {line:?}"))
                .parse()
                .unwrap()
        };
        let (api, admin) = (field("api="), field("admin="));
        SimProcess { child, api, admin }
    }

    /// The base URL for a client.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.api)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file with the given `[api]` base URL into `dir`; returns its path.
pub fn write_config(dir: &std::path::Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("wxcardd.toml");
    std::fs::write(
        &path,
        format!("[api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 500\ndeadline_ms = 3000\n{extra}"),
    )
    .unwrap();
    path
}
