//! Displays are devices too, with the real binary: a SIGHUP keeps working displays working
//! and reports the ones that fail; a display that cannot open at start is retried, reported,
//! and drawn with the current screen once it opens; a pay code with no display is an error.

mod support;

use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcardd::control::client::ControlClient;
use wxcardd::control::protocol::{Command, ScanParams};

const ACTIVE: &str = "812345678901234567";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status(client: &mut ControlClient) -> Value {
    client.request(&Command::Status).unwrap()["result"].clone()
}

/// Polls `status` until `want` holds (or fails after 20 s with the last status).
fn wait_status(client: &mut ControlClient, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(client);
        if want(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: status is {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn display_config(shop: &str, web_port: u16, png: &Path) -> String {
    format!(
        "\n[display]\nbackends = [\"web\", \"png\"]\nshop_name = \"{shop}\"\n\n\
         [display.web]\nlisten = \"127.0.0.1:{web_port}\"\n\n\
         [display.png]\npath = \"{}\"\nwidth = 240\nheight = 320\n",
        png.display()
    )
}

fn kiosk_answers(port: u16) -> bool {
    ureq::get(format!("http://127.0.0.1:{port}/"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn sighup(daemon: &mut DaemonProcess) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    daemon.wait_notify("READY=1");
}

#[test]
fn reload_keeps_working_displays_and_reports_the_ones_that_fail() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("display.png");
    let port = free_port();
    let (config, socket) = daemon_config(
        dir.path(),
        "http://127.0.0.1:9/",
        "",
        &display_config("Shop one", port, &png),
    );
    let log = dir.path().join("log");
    let mut daemon = DaemonProcess::start_logging_to(&config, &socket, &[], Some(&log));
    let mut client = daemon.client();
    wait_status(&mut client, "both displays up", |s| s["displays"] == 2);
    assert!(kiosk_answers(port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        if let Ok(bytes) = std::fs::read(&png) {
            break bytes;
        }
        assert!(Instant::now() < deadline, "the PNG is drawn");
        std::thread::sleep(Duration::from_millis(20));
    };

    // A new shop name: both backends draw differently, so both are replaced.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("Shop one", "Shop two");
    std::fs::write(&config, text).unwrap();
    sighup(&mut daemon);
    let s = status(&mut client);
    assert_eq!(s["displays"], 2, "after the reload: {s}");
    assert!(kiosk_answers(port), "the kiosk page is served again");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(&png).unwrap() == before {
        assert!(Instant::now() < deadline, "the PNG shows the new shop name");
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("customer display reloaded: 2 of 2 backend(s) working"),
        "{logged}"
    );

    // The kiosk's new port is taken: the reload says so, the PNG keeps working, and the
    // kiosk opens once the port is free.
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!(":{port}\""), &format!(":{taken}\""));
    std::fs::write(&config, text).unwrap();
    sighup(&mut daemon);
    let s = status(&mut client);
    assert_eq!(s["displays"], 1, "{s}");
    let backends = s["display_backends"].as_array().unwrap();
    let web = backends.iter().find(|b| b["backend"] == "web").unwrap();
    assert_eq!(web["state"], "failing", "{s}");
    assert!(web["reason"].as_str().unwrap().contains("in use"), "{s}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("customer display reloaded: 1 of 2 backend(s) working"),
        "{logged}"
    );
    drop(squatter);
    wait_event(&mut events, "the kiosk opens", |v| {
        v["event"] == "display" && v["backend"] == "web" && v["state"] == "open"
    });
    assert!(kiosk_answers(taken));
    assert_eq!(status(&mut client)["displays"], 2);
}

#[test]
fn a_display_that_appears_late_is_opened_and_shows_the_current_screen() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("fb0");
    let (w, h) = (240usize, 320usize);
    let (config, socket) = daemon_config(
        dir.path(),
        &sim.base_url(),
        "",
        &format!(
            "\n[display]\nbackends = [\"framebuffer\"]\n\n[display.framebuffer]\n\
             device = \"{}\"\nwidth = {w}\nheight = {h}\nformat = \"xrgb8888\"\n",
            fb.display()
        ),
    );
    let daemon =
        DaemonProcess::start_logging_to(&config, &socket, &[], Some(&dir.path().join("log")));
    let mut client = daemon.client();
    let s = wait_status(&mut client, "the framebuffer reported failing", |s| {
        s["display_backends"][0]["state"] == "failing"
    });
    assert_eq!(s["displays"], 0);
    assert!(
        s["display_backends"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("fb0"),
        "{s}"
    );

    // A scan while the display is missing: its card is what the display shows once it opens.
    let scanned = client
        .request(&Command::Scan(ScanParams {
            code: ACTIVE.into(),
            scanner: "manual".into(),
        }))
        .unwrap();
    let scan_id = scanned["result"]["scan_id"].as_u64().expect("scan_id");
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    std::fs::write(&fb, vec![0u8; w * h * 4]).unwrap();
    wait_event(&mut events, "the framebuffer opens", |v| {
        v["event"] == "display" && v["backend"] == "framebuffer" && v["state"] == "open"
    });
    wait_status(&mut client, "the card drawn", |s| {
        s["display_backends"][0]["scan_id"] == scan_id
    });
    assert_eq!(status(&mut client)["displays"], 1);
    assert!(
        std::fs::read(&fb).unwrap().iter().any(|b| *b != 0),
        "pixels drawn"
    );
}

#[test]
fn a_pay_code_without_a_display_is_an_error_and_says_where_it_was_shown() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let _daemon = DaemonProcess::start(&config, &socket, &[]);
    let out = Process::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["paycode", ACTIVE])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no customer display"), "{said}");
    assert!(!said.contains("shown\n"), "{said}");

    // With a display, the answer names it.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("display.png");
    let (config, socket) = daemon_config(
        dir.path(),
        &sim.base_url(),
        "",
        &format!(
            "\n[display]\nbackends = [\"png\"]\n\n[display.png]\npath = \"{}\"\n",
            png.display()
        ),
    );
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    let mut client = daemon.client();
    wait_status(&mut client, "png open", |s| s["displays"] == 1);
    let out = Process::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["paycode", ACTIVE])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("shown on png"), "{said}");
}

/// The first Server-Sent Event of the kiosk page on `port`.
fn first_kiosk_event(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\n\n") || !got.windows(5).any(|w| w == b"data:")
    {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the kiosk closed the stream");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_configured_accent_reaches_the_kiosk_page_and_the_png_header() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("display.png");
    let port = free_port();
    let display = display_config("Shop one", port, &png).replace(
        "shop_name = \"Shop one\"",
        "shop_name = \"Shop one\"\naccent = \"#FFCC00\"",
    );
    let (config, socket) = daemon_config(dir.path(), "http://127.0.0.1:9/", "", &display);
    let daemon =
        DaemonProcess::start_logging_to(&config, &socket, &[], Some(&dir.path().join("log")));
    let mut client = daemon.client();
    wait_status(&mut client, "both displays up", |s| s["displays"] == 2);

    // The page gets the accent and the ink that reads on it (black on this yellow).
    let event = first_kiosk_event(port);
    assert!(event.contains(r##""accent":"#ffcc00""##), "{event}");
    assert!(event.contains(r##""accent_ink":"#000000""##), "{event}");

    // The PNG's idle screen has its header band in the accent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bytes = loop {
        if let Ok(bytes) = std::fs::read(&png) {
            break bytes;
        }
        assert!(Instant::now() < deadline, "the PNG is drawn");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let at = 2 * info.line_size + 3 * 3;
    assert_eq!(&rgb[at..at + 3], &[0xff, 0xcc, 0x00], "band pixel (3, 2)");
}

#[test]
fn a_missing_font_file_falls_back_to_the_builtin_latin_font_and_status_says_so() {
    use std::sync::Arc;
    use wxcard_hal::display::config::PngConfig;
    use wxcard_hal::display::font::Font;
    use wxcard_hal::display::png::PngDisplay;
    use wxcard_hal::display::{CardSummary, CustomerDisplay, MaskedCardNumber, Screen, Texts};

    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("display.png");
    let bogus = dir.path().join("no-such-font.ttc");
    let (config, socket) = daemon_config(
        dir.path(),
        &sim.base_url(),
        "",
        &format!(
            "\n[display]\nbackends = [\"png\"]\nfont = \"{}\"\n\n[display.png]\npath = \"{}\"\n",
            bogus.display(),
            png.display()
        ),
    );
    let log = dir.path().join("log");
    let daemon = DaemonProcess::start_logging_to(&config, &socket, &[], Some(&log));
    let mut client = daemon.client();
    let s = wait_status(&mut client, "png open", |s| s["displays"] == 1);
    let want = format!("built-in Latin fallback (font file {}: ", bogus.display());
    let font = s["display_font"].as_str().unwrap_or_default().to_owned();
    assert!(
        font.starts_with(&want) && font.contains("No such file"),
        "{s}"
    );
    let human = Process::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(human.contains(&format!("display font: {want}")), "{human}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches("customer display font:").count(),
        1,
        "warned once: {logged}"
    );

    // A card: the daemon's PNG is exactly the card screen drawn with the fallback font.
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    let scanned = client
        .request(&Command::Scan(ScanParams {
            code: ACTIVE.into(),
            scanner: "manual".into(),
        }))
        .unwrap();
    let scan_id = scanned["result"]["scan_id"].as_u64().expect("scan_id");
    let card = wait_event(&mut events, "card", |v| v["event"] == "card");
    wait_status(&mut client, "the card drawn", |s| {
        s["display_backends"][0]["scan_id"] == scan_id
    });
    let card = &card["card"];
    let balance = card["balance"].to_string();
    let summary = |balance: &str| {
        Screen::Card(CardSummary {
            card: MaskedCardNumber::new(
                card["cardCode"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{card}")),
            ),
            balance: balance.into(),
            points: None,
            member_price: card["canMemberPrice"] == true,
            discount: card["discount"].to_string(),
        })
    };
    let pixels = |path: &Path| {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf
    };
    let draw = |font: Font, balance: &str| {
        let path = dir.path().join("expected.png");
        let cfg = PngConfig {
            path: path.clone(),
            ..PngConfig::default()
        };
        let mut d = PngDisplay::with_font(&cfg, Texts::default(), Arc::new(font)).unwrap();
        d.show(&summary(balance), Instant::now()).unwrap();
        pixels(&path)
    };
    let shown = pixels(&png);
    assert!(
        shown == draw(Font::open(&bogus, 0), &balance),
        "the PNG is the card drawn with the built-in font"
    );
    assert!(
        shown != draw(Font::open(&bogus, 0), "0.00"),
        "the balance digits are on it"
    );
    // (The Debian font, where installed: .ci/run installs it.)
    if let Ok(real) = Font::load(wxcard_hal::display::config::DEFAULT_FONT.as_ref(), 0) {
        assert!(
            shown != draw(real, &balance),
            "and not drawn with the font file"
        );
    }
}
