//! The card service proper: lookups, writes, the outbox and the background replay.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, broadcast, watch};

use super::backoff::Backoff;
use super::breaker::{Breaker, Transition};
use super::clock::Clock;
use super::types::{
    BackendState, CachedAnswer, DeadKind, Lookup, LookupAnswer, OutboxRow, QueuedWrite, RowState,
    ServiceEvent, ServiceStatus, Source, WriteOutcome,
};
use super::{ServiceConfig, ServiceError};
use crate::api::{ApiError, CardIssueOrder, Client, MemberInfo, PayCode, Status};
use wxcard_hal::display::MaskedCardNumber;
use wxcard_hal::text::untrusted;

use crate::store::{
    CachedCard, CardKeys, DeadReason, DeadState, OutboxId, OutboxItem, Store, StoreError,
};

/// The card service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct CardService {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced on reload (a re-read token file); each call works on a clone (cheap: the
    /// connection pool is shared).
    client: RwLock<Arc<Client>>,
    store: Arc<Store>,
    config: ServiceConfig,
    clock: Arc<dyn Clock>,
    health: Mutex<Health>,
    events: broadcast::Sender<ServiceEvent>,
    /// Wakes the replay task: something was queued, retried, or the breaker closed.
    wake_replay: Notify,
    /// Held while a write is sent or queued, and while the replay sends: one at a time.
    write_order: Mutex<()>,
    /// Answers from the backend handed out before their cache write landed (see
    /// [`CardService::lookup`]). Cache reads look here first, so a read right after an answer
    /// sees it whether or not sled has it yet; [`CardService::sync`] waits until it is empty.
    recent: Mutex<Recent>,
    /// Signalled whenever an entry leaves `recent`.
    recent_written: Condvar,
    /// Held while `recent` is written to the cache (see [`Inner::write_recent`]).
    cache_writer: Mutex<()>,
}

/// See [`Inner::recent`]: a handful of entries at most (one per lookup in flight).
#[derive(Default)]
struct Recent {
    next: u64,
    entries: Vec<Arc<RecentAnswer>>,
}

struct RecentAnswer {
    seq: u64,
    keys: CardKeys,
    fetched_at_ms: u64,
    answer: CachedAnswer,
}

struct Health {
    breaker: Breaker,
    offline_since_ms: Option<u64>,
    /// The backend's last word on the token: 401 or 403 while it refuses it.
    credentials_refused: Option<u16>,
}

/// How a call to the backend ended, for the breaker.
enum Reached {
    Yes,
    No,
    /// It answered, refusing the credentials (the HTTP status).
    Refused(u16),
}

impl CardService {
    /// A service over an open store and a client.
    pub fn new(
        client: Client,
        store: Arc<Store>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (events, _) = broadcast::channel(256);
        CardService {
            inner: Arc::new(Inner {
                client: RwLock::new(Arc::new(client)),
                store,
                health: Mutex::new(Health {
                    breaker: Breaker::new(config.breaker_failures),
                    offline_since_ms: None,
                    credentials_refused: None,
                }),
                config,
                clock,
                events,
                wake_replay: Notify::new(),
                write_order: Mutex::new(()),
                recent: Mutex::new(Recent::default()),
                recent_written: Condvar::new(),
                cache_writer: Mutex::new(()),
            }),
        }
    }

    /// Replaces the API client (a reload re-read the token file or the `[api]` settings).
    /// Requests already sent finish with the old one; if the backend refused the old token,
    /// the probe tries the new one at its next tick.
    pub fn replace_client(&self, client: Client) {
        *self.inner.client.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(client);
    }

    /// Online/offline changes and outbox deliveries.
    pub fn subscribe(&self) -> broadcast::Receiver<ServiceEvent> {
        self.inner.events.subscribe()
    }

    /// The store (for status and shutdown flushes).
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// True while the backend is considered reachable.
    pub fn is_online(&self) -> bool {
        self.inner.health().breaker.is_closed()
    }

    /// Looks a card up: the backend first (short deadline), the cache when it is
    /// unreachable. A definitive answer about the card is cached either way.
    ///
    /// All on the caller's executor: the request is an async read ([`Client`]'s
    /// `get_member_card_async`), and an answer equal to the cached one only refreshes the
    /// entry in memory ([`Store::refresh_card`], a few µs). A changed answer is handed out at
    /// once and written to the cache (a sled transaction, hundreds of µs) on a blocking thread;
    /// until it lands, cache reads find it in memory (`Inner::recent`), and `sync` waits for
    /// it, so nothing is lost at a clean shutdown. After a crash the cache may miss the last
    /// answers, as it would without the reordering (the cache is never fsynced).
    pub async fn lookup(
        &self,
        wx_code: &str,
        card_id: Option<&str>,
    ) -> Result<Lookup, ServiceError> {
        super::types::code("wxCode", wx_code).map_err(ServiceError::Invalid)?;
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        if !self.is_online() {
            // The breaker is open: no network, only a cache read, which sled serves from
            // memory or with one small pread (tens of µs).
            return inner.answer_from_cache(wx_code, now);
        }
        let client = inner.client();
        let result = client
            .get_member_card_async(card_id, wx_code, Some(inner.config.lookup_deadline()))
            .await;
        inner.note(reached(&result));
        let (answer, to_cache) = inner.settle_lookup(wx_code, now, result);
        if let Some((keys, cached)) = to_cache {
            inner.cache_answer(keys, now, cached);
        }
        answer
    }

    /// A merchant card number (the printed card): the API looks cards up by wxCode only, so
    /// the card's wxCode is taken from the cache (a card seen before) and looked up as usual,
    /// network first. `None` when this card number was never seen.
    pub async fn lookup_card_code(&self, card_code: &str) -> Result<Option<Lookup>, ServiceError> {
        let inner = Arc::clone(&self.inner);
        let code = card_code.to_owned();
        let cached = match self
            .inner
            .recent_by(|keys| keys.card_code.as_deref() == Some(card_code))
        {
            Some(hit) => Ok(Some(hit)),
            None => blocking(move || inner.store.get_card_by_code::<CachedAnswer>(&code)).await,
        };
        let wx_code = match cached {
            Ok(Some(entry)) => entry.keys.wx_code,
            Ok(None) => None,
            Err(e) => {
                log::error!("card cache read failed: {e}");
                None
            }
        };
        match wx_code {
            Some(wx) => self.lookup(&wx, None).await.map(Some),
            None => Ok(None),
        }
    }

    /// activemember: sent now, or queued when the backend is unreachable.
    pub async fn activate(&self, member: MemberInfo) -> Result<WriteOutcome, ServiceError> {
        self.write(QueuedWrite::Activate(member)).await
    }

    /// createmembercard: sent now, or queued when the backend is unreachable.
    pub async fn create(&self, member: MemberInfo) -> Result<WriteOutcome, ServiceError> {
        self.write(QueuedWrite::Create(member)).await
    }

    /// savecardid: sent now, or queued when the backend is unreachable.
    pub async fn issue(&self, order: CardIssueOrder) -> Result<WriteOutcome, ServiceError> {
        self.write(QueuedWrite::Issue(order)).await
    }

    async fn write(&self, write: QueuedWrite) -> Result<WriteOutcome, ServiceError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.write(write)).await
    }

    /// A fresh pay code. Never cached: offline, this is an error, never an old code.
    pub async fn pay_code(&self, wx_code: &str) -> Result<PayCode, ApiError> {
        let client = self.inner.client();
        let result = client
            .get_pay_code_async(wx_code, Some(self.inner.config.lookup_deadline()))
            .await;
        self.inner.note(reached(&result));
        result
    }

    /// The service's state.
    pub async fn status(&self) -> Result<ServiceStatus, ServiceError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let stats = inner.store.outbox_stats()?;
            let now = inner.clock.now_ms();
            let health = inner.health();
            Ok(ServiceStatus {
                backend: health.backend_state(),
                online: health.breaker.is_closed(),
                offline_since_ms: health.offline_since_ms,
                consecutive_failures: health.breaker.consecutive_failures(),
                outbox_pending: stats.pending,
                dead_letters: stats.dead,
                outbox_max: stats.max,
                oldest_pending_age_ms: stats.oldest_enqueued_at_ms.map(|t| now.saturating_sub(t)),
            })
        })
        .await
    }

    /// Every outbox row, pending (in replay order) then dead letters, readable or not: a
    /// damaged entry is a row that says so, never a failure of the whole list. No personal
    /// data.
    pub async fn outbox_list(&self) -> Result<Vec<OutboxRow>, ServiceError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            Ok(inner
                .store
                .outbox_items::<QueuedWrite>()?
                .into_iter()
                .map(row)
                .collect())
        })
        .await
    }

    /// Retries an entry: a dead letter goes back to the outbox (replayed next); a pending
    /// one is tried now rather than after its backoff. Returns the row as it was.
    pub async fn outbox_retry(&self, entry: OutboxId) -> Result<OutboxRow, ServiceError> {
        let inner = Arc::clone(&self.inner);
        let was = blocking(move || {
            let _order = lock(&inner.write_order);
            let item = inner
                .store
                .outbox_item::<QueuedWrite>(entry)?
                .ok_or(ServiceError::NoEntry(entry))?;
            if item.dead.is_some() {
                inner.store.retry_dead(entry)?;
            }
            let was = row(item);
            log::info!(
                "outbox entry {entry} ({}) retried by an operator",
                was.summary
            );
            Ok::<_, ServiceError>(was)
        })
        .await?;
        self.inner.wake_replay.notify_one();
        Ok(was)
    }

    /// Drops an entry for good, pending or dead, readable or not, with the personal data it
    /// holds (an operator's decision). Returns the row as it was.
    pub async fn outbox_drop(&self, entry: OutboxId) -> Result<OutboxRow, ServiceError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            // The replay holds this lock while it sends: a pending entry is not dropped
            // halfway through its delivery.
            let _order = lock(&inner.write_order);
            let item = inner
                .store
                .outbox_item::<QueuedWrite>(entry)?
                .ok_or(ServiceError::NoEntry(entry))?;
            let dropped = if item.dead.is_some() {
                inner.store.drop_dead(entry)?
            } else {
                inner.store.drop_pending(entry)?
            };
            if !dropped {
                return Err(ServiceError::NoEntry(entry));
            }
            inner.store.sync()?;
            let was = row(item);
            log::warn!(
                "outbox entry {entry} ({}, {}) dropped by an operator, with its personal data",
                was.summary,
                match was.state {
                    RowState::Pending => "pending",
                    RowState::Dead => "dead",
                }
            );
            Ok(was)
        })
        .await
    }

    /// Drops the dead letters refused longer ago than `dead_letter_retention_s`, and the
    /// personal data they hold; returns how many went. Runs hourly in the background.
    pub async fn expire_dead_letters(&self) -> Result<usize, ServiceError> {
        let retention_ms = self
            .inner
            .config
            .dead_letter_retention_s
            .saturating_mul(1000);
        if retention_ms == 0 {
            return Ok(0);
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let now = inner.clock.now_ms();
            let mut expired = Vec::new();
            for item in inner.store.outbox_items::<QueuedWrite>()? {
                let Some(dead_at) = item.dead.as_ref().and_then(|d| d.dead_at_ms) else {
                    continue;
                };
                if now.saturating_sub(dead_at) > retention_ms {
                    let id = item.id;
                    expired.push((id, row(item).endpoint));
                }
            }
            for (id, endpoint) in &expired {
                if inner.store.drop_dead(*id)? {
                    // Loud: a customer's write is lost for good. The entry and endpoint only,
                    // no member data (not even the card code).
                    log::error!(
                        "dead letter {id} ({}) dropped unattended after the retention of {} s \
                         (service.dead_letter_retention_s), with its personal data: the backend \
                         never accepted this write",
                        endpoint.map_or("unreadable entry", |e| e.name()),
                        retention_ms / 1000
                    );
                    crate::metrics::global().dead_letter_expired();
                    let _ = inner.events.send(ServiceEvent::DeadLetterExpired {
                        entry: *id,
                        endpoint: *endpoint,
                    });
                }
            }
            if !expired.is_empty() {
                inner.store.sync()?;
            }
            Ok(expired.len())
        })
        .await
    }

    /// Makes every change durable (at shutdown), the cache writes of answers already handed
    /// out included.
    pub async fn sync(&self) -> Result<(), ServiceError> {
        let inner = Arc::clone(&self.inner);
        Ok(blocking(move || {
            inner.wait_recent_written();
            inner.store.sync()
        })
        .await?)
    }

    /// Runs the outbox replay and the breaker probe until `shutdown` turns true.
    pub async fn run_background(&self, mut shutdown: watch::Receiver<bool>) {
        let replay = self.clone().replay_loop(shutdown.clone());
        let probe = self.clone().probe_loop(shutdown.clone());
        let expire = self.clone().expire_loop(shutdown.clone());
        tokio::select! {
            _ = replay => {}
            _ = probe => {}
            _ = expire => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    async fn replay_loop(self, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        let backoff = Backoff::new(
            Duration::from_millis(inner.config.replay_backoff_base_ms),
            Duration::from_millis(inner.config.replay_backoff_max_ms),
        );
        let mut rng = StdRng::from_os_rng();
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let step = {
                let inner = Arc::clone(inner);
                blocking(move || inner.replay_one()).await
            };
            let wait = match step {
                Replay::Idle => None,
                Replay::Progress => {
                    failures = 0;
                    continue;
                }
                Replay::Unreachable => {
                    let delay = backoff.delay(failures, &mut rng);
                    failures = failures.saturating_add(1);
                    Some(delay)
                }
                Replay::StoreFailed => Some(Duration::from_secs(5)),
            };
            let sleep = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = inner.wake_replay.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn expire_loop(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.expire_dead_letters().await {
                log::error!("cannot expire dead letters: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn probe_loop(self, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.inner.config.probe_interval_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if self.is_online() {
                continue;
            }
            let inner = Arc::clone(&self.inner);
            blocking(move || {
                let result = inner.client().get_member_card(
                    None,
                    &inner.config.probe_wx_code,
                    Some(inner.config.lookup_deadline()),
                );
                inner.note(reached(&result));
            })
            .await;
        }
    }
}

/// One replay step's result.
enum Replay {
    /// The outbox is empty.
    Idle,
    /// An entry was delivered or dead-lettered.
    Progress,
    /// The backend is unreachable; back off.
    Unreachable,
    /// The store failed; log and wait.
    StoreFailed,
}

impl Health {
    fn backend_state(&self) -> BackendState {
        if self.credentials_refused.is_some() {
            BackendState::CredentialsRefused
        } else if self.breaker.is_closed() {
            BackendState::Online
        } else {
            BackendState::Offline
        }
    }

    /// Why nothing goes to the backend now, for a person.
    fn unavailable(&self) -> String {
        match self.credentials_refused {
            Some(code) => {
                format!("the backend refuses the token (HTTP {code}): fix /etc/wxcardd/api-headers")
            }
            None => "backend unreachable".to_owned(),
        }
    }
}

impl Inner {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(&self) -> Arc<Client> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records whether the backend answered, and publishes online/offline changes.
    fn note(&self, reached: Reached) {
        let now = Instant::now();
        let (transition, newly_refused) = {
            let mut health = self.health();
            let was_refused = health.credentials_refused.is_some();
            let t = match reached {
                Reached::Yes => {
                    health.credentials_refused = None;
                    health.breaker.record_success(now)
                }
                Reached::No => health.breaker.record_failure(now),
                Reached::Refused(code) => {
                    health.credentials_refused = Some(code);
                    health.breaker.trip(now)
                }
            };
            match t {
                Some(Transition::WentOffline) => {
                    health.offline_since_ms = Some(self.clock.now_ms())
                }
                Some(Transition::WentOnline { .. }) => health.offline_since_ms = None,
                None => {}
            }
            let newly_refused = match health.credentials_refused {
                Some(code) if !was_refused => Some(code),
                _ => None,
            };
            (t, newly_refused)
        };
        if let Some(code) = newly_refused {
            log::error!(
                "the backend refuses the token (HTTP {code}): serving lookups from the cache, \
                 queueing writes; fix /etc/wxcardd/api-headers (or api.headers_file), then \
                 systemctl reload wxcardd"
            );
            let _ = self
                .events
                .send(ServiceEvent::CredentialsRefused { http_status: code });
        }
        match transition {
            Some(Transition::WentOffline) if newly_refused.is_none() => {
                log::warn!("backend unreachable: serving lookups from the cache, queueing writes");
                let _ = self.events.send(ServiceEvent::Offline);
            }
            Some(Transition::WentOnline { offline_for }) => {
                log::info!("backend reachable again after {} s", offline_for.as_secs());
                let _ = self.events.send(ServiceEvent::Online {
                    offline_for_ms: u64::try_from(offline_for.as_millis()).unwrap_or(u64::MAX),
                });
                self.wake_replay.notify_one();
            }
            _ => {}
        }
    }

    /// What a lookup answers, given the backend's reply: the card or its definitive state
    /// (with the entry to cache), a rejection, or the cache when the backend failed.
    #[allow(clippy::type_complexity)]
    fn settle_lookup(
        &self,
        wx_code: &str,
        now: u64,
        result: Result<crate::api::MemberCard, ApiError>,
    ) -> (
        Result<Lookup, ServiceError>,
        Option<(CardKeys, CachedAnswer)>,
    ) {
        let fresh = |answer| Lookup {
            wx_code: wx_code.to_owned(),
            source: Source::Api,
            age_ms: 0,
            stale: false,
            answer,
        };
        match result {
            Ok(card) => {
                let keys = if card.card_code.is_empty() {
                    CardKeys::wx(wx_code)
                } else {
                    CardKeys::both(wx_code, card.card_code.clone())
                };
                let cached = CachedAnswer::Card(card.clone());
                return (Ok(fresh(LookupAnswer::Card { card })), Some((keys, cached)));
            }
            Err(ApiError::Business {
                status, message, ..
            }) if status.is_card_state() => {
                let cached = CachedAnswer::CardState {
                    status: status.clone(),
                    message: message.clone(),
                };
                let answer = fresh(LookupAnswer::CardState {
                    meaning: status.meaning(),
                    status,
                    message,
                });
                return (Ok(answer), Some((CardKeys::wx(wx_code), cached)));
            }
            Err(ApiError::Business {
                status, message, ..
            }) if !is_server_trouble(&status) => {
                return (Ok(fresh(LookupAnswer::Rejected { status, message })), None);
            }
            Err(e) => log::warn!(
                "lookup falls back to the cache: {}",
                untrusted(&e.to_string())
            ),
        }
        (self.answer_from_cache(wx_code, now), None)
    }

    /// Caches a lookup's answer. The same answer as cached refreshes the entry in memory, here
    /// and now; a changed one is readable through `recent` at once and written on a blocking
    /// thread. While an earlier answer for the card waits in `recent`, the sled entry is not
    /// the latest, so this one is written too, after it (never only refreshed).
    fn cache_answer(self: &Arc<Self>, keys: CardKeys, now: u64, answer: CachedAnswer) {
        let pending = self.recent_by(|k| k.wx_code == keys.wx_code).is_some();
        if !pending {
            match self.store.refresh_card(&keys, now, &answer) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => log::debug!("card cache read before a write failed: {e}"),
            }
        }
        self.remember(keys, now, answer);
        let inner = Arc::clone(self);
        // Detached: `sync` waits for `recent` to empty, and a panic here is sled's, logged.
        drop(tokio::task::spawn_blocking(move || inner.write_recent()));
    }

    /// Puts an answer in `recent`, readable at once, until [`Inner::write_recent`] has
    /// cached it.
    fn remember(&self, keys: CardKeys, now: u64, answer: CachedAnswer) {
        let mut recent = lock(&self.recent);
        recent.next += 1;
        let entry = Arc::new(RecentAnswer {
            seq: recent.next,
            keys,
            fetched_at_ms: now,
            answer,
        });
        recent.entries.push(entry);
    }

    /// Writes every remembered answer to the cache, oldest first, then forgets them. One
    /// writer at a time, each taking all that waits: two answers for one card land in the
    /// order they came, whichever blocking thread runs first (a card reported lost just after
    /// its balance was seen is never left cached with that balance).
    fn write_recent(&self) {
        let _writer = lock(&self.cache_writer);
        let pending: Vec<Arc<RecentAnswer>> = lock(&self.recent).entries.clone();
        let Some(last) = pending.last().map(|e| e.seq) else {
            return; // an earlier writer took this one
        };
        for entry in &pending {
            self.cache_put(&entry.keys, entry.fetched_at_ms, &entry.answer);
        }
        // Entries are in `seq` order: those written are the ones up to `last`.
        lock(&self.recent).entries.retain(|e| e.seq > last);
        self.recent_written.notify_all();
    }

    /// The newest remembered answer whose keys match, as the cache would give it.
    fn recent_by(&self, matches: impl Fn(&CardKeys) -> bool) -> Option<CachedCard<CachedAnswer>> {
        let recent = lock(&self.recent);
        let entry = recent.entries.iter().rev().find(|e| matches(&e.keys))?;
        Some(CachedCard {
            keys: entry.keys.clone(),
            fetched_at_ms: entry.fetched_at_ms,
            value: entry.answer.clone(),
        })
    }

    /// Waits until every remembered answer is in the cache.
    fn wait_recent_written(&self) {
        let mut recent = lock(&self.recent);
        while !recent.entries.is_empty() {
            recent = self
                .recent_written
                .wait(recent)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn cache_put(&self, keys: &CardKeys, now: u64, answer: &CachedAnswer) {
        if let Err(e) = self.store.put_card(keys, now, answer) {
            let card = keys.wx_code.as_deref().or(keys.card_code.as_deref());
            log::error!(
                "cannot cache card {}: {e}",
                MaskedCardNumber::new(card.unwrap_or(""))
            );
        }
    }

    fn answer_from_cache(&self, wx_code: &str, now: u64) -> Result<Lookup, ServiceError> {
        let recent = self.recent_by(|keys| keys.wx_code.as_deref() == Some(wx_code));
        let read = match recent {
            Some(hit) => Ok(Some(hit)),
            None => self.store.get_card_by_wx(wx_code),
        };
        let cached = match read {
            Ok(c) => c,
            Err(e) => {
                log::error!("card cache read failed: {e}");
                None
            }
        };
        let offline = |reason: String| Lookup {
            wx_code: wx_code.to_owned(),
            source: Source::Cache,
            age_ms: 0,
            stale: true,
            answer: LookupAnswer::Offline { reason },
        };
        let why = {
            let health = self.health();
            match health.credentials_refused {
                Some(_) => health.unavailable(),
                None => "offline".to_owned(),
            }
        };
        let Some(cached) = cached else {
            return Ok(offline(format!("{why}, and no data for this card")));
        };
        let age_ms = now.saturating_sub(cached.fetched_at_ms);
        if age_ms > self.config.max_offline_age_ms() {
            let mut answer = offline(format!(
                "{why}, and no recent data for this card (last seen {} h ago)",
                age_ms / 3_600_000
            ));
            answer.age_ms = age_ms;
            return Ok(answer);
        }
        let answer = match cached.value {
            CachedAnswer::Card(card) => LookupAnswer::Card { card },
            CachedAnswer::CardState { status, message } => LookupAnswer::CardState {
                meaning: status.meaning(),
                status,
                message,
            },
        };
        Ok(Lookup {
            wx_code: wx_code.to_owned(),
            source: Source::Cache,
            age_ms,
            stale: age_ms > self.config.fresh_for_ms(),
            answer,
        })
    }

    fn write(&self, write: QueuedWrite) -> Result<WriteOutcome, ServiceError> {
        write.validate().map_err(ServiceError::Invalid)?;
        // One write at a time, replay included, so that writes reach the backend in the
        // order the cashier made them.
        let _order = lock(&self.write_order);
        // While older writes wait in the outbox, a new one queues behind them (an activation
        // must not overtake the creation it depends on).
        let backlog = self.store.outbox_len()?;
        let mut maybe_applied = false;
        let mut reason = {
            let health = self.health();
            if !health.breaker.is_closed() {
                health.unavailable()
            } else {
                format!("{backlog} older writes are waiting to be sent first")
            }
        };
        if self.health().breaker.is_closed() && backlog == 0 {
            let result = self.send(&write);
            self.note(reached(&result));
            match settle(write.endpoint(), result) {
                Verdict::Delivered(created) => return Ok(WriteOutcome::Delivered { created }),
                Verdict::Refused { status, message } => {
                    return Ok(WriteOutcome::Rejected { status, message });
                }
                Verdict::Invalid(reason) => {
                    log::warn!(
                        "{}: the backend refused the request: {}",
                        write.summary(),
                        untrusted(&reason)
                    );
                    return Ok(WriteOutcome::Invalid { reason });
                }
                Verdict::Retry(e) => {
                    // A timeout may hide a write the backend did carry out; the replay's
                    // resend is then recognised as a duplicate (see the module docs).
                    maybe_applied = e.transport_kind() == Some(crate::api::TransportKind::Deadline);
                    let e = untrusted(&e.to_string()).into_owned();
                    log::warn!("{}: queued: {e}", write.summary());
                    reason = match self.health().credentials_refused {
                        Some(_) => self.health().unavailable(),
                        None => format!("backend unavailable: {e}"),
                    };
                }
            }
        }
        let entry = match self.store.enqueue(self.clock.now_ms(), &write) {
            Ok(id) => id,
            Err(StoreError::OutboxFull { max, .. }) => {
                return Err(ServiceError::OutboxFull { max, maybe_applied });
            }
            Err(e) => return Err(e.into()),
        };
        log::info!("{} queued as outbox entry {entry}", write.summary());
        // While the backend is down the replay keeps its backoff; the probe wakes it when the
        // backend is back. Waking it for every queued write would retry once per write.
        if self.health().breaker.is_closed() {
            self.wake_replay.notify_one();
        }
        Ok(WriteOutcome::Queued { entry, reason })
    }

    fn send(&self, write: &QueuedWrite) -> Result<Option<crate::api::CreatedMember>, ApiError> {
        let deadline = Some(self.config.write_deadline());
        match write {
            QueuedWrite::Activate(m) => self.client().activate_member(m, deadline).map(|()| None),
            QueuedWrite::Create(m) => self.client().create_member_card(m, deadline).map(Some),
            QueuedWrite::Issue(o) => self.client().save_card_id(o, deadline).map(|()| None),
        }
    }

    /// Sends the oldest queued write, if any, and settles it. While the breaker is open the
    /// network is left to the probe, which wakes the replay when the backend answers again.
    fn replay_one(&self) -> Replay {
        if !self.health().breaker.is_closed() {
            return Replay::Unreachable;
        }
        let _order = lock(&self.write_order);
        let entry = match self.store.peek_oldest::<QueuedWrite>() {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                if let Err(e) = self.store.sync() {
                    log::error!("store sync failed: {e}");
                }
                return Replay::Idle;
            }
            Err(StoreError::Decode { id, reason, .. }) => return self.set_aside(id, &reason),
            Err(e) => {
                log::error!("cannot read the outbox: {e}");
                return Replay::StoreFailed;
            }
        };
        let endpoint = entry.value.endpoint();
        let result = self.send(&entry.value);
        self.note(reached(&result));
        let (status, message) = match settle(endpoint, result) {
            Verdict::Delivered(_) => {
                return match self.delivered(entry.id, endpoint) {
                    Ok(()) => Replay::Progress,
                    Err(e) => {
                        log::error!("cannot settle outbox entry {}: {e}", entry.id);
                        Replay::StoreFailed
                    }
                };
            }
            Verdict::Refused { status, message } => (status, message),
            // Never retried: it would block every write behind it.
            Verdict::Invalid(reason) => (Status::Unknown("request refused".into()), reason),
            Verdict::Retry(e) => {
                log::debug!("outbox entry {} not sent: {e}", entry.id);
                return Replay::Unreachable;
            }
        };
        // Loud: a customer's write will not happen unless someone acts. The entry and
        // endpoint, no member data (`wxcardctl outbox` shows what the write was).
        log::error!(
            "outbox entry {} ({endpoint}) refused by the backend: {status}: {}; moved to the \
             dead letters, dropped with its data after {} s unless an operator retries or drops \
             it (wxcardctl outbox)",
            entry.id,
            untrusted(&message),
            self.config.dead_letter_retention_s
        );
        crate::metrics::global().dead_lettered("rejected");
        let code = i64::from(status.code().unwrap_or(0));
        match self
            .store
            .dead_letter(entry.id, code, &message, self.clock.now_ms())
        {
            Ok(()) => {
                let _ = self.events.send(ServiceEvent::DeadLettered {
                    entry: entry.id,
                    endpoint,
                    status,
                    message,
                });
                Replay::Progress
            }
            Err(e) => {
                log::error!("cannot settle outbox entry {}: {e}", entry.id);
                Replay::StoreFailed
            }
        }
    }

    /// Moves an entry that cannot be read to the dead letters (raw bytes kept), so the
    /// writes behind it go on.
    fn set_aside(&self, entry: OutboxId, detail: &str) -> Replay {
        match self
            .store
            .dead_letter_undecodable(entry, detail, self.clock.now_ms())
        {
            Ok(moved) => {
                if moved {
                    crate::metrics::global().dead_lettered("undecodable");
                    log::error!(
                        "outbox entry {entry} cannot be read ({detail}): set aside as an undecodable \
                         dead letter with its raw bytes; the writes behind it go on \
                         (wxcardctl outbox; docs/store.md)"
                    );
                    let _ = self.events.send(ServiceEvent::Undecodable {
                        entry,
                        detail: detail.to_owned(),
                    });
                }
                Replay::Progress
            }
            Err(e) => {
                log::error!("cannot set aside unreadable outbox entry {entry}: {e}");
                Replay::StoreFailed
            }
        }
    }

    fn delivered(&self, entry: OutboxId, endpoint: crate::api::Endpoint) -> Result<(), StoreError> {
        self.store.remove_delivered(entry)?;
        log::info!("outbox entry {entry} delivered ({endpoint})");
        crate::metrics::global().delivered();
        let _ = self
            .events
            .send(ServiceEvent::Delivered { entry, endpoint });
        Ok(())
    }
}

/// What a write's answer means for it.
enum Verdict {
    /// The backend has it (now, or from an earlier send).
    Delivered(Option<crate::api::CreatedMember>),
    /// A business refusal: final.
    Refused { status: Status, message: String },
    /// The request itself was refused (HTTP 400...): final.
    Invalid(String),
    /// No verdict: the backend is unreachable or in trouble.
    Retry(ApiError),
}

fn settle(
    endpoint: crate::api::Endpoint,
    result: Result<Option<crate::api::CreatedMember>, ApiError>,
) -> Verdict {
    match result {
        Ok(created) => Verdict::Delivered(created),
        // A resend after a crash between send and removal: the backend already has it.
        Err(ApiError::Business {
            status: Status::DuplicateSerial,
            ..
        }) if endpoint == crate::api::Endpoint::SaveCardId => Verdict::Delivered(None),
        Err(ApiError::Business {
            status, message, ..
        }) if !is_server_trouble(&status) => Verdict::Refused { status, message },
        // Status 200 with odd `data`: carried out all the same.
        Err(e) if e.is_accepted_with_bad_data() => {
            log::warn!("{endpoint}: accepted, but {e}");
            Verdict::Delivered(None)
        }
        Err(e) => match e.request_refused() {
            Some(reason) => Verdict::Invalid(reason),
            None => Verdict::Retry(e),
        },
    }
}

/// An outbox item as `outbox_list` shows it.
fn row(item: OutboxItem<QueuedWrite>) -> OutboxRow {
    let (endpoint, summary, undecodable) = match &item.value {
        Ok(write) => (Some(write.endpoint()), write.summary(), None),
        Err(why) => (
            None,
            "unreadable write (undecodable)".to_owned(),
            Some(why.clone()),
        ),
    };
    let (state, reason, rejected, undecodable) = match item.dead {
        None => (RowState::Pending, None, None, undecodable),
        Some(DeadState {
            reason: DeadReason::Refused { status, message },
            ..
        }) => (
            RowState::Dead,
            Some(DeadKind::Rejected),
            Some((Status::parse(&status.to_string()), message)),
            undecodable,
        ),
        Some(DeadState {
            reason: DeadReason::Undecodable { detail },
            ..
        }) => (
            RowState::Dead,
            Some(DeadKind::Undecodable),
            None,
            Some(detail),
        ),
    };
    OutboxRow {
        entry: item.id,
        endpoint,
        summary,
        enqueued_at_ms: item.enqueued_at_ms,
        state,
        reason,
        rejected,
        undecodable,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Status 500 in a body is the backend's own trouble, not a verdict on the request.
fn is_server_trouble(status: &Status) -> bool {
    *status == Status::InternalError
}

fn reached<T>(result: &Result<T, ApiError>) -> Reached {
    match result {
        Ok(_) => Reached::Yes,
        Err(e) => reached_err(e),
    }
}

fn reached_err(e: &ApiError) -> Reached {
    if let Some(code) = e.credentials_refused() {
        return Reached::Refused(code);
    }
    match e {
        ApiError::Business { status, .. } if !is_server_trouble(status) => Reached::Yes,
        // The backend answered about this request: it is up.
        e if e.request_refused().is_some() || e.is_accepted_with_bad_data() => Reached::Yes,
        _ => Reached::No,
    }
}

/// Runs blocking work (ureq, sled) off the async executor's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
