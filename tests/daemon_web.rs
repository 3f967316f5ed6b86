//! `[control.web]` with the real binaries: the simulator, wxcardd with a scanner on a pty, and
//! the control protocol over the daemon's WebSocket.
//!
//! - A real headless Chromium (Debian's `chromium`) loads `clients/js/example.html` with
//!   `clients/js/wxcard.js` from a small test web server. A script appended to the page reports
//!   what the page shows back to that server (POST /report) and takes instructions from it
//!   (GET /cmd), so nothing depends on DevTools: a scan on the pty reaches the page as a card
//!   with `128.50` intact, a lookup typed into the page's form comes back, and after the daemon
//!   restarts the page reconnects and re-subscribes by itself.
//! - A raw TCP client plays the hostile or careless peer: wrong Origin, missing or wrong token,
//!   foreign Host, one connection over the cap. Each gets the documented answer, and the
//!   request it sends straight behind its handshake never reaches a command.

mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::hal_common::{Pty, point_link};
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcardd::control::protocol::Command as Cmd;

const ACTIVE: &str = "812345678901234567";
const ACTIVE_GOLD: &str = "812345678901234568";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A daemon config with `[control.web]` on `web` and a serial scanner behind `link`.
fn config(
    dir: &Path,
    sim: &SimProcess,
    web: SocketAddr,
    origins: &[String],
    max_connections: usize,
    link: Option<&Path>,
) -> (PathBuf, PathBuf) {
    let mut extra = format!(
        "subscriber_queue = 64\n\n[control.web]\nenabled = true\nlisten = \"{web}\"\n\
         allowed_origins = {origins:?}\nmax_connections = {max_connections}\n\
         token_file = \"{}\"\n",
        dir.join("state/web-token").display()
    );
    if let Some(link) = link {
        extra.push_str(&format!(
            "\n[[scanner]]\nname = \"front\"\nduplicate_window_ms = 0\n\
             device = {{ kind = \"serial\", path = \"{}\" }}\n",
            link.display()
        ));
    }
    daemon_config(dir, &sim.base_url(), "", &extra)
}

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("state/web-token"))
        .unwrap()
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The test web server that serves the example page and collects what it reports.

struct PageServer {
    addr: SocketAddr,
    reports: mpsc::Receiver<Value>,
    commands: Arc<Mutex<VecDeque<Value>>>,
    _runtime: tokio::runtime::Runtime,
}

/// Appended to the example page: reports the connection state and every log line, and types
/// lookups into the page's form when told to.
const HARNESS: &str = r#"
<script>
(() => {
  let seq = 0;
  const report = (kind, text) => fetch("/report", {method: "POST", body: JSON.stringify({seq: seq++, kind, text})});
  const state = document.getElementById("state");
  new MutationObserver(() => report("state", state.textContent))
    .observe(state, {childList: true, characterData: true, subtree: true});
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) report("log", n.textContent);
  }).observe(document.getElementById("log"), {childList: true});
  (async () => {
    for (;;) {
      try {
        const r = await fetch("/cmd");
        if (r.status === 200) {
          const c = await r.json();
          document.getElementById("code").value = c.lookup;
          document.getElementById("lookup").requestSubmit();
        }
      } catch (e) {}
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
})();
</script>
"#;

impl PageServer {
    fn start() -> PageServer {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        use axum::routing::{get, post};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, reports) = mpsc::channel::<Value>();
        let tx = Arc::new(Mutex::new(tx));
        let commands = Arc::new(Mutex::new(VecDeque::<Value>::new()));
        let page = std::fs::read_to_string(repo("clients/js/example.html")).unwrap() + HARNESS;
        let script = std::fs::read_to_string(repo("clients/js/wxcard.js")).unwrap();
        let queue = Arc::clone(&commands);
        let app =
            axum::Router::new()
                .route(
                    "/example.html",
                    get(move || async move {
                        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
                    }),
                )
                .route(
                    "/wxcard.js",
                    get(move || async move {
                        (
                            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                            script,
                        )
                    }),
                )
                .route(
                    "/report",
                    post(move |body: String| async move {
                        if let Ok(v) = serde_json::from_str::<Value>(&body) {
                            let _ = tx.lock().unwrap().send(v);
                        }
                        StatusCode::NO_CONTENT
                    }),
                )
                .route(
                    "/cmd",
                    get(move || async move {
                        match queue.lock().unwrap().pop_front() {
                            Some(c) => (StatusCode::OK, c.to_string()).into_response(),
                            None => StatusCode::NO_CONTENT.into_response(),
                        }
                    }),
                );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PageServer {
            addr,
            reports,
            commands,
            _runtime: runtime,
        }
    }

    /// Waits (at most 30 s) for a report satisfying `want`; returns it.
    fn wait(&self, what: &str, want: impl Fn(&str, &str) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(r) => {
                    let kind = r["kind"].as_str().unwrap_or("");
                    let text = r["text"].as_str().unwrap_or("");
                    if want(kind, text) {
                        return r;
                    }
                    seen.push(format!("{kind}: {text}"));
                }
                Err(_) => panic!("the page never showed {what}; it showed {seen:#?}"),
            }
        }
    }
}

/// Headless Chromium on one page, killed on drop (and after 90 s whatever happens).
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    _watchdog: mpsc::Sender<()>,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                // The page must keep running while it waits for the daemon to come back.
                "--disable-background-timer-throttling",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium must be installed (Debian package chromium)");
        let (watchdog, disarmed) = mpsc::channel::<()>();
        let pid = child.id() as libc::pid_t;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                disarmed.recv_timeout(Duration::from_secs(90))
            {
                // SAFETY: signalling the child we spawned.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Browser {
            child,
            _profile: profile,
            _watchdog: watchdog,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_chromium() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var_os("WXCARD_REQUIRE_CHROMIUM").is_some() {
        panic!("chromium is required (WXCARD_REQUIRE_CHROMIUM is set)");
    }
    if !found {
        eprintln!("skipped: chromium is not installed");
    }
    found
}

#[test]
fn a_browser_page_gets_scans_looks_up_and_comes_back_after_a_restart() {
    if !have_chromium() {
        return;
    }
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut pty = Pty::open();
    let link = dir.path().join("scanner");
    point_link(&link, &pty.slave);
    let pages = PageServer::start();
    let origin = format!("http://{}", pages.addr);
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cfg, socket) = config(dir.path(), &sim, web, &[origin], 4, Some(&link));
    let daemon = DaemonProcess::start(&cfg, &socket, &[]);
    let token = token(dir.path());

    let _browser = Browser::open(&format!(
        "http://{}/example.html#ws=ws://{web}/&token={token}",
        pages.addr
    ));
    pages.wait("the connection open", |k, t| k == "state" && t == "open");

    // A scan on the pty: the page gets the card event, the balance as the backend wrote it.
    pty.send(format!("{ACTIVE}\r").as_bytes());
    let card = pages.wait("the scanned card", |k, t| {
        k == "log" && t.starts_with("card event") && t.contains(ACTIVE)
    });
    assert_eq!(
        card["text"],
        format!("card event {ACTIVE}: card M0001001, balance 128.50 (api)")
    );

    // A lookup typed into the page's form: a request with an id, its RESULT back.
    pages
        .commands
        .lock()
        .unwrap()
        .push_back(serde_json::json!({"lookup": ACTIVE_GOLD}));
    let found = pages.wait("the lookup's answer", |k, t| {
        k == "log" && t.starts_with("lookup")
    });
    assert_eq!(
        found["text"],
        format!("lookup {ACTIVE_GOLD}: card M0001002, balance 5000.00 (api)")
    );

    // The daemon restarts (same port, same token file): the page notices, reconnects and
    // subscribes again by itself, so the next scan reaches it.
    assert!(daemon.signal_and_wait(libc::SIGTERM).success());
    pages.wait("the connection lost", |k, t| k == "state" && t != "open");
    let _daemon = DaemonProcess::start(&cfg, &socket, &[]);
    pages.wait("the connection open again", |k, t| {
        k == "state" && t == "open"
    });
    pty.send(format!("{ACTIVE_GOLD}\r").as_bytes());
    let again = pages.wait("a card after the restart", |k, t| {
        k == "log" && t.starts_with("card event") && t.contains(ACTIVE_GOLD)
    });
    assert_eq!(
        again["text"],
        format!("card event {ACTIVE_GOLD}: card M0001002, balance 5000.00 (api)")
    );
}

// ---------------------------------------------------------------------------------------------
// A raw WebSocket peer, to send exactly the handshake a test needs.

/// What the daemon answered to a handshake.
struct Answer {
    status: u16,
    /// The body of a refused handshake (an `ERROR` object).
    body: Value,
    /// After `101`: the text frames the daemon sent until it closed, and the close code.
    frames: Vec<Value>,
    close_code: Option<u16>,
}

/// A masked client text frame.
fn client_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame: (opcode, payload); None at EOF.
fn read_frame(stream: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0f, payload))
}

/// Sends a handshake (and `then`, a request frame, right behind it) and reads the answer.
fn handshake(
    addr: SocketAddr,
    host: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
    then: Option<&str>,
) -> (Answer, BufReader<TcpStream>) {
    handshake_on(
        TcpStream::connect(addr).unwrap(),
        host,
        origin,
        protocols,
        then,
    )
}

/// [`handshake`] on a connected stream.
fn handshake_on(
    mut stream: TcpStream,
    host: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
    then: Option<&str>,
) -> (Answer, BufReader<TcpStream>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    if let Some(protocols) = protocols {
        request.push_str(&format!("Sec-WebSocket-Protocol: {protocols}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    if let Some(then) = then {
        bytes.extend(client_frame(then));
    }
    stream.write_all(&bytes).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {status_line:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut answer = Answer {
        status,
        body: Value::Null,
        frames: Vec::new(),
        close_code: None,
    };
    if status != 101 {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        answer.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    }
    (answer, reader)
}

/// Reads frames until the daemon closes; answers its close.
fn read_until_close(answer: &mut Answer, reader: &mut BufReader<TcpStream>) {
    while let Some((opcode, payload)) = read_frame(reader) {
        match opcode {
            1 => answer
                .frames
                .push(serde_json::from_slice(&payload).unwrap()),
            8 => {
                answer.close_code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                // An empty, masked close frame.
                let _ = reader.get_mut().write_all(&[0x88, 0x80, 0, 0, 0, 0]);
                return;
            }
            _ => {}
        }
    }
}

fn scan_request(code: &str) -> String {
    format!(r#"{{"id":7,"cmd":"scan","code":"{code}"}}"#)
}

#[test]
fn refused_handshakes_say_why_and_never_reach_a_command() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let origin = "http://localhost:8069".to_owned();
    let (cfg, socket) = config(
        dir.path(),
        &sim,
        web,
        std::slice::from_ref(&origin),
        2,
        None,
    );
    let log = dir.path().join("wxcardd.log");
    let daemon = DaemonProcess::start_logging_to(&cfg, &socket, &[], Some(&log));
    let token = token(dir.path());
    let good_protocols = format!("wxcard.v1, wxcard.token.{token}");
    let host = web.to_string();
    // Every scan the daemon carries out shows here.
    let mut watcher = daemon.client();
    watcher.request(&Cmd::Subscribe).unwrap();

    let probe = scan_request(ACTIVE);
    let refused = |host: &str, origin: Option<&str>, protocols: Option<&str>| {
        handshake(web, host, origin, protocols, Some(&probe))
    };

    // A page on another origin (and five more of them: logged once).
    for _ in 0..6 {
        let (a, _) = refused(&host, Some("http://evil.example"), Some(&good_protocols));
        assert_eq!(a.status, 403);
        assert_eq!(a.body["class"], "ERROR");
        assert_eq!(a.body["error"]["code"], "forbidden");
        assert_eq!(
            a.body["error"]["message"],
            "Origin \"http://evil.example\" is not in allowed_origins"
        );
    }
    // DNS rebinding: the right origin and token, but a foreign name in Host.
    let (a, _) = refused(
        &format!("rebind.evil.example:{}", web.port()),
        Some(&origin),
        Some(&good_protocols),
    );
    assert_eq!(
        (a.status, &a.body["error"]["code"]),
        (403, &"forbidden".into())
    );
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Host \"rebind.evil.example:"),
        "{}",
        a.body
    );
    // No token, then a wrong one: one ERROR frame, a policy close, nothing else.
    for (protocols, why) in [
        (Some("wxcard.v1"), "no token"),
        (None, "no token"),
        (
            Some(&*format!("wxcard.v1, wxcard.token.{}", "0".repeat(64))),
            "wrong token",
        ),
    ] {
        let (mut a, mut reader) = refused(&host, Some(&origin), protocols);
        assert_eq!(a.status, 101);
        read_until_close(&mut a, &mut reader);
        assert_eq!(a.frames.len(), 1, "{:?}", a.frames);
        assert_eq!(a.frames[0]["class"], "ERROR");
        assert_eq!(a.frames[0]["error"]["code"], "forbidden");
        let message = a.frames[0]["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(why), "{message}");
        assert_eq!(a.close_code, Some(1008));
    }

    // The cap (2): two clients in, the third refused with 503, and in again once one leaves.
    // (The refused clients above give their places back as the daemon sees them go: wait.)
    let mut held = Vec::new();
    for _ in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut a, mut reader) = loop {
            let (a, reader) = handshake(web, &host, Some(&origin), Some(&good_protocols), None);
            if a.status != 503 || Instant::now() > deadline {
                break (a, reader);
            }
        };
        assert_eq!(a.status, 101);
        let (_, version) = read_frame(&mut reader).unwrap();
        a.frames.push(serde_json::from_slice(&version).unwrap());
        assert_eq!(a.frames[0]["class"], "VERSION");
        held.push(reader);
    }
    let (a, _) = refused(&host, Some(&origin), Some(&good_protocols));
    assert_eq!(a.status, 503);
    assert_eq!(a.body["error"]["code"], "busy");
    assert_eq!(
        a.body["error"]["message"],
        "too many connections (at most 2); try again later"
    );
    drop(held.pop());

    // None of them reached a command: the backend saw no lookup, and the first scan the
    // watcher sees is the one a legitimate client sends now (which proves the probe would
    // have shown).
    assert_eq!(sim.requests("getmembercard"), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (answer, mut reader) = loop {
        let (a, reader) = handshake(
            web,
            &format!("localhost:{}", web.port()),
            Some(&origin),
            Some(&good_protocols),
            Some(&scan_request(ACTIVE_GOLD)),
        );
        if a.status == 101 || Instant::now() > deadline {
            break (a, reader);
        }
    };
    assert_eq!(answer.status, 101, "a place is free again: {}", answer.body);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let (opcode, payload) = read_frame(&mut reader).unwrap();
        if opcode == 1 {
            frames.push(serde_json::from_slice::<Value>(&payload).unwrap());
        }
    }
    assert_eq!(frames[0]["class"], "VERSION");
    assert_eq!(frames[1]["class"], "RESULT", "{}", frames[1]);
    assert_eq!(frames[1]["id"], 7);
    assert_eq!(
        frames[1]["result"]["card"]["balance"].to_string(),
        "5000.00"
    );
    let first_scan = wait_event(&mut watcher, "a scan event", |v| v["event"] == "scan");
    assert_eq!(first_scan["code"], ACTIVE_GOLD);
    assert_eq!(sim.requests("getmembercard"), 1);

    // The six Origin refusals were one burst: logged once.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("is not in allowed_origins"))
        .count();
    assert_eq!(lines, 1, "{text}");
}

#[test]
fn a_refused_handshake_gives_its_place_back_before_it_answers() {
    // One place. Refused pages that have read their refusal but not yet closed (a browser
    // tab that lingers, or a client on a loaded till) must not hold it: the next, right
    // handshake gets in at the first try.
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let origin = "http://localhost:8069".to_owned();
    let (cfg, socket) = config(
        dir.path(),
        &sim,
        web,
        std::slice::from_ref(&origin),
        1,
        None,
    );
    let daemon = DaemonProcess::start(&cfg, &socket, &[]);
    let good = format!("wxcard.v1, wxcard.token.{}", token(dir.path()));
    let host = web.to_string();

    // A wrong token: the ERROR frame and the daemon's close read, the connection left open.
    let wrong = format!("wxcard.v1, wxcard.token.{}", "0".repeat(64));
    let (a, mut lingering) = handshake(web, &host, Some(&origin), Some(&wrong), None);
    assert_eq!(a.status, 101);
    let (opcode, payload) = read_frame(&mut lingering).unwrap();
    assert_eq!(opcode, 1);
    let error: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(error["error"]["code"], "forbidden");
    // A foreign Origin, its socket also kept.
    let (a, _kept) = handshake(web, &host, Some("http://evil.example"), Some(&good), None);
    assert_eq!(a.status, 403);

    let (a, mut reader) = handshake(web, &host, Some(&origin), Some(&good), None);
    assert_eq!(a.status, 101, "the place is free: {}", a.body);
    let (_, version) = read_frame(&mut reader).unwrap();
    let version: Value = serde_json::from_slice(&version).unwrap();
    assert_eq!(version["class"], "VERSION");
    // And the cap still holds for sessions.
    let (a, _) = handshake(web, &host, Some(&origin), Some(&good), None);
    assert_eq!(a.status, 503, "{}", a.body);
    drop((lingering, daemon));
}

/// A TCP connection whose receive buffer is as small as the kernel allows, so that a client
/// that does not read is noticed after a few events rather than megabytes of them.
fn connect_with_small_receive_buffer(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("an IPv4 address")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it hands it over.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_dropped_with_overrun_and_the_daemon_carries_on() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cfg, socket) = config(dir.path(), &sim, web, &[], 2, None);
    let daemon = DaemonProcess::start(&cfg, &socket, &[]);
    let protocols = format!("wxcard.v1, wxcard.token.{}", token(dir.path()));

    // A client with no Origin (not a page) that subscribes and then reads nothing.
    let (answer, mut lazy) = handshake_on(
        connect_with_small_receive_buffer(web),
        &web.to_string(),
        None,
        Some(&protocols),
        Some(r#"{"id":1,"cmd":"subscribe"}"#),
    );
    assert_eq!(answer.status, 101);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let (opcode, payload) = read_frame(&mut lazy).unwrap();
        if opcode == 1 {
            frames.push(serde_json::from_slice::<Value>(&payload).unwrap());
        }
    }
    assert_eq!(frames[1]["result"]["subscribed"], true, "{frames:?}");

    // Many events (product codes: a scan event each, no lookup), requests sent all at once
    // over the Unix socket; every one is answered while the WebSocket client sleeps.
    const SCANS: usize = 3000;
    let mut ctl = daemon.client();
    let mut lines = Vec::new();
    for i in 0..SCANS {
        lines.extend_from_slice(
            format!("{{\"id\":{i},\"cmd\":\"scan\",\"code\":\"P-{i:06}\"}}\n").as_bytes(),
        );
    }
    ctl.send_raw(&lines).unwrap();
    for i in 0..SCANS {
        let answer = loop {
            let line = ctl.read_line().unwrap();
            if line["class"] != "EVENT" {
                break line;
            }
        };
        assert_eq!(
            (answer["class"].as_str(), &answer["id"]),
            (Some("RESULT"), &Value::from(i))
        );
    }

    // The sleeper finds some events, then `overrun`, then the close; not all 3000.
    let mut events = 0;
    let mut last = Value::Null;
    let mut close = None;
    while let Some((opcode, payload)) = read_frame(&mut lazy) {
        match opcode {
            1 => {
                last = serde_json::from_slice(&payload).unwrap();
                if last["class"] == "EVENT" {
                    events += 1;
                }
            }
            8 => {
                close = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(last["class"], "ERROR", "{last}");
    assert_eq!(last["error"]["code"], "overrun", "{last}");
    assert_eq!(close, Some(1008));
    assert!(
        events < SCANS,
        "{events} events arrived: the client was never dropped"
    );

    // Its place is free again, and the daemon still answers over the WebSocket.
    let (answer, mut reader) = handshake(
        web,
        &web.to_string(),
        None,
        Some(&protocols),
        Some(r#"{"id":"s","cmd":"status"}"#),
    );
    assert_eq!(answer.status, 101);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let (opcode, payload) = read_frame(&mut reader).unwrap();
        if opcode == 1 {
            frames.push(serde_json::from_slice::<Value>(&payload).unwrap());
        }
    }
    assert_eq!(frames[1]["class"], "RESULT", "{frames:?}");
    assert_eq!(frames[1]["id"], "s");
}

/// docs/protocol.md shows the example page exactly as shipped (and as tested above).
#[test]
fn the_protocol_doc_shows_the_shipped_example_page() {
    let doc = std::fs::read_to_string(repo("docs/protocol.md")).unwrap();
    let page = std::fs::read_to_string(repo("clients/js/example.html")).unwrap();
    assert!(
        doc.contains(&format!("```html\n{page}```\n")),
        "docs/protocol.md's example page differs from clients/js/example.html"
    );
}

/// `wxcardctl status` says where the WebSocket is and which file holds its token, and prints
/// the token only for root (it reads the file; the socket never carries the token).
#[test]
fn wxcardctl_status_names_the_websocket_and_shows_root_the_token() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cfg, socket) = config(dir.path(), &sim, web, &[], 2, None);
    let daemon = DaemonProcess::start(&cfg, &socket, &[]);
    let token = token(dir.path());

    let raw = daemon.client().request(&Cmd::Status).unwrap();
    assert_eq!(raw["result"]["control_web"]["url"], format!("ws://{web}/"));
    assert!(
        !raw.to_string().contains(&token),
        "the token went over the socket: {raw}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "browser WebSocket: ws://{web}/ (token in {})",
            dir.path().join("state/web-token").display()
        )),
        "{text}"
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert_eq!(
        text.contains(&format!("browser WebSocket token: {token}")),
        root,
        "{text}"
    );
}
