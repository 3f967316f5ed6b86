//! `wxcardd check` accepts exactly what a real start accepts: for each value the config
//! reference allows to get wrong, `check` and a start of the real binary both refuse it with
//! exit 78, and both name the same key, file and line.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon_config;

/// How a run of the binary ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It exited with this code; its stderr.
    Exited(i32, String),
    /// It sent READY=1 (and was then stopped).
    Ready,
}

fn check(config: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    Outcome::Exited(
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start(config: &Path) -> Outcome {
    let dir = config.parent().unwrap();
    let notify_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let stderr = dir.join("start.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Outcome::Exited(
                status.code().unwrap_or(-1),
                std::fs::read_to_string(&stderr).unwrap(),
            );
        }
        if let Ok(n) = notify.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Ready;
            }
        }
        assert!(
            Instant::now() < deadline,
            "wxcardd neither exited nor got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Turns the valid config text into one with a mistake.
type Breaks = dyn Fn(String) -> String;

#[test]
fn check_and_start_agree_on_every_invalid_value() {
    // (what, how to break the valid base config, the key to name)
    let cases: &[(&str, &Breaks, &str)] = &[
        (
            "missing headers_file",
            &|t| {
                t.replace(
                    "[api]\n",
                    "[api]\nheaders_file = \"/nonexistent/api-headers\"\n",
                )
            },
            "api.headers_file",
        ),
        (
            "missing ca_file",
            &|t| {
                t.replace("http://127.0.0.1:9/", "https://127.0.0.1:9/")
                    .replace("[api]\n", "[api]\nca_file = \"/nonexistent/ca.pem\"\n")
            },
            "api.ca_file",
        ),
        (
            "evdev path \"\"",
            &|t| {
                t + "\n[[scanner]]\nname = \"front\"\ndevice = { kind = \"evdev\", path = \"\" }\n"
            },
            "scanner[0].device",
        ),
        (
            "serial path \"\"",
            &|t| {
                t + "\n[[scanner]]\nname = \"front\"\ndevice = { kind = \"serial\", path = \"\" }\n"
            },
            "scanner[0].device",
        ),
        (
            "serial baud 0",
            &|t| {
                t + "\n[[scanner]]\nname = \"front\"\n\
                     device = { kind = \"serial\", path = \"/dev/ttyACM0\", baud = 0 }\n"
            },
            "scanner[0].device",
        ),
        (
            "two scanners with one name",
            &|t| {
                t + "\n[[scanner]]\nname = \"front\"\ndevice = { kind = \"stdin\" }\n\
                     \n[[scanner]]\nname = \"front\"\ndevice = { kind = \"stdin\" }\n"
            },
            "scanner[1].name",
        ),
        (
            "write_deadline_ms = 0",
            &|t| t.replace("write_deadline_ms = 1000", "write_deadline_ms = 0"),
            "service.write_deadline_ms",
        ),
        (
            "lookup_deadline_ms = 0",
            &|t| t.replace("lookup_deadline_ms = 500", "lookup_deadline_ms = 0"),
            "service.lookup_deadline_ms",
        ),
        (
            "breaker_failures = 0",
            &|t| t.replace("[service]\n", "[service]\nbreaker_failures = 0\n"),
            "service.breaker_failures",
        ),
        (
            "replay_backoff_base_ms = 0",
            &|t| t.replace("replay_backoff_base_ms = 50", "replay_backoff_base_ms = 0"),
            "service.replay_backoff_base_ms",
        ),
        (
            "max_cards = 0",
            &|t| t.replace("[store]\n", "[store]\nmax_cards = 0\n"),
            "store.max_cards",
        ),
        (
            "max_outbox = 0",
            &|t| t.replace("[store]\n", "[store]\nmax_outbox = 0\n"),
            "store.max_outbox",
        ),
        (
            "subscriber_queue = 0",
            &|t| t.replace("[control]\n", "[control]\nsubscriber_queue = 0\n"),
            "control.subscriber_queue",
        ),
        (
            "max_subscribers = 0",
            &|t| t.replace("[control]\n", "[control]\nmax_subscribers = 0\n"),
            "control.max_subscribers",
        ),
        (
            "paycode ttl_s = 0",
            &|t| t + "\n[paycode]\nttl_s = 0\n",
            "paycode.ttl_s",
        ),
        (
            "png width 0",
            &|t| t + "\n[display]\nbackends = [\"png\"]\n\n[display.png]\nwidth = 0\n",
            "display.png.width",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = daemon_config(dir.path(), "http://127.0.0.1:9/", "", "");
    let valid = std::fs::read_to_string(&config).unwrap();
    assert_eq!(check(&config), Outcome::Exited(0, String::new()));
    assert_eq!(start(&config), Outcome::Ready, "the base config starts");

    let mut wrong = Vec::new();
    for (what, breaks, key) in cases {
        let text = breaks(valid.clone());
        assert_ne!(text, valid, "{what}: the case changes the config");
        std::fs::write(&config, &text).unwrap();
        // The key's line: the last line setting its leaf (broken values are written last
        // or are the only ones).
        let leaf = key.rsplit('.').next().unwrap();
        let line = text
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| l.starts_with(&format!("{leaf} =")))
            .map(|i| i + 1);
        let (checked, started) = (check(&config), start(&config));
        let names = |o: &Outcome| match o {
            Outcome::Exited(78, err) => {
                err.contains(&format!("`{key}`"))
                    && err.contains(&config.display().to_string())
                    && line.is_some_and(|l| err.contains(&format!("line {l}")))
            }
            _ => false,
        };
        if !names(&checked) || !names(&started) {
            wrong.push(format!(
                "{what} (want `{key}` line {line:?}, exit 78):\n  check: {checked:?}\n  start: {started:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "check and start disagree or name the wrong key:\n{}",
        wrong.join("\n")
    );
}
