//! The card service against the simulator over real HTTP, with sled on disk: cache served
//! when the backend is down, staleness and maximum age, lost cards, the breaker, the outbox.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use wxcard_sim::{CardState, FaultMode, SimConfig, SimHandle, Simulator};
use wxcardd::api::{ApiConfig, Client, MemberInfo, Status};
use wxcardd::service::{
    CardService, DeadKind, LookupAnswer, ManualClock, ServiceConfig, ServiceError, ServiceEvent,
    Source, WriteOutcome,
};
use wxcardd::store::{Store, StoreConfig};

const ACTIVE: &str = "812345678901234567";
const INACTIVE: &str = "812345678901234570";
const LOST: &str = "812345678901234571";

struct Rig {
    sim: SimHandle,
    service: CardService,
    clock: Arc<ManualClock>,
    events: broadcast::Receiver<ServiceEvent>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn rig(max_outbox: u64) -> Rig {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(
        dir.path().join("store"),
        &StoreConfig {
            max_outbox,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let client = Client::new(&ApiConfig {
        base_url: sim.base_url(),
        connect_timeout_ms: 300,
        deadline_ms: 2_000,
        ..ApiConfig::default()
    })
    .unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let config = ServiceConfig {
        lookup_deadline_ms: 500,
        write_deadline_ms: 1_000,
        probe_interval_ms: 50,
        replay_backoff_base_ms: 20,
        replay_backoff_max_ms: 100,
        ..ServiceConfig::default()
    };
    let service = CardService::new(client, Arc::new(store), config, clock.clone());
    let events = service.subscribe();
    let (stop, stop_rx) = watch::channel(false);
    let background = service.clone();
    tokio::spawn(async move { background.run_background(stop_rx).await });
    Rig {
        sim,
        service,
        clock,
        events,
        stop,
        _dir: dir,
    }
}

async fn next_event(events: &mut broadcast::Receiver<ServiceEvent>) -> ServiceEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("event channel open")
}

fn member(wx: &str) -> MemberInfo {
    MemberInfo {
        wx_code: wx.into(),
        ..MemberInfo::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_answers_when_the_backend_is_down_with_age_and_staleness() {
    let rig = rig(100).await;
    let online = rig.service.lookup(ACTIVE, None).await.unwrap();
    assert_eq!(online.source, Source::Api);
    assert!(
        matches!(online.answer, LookupAnswer::Card { ref card } if card.balance.to_string() == "128.50")
    );

    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    rig.clock.advance_ms(60_000);
    let cached = rig.service.lookup(ACTIVE, None).await.unwrap();
    assert_eq!(cached.source, Source::Cache);
    assert_eq!(cached.age_ms, 60_000);
    assert!(!cached.stale);
    assert!(
        matches!(cached.answer, LookupAnswer::Card { ref card } if card.balance.to_string() == "128.50")
    );

    // Past the freshness window (10 min): still served, marked stale.
    rig.clock.advance_ms(600_000);
    let stale = rig.service.lookup(ACTIVE, None).await.unwrap();
    assert_eq!((stale.source, stale.stale), (Source::Cache, true));
    assert!(matches!(stale.answer, LookupAnswer::Card { .. }));

    // Past the maximum offline age (24 h): not served.
    rig.clock.advance_ms(24 * 3_600_000);
    let too_old = rig.service.lookup(ACTIVE, None).await.unwrap();
    match too_old.answer {
        LookupAnswer::Offline { reason } => assert!(reason.contains("no recent data"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // A card never seen: offline, no data.
    let unknown = rig
        .service
        .lookup("812345678901239999", None)
        .await
        .unwrap();
    assert!(matches!(unknown.answer, LookupAnswer::Offline { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_card_is_never_served_with_its_old_balance() {
    let rig = rig(100).await;
    // Seen active first...
    let mut card = rig.sim.card(ACTIVE).unwrap();
    assert!(matches!(
        rig.service.lookup(ACTIVE, None).await.unwrap().answer,
        LookupAnswer::Card { .. }
    ));
    // ...then reported lost at the backend, and looked up once more while online.
    card.state = CardState::Lost;
    rig.sim.put_card(card);
    let lost = rig.service.lookup(ACTIVE, None).await.unwrap();
    assert!(matches!(
        lost.answer,
        LookupAnswer::CardState {
            status: Status::CardLost,
            ..
        }
    ));
    // Offline now: the cache says lost, not the old balance.
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let offline = rig.service.lookup(ACTIVE, None).await.unwrap();
    assert_eq!(offline.source, Source::Cache);
    assert!(
        matches!(
            offline.answer,
            LookupAnswer::CardState {
                status: Status::CardLost,
                ..
            }
        ),
        "{offline:?}"
    );
    // Same for a card that was lost from the start.
    rig.sim.clear_faults().await.unwrap();
    rig.service.lookup(LOST, None).await.unwrap();
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let offline = rig.service.lookup(LOST, None).await.unwrap();
    assert!(matches!(
        offline.answer,
        LookupAnswer::CardState {
            status: Status::CardLost,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_failures_and_the_probe_closes_it() {
    let mut rig = rig(100).await;
    rig.service.lookup(ACTIVE, None).await.unwrap();
    rig.sim.set_fault(FaultMode::Hang).await.unwrap();
    for _ in 0..3 {
        let answer = rig.service.lookup(ACTIVE, None).await.unwrap();
        assert_eq!(answer.source, Source::Cache);
    }
    assert_eq!(next_event(&mut rig.events).await, ServiceEvent::Offline);
    assert!(!rig.service.is_online());
    let status = rig.service.status().await.unwrap();
    assert!(!status.online);
    assert!(status.offline_since_ms.is_some());
    // Open: lookups answer from the cache without waiting out the 500 ms deadline on a
    // hanging backend. (Ten of them would take 5 s if they waited.)
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(
            rig.service.lookup(ACTIVE, None).await.unwrap().source,
            Source::Cache
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    // The backend comes back; the probe notices.
    rig.sim.clear_faults().await.unwrap();
    assert!(matches!(
        next_event(&mut rig.events).await,
        ServiceEvent::Online { .. }
    ));
    assert_eq!(
        rig.service.lookup(ACTIVE, None).await.unwrap().source,
        Source::Api
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queue_offline_and_are_delivered_once_when_back() {
    let mut rig = rig(100).await;
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let outcome = rig.service.activate(member(INACTIVE)).await.unwrap();
    let WriteOutcome::Queued { entry, .. } = outcome else {
        panic!("{outcome:?}")
    };
    // Queued behind it, in order, even once the breaker has opened.
    let create = rig
        .service
        .create(member("855500000000000007"))
        .await
        .unwrap();
    assert!(matches!(create, WriteOutcome::Queued { .. }));
    assert_eq!(rig.service.status().await.unwrap().outbox_pending, 2);

    rig.sim.clear_faults().await.unwrap();
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        if let ServiceEvent::Delivered { entry, .. } = next_event(&mut rig.events).await {
            delivered.push(entry);
        }
    }
    assert_eq!(delivered[0], entry);
    let counters = rig.sim.counters();
    let activate = counters.write(wxcard_sim::Endpoint::ActiveMember, INACTIVE);
    assert_eq!(activate.applications, 1);
    let created = counters.write(wxcard_sim::Endpoint::CreateMemberCard, "855500000000000007");
    assert_eq!(created.applications, 1);
    assert_eq!(rig.service.status().await.unwrap().outbox_pending, 0);

    // Online: sent at once.
    let now = rig.service.activate(member(INACTIVE)).await.unwrap();
    assert!(matches!(now, WriteOutcome::Delivered { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_queued_write_becomes_a_dead_letter() {
    let mut rig = rig(100).await;
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let WriteOutcome::Queued { entry, .. } = rig.service.activate(member(LOST)).await.unwrap()
    else {
        panic!()
    };
    rig.sim.clear_faults().await.unwrap();
    loop {
        if let ServiceEvent::DeadLettered {
            entry: e, status, ..
        } = next_event(&mut rig.events).await
        {
            assert_eq!((e, status), (entry, Status::CardLost));
            break;
        }
    }
    let rows = rig.service.outbox_list().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].rejected.as_ref().unwrap().0, Status::CardLost);
    let dropped = rig.service.outbox_drop(entry).await.unwrap();
    assert_eq!(
        (dropped.entry, dropped.reason),
        (entry, Some(DeadKind::Rejected))
    );
    assert!(rig.service.outbox_list().await.unwrap().is_empty());
    // Online, a refusal is answered directly and nothing is queued.
    let direct = rig.service.activate(member(LOST)).await.unwrap();
    assert!(matches!(
        direct,
        WriteOutcome::Rejected {
            status: Status::CardLost,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_the_write_and_queues_nothing() {
    let mut rig = rig(2).await;
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    for i in 0..2 {
        let wx = format!("85550000000000010{i}");
        assert!(matches!(
            rig.service.create(member(&wx)).await.unwrap(),
            WriteOutcome::Queued { .. }
        ));
    }
    let err = rig
        .service
        .create(member("855500000000000199"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::OutboxFull {
                max: 2,
                maybe_applied: false
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refused"));
    assert_eq!(rig.service.status().await.unwrap().outbox_pending, 2);
    rig.sim.clear_faults().await.unwrap();
    // The refused one never reaches the backend, even after replay.
    let mut delivered = 0;
    while delivered < 2 {
        if let ServiceEvent::Delivered { .. } = next_event(&mut rig.events).await {
            delivered += 1;
        }
    }
    assert_eq!(rig.service.status().await.unwrap().outbox_pending, 0);
    let counters = rig.sim.counters();
    assert_eq!(
        counters
            .write(wxcard_sim::Endpoint::CreateMemberCard, "855500000000000199")
            .receipts,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_card_number_seen_before_is_looked_up_by_its_wxcode() {
    let rig = rig(100).await;
    assert!(
        rig.service
            .lookup_card_code("M0001001")
            .await
            .unwrap()
            .is_none()
    );
    rig.service.lookup(ACTIVE, None).await.unwrap();
    let by_number = rig
        .service
        .lookup_card_code("M0001001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_number.wx_code, ACTIVE);
    assert_eq!(by_number.source, Source::Api);
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let offline = rig
        .service
        .lookup_card_code("M0001001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offline.source, Source::Cache);
    assert!(matches!(offline.answer, LookupAnswer::Card { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_backend_refuses_as_malformed_never_blocks_the_outbox() {
    let mut rig = rig(100).await;
    // Refused before anything is sent or queued (or looked up).
    let err = rig.service.create(member("bad code!")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    let err = rig.service.lookup("", None).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    assert!(
        rig.service.is_online(),
        "a bad request says nothing about the backend"
    );
    // The simulator answers HTTP 400 to a wxCode with '-': online, that is the answer...
    let direct = rig.service.create(member("8555-0001")).await.unwrap();
    assert!(
        matches!(direct, WriteOutcome::Invalid { ref reason } if reason.contains("HTTP 400")),
        "{direct:?}"
    );
    // ...and queued while offline, it becomes a dead letter instead of blocking what follows.
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let WriteOutcome::Queued { entry: poison, .. } =
        rig.service.create(member("8555-0002")).await.unwrap()
    else {
        panic!()
    };
    let WriteOutcome::Queued { entry: good, .. } =
        rig.service.activate(member(INACTIVE)).await.unwrap()
    else {
        panic!()
    };
    rig.sim.clear_faults().await.unwrap();
    let mut dead = None;
    let mut delivered = None;
    while dead.is_none() || delivered.is_none() {
        match next_event(&mut rig.events).await {
            ServiceEvent::DeadLettered { entry, message, .. } => dead = Some((entry, message)),
            ServiceEvent::Delivered { entry, .. } => delivered = Some(entry),
            _ => {}
        }
    }
    let (dead_entry, message) = dead.unwrap();
    assert_eq!(dead_entry, poison);
    assert!(message.contains("HTTP 400"), "{message}");
    assert_eq!(delivered, Some(good));
    assert!(rig.service.is_online());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_their_personal_data_expire_after_the_retention() {
    let mut rig = rig(100).await;
    rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let mut m = member(LOST);
    m.phone = Some(wxcardd::api::pii::Pii::new("13912345678"));
    let WriteOutcome::Queued { entry, .. } = rig.service.activate(m).await.unwrap() else {
        panic!()
    };
    rig.sim.clear_faults().await.unwrap();
    loop {
        if let ServiceEvent::DeadLettered { entry: e, .. } = next_event(&mut rig.events).await {
            assert_eq!(e, entry);
            break;
        }
    }
    // Within the retention (7 days by default) it stays for the operator.
    rig.clock.advance_ms(6 * 24 * 3_600_000);
    assert_eq!(rig.service.expire_dead_letters().await.unwrap(), 0);
    assert_eq!(rig.service.outbox_list().await.unwrap().len(), 1);
    // Past it, it goes, personal data and all.
    rig.clock.advance_ms(2 * 24 * 3_600_000);
    assert_eq!(rig.service.expire_dead_letters().await.unwrap(), 1);
    assert!(rig.service.outbox_list().await.unwrap().is_empty());
    assert_eq!(rig.service.status().await.unwrap().dead_letters, 0);
}

/// A card whose state flips at the backend while it is looked up again and again: each
/// changed answer's cache write goes to a blocking thread, and those threads may run in any
/// order. The cache must end with the last answer (lost), never an earlier one (the old
/// balance). Before the writes were ordered, `a_lost_card_is_never_served_with_its_old_balance`
/// failed about once in 40 runs; this makes the race many times a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_one_card_are_cached_in_the_order_they_came() {
    let rig = rig(100).await;
    let mut card = rig.sim.card(ACTIVE).unwrap();
    for round in 0..30 {
        for state in [
            CardState::Active,
            CardState::Lost,
            CardState::Active,
            CardState::Lost,
        ] {
            card.state = state;
            rig.sim.put_card(card.clone());
            rig.service.lookup(ACTIVE, None).await.unwrap();
        }
        rig.service.sync().await.unwrap();
        rig.sim.set_fault(FaultMode::Refuse).await.unwrap();
        let offline = rig.service.lookup(ACTIVE, None).await.unwrap();
        assert_eq!(offline.source, Source::Cache, "round {round}");
        assert!(
            matches!(
                offline.answer,
                LookupAnswer::CardState {
                    status: Status::CardLost,
                    ..
                }
            ),
            "round {round}: {offline:?}"
        );
        rig.sim.clear_faults().await.unwrap();
        // The breaker closes again on the probe's next success.
        while !rig.service.is_online() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
