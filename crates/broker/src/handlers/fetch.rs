//! Fetch (key 1), v4-17, for consumers: whole batches below the high watermark (the last
//! stable offset for `read_committed`, with the aborted transactions in the range so the
//! client drops their records), long polling until `min_bytes` is met or `max_wait_ms`
//! passes, woken by high-watermark moves (the last stable offset only moves with the
//! high watermark). Followers' fetches (a replica id) are served by `replica_fetch`.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which every client
//! treats as "send full fetch requests"; that is allowed by the protocol and keeps the
//! broker stateless per connection. Every fetch therefore names all its partitions, and
//! each is authorized afresh: an unauthorized one answers its error on every fetch.
//!
//! Authorization, as Kafka's: a follower's fetch needs ClusterAction on the cluster
//! (else every partition answers TOPIC_AUTHORIZATION_FAILED and its position is not
//! recorded); a consumer's needs Read on each topic (else that topic's partitions answer
//! TOPIC_AUTHORIZATION_FAILED, whether or not it exists). A topic ID that names no topic
//! answers UNKNOWN_TOPIC_ID, as in Kafka: the ID resolves before the name is authorized.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use sluice_auth::acl::Operation;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::fetch_request::FetchPartition;
use sluice_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use sluice_protocol::messages::{FetchRequest, FetchResponse};
use sluice_protocol::records::BatchIter;
use sluice_storage::StorageError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access::Authz;
use crate::broker::Broker;
use crate::partition::Partition;
use crate::router::ConnectionInfo;
use crate::topics::Topic;

/// Fetch v4 is the first with `isolation_level` and v2 record batches only.
pub const VERSIONS: (i16, i16) = (4, 17);

/// The most one partition contributes to one response (a whole first batch excepted,
/// KIP-74). Kafka streams a partition's bytes with sendfile; we read them into memory,
/// and a read of tens of MiB costs a fresh allocation whose pages fault in on every
/// fetch (measured: 1.2 CPU-s/GB with 50 MiB reads against 0.4 with 1 MiB) and delays
/// the first byte until all of it is read. Returning less than a client allows is
/// always within the protocol; the client simply fetches again.
pub(super) const MAX_READ_PER_PARTITION: usize = 4 * 1024 * 1024;

/// Which topic a request entry names: by name before v13, by ID from v13.
pub(super) struct Wanted {
    pub(super) name: String,
    pub(super) id: Uuid,
    pub(super) partitions: Vec<FetchPartition>,
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    // A client continuing a session we never created: tell it to start over. Epochs 0
    // (initial) and -1 (final) are full fetches, served whatever session id they name
    // (Kafka closes that session); any other epoch continues a session (KIP-227).
    if req.session_epoch != 0 && req.session_epoch != -1 {
        return FetchResponse {
            error_code: ErrorCode::FetchSessionIdNotFound.code(),
            ..Default::default()
        };
    }
    // A follower's fetch: replica id in the request (before v15) or its ReplicaState.
    let (replica_id, replica_epoch) = if version >= 15 {
        (
            req.replica_state.replica_id,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id, -1)
    };
    let use_ids = version >= 13;
    let wanted: Vec<Wanted> = req
        .topics
        .into_iter()
        .map(|t| Wanted {
            name: t.topic,
            id: t.topic_id,
            partitions: t.partitions,
        })
        .collect();
    let read_committed = req.isolation_level == 1;
    let max_bytes = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .min(broker.config.fetch_max_bytes);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let wait_ms = u64::try_from(req.max_wait_ms)
        .unwrap_or(0)
        .min(broker.config.fetch_max_wait_cap_ms);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let authz = broker.access.authz(conn);
    if replica_id >= 0 {
        if !authz.allows_cluster(Operation::ClusterAction) {
            return FetchResponse {
                responses: wanted
                    .iter()
                    .map(|w| refused_topic(w, use_ids, ErrorCode::TopicAuthorizationFailed))
                    .collect(),
                ..Default::default()
            };
        }
        let responses = super::replica_fetch::serve(
            broker,
            &wanted,
            use_ids,
            super::replica_fetch::Follower {
                id: replica_id,
                broker_epoch: replica_epoch,
            },
            max_bytes,
            min_bytes,
            deadline,
        )
        .await;
        return FetchResponse {
            responses,
            ..Default::default()
        };
    }
    loop {
        let topics: Vec<Option<Arc<Topic>>> = wanted
            .iter()
            .map(|w| {
                if use_ids {
                    broker.topics.get_by_id(&w.id)
                } else {
                    broker.topics.get(&w.name)
                }
            })
            .collect();
        let readable = readable_topics(&authz, &wanted, &topics, use_ids);
        // Subscribe before reading, so an append between the read and the wait still
        // wakes us.
        let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
        for ((w, t), readable) in wanted.iter().zip(&topics).zip(&readable) {
            if let (Some(t), true) = (t, readable) {
                for fp in &w.partitions {
                    if let Some(p) = t.partition(fp.partition) {
                        watchers.push(p.subscribe());
                    }
                }
            }
        }
        let (responses, bytes, errors, limited) = read_all(
            &wanted,
            &topics,
            &readable,
            use_ids,
            read_committed,
            max_bytes,
        );
        // Kafka counts the bytes available, not those returned: a read cut short by a
        // size limit while more is committed also answers at once.
        let done = bytes >= min_bytes
            || limited
            || errors
            || wait_ms == 0
            || watchers.is_empty()
            || Instant::now() >= deadline;
        if done {
            count_fetched(&topics, &responses);
            return FetchResponse {
                responses,
                ..Default::default()
            };
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            // Deadline passed: answer with whatever is there now.
            let (responses, ..) = read_all(
                &wanted,
                &topics,
                &readable,
                use_ids,
                read_committed,
                max_bytes,
            );
            count_fetched(&topics, &responses);
            return FetchResponse {
                responses,
                ..Default::default()
            };
        }
    }
}

/// Whether the consumer may Read each requested topic: by the name it sent, or (v13+)
/// by the name its ID resolves to. An unresolved ID counts as readable so that it
/// answers UNKNOWN_TOPIC_ID, which names nothing.
fn readable_topics(
    authz: &Authz<'_>,
    wanted: &[Wanted],
    topics: &[Option<Arc<Topic>>],
    use_ids: bool,
) -> Vec<bool> {
    wanted
        .iter()
        .zip(topics)
        .map(|(w, t)| match (use_ids, t) {
            (true, Some(t)) => authz.allows_topic(Operation::Read, &t.name),
            (true, None) => true,
            (false, _) => authz.allows_topic(Operation::Read, &w.name),
        })
        .collect()
}

/// A topic whose every partition answers `code`.
fn refused_topic(w: &Wanted, use_ids: bool, code: ErrorCode) -> FetchableTopicResponse {
    let partitions = w
        .partitions
        .iter()
        .map(|fp| error_partition(fp.partition, code))
        .collect();
    topic_response(w, use_ids, partitions)
}

/// Reads every requested partition once. Returns the topics, the record bytes, whether
/// any partition failed (an error answers the fetch at once, as in Kafka), and whether
/// a size limit left committed data unread.
fn read_all(
    wanted: &[Wanted],
    topics: &[Option<Arc<Topic>>],
    readable: &[bool],
    use_ids: bool,
    read_committed: bool,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut limited = false;
    let mut out = Vec::with_capacity(wanted.len());
    for ((w, topic), readable) in wanted.iter().zip(topics).zip(readable) {
        if !readable {
            errors |= !w.partitions.is_empty();
            out.push(refused_topic(
                w,
                use_ids,
                ErrorCode::TopicAuthorizationFailed,
            ));
            continue;
        }
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for fp in &w.partitions {
            let part = topic
                .as_ref()
                .ok_or(ErrorCode::UnknownTopicOrPartition)
                .and_then(|t| t.lookup(fp.partition));
            let data = match (topic, part) {
                (None, _) if use_ids => error_partition(fp.partition, ErrorCode::UnknownTopicId),
                (_, Err(code)) => error_partition(fp.partition, code),
                (_, Ok(p)) => {
                    // KIP-74: the first partition with data may exceed the limits by
                    // one whole batch so that a large batch can never wedge a consumer.
                    let limit = partition_limit(fp, max_bytes, total);
                    let upto = if read_committed {
                        p.log.last_stable_offset()
                    } else {
                        p.high_watermark()
                    };
                    read_partition(p, fp, limit, total == 0, read_committed, upto)
                }
            };
            if data.error_code != ErrorCode::None.code() {
                errors = true;
            }
            limited |= stopped_short(&data, read_committed);
            total += data.records.as_ref().map_or(0, Bytes::len);
            partitions.push(data);
        }
        out.push(topic_response(w, use_ids, partitions));
    }
    (out, total, errors, limited)
}

/// Adds the record bytes of a consumer's answer to its topics' `bytes_out`.
fn count_fetched(topics: &[Option<Arc<Topic>>], responses: &[FetchableTopicResponse]) {
    for (topic, response) in topics.iter().zip(responses) {
        let Some(topic) = topic else { continue };
        let bytes: usize = response
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .sum();
        if bytes > 0 {
            topic.traffic.fetched(bytes);
        }
    }
}

/// Bytes one partition may return: what the response has left of `max_bytes` after
/// `total`, within the partition's own limit and the per-read cap.
pub(super) fn partition_limit(fp: &FetchPartition, max_bytes: usize, total: usize) -> usize {
    max_bytes
        .saturating_sub(total)
        .min(usize::try_from(fp.partition_max_bytes).unwrap_or(0))
        .min(MAX_READ_PER_PARTITION)
}

/// One topic's answer, named by ID (v13+) or by name as the request named it.
pub(super) fn topic_response(
    w: &Wanted,
    use_ids: bool,
    partitions: Vec<PartitionData>,
) -> FetchableTopicResponse {
    FetchableTopicResponse {
        topic: if use_ids {
            String::new()
        } else {
            w.name.clone()
        },
        topic_id: if use_ids { w.id } else { Uuid::ZERO },
        partitions,
    }
}

/// True when the records returned end before the high watermark (the last stable offset
/// for `read_committed`): a limit, not the end of readable data, stopped the read (or
/// the budget was spent before this partition).
fn stopped_short(data: &PartitionData, read_committed: bool) -> bool {
    if data.error_code != ErrorCode::None.code() {
        return false;
    }
    let Some(records) = data.records.as_ref() else {
        return false;
    };
    let readable = if read_committed {
        data.last_stable_offset
    } else {
        data.high_watermark
    };
    records_end(records).is_some_and(|end| end < readable)
}

/// The offset after the last whole batch in `records`.
fn records_end(records: &Bytes) -> Option<i64> {
    BatchIter::new(records)
        .filter_map(Result::ok)
        .last()
        .map(|(h, _)| h.next_offset())
}

pub(super) fn error_partition(index: i32, code: ErrorCode) -> PartitionData {
    PartitionData {
        partition_index: index,
        error_code: code.code(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Some(Bytes::new()),
        ..Default::default()
    }
}

/// Reads one partition for a fetch: whole batches from `fp.fetch_offset` below `upto`
/// (the high watermark or last stable offset for consumers, the log end offset for
/// followers).
pub(super) fn read_partition(
    p: &Partition,
    fp: &FetchPartition,
    limit: usize,
    min_one: bool,
    read_committed: bool,
    upto: i64,
) -> PartitionData {
    if let Some(code) = check_leader_epoch(p, fp.current_leader_epoch) {
        return error_partition(fp.partition, code);
    }
    // The stable offset before the high watermark: read the other way round, a
    // transaction decided in between could put the stable offset above the watermark.
    let lso = p.log.last_stable_offset();
    let hw = p.high_watermark();
    let log_start = p.log.log_start_offset();
    let base = PartitionData {
        partition_index: fp.partition,
        high_watermark: hw,
        last_stable_offset: lso.min(hw),
        log_start_offset: log_start,
        ..Default::default()
    };
    match p.log.read(fp.fetch_offset, limit, upto, min_one) {
        Ok(r) => {
            // Aborted transactions are listed only for read_committed (null otherwise),
            // those with a record among the batches returned (Kafka's upper bound).
            let aborted_transactions = read_committed.then(|| {
                if !p.log.has_aborted_transactions() {
                    return Vec::new();
                }
                records_end(&r.records).map_or_else(Vec::new, |end| {
                    p.log
                        .aborted_transactions(fp.fetch_offset, end)
                        .into_iter()
                        .map(|a| AbortedTransaction {
                            producer_id: a.producer_id,
                            first_offset: a.first_offset,
                        })
                        .collect()
                })
            });
            PartitionData {
                records: Some(r.records),
                aborted_transactions,
                ..base
            }
        }
        // As Kafka, offsets and watermarks are unknown (-1) alongside an error.
        Err(StorageError::OffsetOutOfRange { .. }) => {
            error_partition(fp.partition, ErrorCode::OffsetOutOfRange)
        }
        Err(e) => {
            tracing::warn!(error = %e, partition = fp.partition, "fetch read failed");
            error_partition(fp.partition, ErrorCode::KafkaStorageError)
        }
    }
}

/// KIP-320: a client that knows a newer epoch than ours is ahead of this broker
/// (UNKNOWN_LEADER_EPOCH, retry); one that knows an older epoch is fenced.
pub fn check_leader_epoch(p: &Partition, current_leader_epoch: i32) -> Option<ErrorCode> {
    if current_leader_epoch < 0 {
        return None;
    }
    match current_leader_epoch.cmp(&p.leader_epoch()) {
        std::cmp::Ordering::Greater => Some(ErrorCode::UnknownLeaderEpoch),
        std::cmp::Ordering::Less => Some(ErrorCode::FencedLeaderEpoch),
        std::cmp::Ordering::Equal => None,
    }
}
