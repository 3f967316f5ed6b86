//! The card cache on a real sled store: lookups by either code, replacement by definitive
//! answers, least-recently-used eviction (reads count as use) and its persistence.

use serde::{Deserialize, Serialize};
use wxcardd::store::{CardKeys, Store, StoreConfig, StoreError};

/// What the service might cache: a summary or a definitive negative answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Answer {
    Card { balance: String, points: u32 },
    Lost,
    DoesNotExist,
}

fn card(balance: &str) -> Answer {
    Answer::Card {
        balance: balance.into(),
        points: 1,
    }
}

fn small(max_cards: u64) -> StoreConfig {
    StoreConfig {
        max_cards,
        ..StoreConfig::default()
    }
}

#[test]
fn get_by_either_code_with_fetch_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(10)).unwrap();
    store
        .put_card(
            &CardKeys::both("wx-1", "C-1"),
            1_700_000_000_000,
            &card("12.50"),
        )
        .unwrap();
    let a = store.get_card_by_wx::<Answer>("wx-1").unwrap().unwrap();
    let b = store.get_card_by_code::<Answer>("C-1").unwrap().unwrap();
    assert_eq!(a, b);
    assert_eq!(a.value, card("12.50"));
    assert_eq!(a.fetched_at_ms, 1_700_000_000_000);
    assert_eq!(a.keys, CardKeys::both("wx-1", "C-1"));
    // Codes are separate namespaces: a wxCode equal to some cardCode does not collide.
    assert!(store.get_card_by_wx::<Answer>("C-1").unwrap().is_none());
    assert!(store.get_card_by_code::<Answer>("wx-1").unwrap().is_none());
    assert_eq!(store.card_count().unwrap(), 1);
}

#[test]
fn a_negative_answer_replaces_the_card_under_both_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(10)).unwrap();
    store
        .put_card(&CardKeys::both("wx-1", "C-1"), 1, &card("99.00"))
        .unwrap();
    // The backend says 603 lost, known by wxCode only.
    store
        .put_card(&CardKeys::wx("wx-1"), 2, &Answer::Lost)
        .unwrap();
    let by_wx = store.get_card_by_wx::<Answer>("wx-1").unwrap().unwrap();
    assert_eq!((by_wx.value, by_wx.fetched_at_ms), (Answer::Lost, 2));
    // The old balance is not reachable by cardCode either.
    assert!(store.get_card_by_code::<Answer>("C-1").unwrap().is_none());
    assert_eq!(store.card_count().unwrap(), 1);
    // A put that joins two entries replaces both.
    store
        .put_card(&CardKeys::card("C-2"), 3, &Answer::DoesNotExist)
        .unwrap();
    store
        .put_card(&CardKeys::both("wx-1", "C-2"), 4, &card("1.00"))
        .unwrap();
    assert_eq!(store.card_count().unwrap(), 1);
    assert_eq!(
        store
            .get_card_by_code::<Answer>("C-2")
            .unwrap()
            .unwrap()
            .value,
        card("1.00")
    );
    assert_eq!(store.remove_card(&CardKeys::wx("wx-1")).unwrap(), 1);
    assert_eq!(store.card_count().unwrap(), 0);
    assert!(store.get_card_by_code::<Answer>("C-2").unwrap().is_none());
}

#[test]
fn a_card_code_moving_to_another_wx_code_leaves_no_trace_of_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(10)).unwrap();
    store
        .put_card(&CardKeys::both("wx-old", "C-9"), 1, &card("5.00"))
        .unwrap();
    store
        .put_card(&CardKeys::both("wx-new", "C-9"), 2, &card("6.00"))
        .unwrap();
    assert!(store.get_card_by_wx::<Answer>("wx-old").unwrap().is_none());
    let c = store.get_card_by_code::<Answer>("C-9").unwrap().unwrap();
    assert_eq!(
        (c.value, c.keys),
        (card("6.00"), CardKeys::both("wx-new", "C-9"))
    );
    // The same wxCode with a new cardCode drops the old cardCode.
    store
        .put_card(&CardKeys::both("wx-new", "C-10"), 3, &card("7.00"))
        .unwrap();
    assert!(store.get_card_by_code::<Answer>("C-9").unwrap().is_none());
    assert_eq!(
        store
            .get_card_by_code::<Answer>("C-10")
            .unwrap()
            .unwrap()
            .value,
        card("7.00")
    );
    // A card-only answer for C-10 replaces the wx-new entry too.
    store
        .put_card(&CardKeys::card("C-10"), 4, &Answer::Lost)
        .unwrap();
    assert!(store.get_card_by_wx::<Answer>("wx-new").unwrap().is_none());
    assert_eq!(
        store
            .get_card_by_code::<Answer>("C-10")
            .unwrap()
            .unwrap()
            .value,
        Answer::Lost
    );
    assert_eq!(store.card_count().unwrap(), 1);
}

#[test]
fn lru_evicts_least_recently_used_counting_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = Store::open(&dir, &small(3)).unwrap();
    for i in 0..3 {
        store
            .put_card(
                &CardKeys::both(format!("w{i}"), format!("c{i}")),
                i,
                &card("1"),
            )
            .unwrap();
    }
    // Reading w0 makes w1 the least recently used.
    assert!(store.get_card_by_wx::<Answer>("w0").unwrap().is_some());
    store
        .put_card(&CardKeys::both("w3", "c3"), 3, &card("1"))
        .unwrap();
    assert_eq!(store.card_count().unwrap(), 3);
    assert!(
        store.get_card_by_wx::<Answer>("w1").unwrap().is_none(),
        "w1 should be evicted"
    );
    assert!(
        store.get_card_by_code::<Answer>("c1").unwrap().is_none(),
        "and its cardCode key"
    );
    // Reading by cardCode counts too: c2 read, so w0 is now the oldest.
    assert!(store.get_card_by_code::<Answer>("c2").unwrap().is_some());
    store.close().unwrap();
    // Recency and count survive a reopen.
    let (store, report) = Store::open(&dir, &small(3)).unwrap();
    assert_eq!(report.cards, 3);
    store.put_card(&CardKeys::wx("w4"), 4, &card("1")).unwrap();
    assert!(
        store.get_card_by_wx::<Answer>("w0").unwrap().is_none(),
        "w0 should be evicted"
    );
    for k in ["w2", "w3", "w4"] {
        assert!(
            store.get_card_by_wx::<Answer>(k).unwrap().is_some(),
            "{k} kept"
        );
    }
    assert_eq!(store.card_count().unwrap(), 3);
}

#[test]
fn a_lower_limit_at_reopen_evicts_down_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = Store::open(&dir, &small(50)).unwrap();
    for i in 0..50 {
        store
            .put_card(&CardKeys::wx(format!("w{i}")), i, &card("1"))
            .unwrap();
    }
    store.close().unwrap();
    let (store, report) = Store::open(&dir, &small(5)).unwrap();
    assert_eq!(
        (report.cards, store.card_count().unwrap()),
        (50, 5),
        "evicted at open"
    );
    store
        .put_card(&CardKeys::wx("new"), 99, &card("1"))
        .unwrap();
    assert_eq!(store.card_count().unwrap(), 5);
    for i in 46..50 {
        assert!(
            store
                .get_card_by_wx::<Answer>(&format!("w{i}"))
                .unwrap()
                .is_some()
        );
    }
    assert!(store.get_card_by_wx::<Answer>("w45").unwrap().is_none());
}

#[test]
fn bad_keys_and_mismatched_types_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(5)).unwrap();
    assert!(matches!(
        store.put_card(&CardKeys::default(), 1, &card("1")),
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        store.put_card(&CardKeys::wx(""), 1, &card("1")),
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        store.get_card_by_wx::<Answer>(&"x".repeat(200)),
        Err(StoreError::InvalidKey(_))
    ));
    store.put_card(&CardKeys::wx("w"), 1, &42u32).unwrap();
    match store.get_card_by_wx::<Answer>("w") {
        Err(StoreError::Decode {
            what: "card entry", ..
        }) => {}
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(store.card_count().unwrap(), 1);
}

#[test]
fn concurrent_readers_and_writers_keep_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(20)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..100u64 {
                    let k = format!("w{}", (i * 7 + t) % 40);
                    if i % 3 == 0 {
                        store.put_card(&CardKeys::wx(&k), i, &card("1")).unwrap();
                    } else {
                        store.get_card_by_wx::<Answer>(&k).unwrap();
                    }
                }
            });
        }
    });
    assert!(store.card_count().unwrap() <= 20);
    let found = (0..40)
        .filter(|i| {
            store
                .get_card_by_wx::<Answer>(&format!("w{i}"))
                .unwrap()
                .is_some()
        })
        .count();
    assert_eq!(
        found as u64,
        store.card_count().unwrap(),
        "the counter matches what is reachable"
    );
}

#[test]
fn a_card_read_often_is_never_evicted_by_a_stream_of_new_cards() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(16)).unwrap();
    store
        .put_card(&CardKeys::wx("regular"), 0, &card("5"))
        .unwrap();
    for n in 0..200 {
        let hit = store.get_card_by_wx::<Answer>("regular").unwrap();
        assert!(
            hit.is_some(),
            "regular customer evicted after {n} new cards"
        );
        store
            .put_card(&CardKeys::wx(format!("once-{n}")), n, &card("1"))
            .unwrap();
    }
    assert_eq!(store.card_count().unwrap(), 16);
    // The 15 most recent one-off cards are the rest of the cache.
    assert!(
        store
            .get_card_by_wx::<Answer>("once-185")
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_card_by_wx::<Answer>("once-184")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_cache_hit_writes_nothing_to_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    // A small cache, so every card is always near eviction and worth moving in the LRU.
    let (store, _) = Store::open(&dir, &small(4)).unwrap();
    for i in 0..4 {
        store
            .put_card(
                &CardKeys::both(format!("w{i}"), format!("c{i}")),
                i,
                &card("1"),
            )
            .unwrap();
    }
    let before = store.cache_writes();
    for round in 0..50 {
        for i in 0..4 {
            let by_wx = store.get_card_by_wx::<Answer>(&format!("w{i}")).unwrap();
            assert!(by_wx.is_some(), "w{i} in round {round}");
            let by_code = store.get_card_by_code::<Answer>(&format!("c{i}")).unwrap();
            assert!(by_code.is_some(), "c{i} in round {round}");
        }
    }
    assert_eq!(
        store.cache_writes() - before,
        0,
        "400 hits made sled writes"
    );
    // The reads still count as use: w0 read last of all makes w1 the eviction candidate
    // (order of last reads: w1 c1 < w2 c2 < w3 c3 < w0).
    assert!(store.get_card_by_wx::<Answer>("w0").unwrap().is_some());
    store.put_card(&CardKeys::wx("w4"), 4, &card("1")).unwrap();
    assert!(
        store.get_card_by_wx::<Answer>("w1").unwrap().is_none(),
        "w1 evicted"
    );
    for k in ["w0", "w2", "w3", "w4"] {
        assert!(
            store.get_card_by_wx::<Answer>(k).unwrap().is_some(),
            "{k} kept"
        );
    }
}

#[test]
fn reads_persisted_in_a_batch_and_reads_still_in_memory_both_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(1100)).unwrap();
    for i in 0..1100 {
        store
            .put_card(&CardKeys::wx(format!("w{i}")), i, &card("1"))
            .unwrap();
    }
    // More distinct reads than are kept in memory: most are written in one batch, the
    // rest wait in memory for eviction to consult them.
    for i in 0..1050 {
        assert!(
            store
                .get_card_by_wx::<Answer>(&format!("w{i}"))
                .unwrap()
                .is_some()
        );
    }
    for i in 1100..1150 {
        store
            .put_card(&CardKeys::wx(format!("w{i}")), i, &card("1"))
            .unwrap();
    }
    assert_eq!(store.card_count().unwrap(), 1100);
    for i in 1050..1100 {
        assert!(
            store
                .get_card_by_wx::<Answer>(&format!("w{i}"))
                .unwrap()
                .is_none(),
            "w{i}, never read, should be evicted"
        );
    }
    for i in (0..1050).chain(1100..1150) {
        assert!(
            store
                .get_card_by_wx::<Answer>(&format!("w{i}"))
                .unwrap()
                .is_some(),
            "w{i} kept"
        );
    }
}

#[test]
fn an_unchanged_answer_fetched_again_writes_nothing_yet_reads_the_newer_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let keys = CardKeys::both("w1", "c1");
    {
        let (store, _) = Store::open(&dir, &small(8)).unwrap();
        store.put_card(&keys, 10, &card("1")).unwrap();
        let before = store.cache_writes();
        // The same answer under the same keys, fetched again: nothing for sled.
        assert!(store.refresh_card(&keys, 20, &card("1")).unwrap());
        store.put_card(&keys, 30, &card("1")).unwrap();
        assert_eq!(
            store.cache_writes() - before,
            0,
            "an unchanged answer was rewritten"
        );
        let hit = store.get_card_by_wx::<Answer>("w1").unwrap().unwrap();
        assert_eq!(
            hit.fetched_at_ms, 30,
            "the newer fetch time, read from memory"
        );
        let by_code = store.get_card_by_code::<Answer>("c1").unwrap().unwrap();
        assert_eq!(by_code.fetched_at_ms, 30);
        // A different answer, or different keys, is a write.
        assert!(!store.refresh_card(&keys, 40, &card("2")).unwrap());
        assert!(
            !store
                .refresh_card(&CardKeys::wx("w1"), 40, &card("1"))
                .unwrap()
        );
        assert!(
            !store
                .refresh_card(&CardKeys::wx("w9"), 40, &card("1"))
                .unwrap()
        );
        assert_eq!(
            store.cache_writes() - before,
            0,
            "refresh_card never writes"
        );
    }
    // Closing the store persisted the newer time with the recency.
    let (store, _) = Store::open(&dir, &small(8)).unwrap();
    let hit = store.get_card_by_wx::<Answer>("w1").unwrap().unwrap();
    assert_eq!((hit.fetched_at_ms, hit.value), (30, card("1")));
}

#[test]
fn a_refresh_does_not_outlive_a_different_answer_put_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path().join("s"), &small(8)).unwrap();
    let keys = CardKeys::wx("w1");
    store.put_card(&keys, 10, &card("1")).unwrap();
    assert!(store.refresh_card(&keys, 50, &card("1")).unwrap());
    // Two lookups of one card answered out of order: the older fetch lands last, with a
    // different answer. Its own fetch time is what the cache reports, read after read.
    store.put_card(&keys, 30, &card("2")).unwrap();
    for _ in 0..3 {
        let hit = store.get_card_by_wx::<Answer>("w1").unwrap().unwrap();
        assert_eq!((hit.fetched_at_ms, hit.value), (30, card("2")));
    }
}
