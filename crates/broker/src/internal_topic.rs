//! What the coordinators keeping their state in an internal compacted topic
//! (`__consumer_offsets`, `__transaction_state`) share: creating the topic on first
//! use, appending their records with acks=all rules, replaying a partition when this
//! node starts leading it, and waiting until that replay may start.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::records::{
    decode_records, BatchIter, EndTxnMarker, RecordBatchBuilder, NO_SEQUENCE,
};
use tracing::{info, warn};

use crate::admin::NewTopic;
use crate::broker::Broker;
use crate::commit::{append_committed, CommitWait};
use crate::partition::Partition;
use crate::topics::Topics;

/// Largest decompressed batch accepted while replaying.
const REPLAY_DECOMPRESS_LIMIT: usize = 256 * 1024 * 1024;
/// Bytes read per step while replaying.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// An internal topic as its coordinator creates it.
pub struct InternalTopic<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub segment_bytes: i64,
    /// `min.insync.replicas` for the topic (capped at its replication factor), if the
    /// coordinator's own setting replaces the broker default.
    pub min_insync_replicas: Option<i64>,
}

/// Creates `topic` if it does not exist yet (on first use, as Kafka does). Its
/// replication factor is Kafka's default of 3, capped at the live brokers so that a
/// smaller cluster (or the single-node default) can still run the coordinator; its
/// `min.insync.replicas` is capped the same way.
/// Blocking: it waits for the metadata quorum.
pub fn ensure(broker: &Broker, topic: &InternalTopic<'_>) -> Result<(), ErrorCode> {
    if broker.topics.get(topic.name).is_some() {
        return Ok(());
    }
    let mut overrides = BTreeMap::new();
    overrides.insert("cleanup.policy".to_string(), "compact".to_string());
    overrides.insert("segment.bytes".to_string(), topic.segment_bytes.to_string());
    overrides.insert("compression.type".to_string(), "producer".to_string());
    let live = broker.cluster.image().live_brokers().len();
    let rf = i16::try_from(live.clamp(1, 3)).unwrap_or(1);
    if let Some(min_isr) = topic.min_insync_replicas {
        let capped = min_isr.clamp(1, i64::from(rf));
        overrides.insert("min.insync.replicas".to_string(), capped.to_string());
    }
    let spec = NewTopic {
        name: topic.name.to_string(),
        partitions: topic.partitions,
        replication_factor: rf,
        assignment: None,
        overrides,
    };
    match broker.create_topic(spec, false) {
        Ok(_) => {
            info!(partitions = topic.partitions, rf, "created {}", topic.name);
            Ok(())
        }
        // Another request created it meanwhile.
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => Ok(()),
        Err(e) => {
            warn!(error = %e.message, "cannot create {}", topic.name);
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    }
}

/// Appends coordinator records (key, value; `None` a tombstone) to `topic`-`partition`
/// as one batch, with acks=all rules; returns the wait for their commit. NOT_COORDINATOR
/// if this node does not lead the partition. With `producer` (id, epoch) the batch is
/// part of that producer's transaction (no sequence numbers, as Kafka writes its
/// coordinators' transactional records); a fenced epoch is INVALID_PRODUCER_EPOCH.
pub fn append(
    topics: &Topics,
    topic: &str,
    partition: i32,
    records: &[(&Bytes, Option<&Bytes>)],
    producer: Option<(i64, i16)>,
    now: i64,
) -> Result<CommitWait, ErrorCode> {
    let p = topics
        .get(topic)
        .and_then(|t| t.partition(partition).cloned())
        .ok_or(ErrorCode::NotCoordinator)?;
    let mut builder = RecordBatchBuilder::new();
    if let Some((producer_id, epoch)) = producer {
        builder = builder
            .producer(producer_id, epoch, NO_SEQUENCE)
            .transactional(true);
    }
    for (key, value) in records {
        builder
            .push(now, Some(key), value.map(|v| &v[..]), &[])
            .map_err(|_| ErrorCode::RecordListTooLarge)?;
    }
    let batch = builder.build().map_err(|_| ErrorCode::RecordListTooLarge)?;
    let mut bytes = batch.to_vec();
    append_committed(&p, |p| p.append_as_leader(&mut bytes, now)).map_err(|code| match code {
        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
        code @ (ErrorCode::NotEnoughReplicas | ErrorCode::InvalidProducerEpoch) => code,
        other => {
            warn!(
                topic,
                partition,
                error = other.name(),
                "cannot append coordinator records"
            );
            ErrorCode::KafkaStorageError
        }
    })
}

/// One item of a replayed partition.
pub enum Replayed<'a> {
    /// A record; `producer_id` is set when it belongs to a transaction.
    Record {
        key: &'a Bytes,
        value: Option<&'a Bytes>,
        producer_id: Option<i64>,
    },
    /// A transaction marker of `producer_id`.
    Marker {
        producer_id: i64,
        marker: EndTxnMarker,
    },
}

/// What a replay saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub records: u64,
    /// Keyless records and batches that did not decode.
    pub skipped: u64,
}

/// Replays `p` from its log start up to its high watermark (what was committed), in
/// offset order.
pub fn replay(p: &Partition, topic: &str, mut f: impl FnMut(Replayed<'_>)) -> ReplayStats {
    let mut stats = ReplayStats::default();
    let hw = p.high_watermark();
    let mut offset = p.log.log_start_offset();
    while offset < hw {
        let read = match p.log.read(offset, REPLAY_READ_BYTES, hw, true) {
            Ok(r) => r,
            Err(e) => {
                warn!(topic, partition = p.index, offset, error = %e, "cannot replay");
                break;
            }
        };
        if read.records.is_empty() {
            break;
        }
        let mut next = offset;
        for item in BatchIter::new(&read.records) {
            let Ok((header, pos)) = item else {
                break;
            };
            next = header.next_offset();
            let batch = read.records.slice(pos..pos + header.total_size());
            let decoded = match decode_records(&batch, REPLAY_DECOMPRESS_LIMIT) {
                Ok(d) => d,
                Err(e) => {
                    warn!(topic, partition = p.index, error = %e, "skipping unreadable batch");
                    stats.skipped += 1;
                    continue;
                }
            };
            if header.is_control() {
                let marker = decoded
                    .first()
                    .and_then(|r| EndTxnMarker::from_record(r).ok().flatten());
                if let Some(marker) = marker {
                    f(Replayed::Marker {
                        producer_id: header.producer_id,
                        marker,
                    });
                }
                continue;
            }
            let producer_id = header.is_transactional().then_some(header.producer_id);
            for r in &decoded {
                let Some(key) = &r.key else {
                    stats.skipped += 1;
                    continue;
                };
                stats.records += 1;
                f(Replayed::Record {
                    key,
                    value: r.value.as_ref(),
                    producer_id,
                });
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    stats
}

/// Waits until `p`'s high watermark reaches the start of this node's leadership (all
/// the previous leader may have acknowledged). `false` if `p` stopped leading first.
pub async fn wait_for_leadership_start(p: &Partition) -> bool {
    let mut hw = p.subscribe();
    loop {
        let Some(start) = p.epoch_start_offset() else {
            return false;
        };
        if *hw.borrow_and_update() >= start {
            return true;
        }
        if hw.changed().await.is_err() {
            return false;
        }
    }
}

/// Whether `p` already holds everything committed before this leadership, so it can
/// be loaded at once.
pub fn leadership_start_reached(p: &Partition) -> bool {
    p.epoch_start_offset()
        .is_some_and(|start| p.high_watermark() >= start)
}
