//! The broker's side of the group coordinator (crate `sluice-group`), hosted by
//! [`crate::coordinator_host`]: it owns the `__consumer_offsets` topic, and the host
//! carries out the coordinator's effects (appending its records, answering parked
//! requests), replays a partition when the coordinator takes it over, and drives its
//! timers.
//!
//! Writes are acknowledged to the coordinator only once committed: appended with
//! acks=all semantics (refused while the ISR is below `min.insync.replicas`) and
//! reported done when the partition's high watermark passes them. A partition this
//! node starts leading is loaded only once its high watermark has reached the start of
//! the new leadership (everything the former leader may have acknowledged), and then
//! only up to the high watermark; until then its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sluice_group::{Coordinator, Effect, Reply, OFFSETS_TOPIC};
use sluice_protocol::error::ErrorCode;
use tracing::debug;

use crate::broker::Broker;
use crate::coordinator_host::{Action, Host, Hosted};
use crate::internal_topic::{self, InternalTopic, Replayed};

/// The group coordinator in its shell.
pub type GroupService = Host<Coordinator>;

impl Hosted for Coordinator {
    type Effect = Effect;
    type Reply = Reply;
    type Job = Infallible;
    const TOPIC: &'static str = OFFSETS_TOPIC;
    const KIND: &'static str = "group";
    /// The resolution of every group timeout (session, rebalance, join deadlines).
    const TICK: Duration = Duration::from_millis(50);
    /// `offsets.commit.timeout.ms`.
    const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

    fn host(broker: &Broker) -> &Host<Self> {
        &broker.groups
    }

    fn partitions(&self) -> i32 {
        self.config().offsets_partitions
    }

    fn set_partitions(&mut self, partitions: i32) {
        self.set_offsets_partitions(partitions);
    }

    fn begin_load(&mut self, partition: i32, _leader_epoch: i32) -> Vec<Effect> {
        Coordinator::begin_load(self, partition);
        Vec::new()
    }

    fn load_item(&mut self, partition: i32, item: Replayed<'_>, now: i64) -> bool {
        let loaded = match item {
            Replayed::Record {
                key,
                value,
                producer_id: None,
            } => self.load_record(partition, key, value, now),
            // Offsets committed in a transaction, decided by its marker further on.
            Replayed::Record {
                key,
                value,
                producer_id: Some(pid),
            } => self.load_txn_record(partition, key, value, pid, now),
            Replayed::Marker {
                producer_id,
                marker,
            } => {
                self.complete_txn(partition, producer_id, marker.commit);
                Ok(())
            }
        };
        match loaded {
            Ok(()) => true,
            Err(e) => {
                debug!(partition, error = %e, "skipping record");
                false
            }
        }
    }

    fn finish_load(&mut self, partition: i32, now: i64) -> Vec<Effect> {
        Coordinator::finish_load(self, partition, now);
        Vec::new()
    }

    fn unload(&mut self, partition: i32) -> Vec<Effect> {
        Coordinator::unload(self, partition)
    }

    fn tick(&mut self, now: i64) -> Vec<Effect> {
        Coordinator::tick(self, now)
    }

    fn write_done(&mut self, id: u64, result: Result<(), ErrorCode>, now: i64) -> Vec<Effect> {
        Coordinator::write_done(self, id, result, now)
    }

    fn action(effect: Effect) -> Action<Self> {
        match effect {
            Effect::Reply(id, reply) => Action::Reply(id, reply),
            Effect::Write {
                id,
                partition,
                records,
                transaction,
            } => Action::Write {
                id,
                partition,
                records: records.into_iter().map(|r| (r.key, r.value)).collect(),
                producer: transaction.map(|t| (t.producer_id, t.producer_epoch)),
            },
        }
    }

    fn run_job(_broker: Arc<Broker>, job: Infallible) -> BoxFuture<'static, ()> {
        match job {}
    }

    fn job_dropped(&mut self, job: Infallible, _now: i64) -> Vec<Effect> {
        match job {}
    }
}

impl Host<Coordinator> {
    /// Creates `__consumer_offsets` if it does not exist yet (on the first group
    /// lookup, as Kafka does). Blocking: it waits for the metadata quorum, and this
    /// node then opens the partitions it was given.
    pub fn ensure_offsets_topic(&self, broker: &Broker) -> Result<(), ErrorCode> {
        internal_topic::ensure(
            broker,
            &InternalTopic {
                name: OFFSETS_TOPIC,
                partitions: broker.config.groups.offsets_partitions,
                segment_bytes: broker.config.offsets_topic_segment_bytes,
                min_insync_replicas: None,
            },
        )
    }

    /// Committed offsets of the groups this node coordinates (group, topic, partition,
    /// offset), for the lag metrics.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.read(Coordinator::committed_offsets)
    }

    /// The offsets partition of a group: its leader is the group's coordinator.
    pub fn partition_for(&self, group: &str) -> i32 {
        self.read(|c| c.partition_for(group))
    }
}

/// Rebuilds a per-item answer in request order when only some items went to the
/// coordinator (the others refused by authorization, answered by the broker):
/// `allowed[i]` says whether item `i` was sent, `answered` holds the coordinator's
/// answers to the sent items in their order, `refused` the broker's to the others.
/// The coordinator answers every item it is given in order, so this puts each answer
/// back at its request position.
pub fn interleave<T>(allowed: &[bool], answered: Vec<T>, refused: Vec<T>) -> Vec<T> {
    let mut answered = answered.into_iter();
    let mut refused = refused.into_iter();
    let mut out: Vec<T> = allowed
        .iter()
        .filter_map(|ok| if *ok { answered.next() } else { refused.next() })
        .collect();
    // Nothing is dropped should the counts ever disagree.
    out.extend(answered);
    out.extend(refused);
    out
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn interleave_restores_request_order() {
        let allowed = [false, true, true, false, true];
        let got = interleave(&allowed, vec!["a1", "a2", "a3"], vec!["r1", "r2"]);
        assert_eq!(got, vec!["r1", "a1", "a2", "r2", "a3"]);
        assert_eq!(interleave(&[true, true], vec![1, 2], vec![]), vec![1, 2]);
        assert_eq!(interleave(&[false], vec![], vec![7]), vec![7]);
    }
}
