//! Issue 12, the online path: a lookup's answer comes back as soon as the backend gave it, and
//! its cache write follows. The simulator over real HTTP, sled on disk; the cache write is
//! held back with `Store::hold_cache_writes` (the store's cache lock), so what waits for it
//! and what does not is deterministic, with no timing assertion.

use std::sync::Arc;
use std::time::Duration;

use wxcard_sim::{FaultMode, SimConfig, SimHandle, Simulator};
use wxcardd::api::{ApiConfig, Client};
use wxcardd::service::{
    CachedAnswer, CardService, LookupAnswer, ManualClock, ServiceConfig, Source,
};
use wxcardd::store::{Store, StoreConfig};

const ACTIVE: &str = "812345678901234567";
/// A card the simulator answers with a card state (lost), which is cached too.
const LOST: &str = "812345678901234571";

/// Longer than any healthy run; a lookup that waits for the held cache write never ends.
const NEVER: Duration = Duration::from_secs(10);

async fn rig() -> (SimHandle, CardService, Arc<Store>, tempfile::TempDir) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("store"), &StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let client = Client::new(&ApiConfig {
        base_url: sim.base_url(),
        connect_timeout_ms: 300,
        deadline_ms: 2_000,
        ..ApiConfig::default()
    })
    .unwrap();
    let config = ServiceConfig {
        lookup_deadline_ms: 1_000,
        ..ServiceConfig::default()
    };
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let service = CardService::new(client, Arc::clone(&store), config, clock);
    (sim, service, store, dir)
}

#[tokio::test]
// The hold is the point: the lookups run on the blocking pool, never on this thread.
#[allow(clippy::await_holding_lock)]
async fn the_answer_comes_back_while_its_cache_write_is_held_up() {
    let (sim, service, store, _dir) = rig().await;
    let writes_before = store.cache_writes();

    let hold = store.hold_cache_writes();
    let online = tokio::time::timeout(NEVER, service.lookup(ACTIVE, None))
        .await
        .expect("the answer comes back without waiting for its cache write")
        .unwrap();
    assert_eq!(online.source, Source::Api);
    assert!(
        matches!(online.answer, LookupAnswer::Card { .. }),
        "{online:?}"
    );
    let lost = tokio::time::timeout(NEVER, service.lookup(LOST, None))
        .await
        .expect("a card state comes back without waiting for its cache write")
        .unwrap();
    assert!(
        matches!(lost.answer, LookupAnswer::CardState { .. }),
        "{lost:?}"
    );
    assert_eq!(store.cache_writes(), writes_before, "the writes are held");
    assert!(
        store
            .get_card_by_wx::<CachedAnswer>(ACTIVE)
            .unwrap()
            .is_none(),
        "sled does not have the answer yet"
    );

    // The backend goes away: the cache answers, with the answer whose write is still held.
    sim.set_fault(FaultMode::Refuse).await.unwrap();
    let offline = tokio::time::timeout(NEVER, service.lookup(ACTIVE, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offline.source, Source::Cache);
    assert!(
        matches!(offline.answer, LookupAnswer::Card { ref card } if card.balance.to_string() == "128.50"),
        "{offline:?}"
    );
    let offline_lost = service.lookup(LOST, None).await.unwrap();
    assert_eq!(offline_lost.source, Source::Cache);
    assert!(
        matches!(offline_lost.answer, LookupAnswer::CardState { .. }),
        "{offline_lost:?}"
    );

    // Released, and `sync` (what shutdown runs) waits until both writes are in sled.
    drop(hold);
    service.sync().await.unwrap();
    assert_eq!(store.cache_writes(), writes_before + 2);
    let cached = store
        .get_card_by_wx::<CachedAnswer>(ACTIVE)
        .unwrap()
        .expect("cached after the sync");
    assert!(matches!(cached.value, CachedAnswer::Card(_)));
    assert!(
        store
            .get_card_by_wx::<CachedAnswer>(LOST)
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
// The hold is the point: the lookups run on the blocking pool, never on this thread.
#[allow(clippy::await_holding_lock)]
async fn a_card_number_seen_in_a_held_answer_is_found() {
    let (_sim, service, store, _dir) = rig().await;
    let hold = store.hold_cache_writes();
    let online = tokio::time::timeout(NEVER, service.lookup(ACTIVE, None))
        .await
        .expect("the answer comes back without waiting for its cache write")
        .unwrap();
    let LookupAnswer::Card { card } = online.answer else {
        panic!("{online:?}");
    };
    // The printed card's number maps to the wxCode through the answer not yet in sled.
    let by_number = tokio::time::timeout(NEVER, service.lookup_card_code(&card.card_code))
        .await
        .expect("the lookup by card number does not wait for the held write")
        .unwrap()
        .expect("the card number is known");
    assert_eq!(by_number.wx_code, ACTIVE);
    drop(hold);
    service.sync().await.unwrap();
}
