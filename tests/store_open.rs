//! Opening the store: persistence across reopen, private file modes, and the quarantine of
//! a store whose files are damaged, on real sled files in temporary directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wxcardd::store::{CardKeys, Store, StoreConfig, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Write {
    card: String,
    phone: String,
}

fn w(i: u32) -> Write {
    Write {
        card: format!("card-{i}"),
        phone: format!("1380000{i:04}"),
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A store with queued writes and a cached card, closed.
fn populated(dir: &Path, queued: u32) {
    let (store, report) = Store::open(dir, &StoreConfig::default()).unwrap();
    assert!(report.created);
    assert_eq!(report.quarantined, None);
    for i in 0..queued {
        store.enqueue(1_000 + u64::from(i), &w(i)).unwrap();
    }
    store
        .put_card(&CardKeys::both("wx1", "c1"), 5, &"balance 10")
        .unwrap();
    store.close().unwrap();
    // A second open makes sled write its snapshot file.
    let (store, report) = Store::open(dir, &StoreConfig::default()).unwrap();
    assert_eq!(report.pending, u64::from(queued));
    store.close().unwrap();
}

#[test]
fn reopen_keeps_cards_outbox_and_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    populated(&dir, 3);
    let (store, report) = Store::open(&dir, &StoreConfig::default()).unwrap();
    assert!(!report.created);
    assert_eq!((report.cards, report.pending, report.dead), (1, 3, 0));
    let card = store.get_card_by_code::<String>("c1").unwrap().unwrap();
    assert_eq!(card.value, "balance 10");
    assert_eq!(card.fetched_at_ms, 5);
    let pending: Vec<_> = store.pending::<Write>().map(Result::unwrap).collect();
    assert_eq!(
        pending.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        vec![w(0), w(1), w(2)]
    );
    assert!(pending.windows(2).all(|p| p[0].id < p[1].id));
    // Ids keep increasing across a reopen: a new write sorts after the old ones.
    let id = store.enqueue(2_000, &w(9)).unwrap();
    assert!(id > pending[2].id);
}

#[test]
fn directory_is_0700_and_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("store");
    populated(&dir, 2);
    let (store, _) = Store::open(&dir, &StoreConfig::default()).unwrap();
    store.close().unwrap();
    assert_eq!(mode(&dir), 0o700);
    let mut files = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 3,
        "expected sled's db, conf and our sidecar, found {files} files"
    );
    // An existing directory with loose modes is tightened.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("db"), fs::Permissions::from_mode(0o644)).unwrap();
    let (_store, _) = Store::open(&dir, &StoreConfig::default()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("db")), 0o600);
}

fn quarantine_dirs(parent: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("store.quarantine-")
        })
        .collect();
    v.sort();
    v
}

/// Damages a closed store with `damage`, reopens it, and checks it was quarantined with the
/// queued count and that the fresh store works.
fn assert_quarantined(reason_has: &str, damage: impl FnOnce(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    populated(&dir, 4);
    damage(&dir);
    let (store, report) = Store::open(&dir, &StoreConfig::default()).expect("open after damage");
    let q = report
        .quarantined
        .expect("damaged store was not quarantined");
    assert!(q.reason.contains(reason_has), "reason: {}", q.reason);
    assert!(report.created);
    assert_eq!((report.cards, report.pending, report.dead), (0, 0, 0));
    let queued = q.queued.expect("sidecar count readable");
    assert_eq!((queued.pending, queued.dead), (4, 0));
    assert_eq!(quarantine_dirs(tmp.path()), vec![q.path.clone()]);
    assert!(
        q.path.join("db").exists(),
        "the damaged files are kept for an operator"
    );
    assert_eq!(mode(&q.path), 0o700);
    // The fresh store is usable and durable.
    let id = store.enqueue(1, &w(1)).unwrap();
    store.close().unwrap();
    let (store, report) = Store::open(&dir, &StoreConfig::default()).unwrap();
    assert_eq!(report.quarantined, None);
    assert_eq!(report.lost_acknowledged, None);
    assert_eq!(store.peek_oldest::<Write>().unwrap().unwrap().id, id);
}

#[test]
fn garbage_db_file_is_quarantined() {
    assert_quarantined("corrupted data", |dir| {
        let len = fs::metadata(dir.join("db")).unwrap().len() as usize;
        let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
        fs::write(dir.join("db"), garbage).unwrap();
    });
}

#[test]
fn truncated_db_file_is_quarantined() {
    assert_quarantined("corrupted data", |dir| {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("db"))
            .unwrap();
        f.set_len(20).unwrap();
    });
}

/// Without a snapshot to contradict it, sled opens a garbage log as an empty store (to sled
/// an unreadable log is a torn tail): the store must notice its data is gone.
#[test]
fn garbage_db_without_snapshot_is_quarantined() {
    assert_quarantined("without its data", |dir| {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
            {
                fs::remove_file(p).unwrap();
            }
        }
        let len = fs::metadata(dir.join("db")).unwrap().len() as usize;
        fs::write(dir.join("db"), vec![0x5Au8; len]).unwrap();
    });
}

#[test]
fn corrupt_conf_file_is_quarantined() {
    assert_quarantined("corrupted data", |dir| {
        fs::write(
            dir.join("conf"),
            b"segment_size: banana\nuse_compression: maybe\n\0\0\0\0",
        )
        .unwrap();
    });
}

#[test]
fn corrupt_snapshot_is_quarantined() {
    assert_quarantined("corrupted data", |dir| {
        let snap = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("snap.")
            })
            .expect("sled wrote a snapshot at the second open");
        let mut bytes = fs::read(&snap).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..] {
            *b ^= 0xA5;
        }
        fs::write(&snap, bytes).unwrap();
    });
}

#[test]
fn a_locked_store_is_an_error_not_a_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (_first, _) = Store::open(&dir, &StoreConfig::default()).unwrap();
    match Store::open(&dir, &StoreConfig::default()) {
        Err(StoreError::Open { .. }) => {}
        other => panic!("expected an Open error, got {other:?}"),
    }
    assert!(quarantine_dirs(tmp.path()).is_empty());
}

/// Cuts the tail off sled's data file after a burst of acknowledged writes: sled opens what
/// precedes the cut without an error, and the store must notice the acknowledged writes it
/// lost, never carry on silently.
#[test]
fn a_cut_log_tail_is_reported_not_silent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let cfg = StoreConfig {
        flush_every_ms: None,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(&dir, &cfg).unwrap();
    store.enqueue(1, &w(0)).unwrap();
    store.close().unwrap();
    let (store, _) = Store::open(&dir, &cfg).unwrap();
    // sled preallocates its segments and fills them in order: after write 100 the log's
    // high-water mark (last non-zero byte) is where the cut goes.
    let high_water = || {
        let bytes = fs::read(dir.join("db")).unwrap();
        bytes.iter().rposition(|&b| b != 0).unwrap() + 1
    };
    for i in 1..100 {
        store.enqueue(1, &w(i)).unwrap();
    }
    let cut = high_water();
    let mut last = 0;
    for i in 100..200 {
        last = store.enqueue(1, &w(i)).unwrap();
    }
    assert!(high_water() > cut, "the later writes went past the cut");
    store.close().unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .unwrap();
    f.set_len(cut as u64).unwrap();
    drop(f);
    let (store, report) = Store::open(&dir, &cfg).unwrap();
    assert_eq!(report.quarantined, None);
    let lost = report
        .lost_acknowledged
        .expect("a lost tail went unnoticed");
    assert_eq!(lost.last_acked_id, last);
    assert_eq!(lost.recovered_next_id, 101, "sled recovered up to the cut");
    assert_eq!(report.pending, 100);
    // What survived is intact and in order; the lost ids are never handed out again.
    let pending: Vec<_> = store.pending::<Write>().map(Result::unwrap).collect();
    assert_eq!(
        pending.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        (0..100).map(w).collect::<Vec<_>>()
    );
    store.close().unwrap();
    let (store, report) = Store::open(&dir, &cfg).unwrap();
    assert_eq!(
        report.lost_acknowledged, None,
        "reported once, at the open that found it"
    );
    assert_eq!(store.enqueue(2, &w(300)).unwrap(), last + 1);
}
