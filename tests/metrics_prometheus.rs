//! The metrics with the real tools from Debian's packages: the daemon's textfile and its
//! `/metrics` pass `promtool check metrics`; a real node_exporter reads the textfile and a
//! real Prometheus scrapes it, and its HTTP API shows what the test caused (three writes
//! queued while the backend refuses connections).

mod prom_support;
mod support;

use std::time::Duration;

use prom_support::{Daemon, free_port, have_tool, poll, promtool};
use serde_json::Value;
use support::{DaemonProcess, SimProcess};
use wxcardd::api::MemberInfo;
use wxcardd::control::protocol::{Command, MemberParams};

fn http_get(url: &str, host: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    match req.call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn config(dir: &std::path::Path, base_url: &str, textfile_dir: &std::path::Path, listen: u16) {
    let text = format!(
        "[api]\nbase_url = \"{base_url}\"\nconnect_timeout_ms = 300\ndeadline_ms = 1000\n\n\
         [service]\nlookup_deadline_ms = 500\nwrite_deadline_ms = 1000\nprobe_interval_ms = 200\n\n\
         [store]\ndir = \"{}\"\n\n[control]\nsocket = \"{}\"\n\n\
         [metrics]\ntextfile_path = \"{}\"\ninterval_s = 1\nlisten = \"127.0.0.1:{listen}\"\n\n\
         [[scanner]]\nname = \"front\"\ndevice = {{ kind = \"serial\", path = \"{}\" }}\n",
        dir.join("store").display(),
        dir.join("control.sock").display(),
        textfile_dir.join("wxcardd.prom").display(),
        dir.join("no-such-tty").display(),
    );
    std::fs::write(dir.join("wxcardd.toml"), text).unwrap();
}

#[test]
fn prometheus_scrapes_the_textfile_through_node_exporter() {
    if !have_tool("promtool", "prometheus")
        || !have_tool("prometheus", "prometheus")
        || !have_tool("prometheus-node-exporter", "prometheus-node-exporter")
    {
        return;
    }
    let sim = SimProcess::start(&[]);
    sim.set_fault("refuse");
    let dir = tempfile::tempdir().unwrap();
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    let listen = free_port();
    config(dir.path(), &sim.base_url(), &textfiles, listen);
    let daemon = DaemonProcess::start_logging_to(
        &dir.path().join("wxcardd.toml"),
        &dir.path().join("control.sock"),
        &[],
        Some(&dir.path().join("wxcardd.log")),
    );

    // Three writes queued while the backend refuses connections.
    let mut client = daemon.client();
    for code in [
        "812345678901234570",
        "812345678901234571",
        "812345678901234572",
    ] {
        let member = MemberInfo {
            wx_code: code.into(),
            ..MemberInfo::default()
        };
        let answer = client
            .request(&Command::Activate(MemberParams { member }))
            .unwrap();
        assert_eq!(answer["result"]["outcome"], "queued", "{answer}");
    }

    // The textfile says so, and passes promtool.
    let prom = textfiles.join("wxcardd.prom");
    let text = poll(Duration::from_secs(10), || {
        std::fs::read_to_string(&prom)
            .ok()
            .filter(|t| t.lines().any(|l| l == "wxcardd_outbox_pending 3"))
    })
    .unwrap_or_else(|| {
        panic!(
            "no wxcardd_outbox_pending 3 in {}: {:?}",
            prom.display(),
            std::fs::read_to_string(&prom)
        )
    });
    let checked = promtool(&["check", "metrics"], Some(text.as_bytes()));
    assert!(
        checked.status.success(),
        "promtool check metrics on the textfile: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for line in [
        "wxcardd_backend_state{state=\"offline\"} 1",
        "wxcardd_scanner_connected{scanner=\"front\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(text.contains("wxcardd_build_info{version=\""), "{text}");
    for code in ["812345678901234570", "812345678901234571"] {
        assert!(!text.contains(code), "a card code in the metrics:\n{text}");
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&prom).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "node_exporter runs as another user");

    // The endpoint: the same metrics, promtool-clean; another site's Host is refused.
    let url = format!("http://127.0.0.1:{listen}/metrics");
    let (code, body) = http_get(&url, None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.lines().any(|l| l == "wxcardd_outbox_pending 3"),
        "{body}"
    );
    let checked = promtool(&["check", "metrics"], Some(body.as_bytes()));
    assert!(
        checked.status.success(),
        "promtool check metrics on /metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let (code, _) = http_get(&url, Some(&format!("evil.example:{listen}")));
    assert_eq!(code, 421, "a rebound DNS name must not read the metrics");

    // node_exporter reads the textfile; Prometheus scrapes node_exporter.
    let node_port = free_port();
    let node = Daemon::spawn(
        "prometheus-node-exporter",
        &[
            format!("--web.listen-address=127.0.0.1:{node_port}"),
            "--collector.disable-defaults".into(),
            "--collector.textfile".into(),
            format!("--collector.textfile.directory={}", textfiles.display()),
        ],
        &dir.path().join("node_exporter.log"),
    );
    let prom_port = free_port();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
        ),
    )
    .unwrap();
    let prometheus = Daemon::spawn(
        "prometheus",
        &[
            format!("--config.file={}", prom_config.display()),
            format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let query = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=wxcardd_outbox_pending");
    let value = poll(Duration::from_secs(30), || {
        let (code, body) = http_get(&query, None);
        if code != 200 {
            return None;
        }
        let answer: Value = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?.first()?.clone();
        Some(result["value"][1].as_str()?.to_owned())
    })
    .unwrap_or_else(|| {
        panic!(
            "Prometheus never had wxcardd_outbox_pending\nnode_exporter: {}\nprometheus: {}",
            node.log_text(),
            prometheus.log_text()
        )
    });
    assert_eq!(value, "3");
    // node_exporter read the file without an error.
    let query =
        format!("http://127.0.0.1:{prom_port}/api/v1/query?query=node_textfile_scrape_error");
    let (_, body) = http_get(&query, None);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["data"]["result"][0]["value"][1], "0", "{body}");
    drop(client);
}
