//! Produce (key 0), v3-11: validates each partition's record batch, assigns offsets and
//! appends it. acks=0 gets no response (and, as in Kafka, a connection close if any
//! partition failed, since that is the only way such a producer learns of it). On a
//! compacted topic every record must have a key, which means decoding the records.
//!
//! Authorization, as Kafka's: a transactional producer needs Write on its transactional
//! id (else nothing is appended and every partition answers
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED); each topic needs Write (else its partitions
//! answer TOPIC_AUTHORIZATION_FAILED, whether or not it exists, while the request's
//! authorized partitions are appended as usual).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use sluice_auth::acl::Operation;
use sluice_protocol::compression::Compression;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use sluice_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_protocol::records::{
    decode_records, set_log_append_time, verify_crc, BatchIter, RecordBatchBuilder,
    RecordBatchHeader, RecordHeader, RecordsError,
};
use sluice_replication::waiters::WaitOutcome;
use sluice_replication::{AckError, AppendError};
use sluice_storage::StorageError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::broker::{now_ms, Broker};
use crate::commit::storage_error_code;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::router::ConnectionInfo;
use crate::topic_config::TopicConfig;

type AckWait = oneshot::Receiver<WaitOutcome>;

/// Produce v3 is the first that carries only v2 record batches.
pub const VERSIONS: (i16, i16) = (3, 11);

/// A produce whose batches are appended: its answer now, or the acks=all waits it still
/// needs. The connection appends its requests in arrival order and may read the next
/// request while one waits (responses still go out in order), so a pipelining producer
/// keeps several acks=all batches in replication at once.
pub enum Appended {
    /// Answer now (`None`: acks=0, send nothing).
    Ready(Option<ProduceResponse>),
    /// acks=all: answer once [`Waiting::complete`] returns.
    Waiting(Waiting),
}

/// An acks=all produce waiting for the high watermark to pass its batches.
pub struct Waiting {
    responses: Vec<TopicProduceResponse>,
    /// (topic, partition) position in `responses`, the replica, and the wait.
    waits: Vec<(usize, usize, Arc<Partition>, AckWait)>,
    deadline: Instant,
}

/// `Ok(None)`: acks=0 and all went well, send nothing. `Err`: close the connection.
pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ProduceRequest,
    version: i16,
) -> Result<Option<ProduceResponse>, BrokerError> {
    match append_all(broker, conn, req, version)? {
        Appended::Ready(r) => Ok(r),
        Appended::Waiting(w) => Ok(Some(w.complete().await)),
    }
}

/// Validates and appends every partition's batch; for acks=all also parks the waits.
/// `Err`: close the connection (a failed acks=0 produce).
pub fn append_all(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: ProduceRequest,
    version: i16,
) -> Result<Appended, BrokerError> {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let authz = broker.access.authz(conn);
    // A transactional producer the id is not granted to appends nothing at all.
    let txn_denied = req
        .transactional_id
        .as_deref()
        .is_some_and(|id| !authz.allows_txn(Operation::Write, id));
    let deadline =
        Instant::now() + Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    let mut any_error = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // acks=all appends waiting for the high watermark: (topic, partition) position in
    // `responses`, the replica, and the wait.
    let mut waits: Vec<(usize, usize, Arc<Partition>, AckWait)> = Vec::new();
    for td in req.topic_data {
        // Checked before the topic is looked up: whoever may not write it does not
        // learn whether it exists.
        let topic_allowed = !txn_denied && authz.allows_topic(Operation::Write, &td.name);
        let topic = broker.topics.get(&td.name);
        let mut partition_responses = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let result = if txn_denied {
                Err(Failure::new(
                    ErrorCode::TransactionalIdAuthorizationFailed,
                    None,
                ))
            } else if !topic_allowed {
                Err(Failure::new(ErrorCode::TopicAuthorizationFailed, None))
            } else if !valid_acks {
                Err(Failure::new(ErrorCode::InvalidRequiredAcks, None))
            } else {
                match topic
                    .as_ref()
                    .ok_or(ErrorCode::UnknownTopicOrPartition)
                    .and_then(|t| t.lookup(pd.index).map(|p| (t, p)))
                {
                    Err(code) => Err(Failure::new(code, None)),
                    Ok((t, p)) => {
                        let bytes = pd.records.as_ref().map_or(0, Bytes::len);
                        append(&t.name, &t.config, acks, p, pd.records, version).map(|ok| {
                            let records = u64::try_from(ok.next_offset - ok.base_offset);
                            t.traffic.produced(bytes, records.unwrap_or(0));
                            (ok, p.clone())
                        })
                    }
                }
            };
            let result = result.and_then(|(ok, p)| {
                if acks == -1 {
                    if let Some(wait) = p
                        .wait_for_high_watermark(ok.next_offset)
                        .map_err(ack_failure)?
                    {
                        waits.push((responses.len(), partition_responses.len(), p, wait));
                    }
                }
                Ok(ok)
            });
            partition_responses.push(match result {
                Ok(ok) => PartitionProduceResponse {
                    index: pd.index,
                    error_code: ErrorCode::None.code(),
                    base_offset: ok.base_offset,
                    log_append_time_ms: ok.log_append_time,
                    log_start_offset: ok.log_start_offset,
                    ..Default::default()
                },
                Err(f) => {
                    any_error = true;
                    failed_partition(pd.index, f)
                }
            });
        }
        responses.push(TopicProduceResponse {
            name: td.name,
            partition_responses,
        });
    }
    if acks == 0 {
        if any_error {
            return Err(BrokerError::AcksZeroFailure);
        }
        return Ok(Appended::Ready(None));
    }
    if waits.is_empty() {
        return Ok(Appended::Ready(Some(ProduceResponse {
            responses,
            ..Default::default()
        })));
    }
    Ok(Appended::Waiting(Waiting {
        responses,
        waits,
        deadline,
    }))
}

impl Waiting {
    /// Each partition answers once the high watermark passes its batch, or fails if
    /// the leader steps down first or the request's timeout passes.
    pub async fn complete(self) -> ProduceResponse {
        let Waiting {
            mut responses,
            waits,
            deadline,
        } = self;
        let outcomes = join_all(waits.into_iter().map(|(t, i, p, wait)| async move {
            let outcome = tokio::time::timeout_at(deadline, wait).await;
            (t, i, p, outcome)
        }))
        .await;
        for (t, i, p, outcome) in outcomes {
            let failure = match outcome {
                Ok(Ok(WaitOutcome::Reached)) => match p.isr_status() {
                    // Kafka's DelayedProduce: reached, but with too few replicas in sync.
                    Some((isr, min_isr)) if isr < min_isr => Some(Failure::new(
                        ErrorCode::NotEnoughReplicasAfterAppend,
                        Some(format!("The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_isr}")),
                    )),
                    _ => None,
                },
                Ok(Ok(WaitOutcome::Abandoned)) | Ok(Err(_)) => {
                    Some(Failure::new(ErrorCode::NotLeaderOrFollower, None))
                }
                Err(_) => Some(Failure::new(ErrorCode::RequestTimedOut, None)),
            };
            if let Some(f) = failure {
                if let Some(r) = responses
                    .get_mut(t)
                    .and_then(|tr| tr.partition_responses.get_mut(i))
                {
                    *r = failed_partition(r.index, f);
                }
            }
        }
        ProduceResponse {
            responses,
            ..Default::default()
        }
    }
}

fn failed_partition(index: i32, f: Failure) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: f.code.code(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: f.message,
        record_errors: f.record_errors,
        ..Default::default()
    }
}

fn ack_failure(e: AckError) -> Failure {
    match e {
        AckError::NotEnoughReplicas { isr, min_isr } => Failure::new(
            ErrorCode::NotEnoughReplicas,
            Some(format!(
                "The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_isr}"
            )),
        ),
        AckError::NotLeader | AckError::NotAReplica(_) => {
            Failure::new(ErrorCode::NotLeaderOrFollower, None)
        }
    }
}

/// Where one partition's batch went.
struct Stored {
    base_offset: i64,
    /// The offset after the batch: the high watermark acks=all waits for.
    next_offset: i64,
    log_append_time: i64,
    log_start_offset: i64,
}

struct Failure {
    code: ErrorCode,
    message: Option<String>,
    /// The records at fault, by index in the batch (sent from Produce v8).
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

impl Failure {
    fn new(code: ErrorCode, message: Option<String>) -> Self {
        Self {
            code,
            message,
            record_errors: Vec::new(),
        }
    }
}

fn corrupt(e: RecordsError) -> Failure {
    Failure::new(ErrorCode::CorruptMessage, Some(e.to_string()))
}

fn append(
    topic: &str,
    config: &TopicConfig,
    acks: i16,
    partition: &Partition,
    records: Option<Bytes>,
    version: i16,
) -> Result<Stored, Failure> {
    let records = records
        .ok_or_else(|| Failure::new(ErrorCode::InvalidRecord, Some("null records".into())))?;
    let now = now_ms();
    let header = validate(config, &records, now, version)?;
    if config.compact() {
        require_keys(topic, partition.index, config, &records)?;
    }
    // acks=all needs min.insync.replicas in the ISR before anything is appended.
    if acks == -1 {
        partition.check_min_isr().map_err(ack_failure)?;
    }
    let batch = records.slice(..header.total_size());
    let mut batch = match config.compression {
        Some(target) if header.compression().ok() != Some(target) => {
            recompress(&batch, &header, target, config.max_message_bytes)?
        }
        // The frame buffer is shared, so the batch is copied once into a buffer we own
        // before its header is rewritten in place (base offset, leader epoch, timestamps).
        _ => BytesMut::from(&batch[..]),
    };
    let log_append_time = if config.log_append_time {
        set_log_append_time(&mut batch, now).map_err(corrupt)?;
        now
    } else {
        -1
    };
    if batch.len() as i64 > config.max_message_bytes {
        // Only reachable after recompression grew the batch.
        return Err(Failure::new(
            ErrorCode::MessageTooLarge,
            Some("the recompressed batch exceeds max.message.bytes".into()),
        ));
    }
    let info = partition
        .append_as_leader(&mut batch, now)
        .map_err(|e| match e {
            AppendError::NotLeader => Failure::new(ErrorCode::NotLeaderOrFollower, None),
            AppendError::Storage(e) => storage_failure(e),
        })?;
    Ok(Stored {
        base_offset: info.first_offset,
        next_offset: info.last_offset + 1,
        log_append_time,
        log_start_offset: info.log_start_offset,
    })
}

fn storage_failure(e: StorageError) -> Failure {
    Failure::new(storage_error_code(&e), Some(e.to_string()))
}

/// Decompressed bytes one batch may inflate to while its records are decoded: generous
/// (64 times `max.message.bytes`) but finite, against compression bombs.
fn decode_limit(max_message_bytes: i64) -> usize {
    usize::try_from(max_message_bytes.max(1))
        .unwrap_or(usize::MAX)
        .saturating_mul(64)
        .min(1 << 30)
}

/// Kafka's LogValidator on a compacted topic: a record without a key could never be
/// compacted, so the whole batch is refused with INVALID_RECORD, naming each keyless
/// record by its index in the batch.
fn require_keys(
    topic: &str,
    partition: i32,
    config: &TopicConfig,
    batch: &Bytes,
) -> Result<(), Failure> {
    let records = decode_records(batch, decode_limit(config.max_message_bytes)).map_err(corrupt)?;
    let message = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    );
    let record_errors: Vec<BatchIndexAndErrorMessage> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| BatchIndexAndErrorMessage {
            batch_index: i32::try_from(i).unwrap_or(i32::MAX),
            batch_index_error_message: Some(message.clone()),
        })
        .collect();
    if record_errors.is_empty() {
        return Ok(());
    }
    Err(Failure {
        code: ErrorCode::InvalidRecord,
        message: Some(message),
        record_errors,
    })
}

/// Rebuilds a batch in the topic's `compression.type`, keeping every record, offset
/// delta, timestamp and the producer fields (Kafka's LogValidator does the same when
/// the target codec differs from the producer's).
fn recompress(
    batch: &Bytes,
    header: &RecordBatchHeader,
    target: Compression,
    max_bytes: i64,
) -> Result<BytesMut, Failure> {
    // Decompressed data may be larger than the batch; bound it generously but finitely.
    let records = decode_records(batch, decode_limit(max_bytes)).map_err(corrupt)?;
    let mut builder = RecordBatchBuilder::new()
        .compression(target)
        .timestamp_type(header.timestamp_type())
        .producer(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        )
        .transactional(header.is_transactional());
    for r in &records {
        let headers: Vec<RecordHeader> = r.headers.clone();
        builder
            .push_at(
                r.offset_delta,
                r.timestamp(header),
                r.key.as_deref(),
                r.value.as_deref(),
                &headers,
            )
            .map_err(corrupt)?;
    }
    let rebuilt = builder.build().map_err(corrupt)?;
    Ok(BytesMut::from(&rebuilt[..]))
}

/// Kafka's checks on a produced record set (LogValidator), at the batch header level.
fn validate(
    config: &TopicConfig,
    records: &Bytes,
    now: i64,
    version: i16,
) -> Result<sluice_protocol::records::RecordBatchHeader, Failure> {
    let mut iter = BatchIter::new(records);
    let (header, _) = match iter.next() {
        None => {
            return Err(Failure::new(
                ErrorCode::InvalidRecord,
                Some("empty record set".into()),
            ))
        }
        Some(Err(RecordsError::UnsupportedMagic(m))) => {
            return Err(Failure::new(
                ErrorCode::UnsupportedForMessageFormat,
                Some(format!(
                    "produce v3+ requires record batch magic 2, got {m}"
                )),
            ))
        }
        Some(Err(e)) => return Err(corrupt(e)),
        Some(Ok(h)) => h,
    };
    if iter.next().is_some() {
        return Err(Failure::new(
            ErrorCode::InvalidRecord,
            Some(
                "Produce requests with version 3 and above must contain exactly one record batch"
                    .into(),
            ),
        ));
    }
    // As Kafka's LogValidator: a client's batch starts at offset 0 (the broker assigns
    // offsets) and names a known codec.
    if header.base_offset != 0 {
        return Err(Failure::new(
            ErrorCode::InvalidRecord,
            Some(format!(
                "The baseOffset of the record batch should be 0, but it is {}",
                header.base_offset
            )),
        ));
    }
    if let Err(e) = header.compression() {
        return Err(corrupt(e));
    }
    // As Kafka's ProduceRequest.validateRecords: zstd needs a client that said so (v7+).
    if version < 7 && matches!(header.compression(), Ok(Compression::Zstd)) {
        return Err(Failure::new(
            ErrorCode::UnsupportedCompressionType,
            Some(format!("Produce requests with version {version} are not allowed to use ZStandard compression")),
        ));
    }
    if header.total_size() as i64 > config.max_message_bytes {
        return Err(Failure::new(
            ErrorCode::MessageTooLarge,
            Some(format!(
                "The request included a message larger than the max message size the server will accept ({} > {})",
                header.total_size(),
                config.max_message_bytes
            )),
        ));
    }
    verify_crc(records).map_err(corrupt)?;
    if header.records_count <= 0
        || i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1
    {
        return Err(Failure::new(
            ErrorCode::InvalidRecord,
            Some("record count does not match the batch's last offset delta".into()),
        ));
    }
    if header.is_control() {
        return Err(Failure::new(
            ErrorCode::InvalidRecord,
            Some("clients may not produce control batches".into()),
        ));
    }
    // As Kafka's ProduceRequest.validateRecords: a transaction needs an idempotent
    // producer (the partition tracks it by producer id and sequence).
    if header.is_transactional() && (header.producer_id < 0 || header.base_sequence < 0) {
        return Err(Failure::new(
            ErrorCode::InvalidRecord,
            Some("transactional records need a producer id and a sequence number".into()),
        ));
    }
    if !config.log_append_time {
        // Header-level bounds: the first record's timestamp and the batch maximum.
        for ts in [header.base_timestamp, header.max_timestamp] {
            if ts < 0 {
                continue; // no timestamp (-1) is allowed, as in Kafka
            }
            let too_old = now.saturating_sub(ts) > config.timestamp_before_max_ms;
            let too_new = ts.saturating_sub(now) > config.timestamp_after_max_ms;
            if too_old || too_new {
                return Err(Failure::new(
                    ErrorCode::InvalidTimestamp,
                    Some(format!(
                        "Timestamp {ts} of message is out of range. The timestamp should be within [{}, {}]",
                        now.saturating_sub(config.timestamp_before_max_ms),
                        now.saturating_add(config.timestamp_after_max_ms)
                    )),
                ));
            }
        }
    }
    Ok(header)
}
