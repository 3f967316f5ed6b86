//! The kiosk page in a real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: fd 3 in, fd 4 out, NUL-separated JSON):
//! load the page, push a pay code, take a screenshot and decode its QR with rqrr at a
//! landscape 800x480 and a portrait 1080x1920 size (checking the layout is side by side in
//! one and stacked in the other, and nothing overflows); then restart the server on the same
//! port and check the page reconnected by itself.

mod display_support;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use display_support::{CODE, decode_png, pay_code};
use serde_json::{Value, json};
use wxcard_hal::display::config::WebConfig;
use wxcard_hal::display::web::WebDisplay;
use wxcard_hal::display::{CustomerDisplay, Screen, Texts};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
/// The second size the page is checked at.
const PORTRAIT: (u32, u32) = (1080, 1920);

struct Chromium {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: Option<String>,
    events: Vec<Value>,
    _profile: tempfile::TempDir,
    _watchdog: mpsc::Sender<()>,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: just created, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Chromium {
    fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let (in_fd, out_fd) = (cmd_read.as_raw_fd(), resp_write.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            &format!("--window-size={},{}", PORTRAIT.0, PORTRAIT.1),
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(in_fd, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(out_fd, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("chromium must be installed (Debian package chromium) for the kiosk page test");
        drop((cmd_read, resp_write));
        // Kill the browser if the test has not finished within a minute, so a hung page
        // fails the test instead of hanging CI. Dropping the sender disarms it.
        let (watchdog, disarmed) = mpsc::channel::<()>();
        let pid = child.id() as libc::pid_t;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                disarmed.recv_timeout(Duration::from_secs(60))
            {
                // SAFETY: signalling the child we spawned.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Chromium {
            child,
            to: File::from(cmd_write),
            from: BufReader::new(File::from(resp_read)),
            next_id: 0,
            session: None,
            events: Vec::new(),
            _profile: profile,
            _watchdog: watchdog,
        }
    }

    fn read(&mut self) -> Value {
        let mut buf = Vec::new();
        let n = self.from.read_until(0, &mut buf).unwrap();
        assert!(
            n > 0,
            "chromium closed the DevTools pipe (crashed or killed by the watchdog)"
        );
        buf.pop();
        serde_json::from_slice(&buf).unwrap()
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let m = self.read();
            if m["id"] == json!(id) {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    fn wait_event(&mut self, method: &str) {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            self.events.drain(..=i);
            return;
        }
        loop {
            if self.read()["method"] == method {
                return;
            }
        }
    }

    /// Evaluates `predicate` in the page each time it renders a screen, until it is true.
    fn wait_until(&mut self, predicate: &str) {
        let expr = format!(
            "new Promise(r => {{ const ok = () => {{ try {{ return {predicate}; }} catch (e) {{ return false; }} }};
               if (ok()) return r(true);
               document.addEventListener('wxcard-screen', () => {{ if (ok()) r(true); }}); }})"
        );
        let res = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
        );
        assert_eq!(res["result"]["value"], json!(true), "{res}");
    }

    /// Evaluates `expr` in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let res = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        res["result"]["value"].clone()
    }

    fn resize(&mut self, w: u32, h: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": w, "height": h, "deviceScaleFactor": 1, "mobile": false}),
        );
        // Let the page lay out at the new size (a resize event, then a frame).
        let res = self.call(
            "Runtime.evaluate",
            json!({"expression": "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(innerWidth + 'x' + innerHeight))))",
                   "awaitPromise": true, "returnByValue": true}),
        );
        assert_eq!(res["result"]["value"], json!(format!("{w}x{h}")));
    }

    /// Where the QR and the heading are, and whether anything overflows the viewport.
    fn paycode_geometry(&mut self) -> Value {
        self.eval(
            "(() => { const q = document.querySelector('#qr svg').getBoundingClientRect();
               const h = document.getElementById('heading').getBoundingClientRect();
               const d = document.documentElement;
               return {qr: [q.left, q.top, q.right, q.bottom], heading: [h.left, h.top, h.right, h.bottom],
                       overflow: d.scrollWidth > innerWidth || d.scrollHeight > innerHeight}; })()",
        )
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let res = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(res["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kiosk_page_in_headless_chromium_shows_a_decodable_pay_code_and_reconnects() {
    if !display_support::have_tool("chromium", "chromium") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cfg = WebConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..WebConfig::default()
    };
    let mut web = WebDisplay::start(&cfg, Texts::default()).unwrap();
    let addr = web.local_addr();
    let now = Instant::now();
    web.show(&Screen::Idle, now).unwrap();

    let mut browser = Chromium::launch();
    let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
    let attached = browser.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    browser.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.call("Page.enable", json!({}));
    browser.call("Page.navigate", json!({"url": format!("http://{addr}/")}));
    browser.wait_event("Page.loadEventFired");
    browser.wait_until("document.body.dataset.kind === 'idle'");

    // Push a pay code after the page is up, as the daemon would.
    web.show(&pay_code(CODE, now), now).unwrap();
    browser.wait_until("document.body.dataset.kind === 'paycode'");
    let (w, h, codes) = decode_png(&browser.screenshot());
    assert_eq!((w, h), (WIDTH as usize, HEIGHT as usize));
    assert_eq!(
        codes,
        vec![CODE.to_string()],
        "QR read from the Chromium screenshot"
    );
    // Landscape: QR on the left, words on its right, nothing off screen.
    let g = browser.paycode_geometry();
    assert!(g["qr"][2].as_f64() <= g["heading"][0].as_f64(), "{g}");
    assert_eq!(g["overflow"], json!(false), "{g}");

    // Portrait: heading above the QR, still decodable, nothing off screen.
    browser.resize(PORTRAIT.0, PORTRAIT.1);
    let (w, h, codes) = decode_png(&browser.screenshot());
    assert_eq!((w, h), (PORTRAIT.0 as usize, PORTRAIT.1 as usize));
    assert_eq!(codes, vec![CODE.to_string()], "QR read at 1080x1920");
    let g = browser.paycode_geometry();
    assert!(g["heading"][3].as_f64() <= g["qr"][1].as_f64(), "{g}");
    assert_eq!(g["overflow"], json!(false), "{g}");
    // At least 35 mm at the 96 CSS px per inch a kiosk browser assumes.
    let side = g["qr"][2].as_f64().unwrap() - g["qr"][0].as_f64().unwrap();
    assert!(side / 96.0 * 25.4 >= 35.0, "{g}");
    browser.resize(WIDTH, HEIGHT);

    // Daemon restart: the server goes away and comes back on the same port with a new code.
    rt.block_on(web.stop());
    let mut web = WebDisplay::start(
        &WebConfig {
            listen: addr,
            ..WebConfig::default()
        },
        Texts::default(),
    )
    .unwrap();
    let second = "134599990000111122";
    web.show(&pay_code(second, now), now).unwrap();
    browser
        .wait_until("document.getElementById('digits').textContent === '1345 9999 0000 1111 22'");
    let (_, _, codes) = decode_png(&browser.screenshot());
    assert_eq!(
        codes,
        vec![second.to_string()],
        "page reconnected by itself and shows the new code"
    );

    web.show(&Screen::Blank, now).unwrap();
    browser.wait_until("document.body.dataset.kind === 'blank'");
    let (_, _, codes) = decode_png(&browser.screenshot());
    assert!(codes.is_empty());
    rt.block_on(web.stop());
}
