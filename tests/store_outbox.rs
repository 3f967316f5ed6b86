//! The outbox on a real sled store: order, removal, the size bound (a refused write leaves no
//! trace), the dead-letter flow and its persistence.

use serde::{Deserialize, Serialize};
use wxcardd::store::{OutboxStats, Store, StoreConfig, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Activate {
    card_code: String,
    phone: String,
}

fn act(i: u32) -> Activate {
    Activate {
        card_code: format!("C{i}"),
        phone: format!("139{i:08}"),
    }
}

fn cfg(max_outbox: u64) -> StoreConfig {
    StoreConfig {
        max_outbox,
        ..StoreConfig::default()
    }
}

#[test]
fn fifo_order_peek_remove_and_age() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &cfg(100)).unwrap();
    assert_eq!(store.peek_oldest::<Activate>().unwrap(), None);
    assert_eq!(store.oldest_age_ms(5).unwrap(), None);
    let ids: Vec<_> = (0..5)
        .map(|i| store.enqueue(1_000 + u64::from(i), &act(i)).unwrap())
        .collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(store.outbox_len().unwrap(), 5);
    assert_eq!(store.oldest_age_ms(1_500).unwrap(), Some(500));
    let head = store.peek_oldest::<Activate>().unwrap().unwrap();
    assert_eq!(
        (head.id, head.enqueued_at_ms, head.value),
        (ids[0], 1_000, act(0))
    );
    assert!(store.remove_delivered(ids[0]).unwrap());
    assert!(
        !store.remove_delivered(ids[0]).unwrap(),
        "a second removal is a no-op"
    );
    assert!(store.remove_delivered(ids[2]).unwrap());
    let rest: Vec<_> = store.pending::<Activate>().map(|e| e.unwrap().id).collect();
    assert_eq!(rest, vec![ids[1], ids[3], ids[4]]);
    assert_eq!(
        store.outbox_stats().unwrap(),
        OutboxStats {
            pending: 3,
            dead: 0,
            max: 100,
            oldest_enqueued_at_ms: Some(1_001)
        }
    );
}

#[test]
fn a_full_outbox_refuses_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    // No background flush, so the data file changes only when the store writes.
    let quiet = StoreConfig {
        flush_every_ms: None,
        ..cfg(3)
    };
    let (store, _) = Store::open(&dir, &quiet).unwrap();
    let ids: Vec<_> = (0..3).map(|i| store.enqueue(1, &act(i)).unwrap()).collect();
    let files_before = store_files(&dir);
    match store.enqueue(2, &act(99)) {
        Err(
            e @ StoreError::OutboxFull {
                pending: 3,
                dead: 0,
                max: 3,
            },
        ) => {
            assert!(e.to_string().contains("outbox full"), "{e}");
        }
        other => panic!("expected OutboxFull, got {other:?}"),
    }
    store.sync().unwrap();
    assert!(
        files_before == store_files(&dir),
        "a refused write changed the store's files"
    );
    // A dead letter still counts (it holds personal data): full stays full.
    store.dead_letter(ids[0], 603, "card lost", 5).unwrap();
    store.sync().unwrap();
    let files_before = store_files(&dir);
    assert!(matches!(
        store.enqueue(2, &act(98)),
        Err(StoreError::OutboxFull {
            pending: 2,
            dead: 1,
            ..
        })
    ));
    store.sync().unwrap();
    assert!(
        files_before == store_files(&dir),
        "a refused write changed the store's files"
    );
    store.close().unwrap();
    let (store, report) = Store::open(&dir, &cfg(3)).unwrap();
    assert_eq!((report.pending, report.dead), (2, 1));
    let values: Vec<_> = store
        .pending::<Activate>()
        .map(|e| e.unwrap().value)
        .collect();
    assert_eq!(values, vec![act(1), act(2)]);
    // Room again after a delivery; the refused ids were never consumed.
    store.remove_delivered(ids[1]).unwrap();
    assert_eq!(store.enqueue(3, &act(4)).unwrap(), ids[2] + 1);
}

/// Every file of the store with its bytes, in path order.
fn store_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(store_files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            return dir_contains(&p, needle);
        }
        std::fs::read(&p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

#[test]
fn oversized_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &cfg(3)).unwrap();
    let big = Activate {
        card_code: "C".into(),
        phone: "9".repeat(70_000),
    };
    assert!(matches!(
        store.enqueue(1, &big),
        Err(StoreError::ValueTooLarge { .. })
    ));
    assert_eq!(store.outbox_len().unwrap(), 0);
}

#[test]
fn dead_letter_list_retry_and_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = Store::open(&dir, &cfg(10)).unwrap();
    let ids: Vec<_> = (0..4)
        .map(|i| store.enqueue(100, &act(i)).unwrap())
        .collect();
    store.dead_letter(ids[0], 603, "会员卡已挂失", 200).unwrap();
    store
        .dead_letter(ids[1], 801, &"m".repeat(5000), 300)
        .unwrap();
    assert!(matches!(
        store.dead_letter(ids[0], 1, "", 1),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.outbox_len().unwrap(), 2);
    assert_eq!(store.peek_oldest::<Activate>().unwrap().unwrap().id, ids[2]);
    store.close().unwrap();

    let (store, report) = Store::open(&dir, &cfg(10)).unwrap();
    assert_eq!((report.pending, report.dead), (2, 2));
    let dead: Vec<_> = store
        .dead_letters::<Activate>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].id, dead[0].status, dead[0].message.as_str()),
        (ids[0], 603, "会员卡已挂失")
    );
    assert_eq!((dead[0].enqueued_at_ms, dead[0].dead_at_ms), (100, 200));
    assert_eq!(dead[0].value, act(0));
    assert_eq!(dead[1].message.len(), 1024, "backend text is bounded");

    // Retry puts it back under its id, ahead of the later writes.
    store.retry_dead(ids[0]).unwrap();
    let order: Vec<_> = store.pending::<Activate>().map(|e| e.unwrap().id).collect();
    assert_eq!(order, vec![ids[0], ids[2], ids[3]]);
    let head = store.peek_oldest::<Activate>().unwrap().unwrap();
    assert_eq!((head.enqueued_at_ms, head.value), (100, act(0)));
    assert!(matches!(
        store.retry_dead(ids[0]),
        Err(StoreError::NotFound { .. })
    ));

    assert!(store.drop_dead(ids[1]).unwrap());
    assert!(!store.drop_dead(ids[1]).unwrap());
    let s = store.outbox_stats().unwrap();
    assert_eq!((s.pending, s.dead), (3, 0));
    assert_eq!(store.dead_letters::<Activate>().count(), 0);
}

#[test]
fn an_undecodable_entry_names_its_id_and_can_be_dead_lettered() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &cfg(10)).unwrap();
    let bad = store.enqueue(1, &"not an Activate").unwrap();
    let good = store.enqueue(2, &act(1)).unwrap();
    match store.peek_oldest::<Activate>() {
        Err(StoreError::Decode { id, .. }) => assert_eq!(id, bad),
        other => panic!("expected a decode error, got {other:?}"),
    }
    store
        .dead_letter(bad, -1, "payload does not decode", 3)
        .unwrap();
    assert_eq!(store.peek_oldest::<Activate>().unwrap().unwrap().id, good);
    let dead: Vec<_> = store.dead_letters::<String>().map(Result::unwrap).collect();
    assert_eq!(dead[0].value, "not an Activate");
}

#[test]
fn concurrent_enqueues_get_distinct_ordered_ids_and_respect_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &cfg(30)).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    (0..10)
                        .map(|i| store.enqueue(1, &act(t * 100 + i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut ok: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::OutboxFull { .. })))
        .count();
    assert_eq!((ok.len(), full), (30, 10));
    ok.sort_unstable();
    ok.dedup();
    assert_eq!(ok.len(), 30, "ids are distinct");
    let stored: Vec<_> = store.pending::<Activate>().map(|e| e.unwrap().id).collect();
    assert_eq!(stored, ok);
}

/// Personal data never sits in sled's files in clear, and once the outbox drains the key it
/// was sealed with is overwritten, so what sled's log still holds of delivered writes is
/// unreadable.
#[test]
fn delivered_personal_data_is_shredded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = Store::open(&dir, &cfg(10)).unwrap();
    let key_path = dir.join("outbox.key");
    let key_before = std::fs::read(&key_path).unwrap();
    assert_eq!(key_before.len(), 32);
    let ids: Vec<_> = (0..3).map(|i| store.enqueue(1, &act(i)).unwrap()).collect();
    store.sync().unwrap();
    for i in 0..3 {
        assert!(
            !dir_contains(&dir, act(i).phone.as_bytes()),
            "phone {i} in clear on disk"
        );
    }
    // Not drained yet: one delivered, one dead letter left, the key stays.
    store.remove_delivered(ids[0]).unwrap();
    store.dead_letter(ids[1], 603, "lost", 2).unwrap();
    store.remove_delivered(ids[2]).unwrap();
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);
    assert_eq!(
        store
            .dead_letters::<Activate>()
            .next()
            .unwrap()
            .unwrap()
            .value,
        act(1)
    );
    // The operator drops the last dead letter: drained, the key is overwritten.
    assert!(store.drop_dead(ids[1]).unwrap());
    let key_after = std::fs::read(&key_path).unwrap();
    assert_eq!(key_after.len(), 32);
    assert_ne!(key_after, key_before);
    assert!(
        !dir_contains(&dir, &key_before),
        "the old key survives in a store file"
    );
    // New writes use the new key, across a reopen.
    let id = store.enqueue(3, &act(7)).unwrap();
    store.close().unwrap();
    let (store, report) = Store::open(&dir, &cfg(10)).unwrap();
    assert!(!report.sealing_key_replaced);
    let head = store.peek_oldest::<Activate>().unwrap().unwrap();
    assert_eq!((head.id, head.value), (id, act(7)));
}

/// A store whose key file is lost cannot read its queued writes: it says so at open and
/// names each unreadable write's id, so the service can dead-letter it, and new writes work.
#[test]
fn a_lost_sealing_key_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = Store::open(&dir, &cfg(10)).unwrap();
    let old = store.enqueue(1, &act(1)).unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.join("outbox.key")).unwrap();
    let (store, report) = Store::open(&dir, &cfg(10)).unwrap();
    assert!(report.sealing_key_replaced);
    match store.peek_oldest::<Activate>() {
        Err(StoreError::Decode { id, .. }) => assert_eq!(id, old),
        other => panic!("expected a decode error, got {other:?}"),
    }
    store
        .dead_letter(old, -1, "unreadable: sealing key lost", 2)
        .unwrap();
    let new = store.enqueue(3, &act(2)).unwrap();
    assert_eq!(store.peek_oldest::<Activate>().unwrap().unwrap().id, new);
}
