//! Scans read back to back, through a real pty and the real binary: the `scan` events leave in
//! read order, the `card` events in the order of their scans, every one carries the scan's
//! `scan_id`, and the customer display ends on the last card, every time, also when the
//! backend answers the first code slowly. The final screen is checked on the PNG display
//! against the same card drawn by hal's PNG backend in this process.
//!
//! `WXCARD_ORDER_REPS` overrides the 100 repetitions (to look at a failure quickly).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::hal_common::{Pty, point_link};
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcard_hal::display::png::PngDisplay;
use wxcard_hal::display::{CardSummary, CustomerDisplay, DisplayConfig, MaskedCardNumber, Screen};
use wxcardd::control::client::ControlClient;
use wxcardd::control::protocol::Command;

/// Member codes the simulator knows, each with a card of its own (12 digits: member codes
/// under the default classification).
fn code(i: usize) -> String {
    format!("1000000000{:02}", i + 1)
}

fn card_code(i: usize) -> String {
    format!("C90000{:04}", i + 1)
}

fn balance(i: usize) -> String {
    format!("{}.50", 10 + i)
}

const PNG_SIZE: (usize, usize) = (240, 320);

fn reps() -> usize {
    std::env::var("WXCARD_ORDER_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn is_event(v: &Value, name: &str) -> bool {
    v["class"] == "EVENT" && v["event"] == name
}

/// The pixels of a PNG file (None while it does not exist or is being replaced).
fn pixels(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    reader.next_frame(&mut buf).ok()?;
    Some(buf)
}

/// Card `i` as the customer display must show it, drawn by hal's PNG backend.
fn reference(dir: &Path, i: usize) -> Vec<u8> {
    let mut config = DisplayConfig::default().png;
    config.path = dir.join(format!("ref-{i}.png"));
    (config.width, config.height) = PNG_SIZE;
    let mut png = PngDisplay::new(&config, DisplayConfig::default().texts()).unwrap();
    let screen = Screen::Card(CardSummary {
        card: MaskedCardNumber::new(&card_code(i)),
        balance: balance(i),
        points: None,
        member_price: true,
        discount: "0.95".into(),
    });
    png.show(&screen, Instant::now()).unwrap();
    pixels(&config.path).unwrap()
}

struct Rig {
    sim: SimProcess,
    _dir: tempfile::TempDir,
    daemon: DaemonProcess,
    pty: Pty,
    events: ControlClient,
    png: std::path::PathBuf,
    refs: Vec<Vec<u8>>,
}

fn rig() -> Rig {
    let sim = SimProcess::start(&[]);
    let cards: Vec<Value> = (0..5)
        .map(|i| {
            serde_json::json!({"wxCode": code(i), "cardCode": card_code(i),
                "balance": balance(i), "discount": "0.95", "canMemberPrice": true})
        })
        .collect();
    let (status, _) = sim.admin_send("POST", "cards", &Value::Array(cards).to_string());
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::open();
    let link = dir.path().join("scanner-front");
    point_link(&link, &pty.slave);
    let png = dir.path().join("display.png");
    let extra = format!(
        "\n[display]\nbackends = [\"png\"]\n\n[display.png]\npath = \"{}\"\nwidth = {}\nheight = {}\n\n\
         [[scanner]]\nname = \"front\"\nduplicate_window_ms = 0\n\
         device = {{ kind = \"serial\", path = \"{}\" }}\n",
        png.display(),
        PNG_SIZE.0,
        PNG_SIZE.1,
        link.display()
    );
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", &extra);
    let daemon =
        DaemonProcess::start_logging_to(&config, &socket, &[], Some(&dir.path().join("log")));
    let mut events = daemon.client();
    assert_eq!(
        events.request(&Command::Subscribe).unwrap()["class"],
        "RESULT"
    );
    let scanners =
        daemon.client().request(&Command::Status).unwrap()["result"]["scanners"].to_string();
    if !scanners.contains("connected") {
        wait_event(&mut events, "scanner connected", |v| {
            is_event(v, "scanner") && v["state"] == "connected"
        });
    }
    let refs: Vec<Vec<u8>> = (0..5).map(|i| reference(dir.path(), i)).collect();
    for (i, r) in refs.iter().enumerate() {
        assert!(
            !refs[..i].contains(r),
            "cards must look different on the display"
        );
    }
    Rig {
        sim,
        _dir: dir,
        daemon,
        pty,
        events,
        png,
        refs,
    }
}

/// What went wrong, counted over the repetitions.
#[derive(Debug, Default)]
struct Tally {
    scan_order: usize,
    card_order: usize,
    scan_ids: usize,
    final_screen: usize,
    held_up: usize,
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: String) {
        if self.examples.len() < 6 {
            self.examples.push(what);
        }
    }
}

fn run(n: usize, slow_first: bool) {
    let mut rig = rig();
    let reps = reps();
    let mut tally = Tally::default();
    let mut last_id = 0u64;
    for rep in 0..reps {
        // Rotate the codes so that each repetition ends on another card than the one before.
        let order: Vec<usize> = (0..n).map(|k| (k + rep) % n).collect();
        if slow_first {
            let delays = serde_json::json!({ code(order[0]): 100 });
            let (status, _) = rig
                .sim
                .admin_send("PUT", "code-delays", &delays.to_string());
            assert_eq!(status, 200);
        }
        let write: String = order.iter().map(|&i| format!("{}\r", code(i))).collect();
        rig.pty.send(write.as_bytes());

        let (mut scans, mut cards) = (Vec::new(), Vec::new());
        let mut scans_before_first_card = None;
        while scans.len() < n || cards.len() < n {
            let v = wait_event(&mut rig.events, "scan and card events", |v| {
                is_event(v, "scan") || is_event(v, "card")
            });
            if is_event(&v, "scan") {
                scans.push(v);
            } else {
                scans_before_first_card.get_or_insert(scans.len());
                cards.push(v);
            }
        }
        let want: Vec<String> = order.iter().map(|&i| code(i)).collect();
        let scanned: Vec<String> = scans
            .iter()
            .map(|v| v["code"].as_str().unwrap_or("").to_owned())
            .collect();
        let carded: Vec<String> = cards
            .iter()
            .map(|v| v["wx_code"].as_str().unwrap_or("").to_owned())
            .collect();
        if scanned != want {
            tally.scan_order += 1;
            tally.note(format!("rep {rep}: scans {scanned:?}, written {want:?}"));
        }
        if carded != want {
            tally.card_order += 1;
            tally.note(format!("rep {rep}: cards {carded:?}, written {want:?}"));
        }
        // Every scan has an id above the one before; its card carries the same id.
        let ids: Vec<Option<u64>> = scans.iter().map(|v| v["scan_id"].as_u64()).collect();
        let card_ids: Vec<Option<u64>> = cards.iter().map(|v| v["scan_id"].as_u64()).collect();
        let increasing = ids.iter().all(Option::is_some)
            && ids.iter().flatten().all(|&id| {
                let ok = id > last_id;
                last_id = id;
                ok
            });
        if !increasing || card_ids != ids {
            tally.scan_ids += 1;
            tally.note(format!(
                "rep {rep}: scan ids {ids:?}, card ids {card_ids:?}"
            ));
        }

        // The display ends on the last card written: the screen carries the last scan's id
        // (set before its card event left), and once the PNG backend reports having drawn
        // that scan's screen, the picture is that card.
        let last = *order.last().unwrap();
        let last_id = ids.last().copied().flatten();
        let mut status = rig.daemon.client();
        let screen_id =
            status.request(&Command::Status).unwrap()["result"]["screen"]["scan_id"].as_u64();
        if screen_id.is_none() || screen_id != last_id {
            tally.final_screen += 1;
            tally.note(format!(
                "rep {rep}: the screen is of scan {screen_id:?}, the last scan is {last_id:?}"
            ));
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let drawn = status.request(&Command::Status).unwrap()["result"]["display_backends"]
                    [0]["scan_id"]
                    .as_u64();
                if drawn == last_id || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let shown = pixels(&rig.png);
            if shown.as_ref() != Some(&rig.refs[last]) {
                tally.final_screen += 1;
                let which = rig.refs.iter().position(|r| Some(r) == shown.as_ref());
                tally.note(format!(
                    "rep {rep}: display shows card {which:?} after writing {order:?}"
                ));
            }
        }
        // A slow first lookup (100 ms against a loopback round trip) must not hold up the
        // later scans: all their events come before the first card event.
        if slow_first && scans_before_first_card != Some(n) {
            tally.held_up += 1;
            tally.note(format!(
                "rep {rep}: only {scans_before_first_card:?} scan events before the first card"
            ));
        }
    }
    let status = rig.daemon.client().request(&Command::Status).unwrap();
    assert!(
        tally.scan_order + tally.card_order + tally.scan_ids + tally.final_screen + tally.held_up
            == 0,
        "{n} codes per write, {reps} repetitions{}: wrong scan order {}, wrong card order {}, \
         wrong scan ids {}, wrong final screen {}, scans held up {}; e.g. {:#?}\nstatus: {status}",
        if slow_first { ", first code slow" } else { "" },
        tally.scan_order,
        tally.card_order,
        tally.scan_ids,
        tally.final_screen,
        tally.held_up,
        tally.examples
    );
}

#[test]
fn two_codes_in_one_read_keep_their_order() {
    run(2, false);
}

#[test]
fn five_codes_in_one_read_keep_their_order() {
    run(5, false);
}

#[test]
fn two_codes_with_a_slow_first_lookup_keep_their_order() {
    run(2, true);
}

#[test]
fn five_codes_with_a_slow_first_lookup_keep_their_order() {
    run(5, true);
}
