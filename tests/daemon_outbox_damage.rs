//! One bad outbox entry never blocks the outbox: the real daemon, the real simulator, a real
//! sled store damaged on disk in each way a till's disk or an operator can damage it (the
//! sealing key lost, the key replaced, an entry's bytes flipped, an entry truncated).
//!
//! A correct daemon moves every entry it cannot read to the dead letters with the reason
//! `undecodable` (raw bytes kept), publishes an `outbox` event, delivers every readable write
//! behind it, lists every row (`outbox_list` never fails as a whole, nor `wxcardctl outbox`),
//! and lets the operator drop it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcardd::api::CardIssueOrder;
use wxcardd::control::protocol::{Command, IssueParams, OutboxIdParams};
use wxcardd::service::QueuedWrite;
use wxcardd::store::{Store, StoreConfig};

fn order(id: i64) -> CardIssueOrder {
    serde_json::from_value(json!({"id": id, "createQty": 1})).unwrap()
}

/// Queues orders 101..=103 in the store at `dir`, as a daemon would have while offline.
fn queue_three(dir: &Path) -> Vec<u64> {
    let (store, _) = Store::open(dir, &StoreConfig::default()).unwrap();
    let ids = (101..=103)
        .map(|n| {
            store
                .enqueue(1_700_000_000_000, &QueuedWrite::Issue(order(n)))
                .unwrap()
        })
        .collect();
    store.close().unwrap();
    ids
}

/// Rewrites one outbox entry's raw bytes in sled, as a damaged disk would leave them.
fn damage_entry(dir: &Path, id: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::LowSpace)
        .open()
        .unwrap();
    let outbox = db.open_tree("outbox").unwrap();
    let mut bytes = outbox.get(id.to_be_bytes()).unwrap().unwrap().to_vec();
    damage(&mut bytes);
    outbox.insert(id.to_be_bytes(), bytes).unwrap();
    db.flush().unwrap();
    drop(outbox);
    drop(db);
    // sled's IO threads let go of the lock a moment after the drop.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, &StoreConfig::default()) {
            Ok((store, _)) => {
                store.close().unwrap();
                return;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("store does not reopen: {e}"),
        }
    }
}

fn request(daemon: &DaemonProcess, command: &Command) -> Value {
    daemon.client().request(command).unwrap()
}

fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cond()
}

fn wxcardctl(socket: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Damages the queued store with `damage`, starts the daemon, and checks that the entries
/// in `bad` become undecodable dead letters while the others are delivered.
fn run_case(damage: impl FnOnce(&Path, &[u64]), bad_orders: &[i64]) {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let ids = queue_three(&store_dir);
    damage(&store_dir, &ids);
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let log = dir.path().join("daemon.log");
    let daemon = DaemonProcess::start_logging_to(&config, &socket, &[], Some(&log));

    let drained = poll(Duration::from_secs(15), || {
        request(&daemon, &Command::Status)["result"]["service"]["outbox_pending"] == 0
    });
    let status = request(&daemon, &Command::Status);
    assert!(drained, "the outbox stays jammed: {status}");
    for (n, id) in (101..=103).zip(&ids) {
        let (receipts, _) = sim.write_count("savecardid", &n.to_string());
        if bad_orders.contains(&n) {
            assert_eq!(receipts, 0, "order {n} (entry {id}) cannot have been read");
        } else {
            assert_eq!(
                receipts, 1,
                "order {n} (entry {id}) delivered behind the bad one"
            );
        }
    }

    // Every row is listed, the unreadable ones as undecodable dead letters.
    let listed = request(&daemon, &Command::OutboxList);
    assert_eq!(listed["class"], "RESULT", "{listed}");
    let rows = listed["result"]["entries"].as_array().unwrap().clone();
    assert_eq!(rows.len(), bad_orders.len(), "{listed}");
    for row in &rows {
        assert_eq!(row["state"], "dead", "{row}");
        assert_eq!(row["reason"], "undecodable", "{row}");
    }
    let (code, text) = wxcardctl(&socket, &["outbox"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("UNDECODABLE"), "{text}");

    // Each was logged as an error, with its id.
    let logged = std::fs::read_to_string(&log).unwrap();
    for row in &rows {
        let line = format!("outbox entry {} cannot be read", row["entry"]);
        assert!(logged.contains(&line), "{line:?} not in the log:\n{logged}");
    }

    // Retried (the raw bytes go back as they were), it is set aside again, with an event.
    let mut events = daemon.client();
    events.request(&Command::Subscribe).unwrap();
    let last = rows[rows.len() - 1]["entry"].as_u64().unwrap();
    let retried = request(
        &daemon,
        &Command::OutboxRetry(OutboxIdParams { entry: last }),
    );
    assert_eq!(retried["result"]["retried"], true, "{retried}");
    let event = wait_event(&mut events, "undecodable event", |v| {
        v["event"] == "outbox" && v["kind"] == "undecodable"
    });
    assert_eq!(event["entry"], last, "{event}");

    // The operator drops one, and is told what went.
    let first = rows[0]["entry"].as_u64().unwrap();
    let (code, text) = wxcardctl(&socket, &["outbox", "drop", &first.to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("dropped"), "{text}");
    assert!(text.contains("undecodable"), "{text}");

    // New writes are not stuck behind anything.
    let fresh = request(&daemon, &Command::Issue(IssueParams { order: order(104) }));
    assert_eq!(fresh["result"]["outcome"], "delivered", "{fresh}");
}

#[test]
fn a_lost_sealing_key_dead_letters_every_entry_and_unblocks_the_queue() {
    run_case(
        |dir, _| std::fs::remove_file(dir.join("outbox.key")).unwrap(),
        &[101, 102, 103],
    );
}

#[test]
fn a_wrong_sealing_key_dead_letters_every_entry_and_unblocks_the_queue() {
    run_case(
        |dir, _| std::fs::write(dir.join("outbox.key"), [7u8; 32]).unwrap(),
        &[101, 102, 103],
    );
}

#[test]
fn an_entry_with_flipped_bytes_is_set_aside_and_the_rest_delivered() {
    run_case(
        |dir, ids| {
            damage_entry(dir, ids[1], |b| {
                let last = b.len() - 1;
                b[last] ^= 0x40;
                b[last / 2] ^= 0x01;
            })
        },
        &[102],
    );
}

#[test]
fn a_truncated_entry_is_set_aside_and_the_rest_delivered() {
    // Cut inside the header: not even its enqueue time can be read.
    run_case(
        |dir, ids| damage_entry(dir, ids[0], |b| b.truncate(5)),
        &[101],
    );
}

/// A pending entry (readable or not) can be dropped or retried by the operator, not only a
/// dead letter.
#[test]
fn an_operator_can_drop_and_retry_pending_entries() {
    let sim = SimProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let daemon = DaemonProcess::start(&config, &socket, &[]);
    sim.set_fault("refuse");
    let mut entries = Vec::new();
    for n in [201, 202] {
        let queued = request(&daemon, &Command::Issue(IssueParams { order: order(n) }));
        assert_eq!(queued["result"]["outcome"], "queued", "{queued}");
        entries.push(queued["result"]["entry"].as_u64().unwrap());
    }
    let dropped = request(
        &daemon,
        &Command::OutboxDrop(OutboxIdParams { entry: entries[0] }),
    );
    assert_eq!(dropped["class"], "RESULT", "{dropped}");
    assert_eq!(dropped["result"]["dropped"], true, "{dropped}");
    assert_eq!(dropped["result"]["was"]["state"], "pending", "{dropped}");
    assert!(
        dropped["result"]["was"]["summary"]
            .as_str()
            .unwrap()
            .contains("issue order 201"),
        "{dropped}"
    );
    let (code, text) = wxcardctl(&socket, &["outbox", "retry", &entries[1].to_string()]);
    assert_eq!(code, 0, "{text}");
    sim.set_fault("none");
    assert!(
        poll(Duration::from_secs(15), || sim
            .write_count("savecardid", "202")
            .0
            == 1),
        "the retried entry is delivered"
    );
    assert_eq!(
        sim.write_count("savecardid", "201").0,
        0,
        "dropped: never sent"
    );
    let gone = request(
        &daemon,
        &Command::OutboxDrop(OutboxIdParams { entry: entries[0] }),
    );
    assert_eq!(gone["class"], "ERROR", "{gone}");
    assert!(
        gone["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("no outbox entry {}", entries[0])),
        "{gone}"
    );
}
