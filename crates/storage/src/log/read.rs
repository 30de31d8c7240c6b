//! Reads of whole batches, and lookups by timestamp (ListOffsets).

use std::sync::Arc;

use bytes::BytesMut;

use super::{PartitionLog, ReadResult};
use crate::error::StorageError;
use crate::record_scan;
use crate::segment::{Segment, SegmentMeta};

impl PartitionLog {
    /// Whole batches from the one containing `offset`, stopping before any batch that
    /// reaches `max_offset` (exclusive bound, e.g. the high watermark) and within
    /// `max_bytes`; with `min_one_batch` (KIP-74) the first batch comes back whole even
    /// if larger. Reads continue across segment boundaries. Fails with OffsetOutOfRange
    /// below the log start offset or above the log end offset; at the end (or at/above
    /// `max_offset`) the result is empty.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        // Snapshot first, then offsets: writers move the log start offset before they
        // publish a shorter segment list, so the list always covers it.
        let view = self.snapshot();
        let start = self.log_start_offset();
        let end = self.log_end_offset();
        let high_watermark = self.high_watermark();
        let out_of_range = || StorageError::OffsetOutOfRange {
            requested: offset,
            start,
            end,
        };
        if offset < start || offset > end {
            return Err(out_of_range());
        }
        let upper = max_offset.min(end);
        let mut out = BytesMut::new();
        if offset < upper {
            let first = view
                .partition_point(|s| s.base_offset() <= offset)
                .checked_sub(1)
                .ok_or_else(out_of_range)?;
            let mut budget = max_bytes;
            for (i, seg) in view.iter().enumerate().skip(first) {
                let seg_end = seg.size();
                let pos = if i == first {
                    match seg.locate(offset, seg_end)? {
                        Some((pos, _)) => pos,
                        None => continue,
                    }
                } else {
                    0
                };
                let take_first = min_one_batch && out.is_empty();
                let chunk = seg.read_from(pos, seg_end, budget, take_first, upper)?;
                budget = budget.saturating_sub(chunk.bytes.len());
                if out.is_empty() {
                    out = chunk.bytes;
                } else {
                    out.extend_from_slice(&chunk.bytes);
                }
                if !chunk.reached_end {
                    break;
                }
            }
        }
        Ok(ReadResult {
            records: out.freeze(),
            log_start_offset: start,
            log_end_offset: end,
            high_watermark,
        })
    }

    /// ListOffsets by timestamp: the first record at or after the log start offset whose
    /// timestamp is `>= timestamp`, as `(offset, record timestamp)`. The candidate batch
    /// (found through the time index and batch headers) is decoded, decompressing if
    /// needed; should that fail, the batch's first offset (not below the log start
    /// offset) and max timestamp are returned. `None` if no such record.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let view = self.snapshot();
        let start = self.log_start_offset();
        for seg in view.iter() {
            if seg.meta().max_timestamp < timestamp {
                continue;
            }
            if let Some(found) = seg.find_timestamp(timestamp, start, seg.size())? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the record with the largest timestamp, as
    /// `(offset, timestamp)`; on ties, the first such batch and within it the first record
    /// carrying the timestamp (as Kafka). If that batch does not decode, its last offset
    /// (CreateTime) or first offset (LogAppendTime). `None` if no batch has a timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let view = self.snapshot();
        let mut best: Option<(&Arc<Segment>, SegmentMeta)> = None;
        for seg in view.iter() {
            let meta = seg.meta();
            if meta.max_timestamp >= 0
                && best
                    .as_ref()
                    .is_none_or(|(_, b)| meta.max_timestamp > b.max_timestamp)
            {
                best = Some((seg, meta));
            }
        }
        let Some((seg, meta)) = best else {
            return Ok(None);
        };
        let ts = meta.max_timestamp;
        let mut offset = meta.offset_of_max_timestamp;
        if let Some((pos, header)) = seg.locate(offset, seg.size())? {
            let batch = seg.read_batch(pos, &header)?;
            if let Some(exact) = record_scan::first_with(&batch, ts) {
                offset = exact;
            }
        }
        Ok(Some((offset, ts)))
    }
}
