//! Splitting an append's buffer into whole batches, and the per-batch facts the log keeps.

use bytes::Bytes;
use sluice_protocol::records::{
    decode_records, verify_crc, BatchIter, EndTxnMarker, RecordBatchHeader, RecordsError,
    TimestampType,
};

use crate::error::StorageError;

/// What the log needs to know about one batch it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    /// Position within the buffer (or segment) the batch came from.
    pub position: u64,
    pub size: u64,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub log_append_time: bool,
    pub leader_epoch: i32,
    /// Idempotent-producer fields (-1 when the batch has none), for the producer state.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Part of a transaction (KIP-98).
    pub transactional: bool,
    /// A control batch; `marker` is set when it is a readable COMMIT or ABORT marker.
    pub control: bool,
    pub marker: Option<EndTxnMarker>,
}

impl BatchInfo {
    pub(crate) fn from_header(h: &RecordBatchHeader, position: u64) -> Self {
        Self {
            position,
            size: h.total_size() as u64,
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
            max_timestamp: h.max_timestamp,
            log_append_time: h.timestamp_type() == TimestampType::LogAppendTime,
            leader_epoch: h.partition_leader_epoch,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            transactional: h.is_transactional(),
            control: h.is_control(),
            marker: None,
        }
    }

    /// As [`Self::from_header`], reading the transaction marker of a control batch from
    /// `batch` (the whole batch's bytes).
    pub(crate) fn with_marker(h: &RecordBatchHeader, position: u64, batch: &[u8]) -> Self {
        let mut info = Self::from_header(h, position);
        if info.control {
            info.marker = read_marker(batch);
        }
        info
    }

    // Saturating: a base offset near i64::MAX (outside the CRC, so a flipped bit can
    // put it there) must not overflow.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Offset we record for the batch's largest timestamp without decoding records. With
    /// LogAppendTime every record carries the batch timestamp, so the first record is the
    /// first with the maximum; with CreateTime producers write non-decreasing timestamps,
    /// so the last record normally holds it (Kafka's "shallow" offset of max timestamp).
    /// [`crate::record_scan`] refines this when a query needs the exact record.
    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        if self.log_append_time {
            self.base_offset
        } else {
            self.last_offset()
        }
    }
}

/// The COMMIT or ABORT marker a control batch holds; `None` for other control records
/// and for a batch that does not decode (it is then kept but means nothing to the
/// producer state, as Kafka skips control records of unknown types).
fn read_marker(batch: &[u8]) -> Option<EndTxnMarker> {
    // Control batches are one small uncompressed record: copying it is cheap.
    let records = decode_records(&Bytes::copy_from_slice(batch), batch.len()).ok()?;
    EndTxnMarker::from_record(records.first()?).ok().flatten()
}

/// Splits `buf` into whole batches. Any malformed or partial batch, a negative
/// `lastOffsetDelta`, or (if `check_crc`) a CRC mismatch fails the whole append.
pub(crate) fn parse_batches(buf: &[u8], check_crc: bool) -> Result<Vec<BatchInfo>, StorageError> {
    let mut out = Vec::new();
    for item in BatchIter::new(buf) {
        let (header, position) = item?;
        if header.last_offset_delta < 0 {
            return Err(RecordsError::CorruptRecord("negative lastOffsetDelta").into());
        }
        if check_crc {
            // BatchIter only yields batches that lie wholly inside `buf`.
            let whole = buf
                .get(position..position + header.total_size())
                .unwrap_or(&[]);
            verify_crc(whole)?;
        }
        let whole = buf
            .get(position..position + header.total_size())
            .unwrap_or(&[]);
        out.push(BatchInfo::with_marker(&header, position as u64, whole));
    }
    if out.is_empty() {
        return Err(StorageError::EmptyAppend);
    }
    Ok(out)
}
