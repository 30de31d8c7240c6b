//! The broker's side of the transaction coordinator (crate `sluice-txn`), hosted by
//! [`crate::coordinator_host`] like the group coordinator: it owns the
//! `__transaction_state` topic, and the host replays a partition when this node starts
//! leading it, carries out the coordinator's writes and drives its timers. What is
//! particular to transactions: the coordinator epoch of a shard is its partition's
//! leader epoch, which partition leaders check on every marker (a deposed
//! coordinator's markers are refused); marker jobs run in [`crate::markers`]; and
//! InitProducerId may first need a producer id from the controller.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sluice_protocol::error::ErrorCode;
use sluice_txn::{Effect, Init, MarkerJob, Reply, TxnCoordinator, TXN_STATE_TOPIC};
use tracing::debug;

use crate::broker::{now_ms, Broker};
use crate::coordinator_host::{Action, Host, Hosted};
use crate::internal_topic::{self, InternalTopic, Replayed};

/// The transaction coordinator in its shell.
pub type TxnService = Host<TxnCoordinator>;

impl Hosted for TxnCoordinator {
    type Effect = Effect;
    type Reply = Reply;
    type Job = MarkerJob;
    const TOPIC: &'static str = TXN_STATE_TOPIC;
    const KIND: &'static str = "transaction";
    /// Timeouts, retries and expiry are checked this often.
    const TICK: Duration = Duration::from_millis(100);
    /// Kafka's transaction log appends wait for the request timeout.
    const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

    fn host(broker: &Broker) -> &Host<Self> {
        &broker.txns
    }

    fn partitions(&self) -> i32 {
        self.config().state_partitions
    }

    fn set_partitions(&mut self, partitions: i32) {
        self.set_state_partitions(partitions);
    }

    fn begin_load(&mut self, partition: i32, leader_epoch: i32) -> Vec<Effect> {
        TxnCoordinator::begin_load(self, partition, leader_epoch)
    }

    fn load_item(&mut self, partition: i32, item: Replayed<'_>, _now: i64) -> bool {
        match item {
            Replayed::Record { key, value, .. } => match self.load_record(partition, key, value) {
                Ok(()) => true,
                Err(e) => {
                    debug!(partition, error = %e, "skipping record");
                    false
                }
            },
            Replayed::Marker { .. } => true,
        }
    }

    fn finish_load(&mut self, partition: i32, now: i64) -> Vec<Effect> {
        TxnCoordinator::finish_load(self, partition, now)
    }

    fn unload(&mut self, partition: i32) -> Vec<Effect> {
        TxnCoordinator::unload(self, partition)
    }

    fn tick(&mut self, now: i64) -> Vec<Effect> {
        TxnCoordinator::tick(self, now)
    }

    fn write_done(&mut self, id: u64, result: Result<(), ErrorCode>, now: i64) -> Vec<Effect> {
        TxnCoordinator::write_done(self, id, result, now)
    }

    fn action(effect: Effect) -> Action<Self> {
        match effect {
            Effect::Reply(id, reply) => Action::Reply(id, reply),
            Effect::Write {
                id,
                partition,
                record,
            } => Action::Write {
                id,
                partition,
                records: vec![(record.key, record.value)],
                producer: None,
            },
            Effect::Markers(job) => Action::Job(job),
        }
    }

    fn run_job(broker: Arc<Broker>, job: MarkerJob) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let result = crate::markers::write(&broker, &job).await;
            broker
                .txns
                .report(&broker.topics, |c, now| c.markers_done(job.id, result, now));
        })
    }

    fn job_dropped(&mut self, job: MarkerJob, now: i64) -> Vec<Effect> {
        self.markers_done(job.id, Err(ErrorCode::CoordinatorNotAvailable), now)
    }
}

impl Host<TxnCoordinator> {
    /// Creates `__transaction_state` if it does not exist yet (on the first lookup of a
    /// transaction coordinator, as Kafka does). Blocking: it waits for the quorum.
    pub fn ensure_topic(&self, broker: &Broker) -> Result<(), ErrorCode> {
        internal_topic::ensure(
            broker,
            &InternalTopic {
                name: TXN_STATE_TOPIC,
                partitions: broker.config.txns.state_partitions,
                segment_bytes: broker.config.txn_state_segment_bytes,
                min_insync_replicas: Some(broker.config.txn_state_min_isr),
            },
        )
    }

    /// The `__transaction_state` partition of a transactional id: its leader is the
    /// id's coordinator.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        self.read(|c| c.partition_for(transactional_id))
    }

    /// Whether a marker job still matters.
    pub fn job_active(&self, job: u64) -> bool {
        self.read(|c| c.job_active(job))
    }

    /// InitProducerId with a transactional id, allocating a producer id from the
    /// controller's blocks when the coordinator needs one.
    pub async fn init_producer_id(
        &self,
        broker: &Broker,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Reply {
        let mut fresh = None;
        // Twice at most: the second call has the id the first asked for.
        for _ in 0..2 {
            let parked = self.try_call(&broker.topics, |c, reply| {
                match c.init_producer_id(
                    transactional_id,
                    timeout_ms,
                    expected,
                    fresh,
                    now_ms(),
                    reply,
                ) {
                    Init::Effects(effects) => Some(effects),
                    Init::NeedProducerId => None,
                }
            });
            match parked {
                Some(rx) => {
                    return rx
                        .await
                        .unwrap_or(Reply::Done(ErrorCode::CoordinatorNotAvailable))
                }
                None => match broker.producer_ids.next(&broker.cluster).await {
                    Ok(pid) => fresh = Some(pid),
                    Err(code) => return Reply::Done(code),
                },
            }
        }
        Reply::Done(ErrorCode::CoordinatorNotAvailable)
    }
}

/// The code a client at `version` knows for `code`: PRODUCER_FENCED exists only from
/// `fenced_since`; older clients get INVALID_PRODUCER_EPOCH, as Kafka answers them.
pub fn for_version(code: ErrorCode, version: i16, fenced_since: i16) -> ErrorCode {
    if code == ErrorCode::ProducerFenced && version < fenced_since {
        ErrorCode::InvalidProducerEpoch
    } else {
        code
    }
}

/// The error code of a coordinator answer (`None`: the request was dropped).
pub fn reply_code(reply: Option<Reply>) -> ErrorCode {
    match reply {
        Some(Reply::Done(code)) | Some(Reply::ProducerId { error: code, .. }) => code,
        None => ErrorCode::CoordinatorNotAvailable,
    }
}
