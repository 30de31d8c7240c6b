//! Replica fetchers: one task per source broker, multiplexing every partition this
//! broker follows there over one connection, as Kafka's `ReplicaFetcherThread` does.
//!
//! A partition starts in the truncation phase whenever its leader or leader epoch
//! changes: the fetcher asks the leader for the end offset of the follower's latest
//! epoch (OffsetForLeaderEpoch, KIP-101/279) and truncates its log to where the two
//! logs agree, never to its own high watermark (which may be behind what the leader
//! acknowledged, or ahead of what it kept). It then long-polls Fetch carrying its
//! replica id and broker epoch, appends what comes back exactly as the leader wrote it
//! (offsets and leader epochs kept), and takes the leader's high watermark. An offset
//! the leader no longer has restarts the log at the leader's log start.
//!
//! Errors (the leader moved, an epoch is fenced or not yet known there) delay only the
//! partition concerned; the broker's next metadata change re-targets it. A broken
//! connection is dropped and re-made after a short backoff.
//!
//! A fetcher also remembers when its leader's connection broke in a way that shows the
//! process gone (reset, closed, refused) until a new connection succeeds:
//! [`FetcherManager::leader_lost_since`]. Metadata uses it to stop naming a leader that
//! has just died before the controller has fenced it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use sluice_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::{ClientSecurity, KafkaConnection};
use crate::error::ReplicationError;
use crate::replica::Replica;

/// Fetch v15 carries the follower's broker epoch (`ReplicaState`, KIP-903) and topic IDs.
const FETCH_VERSION: i16 = 15;
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 7;

/// Settings of every fetcher (Kafka's `replica.fetch.*`).
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    pub node_id: i32,
    /// This broker's registration epoch, sent with every fetch; -1 until registered.
    pub broker_epoch: Arc<AtomicI64>,
    /// `replica.fetch.wait.max.ms`.
    pub max_wait_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub min_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub max_bytes: i32,
    /// `replica.fetch.max.bytes`.
    pub partition_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after an error.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    /// Bound on one request's round trip beyond the long-poll wait.
    pub request_timeout: Duration,
    /// The largest response frame accepted.
    pub max_response_bytes: usize,
    /// TLS and SASL for the connections to leaders, as their inter-broker listener
    /// speaks (the default: plaintext).
    pub security: ClientSecurity,
}

impl FetcherConfig {
    pub fn new(node_id: i32, broker_epoch: Arc<AtomicI64>) -> Self {
        Self {
            node_id,
            broker_epoch,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 10 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            backoff: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 128 * 1024 * 1024,
            security: ClientSecurity::default(),
        }
    }
}

/// One partition this broker should follow.
#[derive(Debug, Clone)]
pub struct FetchTarget {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    /// `host:port` of the leader's inter-broker listener.
    pub leader_addr: String,
    pub leader_epoch: i32,
    pub replica: Arc<Replica>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Find where the logs diverge, asking about `epoch` (the latest local one if None).
    Truncate {
        epoch: Option<i32>,
    },
    Fetch {
        offset: i64,
    },
    /// The leader refused the fetch offset as out of range.
    OutOfRange,
}

#[derive(Debug)]
struct Entry {
    target: FetchTarget,
    phase: Phase,
    delayed_until: Option<Instant>,
    /// Bumped whenever the entry is replaced, so a response for an older request is
    /// ignored.
    generation: u64,
}

type Key = (Uuid, i32);

#[derive(Debug)]
struct Shared {
    leader: i32,
    addr: Mutex<String>,
    entries: Mutex<HashMap<Key, Entry>>,
    wake: Notify,
    stop: AtomicBool,
    /// When the connection to the leader broke showing the process gone; cleared by
    /// the next successful connect.
    lost_at: Mutex<Option<Instant>>,
}

impl Shared {
    fn note_failure(&self, error: &ReplicationError) {
        if error.shows_peer_gone() {
            self.lost_at.lock().get_or_insert_with(Instant::now);
        }
    }
}

#[derive(Debug)]
struct Fetcher {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetchers of one broker, keyed by source broker.
#[derive(Debug)]
pub struct FetcherManager {
    config: Arc<FetcherConfig>,
    runtime: tokio::runtime::Handle,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
    next_generation: AtomicI64,
}

impl FetcherManager {
    /// Must be called within a tokio runtime; fetchers are spawned on it.
    pub fn new(config: FetcherConfig) -> Result<Self, ReplicationError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| ReplicationError::Io {
            addr: String::new(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            config: Arc::new(config),
            runtime,
            fetchers: Mutex::new(HashMap::new()),
            next_generation: AtomicI64::new(1),
        })
    }

    /// Makes the fetchers follow exactly `targets`: a partition whose leader, leader
    /// epoch or replica changed starts over with truncation; one no longer listed stops
    /// being fetched; a fetcher left with nothing stops.
    pub fn set_targets(&self, targets: Vec<FetchTarget>) {
        let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        for t in targets {
            by_leader.entry(t.leader).or_default().push(t);
        }
        let mut fetchers = self.fetchers.lock();
        let gone: Vec<i32> = fetchers
            .keys()
            .copied()
            .filter(|l| !by_leader.contains_key(l))
            .collect();
        for leader in gone {
            if let Some(f) = fetchers.remove(&leader) {
                f.stop();
            }
        }
        for (leader, targets) in by_leader {
            let addr = targets
                .first()
                .map(|t| t.leader_addr.clone())
                .unwrap_or_default();
            let fetcher = fetchers
                .entry(leader)
                .or_insert_with(|| self.spawn(leader, addr.clone()));
            let mut changed = false;
            {
                let mut current = fetcher.shared.addr.lock();
                if *current != addr {
                    *current = addr;
                    changed = true;
                }
            }
            let mut entries = fetcher.shared.entries.lock();
            let wanted: Vec<Key> = targets.iter().map(|t| (t.topic_id, t.partition)).collect();
            let before = entries.len();
            entries.retain(|k, _| wanted.contains(k));
            changed |= entries.len() != before;
            for t in targets {
                let key = (t.topic_id, t.partition);
                let same = entries.get(&key).is_some_and(|e| {
                    e.target.leader_epoch == t.leader_epoch
                        && Arc::ptr_eq(&e.target.replica, &t.replica)
                });
                if same {
                    continue;
                }
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) as u64;
                debug!(topic = %t.topic, partition = t.partition, leader, epoch = t.leader_epoch, "following");
                entries.insert(
                    key,
                    Entry {
                        target: t,
                        phase: Phase::Truncate { epoch: None },
                        delayed_until: None,
                        generation,
                    },
                );
                changed = true;
            }
            drop(entries);
            if changed {
                fetcher.shared.wake.notify_one();
            }
        }
    }

    /// Partitions being followed, for diagnostics and tests.
    pub fn partition_count(&self) -> usize {
        self.fetchers
            .lock()
            .values()
            .map(|f| f.shared.entries.lock().len())
            .sum()
    }

    /// When this broker's connection to `leader` broke showing the process gone, if it
    /// has not been re-made since; None when nothing is fetched from `leader`.
    pub fn leader_lost_since(&self, leader: i32) -> Option<Instant> {
        let fetchers = self.fetchers.lock();
        let lost_at = *fetchers.get(&leader)?.shared.lost_at.lock();
        lost_at
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.stop();
        }
    }

    fn spawn(&self, leader: i32, addr: String) -> Fetcher {
        let shared = Arc::new(Shared {
            leader,
            addr: Mutex::new(addr),
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            lost_at: Mutex::new(None),
        });
        let task = self.runtime.spawn(run(shared.clone(), self.config.clone()));
        Fetcher { shared, task }
    }
}

impl Drop for FetcherManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Fetcher {
    fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        self.task.abort();
    }
}

/// Work for one round, copied out of the shared table.
struct Planned {
    key: Key,
    generation: u64,
    target: FetchTarget,
    phase: Phase,
}

async fn run(shared: Arc<Shared>, config: Arc<FetcherConfig>) {
    let mut conn: Option<KafkaConnection> = None;
    let client_id = format!(
        "sluice-replica-fetcher-{}-{}",
        config.node_id, shared.leader
    );
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let (work, next_delay) = plan(&shared);
        if work.is_empty() {
            let wait = next_delay.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wait) => {}
            }
            continue;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                let addr = shared.addr.lock().clone();
                match KafkaConnection::connect(
                    &addr,
                    client_id.clone(),
                    config.max_response_bytes,
                    config.connect_timeout,
                    &config.security,
                )
                .await
                {
                    Ok(c) => {
                        *shared.lost_at.lock() = None;
                        c
                    }
                    Err(e) => {
                        shared.note_failure(&e);
                        debug!(leader = shared.leader, error = %e, "cannot reach leader");
                        backoff(&shared, &config).await;
                        continue;
                    }
                }
            }
        };
        let (truncations, fetches): (Vec<Planned>, Vec<Planned>) = work
            .into_iter()
            .partition(|p| !matches!(p.phase, Phase::Fetch { .. }));
        let round = async {
            if !truncations.is_empty() {
                truncate_round(&shared, &config, &mut c, truncations).await?;
            }
            if !fetches.is_empty() {
                fetch_round(&shared, &config, &mut c, fetches).await?;
            }
            Ok::<(), ReplicationError>(())
        };
        tokio::select! {
            r = round => match r {
                Ok(()) => conn = Some(c),
                Err(e) => {
                    shared.note_failure(&e);
                    debug!(leader = shared.leader, error = %e, "replica fetch failed; reconnecting");
                    backoff(&shared, &config).await;
                }
            },
            // The partitions changed while a long poll was out: drop it (and its
            // connection) so the new set is fetched at once.
            _ = shared.wake.notified() => {}
        }
    }
}

async fn backoff(shared: &Shared, config: &FetcherConfig) {
    tokio::select! {
        _ = shared.wake.notified() => {}
        _ = tokio::time::sleep(config.backoff) => {}
    }
}

/// The partitions ready for work now, and when the next delayed one becomes ready.
fn plan(shared: &Shared) -> (Vec<Planned>, Option<Instant>) {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut work = Vec::new();
    for (key, e) in shared.entries.lock().iter() {
        if let Some(until) = e.delayed_until {
            if until > now {
                next = Some(next.map_or(until, |n| n.min(until)));
                continue;
            }
        }
        work.push(Planned {
            key: *key,
            generation: e.generation,
            target: e.target.clone(),
            phase: e.phase,
        });
    }
    (work, next)
}

/// Applies `f` to the entry if it is still the one the request was planned for.
fn update(shared: &Shared, p: &Planned, f: impl FnOnce(&mut Entry)) {
    if let Some(e) = shared.entries.lock().get_mut(&p.key) {
        if e.generation == p.generation {
            f(e);
        }
    }
}

fn set_phase(shared: &Shared, p: &Planned, phase: Phase) {
    update(shared, p, |e| {
        e.phase = phase;
        e.delayed_until = None;
    });
}

fn delay(shared: &Shared, config: &FetcherConfig, p: &Planned) {
    let until = Instant::now() + config.backoff;
    update(shared, p, |e| e.delayed_until = Some(until));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn truncate_round(
    shared: &Shared,
    config: &FetcherConfig,
    conn: &mut KafkaConnection,
    work: Vec<Planned>,
) -> Result<(), ReplicationError> {
    let mut asks: Vec<(Planned, i32)> = Vec::new();
    let mut resets: Vec<Planned> = Vec::new();
    for p in work {
        if p.phase == Phase::OutOfRange {
            resets.push(p);
            continue;
        }
        let log = &p.target.replica.log;
        let epoch = match p.phase {
            Phase::Truncate { epoch: Some(e) } => Some(e),
            _ => log.latest_epoch(),
        };
        match epoch {
            Some(epoch) => asks.push((p, epoch)),
            None => {
                // No epoch history (an empty log, or one written before epochs were
                // kept): the pre-KIP-101 rule of truncating to the high watermark.
                let hw = p.target.replica.log.high_watermark();
                finish_truncation(shared, &p, hw);
            }
        }
    }
    if !asks.is_empty() {
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (p, epoch) in &asks {
            topics
                .entry(p.target.topic.clone())
                .or_default()
                .push(OffsetForLeaderPartition {
                    partition: p.target.partition,
                    current_leader_epoch: p.target.leader_epoch,
                    leader_epoch: *epoch,
                });
        }
        let req = OffsetForLeaderEpochRequest {
            replica_id: config.node_id,
            topics: topics
                .into_iter()
                .map(|(topic, partitions)| OffsetForLeaderTopic { topic, partitions })
                .collect(),
        };
        let resp: OffsetForLeaderEpochResponse = conn
            .call(
                ApiKey::OffsetForLeaderEpoch,
                OFFSET_FOR_LEADER_EPOCH_VERSION,
                &req,
                config.request_timeout,
            )
            .await?;
        for t in resp.topics {
            for r in t.partitions {
                let Some((p, _)) = asks
                    .iter()
                    .find(|(p, _)| p.target.topic == t.topic && p.target.partition == r.partition)
                else {
                    continue;
                };
                if r.error_code != ErrorCode::None.code() {
                    debug!(topic = %t.topic, partition = r.partition, error = r.error_code, "epoch lookup refused");
                    delay(shared, config, p);
                    continue;
                }
                on_epoch_end(shared, p, r.leader_epoch, r.end_offset);
            }
        }
    }
    for p in resets {
        reset_out_of_range(shared, config, conn, &p).await?;
    }
    Ok(())
}

/// KIP-279: truncate to the smaller of the leader's and our end offset for the largest
/// epoch both know; if we lack the epoch the leader answered with, ask again about our
/// largest epoch below it.
fn on_epoch_end(shared: &Shared, p: &Planned, leader_epoch: i32, leader_end: i64) {
    let replica = &p.target.replica;
    if leader_epoch < 0 || leader_end < 0 {
        // Undefined: the leader knows no epoch at or below ours.
        finish_truncation(shared, p, replica.log.high_watermark());
        return;
    }
    match replica.log.end_offset_for_epoch(leader_epoch) {
        Some((e, local_end)) if e == leader_epoch => {
            finish_truncation(shared, p, leader_end.min(local_end));
        }
        Some((e, _)) => set_phase(shared, p, Phase::Truncate { epoch: Some(e) }),
        None => {
            // Everything we hold is from epochs the leader never had.
            let first = replica
                .log
                .epoch_entries()
                .first()
                .map_or(leader_end, |e| e.start_offset);
            finish_truncation(shared, p, leader_end.min(first));
        }
    }
}

fn finish_truncation(shared: &Shared, p: &Planned, offset: i64) {
    let replica = &p.target.replica;
    let before = replica.log.log_end_offset();
    if offset < before {
        if let Err(e) = replica.truncate_to(offset) {
            warn!(topic = %p.target.topic, partition = p.target.partition, error = %e, "truncation failed");
            return;
        }
        info!(
            topic = %p.target.topic,
            partition = p.target.partition,
            from = before,
            to = replica.log.log_end_offset(),
            "truncated to the leader's epoch end"
        );
    }
    let offset = replica.log.log_end_offset();
    set_phase(shared, p, Phase::Fetch { offset });
}

/// The leader does not have our fetch offset: if it lies below the leader's log start,
/// start over there; otherwise find the divergence again.
async fn reset_out_of_range(
    shared: &Shared,
    config: &FetcherConfig,
    conn: &mut KafkaConnection,
    p: &Planned,
) -> Result<(), ReplicationError> {
    let req = ListOffsetsRequest {
        replica_id: config.node_id,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: p.target.topic.clone(),
            partitions: vec![ListOffsetsPartition {
                partition_index: p.target.partition,
                current_leader_epoch: p.target.leader_epoch,
                timestamp: -2,
                max_num_offsets: 1,
            }],
        }],
        timeout_ms: 0,
    };
    let resp: ListOffsetsResponse = conn
        .call(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &req,
            config.request_timeout,
        )
        .await?;
    let found = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|r| r.partition_index == p.target.partition);
    match found {
        Some(r) if r.error_code == ErrorCode::None.code() => {
            let replica = &p.target.replica;
            if replica.log.log_end_offset() < r.offset {
                if let Err(e) = replica.truncate_fully_and_start_at(r.offset) {
                    warn!(topic = %p.target.topic, partition = p.target.partition, error = %e, "restart at leader's log start failed");
                    delay(shared, config, p);
                    return Ok(());
                }
                info!(topic = %p.target.topic, partition = p.target.partition, start = r.offset, "restarted the log at the leader's log start");
                set_phase(shared, p, Phase::Fetch { offset: r.offset });
            } else {
                set_phase(shared, p, Phase::Truncate { epoch: None });
            }
        }
        _ => delay(shared, config, p),
    }
    Ok(())
}

async fn fetch_round(
    shared: &Shared,
    config: &FetcherConfig,
    conn: &mut KafkaConnection,
    work: Vec<Planned>,
) -> Result<(), ReplicationError> {
    let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
    for p in &work {
        let Phase::Fetch { offset } = p.phase else {
            continue;
        };
        topics
            .entry(p.target.topic_id)
            .or_default()
            .push(FetchPartition {
                partition: p.target.partition,
                current_leader_epoch: p.target.leader_epoch,
                fetch_offset: offset,
                last_fetched_epoch: -1,
                log_start_offset: p.target.replica.log.log_start_offset(),
                partition_max_bytes: config.partition_max_bytes,
                ..Default::default()
            });
    }
    let req = FetchRequest {
        replica_id: -1,
        replica_state: ReplicaState {
            replica_id: config.node_id,
            replica_epoch: config.broker_epoch.load(Ordering::Acquire),
        },
        max_wait_ms: config.max_wait_ms,
        min_bytes: config.min_bytes,
        max_bytes: config.max_bytes,
        isolation_level: 0,
        // Sessionless full fetches (Kafka's FetchMetadata.LEGACY).
        session_id: 0,
        session_epoch: -1,
        topics: topics
            .into_iter()
            .map(|(topic_id, partitions)| FetchTopic {
                topic: String::new(),
                topic_id,
                partitions,
            })
            .collect(),
        ..Default::default()
    };
    let timeout = config.request_timeout
        + Duration::from_millis(u64::try_from(config.max_wait_ms).unwrap_or(0));
    let resp: FetchResponse = conn
        .call(ApiKey::Fetch, FETCH_VERSION, &req, timeout)
        .await?;
    if resp.error_code != ErrorCode::None.code() {
        debug!(
            leader = shared.leader,
            error = resp.error_code,
            "fetch refused"
        );
        for p in &work {
            delay(shared, config, p);
        }
        return Ok(());
    }
    let now = now_ms();
    for t in resp.responses {
        for d in t.partitions {
            let Some(p) = work.iter().find(|p| {
                p.target.topic_id == t.topic_id && p.target.partition == d.partition_index
            }) else {
                continue;
            };
            let Phase::Fetch { offset } = p.phase else {
                continue;
            };
            let code = ErrorCode::from_code(d.error_code);
            match code {
                Some(ErrorCode::None) => {
                    let records = d.records.unwrap_or_else(Bytes::new);
                    let leader = LeaderOffsets {
                        high_watermark: d.high_watermark,
                        log_start: d.log_start_offset,
                    };
                    on_fetched(shared, config, p, offset, &records, leader, now);
                }
                Some(ErrorCode::OffsetOutOfRange) => set_phase(shared, p, Phase::OutOfRange),
                _ => {
                    debug!(topic = %p.target.topic, partition = p.target.partition, error = ?code, "fetch error");
                    delay(shared, config, p);
                }
            }
        }
    }
    Ok(())
}

/// The leader's offsets a fetch response carries.
struct LeaderOffsets {
    high_watermark: i64,
    log_start: i64,
}

fn on_fetched(
    shared: &Shared,
    config: &FetcherConfig,
    p: &Planned,
    offset: i64,
    records: &[u8],
    leader: LeaderOffsets,
    now: i64,
) {
    let replica = &p.target.replica;
    // The table may have moved on (re-targeted, truncated) while the fetch was out.
    let current = shared
        .entries
        .lock()
        .get(&p.key)
        .is_some_and(|e| e.generation == p.generation && e.phase == Phase::Fetch { offset });
    if !current || replica.log.log_end_offset() != offset {
        return;
    }
    match replica.append_as_follower(records, leader.high_watermark, leader.log_start, now) {
        Ok(_) => {
            let offset = replica.log.log_end_offset();
            set_phase(shared, p, Phase::Fetch { offset });
        }
        Err(e) => {
            warn!(topic = %p.target.topic, partition = p.target.partition, error = %e, "follower append failed; truncating again");
            update(shared, p, |e| {
                e.phase = Phase::Truncate { epoch: None };
                e.delayed_until = Some(Instant::now() + config.backoff);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::LogConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const BOUND: Duration = Duration::from_secs(5);

    /// Polls `check` every 5 ms until it returns Some, failing after [`BOUND`].
    async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_leader_whose_connection_closes_is_seen_gone_until_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Arc::new(Replica::open(dir.path(), 0, LogConfig::default(), 1_000).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = FetcherConfig::new(2, Arc::new(AtomicI64::new(1)));
        config.backoff = Duration::from_millis(20);
        let manager = FetcherManager::new(config).unwrap();
        manager.set_targets(vec![FetchTarget {
            topic: "t".into(),
            topic_id: Uuid::ZERO,
            partition: 0,
            leader: 1,
            leader_addr: addr.to_string(),
            leader_epoch: 0,
            replica,
        }]);

        // Connected, with a request out and no answer yet: slow is not gone. (The
        // fetcher may drop its first connection unused when the wake-up of
        // `set_targets` arrives after it connected; take the one that sends.)
        let mut held = loop {
            let (mut conn, _) = tokio::time::timeout(BOUND, listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut first = [0u8; 4];
            if conn.read_exact(&mut first).await.is_ok() {
                break conn;
            }
        };
        assert_eq!(manager.leader_lost_since(1), None);
        assert_eq!(manager.leader_lost_since(7), None, "not followed");

        // The leader's process goes: its connection closes and reconnects are refused.
        let closed = Instant::now();
        held.shutdown().await.unwrap();
        drop(held);
        drop(listener);
        let lost = eventually("the closed connection", || manager.leader_lost_since(1)).await;
        assert!(lost >= closed);
        // Refused reconnects (every 20 ms here) keep the first loss time.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(manager.leader_lost_since(1), Some(lost));

        // A leader listening again on the same address clears it.
        let listener = TcpListener::bind(addr).await.unwrap();
        let _conn = tokio::time::timeout(BOUND, listener.accept())
            .await
            .unwrap()
            .unwrap();
        eventually("the reconnect", || {
            manager.leader_lost_since(1).is_none().then_some(())
        })
        .await;
        manager.shutdown();
    }
}
