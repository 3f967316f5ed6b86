//! Issue 10: no local user can take the till down by holding the daemon's file descriptors,
//! subscriber slots or CPU.
//!
//! The real `wxcardd` binary runs with a soft limit of 256 file descriptors (set with
//! setrlimit before exec, as `prlimit --nofile=256` would), so that running out comes after a
//! few hundred connections. Each test attacks as a local user would, then measures what a
//! broken daemon does: CPU time of the daemon (/proc/PID/stat), growth of its log, its open
//! file descriptors (/proc/PID/fd), and whether a legitimate client still gets an answer.
//!
//! `WXCARDD_BIN` runs the tests against another build of the daemon (to show they fail on the
//! code before the fix).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::SimProcess;

/// A daemon under attack: its pid, log file, control socket and the notify socket that
/// stands in for systemd.
struct Daemon {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
    notify: UnixDatagram,
}

impl Daemon {
    /// Starts the daemon with `extra` config (after `[control] socket`) and at most `nofile`
    /// open files, and waits for READY=1.
    fn start(dir: &Path, sim: &SimProcess, extra: &str, nofile: u64) -> Daemon {
        Self::start_with(dir, sim, extra, nofile, |command| {
            // A non-dumpable daemon's /proc/PID/fd is root's only: as another user, let the
            // test count its descriptors (a_crashing_daemon_writes_no_core keeps it off).
            if !is_root() {
                command.env("WXCARDD_CORE_DUMPS", "1");
            }
        })
    }

    /// [`Daemon::start`], with `tweak` applied to the command before it is spawned.
    fn start_with(
        dir: &Path,
        sim: &SimProcess,
        extra: &str,
        nofile: u64,
        tweak: impl FnOnce(&mut Command),
    ) -> Daemon {
        Self::start_at(dir, &sim.base_url(), "", extra, nofile, tweak)
    }

    /// [`Daemon::start_with`] against the backend at `base_url`, with `service` added to the
    /// `[service]` section.
    fn start_at(
        dir: &Path,
        base_url: &str,
        service: &str,
        extra: &str,
        nofile: u64,
        tweak: impl FnOnce(&mut Command),
    ) -> Daemon {
        let (config, socket) = support::daemon_config(dir, base_url, "", extra);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replacen("[service]\n", &format!("[service]\n{service}"), 1),
        )
        .unwrap();
        let log = dir.join("wxcardd.log");
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let bin = std::env::var_os("WXCARDD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wxcardd")));
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        tweak(&mut command);
        let child = command.spawn().expect("wxcardd starts");
        let daemon = Daemon {
            child,
            log,
            socket,
            notify,
        };
        daemon.wait_notify("READY=1").expect("READY=1 from wxcardd");
        daemon
    }

    /// Reads notify datagrams until one has the line `what`; an error when none came within
    /// the socket's timeout.
    fn wait_notify(&self, what: &str) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.notify.recv(&mut buf)?;
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == what)
            {
                return Ok(());
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the daemon.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// User plus system CPU time of the daemon so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name is in parentheses and may hold spaces: count fields after it.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Resident memory of the daemon, in KB.
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// CPU ticks used and log bytes written over `window`.
    fn cost_over(&self, window: Duration) -> (u64, u64) {
        let (cpu, log) = (self.cpu_ticks(), self.log_len());
        std::thread::sleep(window);
        (self.cpu_ticks() - cpu, self.log_len() - log)
    }

    /// A raw connection to the control socket whose first line arrived within `timeout`.
    fn first_line(&self, timeout: Duration) -> Result<(BufReader<UnixStream>, Value), String> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => Err("closed without a line".into()),
            Ok(_) => Ok((
                reader,
                serde_json::from_str(&line).map_err(|e| e.to_string())?,
            )),
            Err(e) => Err(format!("no first line within {timeout:?}: {e}")),
        }
    }

    /// Whether a legitimate client gets in and gets a `status` answer within `timeout`.
    fn status_answer(&self, timeout: Duration) -> Result<Value, String> {
        let (mut reader, version) = self.first_line(timeout)?;
        if version["class"] != "VERSION" {
            return Err(format!("first line is not VERSION: {version}"));
        }
        reader
            .get_mut()
            .write_all(b"{\"id\":1,\"cmd\":\"status\"}\n")
            .unwrap();
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("no status answer: {e}"))?;
        let answer: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if answer["class"] != "RESULT" {
            return Err(format!("status answer: {answer}"));
        }
        Ok(answer)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's budget while attacked, per second of the window: a spinning accept loop
/// uses a whole core (100 ticks a second) and writes megabytes of log.
const MAX_CPU_TICKS_PER_S: u64 = 25;
const MAX_LOG_BYTES_PER_S: u64 = 16 * 1024;

fn assert_quiet(daemon: &Daemon, what: &str) {
    let window = Duration::from_secs(2);
    let (cpu, log) = daemon.cost_over(window);
    eprintln!("{what}: {cpu} CPU ticks and {log} log bytes in {window:?}");
    assert!(
        cpu <= MAX_CPU_TICKS_PER_S * window.as_secs(),
        "{what}: the daemon used {cpu} CPU ticks in {window:?} (a busy loop)"
    );
    assert!(
        log <= MAX_LOG_BYTES_PER_S * window.as_secs(),
        "{what}: the daemon wrote {log} bytes of log in {window:?}"
    );
}

/// Hundreds of idle connections to the kiosk page (any local uid can open them) must not
/// exhaust the daemon's file descriptors: past `[display.web] max_clients` a connection gets
/// a 503 and is closed; the daemon does not spin or flood its log, and the POS app still
/// gets in on the control socket.
#[test]
fn a_kiosk_port_flood_leaves_the_control_socket_usable() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "\n[display]\nbackends = [\"web\"]\n[display.web]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let daemon = Daemon::start(dir.path(), &sim, &extra, 256);
    let before = daemon.fds();

    // As many as the kernel lets through (a daemon that stops accepting fills its backlog).
    let mut flood = Vec::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut failed_in_a_row = 0;
    while flood.len() < 400 && failed_in_a_row < 3 {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                flood.push(s);
                failed_in_a_row = 0;
            }
            Err(_) => failed_in_a_row += 1,
        }
    }
    // Over the cap, connections are answered 503 and closed by the daemon: poll until the
    // daemon holds at most its cap (16) more than before.
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.fds() > before + 16 + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "flood: {} connected, daemon fds {} (before {before})",
        flood.len(),
        daemon.fds()
    );
    let last = flood.last_mut().unwrap();
    // Read to the end: the daemon answers every connection in its backlog in turn (bounded
    // wait, generous for a loaded machine).
    last.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = String::new();
    let _ = last.read_to_string(&mut answer);

    // The POS app connects; a broken daemon now fails accept with EMFILE in a loop.
    let pos = std::thread::spawn({
        let socket = daemon.socket.clone();
        move || {
            let stream = UnixStream::connect(socket);
            std::thread::sleep(Duration::from_secs(3));
            stream
        }
    });
    assert_quiet(&daemon, "400 kiosk connections");
    drop(pos.join());
    let status = daemon.status_answer(Duration::from_secs(5));
    assert!(status.is_ok(), "the POS app cannot get in: {status:?}");
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "connection 400 to the kiosk port got {answer:?}, not a 503"
    );
    assert!(
        daemon.fds() <= before + 16 + 4,
        "the daemon holds {} fds, {before} before the flood",
        daemon.fds()
    );
}

/// A python3 helper that opens `count` connections to the control socket as uid/gid 65534
/// (nobody, nogroup), reads each one's first line, prints a summary and holds them all until
/// its standard input closes.
const HOLDER: &str = r#"
import json, os, select, socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
    except BlockingIOError:
        pass
    socks.append(s)
firsts = {}
deadline = time.time() + 10
pending = set(socks)
while pending and time.time() < deadline:
    ready, _, _ = select.select(list(pending), [], [], 0.2)
    for s in ready:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        firsts[s] = data
        pending.discard(s)
summary = {"version": 0, "busy": 0, "closed": 0, "silent": len(pending)}
for s, data in firsts.items():
    if b'"VERSION"' in data:
        summary["version"] += 1
    elif b'"busy"' in data:
        summary["busy"] += 1
    else:
        summary["closed"] += 1
print(json.dumps(summary), flush=True)
sys.stdin.read()
"#;

struct Holder {
    child: Child,
    summary: Value,
}

impl Holder {
    fn start(socket: &Path, count: usize) -> Holder {
        Self::run(HOLDER, &socket.to_string_lossy(), count)
    }

    /// Runs `script` as uid/gid 65534 with `target` and `count` as its arguments; returns once
    /// it printed its summary line.
    fn run(script: &str, target: &str, count: usize) -> Holder {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(target)
            .arg(count.to_string())
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 as nobody");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let summary = serde_json::from_str(&line).unwrap_or(Value::Null);
        Holder { child, summary }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `dir` reachable by uid 65534 (the socket itself is 0660, group nogroup).
fn open_to_nobody(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A member of the socket's group holds as many control connections as it can open. It gets
/// its share (`max_connections / 4`), the rest are answered `ERROR busy` and closed; the
/// daemon neither spins nor floods its log, and root (the technician, here also the
/// daemon's own uid) still gets in.
#[test]
fn idle_control_connections_of_one_user_cannot_lock_out_the_others() {
    if !is_root() {
        eprintln!("skipped: needs root to connect as another uid");
        return;
    }
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    open_to_nobody(dir.path());
    let daemon = Daemon::start(dir.path(), &sim, "group = \"nogroup\"\n", 256);
    let before = daemon.fds();

    let holder = Holder::start(&daemon.socket, 400);
    assert_quiet(&daemon, "400 idle control connections");
    let status = daemon.status_answer(Duration::from_secs(5));
    assert!(status.is_ok(), "root cannot get in: {status:?}");
    let summary = &holder.summary;
    assert_eq!(summary["version"], 16, "nobody's share: {summary}");
    assert_eq!(
        summary["busy"],
        400 - 16,
        "the rest are told busy: {summary}"
    );
    assert!(
        daemon.fds() <= before + 16 + 4,
        "the daemon holds {} fds, {before} before",
        daemon.fds()
    );
    drop(holder);
}

/// When the daemon does run out of file descriptors (a limit set too low for its caps),
/// `accept` fails with EMFILE for as long as a connection waits in the backlog. The loop must
/// back off and log once per burst, not spin a core and write a line per failure.
#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Start with enough descriptors, then lower the soft limit of the running daemon to what
    // it holds now plus a few, so that a handful of connections exhausts it.
    let daemon = Daemon::start(dir.path(), &sim, "", 256);
    let held = daemon.fds() as u64;
    let limit = libc::rlimit {
        rlim_cur: held + 4,
        rlim_max: 256,
    };
    // SAFETY: prlimit on our own child's pid with a valid struct.
    let rc = unsafe {
        libc::prlimit(
            daemon.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut conns = Vec::new();
    for _ in 0..20 {
        conns.push(UnixStream::connect(&daemon.socket).unwrap());
    }
    assert_quiet(&daemon, "accept failing with EMFILE");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    let failures = log.matches("accept failed").count();
    assert!(
        (1..=3).contains(&failures),
        "accept failures logged {failures} times, not once per burst"
    );
    // Freed descriptors: the daemon serves again.
    drop(conns);
    let status = daemon.status_answer(Duration::from_secs(5));
    assert!(status.is_ok(), "after the burst: {status:?}");
}

/// A control client for the subscriber tests.
fn connect(daemon: &Daemon) -> (BufReader<UnixStream>, UnixStream) {
    let stream = UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut version = String::new();
    reader.read_line(&mut version).unwrap();
    assert!(version.contains("VERSION"), "{version}");
    (reader, writer)
}

fn subscribe(reader: &mut BufReader<UnixStream>, writer: &mut UnixStream) -> Value {
    writer
        .write_all(b"{\"id\":\"s\",\"cmd\":\"subscribe\"}\n")
        .unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["id"] == "s" {
            return value;
        }
    }
}

/// Subscribing and closing, 1,000 times with no event in between, leaves the daemon with the
/// file descriptors it had: a subscriber's tasks end with its connection, not at the next
/// event.
#[test]
fn subscribe_and_close_a_thousand_times_leaks_nothing() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &sim, "", 4096);
    // One round first, so that whatever a first connection sets up once is in the baseline.
    {
        let (mut r, mut w) = connect(&daemon);
        subscribe(&mut r, &mut w);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut baseline = daemon.fds();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        baseline = baseline.min(daemon.fds());
    }
    for _ in 0..1000 {
        let (mut r, mut w) = connect(&daemon);
        let answer = subscribe(&mut r, &mut w);
        assert_eq!(answer["class"], "RESULT", "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut now = daemon.fds();
    while now > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        now = daemon.fds();
    }
    assert!(
        now <= baseline,
        "after 1,000 subscribe-and-close rounds the daemon holds {now} fds, {baseline} before"
    );
}

/// Sixteen subscribers that never read, then a flood of events: each is told `overrun`, its
/// slot is freed and its socket shut down at once, so the POS app can subscribe again.
#[test]
fn never_reading_subscribers_lose_their_slots() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &sim, "", 4096);
    let mut idle = Vec::new();
    for _ in 0..16 {
        let (mut r, mut w) = connect(&daemon);
        let answer = subscribe(&mut r, &mut w);
        assert_eq!(answer["class"], "RESULT", "{answer}");
        idle.push((r, w));
    }
    // The slots are full now.
    let (mut r, mut w) = connect(&daemon);
    let refused = subscribe(&mut r, &mut w);
    assert_eq!(refused["class"], "ERROR", "{refused}");
    drop((r, w));

    // A flood of scan events (codes the classifier calls "other": no backend call), pipelined
    // on one connection whose answers a thread reads.
    let (reader, mut writer) = connect(&daemon);
    let count = 4000;
    let answers = std::thread::spawn(move || {
        let mut reader = reader;
        let mut seen = 0;
        let mut line = String::new();
        while seen < count {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains("\"RESULT\"") || line.contains("\"ERROR\"") {
                seen += 1;
            }
        }
        seen
    });
    let code = format!("not-a-member-code-{}", "x".repeat(200));
    for i in 0..count {
        let line = format!("{{\"id\":{i},\"cmd\":\"scan\",\"code\":\"{code}\"}}\n");
        writer.write_all(line.as_bytes()).unwrap();
    }
    assert_eq!(answers.join().unwrap(), count, "every scan answered");

    // A fresh subscriber gets a slot (polled: the flood's last events may still be on their
    // way to the subscribers' queues).
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let (mut r, mut w) = connect(&daemon);
        let answer = subscribe(&mut r, &mut w);
        if answer["class"] == "RESULT" || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        answer["class"], "RESULT",
        "the POS app cannot subscribe: {answer}"
    );

    // The never-reading subscribers were disconnected: each reads to an end (what was
    // queued, then EOF) instead of blocking.
    for (mut r, _w) in idle {
        r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        let read = r.read_to_end(&mut rest);
        assert!(
            read.is_ok(),
            "a dropped subscriber's socket is still open: {read:?}"
        );
    }
}

/// A kiosk page on every address: `wxcardd check` warns that it will not start without
/// `allow_remote`; with it, the page needs the per-install token, which `wxcardctl status`
/// prints.
#[test]
fn an_open_kiosk_address_is_warned_about_and_its_token_printed_by_wxcardctl_status() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token_file = dir.path().join("state/kiosk-token");
    let web = format!(
        "\n[display]\nbackends = [\"web\"]\n[display.web]\nlisten = \"0.0.0.0:{port}\"\n\
         token_file = \"{}\"\n",
        token_file.display()
    );
    let (config, _) = support::daemon_config(dir.path(), &sim.base_url(), "", &web);
    let check = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("allow_remote"),
        "wxcardd check says nothing about 0.0.0.0: {stderr:?}"
    );

    let daemon = Daemon::start(
        dir.path(),
        &sim,
        &format!("{web}allow_remote = true\n"),
        256,
    );
    let token = std::fs::read_to_string(&token_file).expect("token made at first start");
    let status = Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("status")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains(&format!(":{port}/k/{}/", token.trim())),
        "wxcardctl status does not print the kiosk address: {stdout}"
    );
    // The token never reaches the log.
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains(token.trim()), "the kiosk token is in the log");
}

/// A daemon that crashes (SIGABRT, as a release build's panic does) writes no core: a core
/// would hold members' personal data and the API token. The test allows cores as generously
/// as a careless system would (RLIMIT_CORE unlimited, the working directory writable).
#[test]
fn a_crashing_daemon_writes_no_core() {
    use std::os::unix::process::ExitStatusExt;
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let mut daemon = Daemon::start_with(dir.path(), &sim, "", 256, |command| {
        command.current_dir(&cwd);
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let unlimited = libc::rlimit {
                    rlim_cur: libc::RLIM_INFINITY,
                    rlim_max: libc::RLIM_INFINITY,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
                Ok(())
            });
        }
    });
    // The daemon is up and serving (the API token file and the store are loaded).
    let status = daemon.status_answer(Duration::from_secs(5));
    assert!(status.is_ok(), "{status:?}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGABRT) };
    let exit = daemon.child.wait().unwrap();
    assert_eq!(exit.signal(), Some(libc::SIGABRT), "{exit:?}");
    let cores: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("core"))
        .collect();
    assert!(
        !exit.core_dumped() && cores.is_empty(),
        "the daemon dumped core ({exit:?}, files {cores:?})"
    );
}

/// A python3 helper that opens `count` TCP connections to 127.0.0.1:PORT, sends nothing, and
/// holds them until its standard input closes.
const TCP_HOLDER: &str = r#"
import json, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    socks.append(s)
print(json.dumps({"open": len(socks)}), flush=True)
sys.stdin.read()
"#;

/// One local user holding as many kiosk connections as it can gets at most half of
/// `max_clients`: the kiosk browser (another user) still gets the live screen.
#[test]
fn one_local_user_cannot_take_every_kiosk_slot() {
    if !is_root() {
        eprintln!("skipped: needs root to connect as another uid");
        return;
    }
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "\n[display]\nbackends = [\"web\"]\n[display.web]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let _daemon = Daemon::start(dir.path(), &sim, &extra, 256);
    let holder = Holder::run(TCP_HOLDER, &port.to_string(), 40);
    assert_eq!(holder.summary["open"], 40, "{}", holder.summary);
    // Over its share, the holder's connections were answered 503 and closed; the kiosk's own
    // request (this process, root) is served.
    let mut kiosk = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kiosk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    kiosk
        .write_all(format!("GET /events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .unwrap();
    let mut status = String::new();
    BufReader::new(&kiosk).read_line(&mut status).unwrap();
    assert!(
        status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200"),
        "the kiosk browser is locked out: {status:?}"
    );
    drop(holder);
}

/// A backend that answers every request with an active card and closes the connection (so
/// the daemon keeps no idle connection: each lookup must open one). Counts the requests.
struct ClosingBackend {
    url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ClosingBackend {
    fn start() -> ClosingBackend {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                if support::read_http_head(&mut tcp).is_none() {
                    continue;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"status":200,"message":"","data":{"cardCode":"M0001001","balance":128.50,"discount":0.95,"canMemberPrice":true}}"#;
                let _ = write!(
                    tcp,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ClosingBackend { url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Sends one request line on a control connection and reads its answer.
fn request(conn: &mut BufReader<UnixStream>, line: &str) -> Value {
    conn.get_mut().write_all(line.as_bytes()).unwrap();
    conn.get_mut().write_all(b"\n").unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn lookup(conn: &mut BufReader<UnixStream>, wx_code: &str) -> Value {
    let answer = request(
        conn,
        &format!(r#"{{"id":1,"cmd":"lookup","wx_code":"{wx_code}"}}"#),
    );
    assert_eq!(answer["class"], "RESULT", "{answer}");
    answer["result"].clone()
}

/// Sets the daemon's soft limit of open files (the hard limit stays).
fn set_nofile(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) with a null new limit only reads.
    assert_eq!(
        unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0
    );
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit(2) on our own child, with a valid rlimit.
    assert_eq!(
        unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) },
        0,
        "prlimit: {}",
        std::io::Error::last_os_error()
    );
}

/// Leaves the daemon room for two more descriptors and takes them with control connections:
/// those it accepted, and the one it could not (accept(2) fails with EMFILE), which waits in
/// the backlog.
fn exhaust(daemon: &Daemon) -> (Vec<BufReader<UnixStream>>, BufReader<UnixStream>) {
    set_nofile(daemon.pid(), daemon.fds() as u64 + 2);
    let mut held = Vec::new();
    let waiting = loop {
        assert!(
            held.len() < 32,
            "the daemon accepted 32 connections past its limit"
        );
        let stream = UnixStream::connect(&daemon.socket).expect("the backlog takes it");
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => held.push(reader),
            _ => break reader,
        }
    };
    eprintln!(
        "out of descriptors after {} connections ({} open)",
        held.len(),
        daemon.fds()
    );
    (held, waiting)
}

/// Out of file descriptors, systemd's watchdog is still fed: a daemon that still answers
/// lookups from its cache is not killed (`WatchdogSec=`) for want of a socket to say so.
#[test]
fn out_of_file_descriptors_the_watchdog_is_still_fed() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // WATCHDOG=1 every 200 ms.
    let daemon = Daemon::start_with(dir.path(), &sim, "", 256, |command| {
        command
            .env("WXCARDD_CORE_DUMPS", "1")
            .env("WATCHDOG_USEC", "400000");
    });
    daemon
        .notify
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    daemon.wait_notify("WATCHDOG=1").expect("a first ping");
    let (held, _waiting) = exhaust(&daemon);
    // Pings sent before the limit was reached may wait in the socket: take what is there,
    // then three more must come.
    daemon
        .notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while daemon.wait_notify("WATCHDOG=1").is_ok() {}
    daemon
        .notify
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for n in 1..=3 {
        let ping = daemon.wait_notify("WATCHDOG=1");
        assert!(
            ping.is_ok(),
            "ping {n} out of descriptors: {ping:?}\n{}",
            std::fs::read_to_string(&daemon.log).unwrap()
        );
    }
    drop(held);
}

/// Out of file descriptors, a lookup cannot open its connection to the backend (EMFILE from
/// `socket(2)` on the async read path). That is a transport error like any other: the cashier
/// gets the cached card marked stale, an uncached card the ordinary offline answer; the
/// daemon neither panics nor spins (nor does its accept loop, with a connection waiting in
/// the backlog), and once descriptors are free again the waiting connection is served, a
/// lookup goes to the backend again and the daemon holds no more descriptors than before.
#[test]
fn out_of_file_descriptors_a_lookup_answers_from_the_cache_then_goes_online_again() {
    // Every lookup tries the network: the breaker stays closed however many fail.
    lookups_out_of_file_descriptors(1000);
}

/// As above with the breaker as shipped: it opens after three failures, and the probe
/// (ureq, on the blocking pool: out of descriptors too) brings the backend back once
/// descriptors are free.
#[test]
fn out_of_file_descriptors_the_breaker_opens_and_the_probe_brings_the_backend_back() {
    lookups_out_of_file_descriptors(3);
}

fn lookups_out_of_file_descriptors(breaker_failures: u32) {
    const ACTIVE: &str = "812345678901234567";
    const NEVER_SEEN: &str = "812345678901239999";
    let backend = ClosingBackend::start();
    let dir = tempfile::tempdir().unwrap();
    // Cached data is stale at once.
    let daemon = Daemon::start_at(
        dir.path(),
        &backend.url,
        &format!("breaker_failures = {breaker_failures}\nfresh_for_s = 0\n"),
        "",
        256,
        |command| {
            command.env("WXCARDD_CORE_DUMPS", "1");
        },
    );
    let (mut pos, version) = daemon.first_line(Duration::from_secs(5)).unwrap();
    assert_eq!(version["class"], "VERSION", "{version}");
    pos.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let online = lookup(&mut pos, ACTIVE);
    assert_eq!(online["source"], "api", "{online}");
    assert_eq!(backend.requests(), 1);
    let before = daemon.fds();

    let (held, waiting) = exhaust(&daemon);

    // Lookups that fail at once, not retried in a loop until their deadline: the daemon's CPU
    // over them stays within the budget (a loop would take a whole core).
    let (cpu, started) = (daemon.cpu_ticks(), Instant::now());
    for _ in 0..20 {
        let cached = lookup(&mut pos, ACTIVE);
        assert_eq!(cached["source"], "cache", "{cached}");
        assert_eq!(cached["stale"], true, "{cached}");
        assert_eq!(cached["outcome"], "card", "{cached}");
        assert_eq!(cached["card"]["balance"].to_string(), "128.50", "{cached}");
        let unknown = lookup(&mut pos, NEVER_SEEN);
        assert_eq!(unknown["outcome"], "offline", "{unknown}");
    }
    let (cpu, wall) = (daemon.cpu_ticks() - cpu, started.elapsed());
    eprintln!("40 lookups out of descriptors: {cpu} CPU ticks in {wall:?}");
    assert!(
        cpu <= MAX_CPU_TICKS_PER_S * wall.as_secs().max(1),
        "the daemon used {cpu} CPU ticks in {wall:?} for 40 lookups (a busy loop)"
    );
    // Nothing kept per failed lookup: after those 40, 400 more leave the daemon's resident
    // memory where it was (a leak of a connection's buffers, 8 KB each, would show).
    let rss = daemon.rss_kb();
    for _ in 0..200 {
        lookup(&mut pos, ACTIVE);
        lookup(&mut pos, NEVER_SEEN);
    }
    let grown = daemon.rss_kb().saturating_sub(rss);
    eprintln!("400 more lookups out of descriptors: resident memory grew {grown} KB");
    assert!(grown < 2048, "400 failed lookups kept {grown} KB");
    assert_eq!(backend.requests(), 1, "no request got through");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("falls back to the cache") && l.contains("os error 24")),
        "the lookups did not fail on EMFILE:\n{log}"
    );
    // A connection waits in the backlog, the lookups failed: nothing loops on it.
    assert_quiet(&daemon, "out of file descriptors");
    assert!(!log.contains("panicked"), "{log}");

    // Descriptors free again: the waiting connection is served, lookups go online.
    drop(held);
    let mut waiting = waiting;
    waiting
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    waiting.read_line(&mut line).unwrap();
    assert!(line.contains("\"VERSION\""), "{line:?}");
    // At once with the breaker closed; after the probe's next tick with it open.
    let deadline = Instant::now() + Duration::from_secs(5);
    let back = loop {
        let back = lookup(&mut pos, ACTIVE);
        if back["source"] == "api" || Instant::now() > deadline {
            break back;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(back["source"], "api", "{back}");
    assert_eq!(back["stale"], false, "{back}");
    assert!(backend.requests() >= 2);
    let fresh = lookup(&mut waiting, NEVER_SEEN);
    assert_eq!(fresh["source"], "api", "{fresh}");
    // No descriptor left behind: what was open before, plus the connection that waited.
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.fds() > before + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon.fds(), before + 1, "descriptors left open");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
