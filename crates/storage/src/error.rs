//! The crate's one error type, [`StorageError`], and a helper to attach context to I/O errors.

use std::io;
use std::path::{Path, PathBuf};

use sluice_protocol::records::RecordsError;

/// Everything that can go wrong in the log engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O failure, with what we were doing when it happened.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A fetch, DeleteRecords or similar asked for an offset outside the log.
    #[error("offset {requested} is out of range (log start offset {start}, log end offset {end})")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    /// Stored data that does not make sense (and cannot be repaired in place).
    #[error("corrupt data in {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// A batch handed to an append does not parse as a v2 record batch.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] RecordsError),
    /// A follower append whose offsets do not follow the log (or each other).
    #[error("non-monotonic offset: batch base offset {base} is below the expected {expected}")]
    NonMonotonicOffset { expected: i64, base: i64 },
    /// An append that could never fit in one segment (Kafka's RECORD_LIST_TOO_LARGE).
    #[error("append of {size} bytes exceeds segment.bytes ({max})")]
    BatchTooLarge { size: usize, max: usize },
    /// An append with no batch in it.
    #[error("append contains no record batch")]
    EmptyAppend,
    /// A [`crate::LogConfig`] value outside Kafka's allowed range.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// A topic name that Kafka would reject (and that could escape the data directory).
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// An idempotent batch from a producer epoch older than the one the log has seen for
    /// that producer id (Kafka's INVALID_PRODUCER_EPOCH): a newer producer fenced it.
    #[error("producer {producer_id}: epoch {producer_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },
    /// An idempotent batch whose first sequence does not follow the producer's last one
    /// (or is not 0 for a new epoch): Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER. Nothing was
    /// written. `last_sequence` is the producer's last stored sequence (-1 for a new epoch).
    #[error("producer {producer_id} epoch {producer_epoch}: out-of-order sequence {first_sequence} (last stored sequence {last_sequence})")]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    },
    /// A retried (already stored) batch in an append of several batches, which has no
    /// single original offset to answer with; nothing was written. Produce v3+ sends one
    /// batch per partition, where a retry is answered as a duplicate instead
    /// ([`crate::AppendInfo::duplicate`]). Kafka's DUPLICATE_SEQUENCE_NUMBER.
    #[error("producer {producer_id} epoch {producer_epoch}: duplicate batch (sequences {first_sequence}..={last_sequence}) in a multi-batch append")]
    DuplicateSequence {
        producer_id: i64,
        producer_epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    },
    /// A non-transactional batch from a producer whose transaction is open in this
    /// partition (Kafka's INVALID_TXN_STATE); nothing was written.
    #[error("producer {producer_id}: non-transactional write while its transaction from offset {txn_first_offset} is open")]
    InvalidTxnState {
        producer_id: i64,
        txn_first_offset: i64,
    },
    /// A transaction marker from a coordinator epoch older than one the partition has
    /// seen for the producer (Kafka's TRANSACTION_COORDINATOR_FENCED): a newer
    /// coordinator took over the transaction.
    #[error("producer {producer_id}: marker from coordinator epoch {coordinator_epoch}, older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    /// The log was closed or deleted; it accepts no more writes.
    #[error("log {0} is closed")]
    Closed(PathBuf),
}

impl StorageError {
    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// Attaches a lazily built context string to an [`io::Result`].
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::Io {
            context: f(),
            source,
        })
    }
}
