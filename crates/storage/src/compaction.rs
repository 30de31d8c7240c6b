//! Log compaction (`cleanup.policy=compact`), the parts that need no lock: when a log is
//! due for cleaning, the map of each key's latest offset, the cleaner checkpoint, and
//! how one batch is filtered. `log/compact.rs` drives a pass over a partition's segments.
//!
//! The rules follow Kafka's `LogCleaner` at segment granularity:
//! - only closed segments lying wholly below the last stable offset are cleaned (never
//!   the active segment; an undecided transaction's records cannot be judged yet), and from the first dirty segment on, not one holding a record
//!   younger than `min.compaction.lag.ms`;
//! - a pass runs when dirty bytes / cleanable bytes exceed `min.cleanable.dirty.ratio`,
//!   when the oldest dirty segment's first batch is older than `max.compaction.lag.ms`,
//!   or when tombstones kept by an earlier pass have become removable;
//! - a record is dropped when a later record (up to the high watermark, the active
//!   segment included) has the same key; records without a key are dropped, as Kafka's
//!   cleaner does; control batches are kept as they are; the batches of aborted
//!   transactions are dropped whole and their keys never shadow an older record;
//! - a tombstone (null value) that is the latest for its key is dropped once its
//!   segment was last appended to more than `delete.retention.ms` ago. Kafka 3.1+
//!   (KIP-534) instead stamps a delete horizon into the batch on the first pass; the
//!   segment's last-modified time (kept across rewrites) is the rule Kafka used before,
//!   measured against the clock rather than against the last clean segment, so that a
//!   tombstone stays readable at least `delete.retention.ms` after it was written.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use sluice_protocol::records::{decode_records, Record, RecordBatchBuilder, RecordBatchHeader};

use crate::config::LogConfig;
use crate::error::StorageError;
use crate::segment::Segment;
use crate::transactions::AbortedTxn;

/// Per-partition cleaner state, `cleaner-offset-checkpoint` in the partition directory
/// (Kafka keeps one such file per data directory; per partition it is written without
/// coordinating with other partitions and goes away with the partition).
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Most bytes the key map of one pass may hold (Kafka's `log.cleaner.dedupe.buffer.size`
/// default). A larger dirty section is cleaned over several passes.
pub(crate) const MAX_MAP_BYTES: usize = 128 * 1024 * 1024;
/// What one map entry costs besides its key: the Vec, the offset, the table slot.
const MAP_ENTRY_OVERHEAD: usize = 48;
/// Largest decompressed size inflated for one batch (a bound against compression
/// bombs); a batch beyond it is kept unchanged and its keys are not mapped.
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;
/// Bytes read from a segment at a time while scanning it.
const READ_CHUNK: usize = 1024 * 1024;

/// What the cleaner remembers between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Offsets below this have been cleaned (Kafka's first dirty offset).
    pub first_dirty_offset: i64,
    /// When the earliest tombstone kept by the last pass becomes removable; -1 if none.
    pub tombstone_expiry_ms: i64,
}

impl Default for CleanerCheckpoint {
    fn default() -> Self {
        Self {
            first_dirty_offset: 0,
            tombstone_expiry_ms: -1,
        }
    }
}

impl CleanerCheckpoint {
    pub(crate) fn encode(&self) -> String {
        format!(
            "0\nfirst-dirty-offset {}\ntombstone-expiry-ms {}\n",
            self.first_dirty_offset, self.tombstone_expiry_ms
        )
    }

    /// `None` if the text is not a complete version-0 checkpoint.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let (mut dirty, mut expiry) = (None, None);
        for line in lines {
            let (key, value) = line.trim().split_once(' ')?;
            let value: i64 = value.trim().parse().ok()?;
            match key {
                "first-dirty-offset" => dirty = Some(value),
                "tombstone-expiry-ms" => expiry = Some(value),
                _ => {}
            }
        }
        Some(Self {
            first_dirty_offset: dirty?,
            tombstone_expiry_ms: expiry?,
        })
    }
}

/// Why a compaction pass ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanReason {
    /// Dirty bytes exceeded `min.cleanable.dirty.ratio`.
    DirtyRatio,
    /// The oldest dirty record waited longer than `max.compaction.lag.ms`.
    MaxCompactionLag,
    /// Tombstones kept by an earlier pass are past `delete.retention.ms`.
    TombstonesDue,
}

/// What planning needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanStat {
    pub base_offset: i64,
    pub size: u64,
    /// Newest record timestamp (or last-modified time), as retention uses it.
    pub largest_timestamp: i64,
    /// `maxTimestamp` of the first batch, -1 if unknown (only needed for dirty segments).
    pub first_batch_timestamp: i64,
}

/// A pass to run: clean segments `[0, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanPlan {
    pub end: usize,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    pub reason: CleanReason,
}

/// Decides whether (and how far) to clean: `None` when the log is not compacted or
/// nothing is due. `stats` lists every segment, the active one last.
pub(crate) fn plan(
    stats: &[CleanStat],
    first_dirty: i64,
    high_watermark: i64,
    tombstone_expiry_ms: i64,
    config: &LogConfig,
    now_ms: i64,
) -> Option<CleanPlan> {
    if !config.compact {
        return None;
    }
    let lag_cut = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let mut end = 0;
    // Closed segments only (every one but the last), each wholly below the HW.
    for (i, pair) in stats.windows(2).enumerate() {
        let (seg, next_base) = (&pair[0], pair[1].base_offset);
        if next_base > high_watermark {
            break;
        }
        let dirty = next_base > first_dirty;
        if dirty && config.min_compaction_lag_ms > 0 && seg.largest_timestamp > lag_cut {
            break;
        }
        end = i + 1;
    }
    if end == 0 {
        return None;
    }
    let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
    let mut earliest_dirty = i64::MAX;
    for (i, seg) in stats.iter().enumerate().take(end) {
        if stats[i + 1].base_offset <= first_dirty {
            clean_bytes += seg.size;
        } else {
            dirty_bytes += seg.size;
            if seg.first_batch_timestamp > 0 {
                earliest_dirty = earliest_dirty.min(seg.first_batch_timestamp);
            }
        }
    }
    let total = clean_bytes + dirty_bytes;
    let ratio = if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    };
    let lag_due = earliest_dirty < now_ms.saturating_sub(config.max_compaction_lag_ms);
    let reason = if dirty_bytes > 0 && ratio > config.min_cleanable_dirty_ratio {
        CleanReason::DirtyRatio
    } else if dirty_bytes > 0 && lag_due {
        CleanReason::MaxCompactionLag
    } else if tombstone_expiry_ms >= 0 && now_ms >= tombstone_expiry_ms {
        CleanReason::TombstonesDue
    } else {
        return None;
    };
    Some(CleanPlan {
        end,
        clean_bytes,
        dirty_bytes,
        reason,
    })
}

/// The latest offset of every key seen in the dirty section (Kafka's `OffsetMap`, but
/// keyed by the key's bytes, so there are no hash collisions to reason about).
#[derive(Debug, Default)]
pub(crate) struct OffsetMap {
    map: HashMap<Vec<u8>, i64>,
    bytes: usize,
}

impl OffsetMap {
    /// Records `offset` for `key`; offsets arrive in increasing order.
    pub(crate) fn insert(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.bytes += key.len() + MAP_ENTRY_OVERHEAD;
                self.map.insert(key.to_vec(), offset);
            }
        }
    }

    pub(crate) fn latest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }

    /// Approximate memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The offset ranges of aborted transactions, by producer id, for the cleaner.
#[derive(Debug, Default)]
pub(crate) struct AbortedRanges {
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedRanges {
    pub(crate) fn new(aborted: &[AbortedTxn]) -> Self {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in aborted {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        Self { by_producer }
    }

    /// The batch holds data of an aborted transaction.
    pub(crate) fn contains(&self, header: &RecordBatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.by_producer.get(&header.producer_id).is_some_and(|r| {
                r.iter()
                    .any(|&(first, last)| first <= header.base_offset && header.base_offset <= last)
            })
    }
}

/// The records of a data batch, or `None` for a batch kept as it is without looking
/// inside: control batches, and (with a warning) batches that do not decode.
fn records_of(batch: &Bytes, header: &RecordBatchHeader) -> Option<Vec<Record>> {
    if header.is_control() {
        return None;
    }
    match decode_records(batch, MAX_DECOMPRESSED) {
        Ok(records) => Some(records),
        Err(e) => {
            tracing::warn!(base_offset = header.base_offset, error = %e, "compaction keeps a batch it cannot decode");
            None
        }
    }
}

/// Adds the keys of one dirty batch to the map, skipping records at or above `upper`.
pub(crate) fn map_keys(map: &mut OffsetMap, batch: &Bytes, header: &RecordBatchHeader, upper: i64) {
    for r in records_of(batch, header).unwrap_or_default() {
        let offset = r.offset(header.base_offset);
        if let (Some(key), true) = (&r.key, offset < upper) {
            map.insert(key, offset);
        }
    }
}

/// Counts of what filtering did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FilterStats {
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Tombstones that were the latest for their key and stayed (not yet expired).
    pub tombstones_kept: u64,
}

/// The fate of one batch.
#[derive(Debug)]
pub(crate) enum Filtered {
    /// Every record stays: the batch is copied byte for byte.
    Unchanged,
    /// No record stays.
    Dropped,
    /// Some records stay, in this rebuilt batch.
    Rewritten(Bytes),
}

/// Filters one batch against the key map. A batch of an aborted transaction goes whole.
/// Otherwise a record stays unless a later record has its
/// key, it has no key, or it is a tombstone and `drop_tombstones` (its segment is past
/// `delete.retention.ms`). A rewritten batch is Kafka's `buildRetainedRecordsInto`: the
/// same base offset, last offset delta, producer id, epoch and base sequence (so the
/// producer's last sequence survives), leader epoch, timestamp type and codec; the
/// surviving records keep their offsets and timestamps.
pub(crate) fn filter_batch(
    batch: &Bytes,
    header: &RecordBatchHeader,
    map: &OffsetMap,
    aborted: &AbortedRanges,
    drop_tombstones: bool,
    stats: &mut FilterStats,
) -> Result<Filtered, StorageError> {
    if aborted.contains(header) {
        stats.records_removed += u64::try_from(header.records_count).unwrap_or(0);
        return Ok(Filtered::Dropped);
    }
    let Some(records) = records_of(batch, header) else {
        return Ok(Filtered::Unchanged);
    };
    let total = records.len();
    let kept: Vec<&Record> = records
        .iter()
        .filter(|r| {
            let retain = match &r.key {
                None => false,
                Some(key) => {
                    let newer = map
                        .latest(key)
                        .is_some_and(|o| o > r.offset(header.base_offset));
                    let expired_tombstone = r.value.is_none() && drop_tombstones;
                    !newer && !expired_tombstone
                }
            };
            if !retain {
                stats.records_removed += 1;
                if r.value.is_none() {
                    stats.tombstones_removed += 1;
                }
            } else if r.value.is_none() {
                stats.tombstones_kept += 1;
            }
            retain
        })
        .collect();
    if kept.len() == total {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() {
        return Ok(Filtered::Dropped);
    }
    let mut builder = RecordBatchBuilder::new()
        .base_offset(header.base_offset)
        .partition_leader_epoch(header.partition_leader_epoch)
        .compression(header.compression()?)
        .timestamp_type(header.timestamp_type())
        .producer(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        )
        .transactional(header.is_transactional());
    for r in kept {
        builder.push_at(
            r.offset_delta,
            r.timestamp(header),
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )?;
    }
    let mut rebuilt = BytesMut::from(&builder.build()?[..]);
    set_last_offset_delta(&mut rebuilt, header.last_offset_delta);
    Ok(Filtered::Rewritten(rebuilt.freeze()))
}

/// Byte position of `lastOffsetDelta` and the start of the CRC-covered range in a v2
/// batch header.
const LAST_OFFSET_DELTA: usize = 23;
const CRC: usize = 17;
const CRC_START: usize = 21;

/// Restores the original `lastOffsetDelta` (inside the CRC, which is recomputed), as
/// Kafka's `overrideLastOffset`: the batch still spans its original offsets.
fn set_last_offset_delta(batch: &mut [u8], delta: i32) {
    if let Some(field) = batch.get_mut(LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4) {
        field.copy_from_slice(&delta.to_be_bytes());
    }
    let crc = crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default());
    if let Some(field) = batch.get_mut(CRC..CRC + 4) {
        field.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Sequential reader of the whole batches in `[start, end)` of one segment, reading a
/// chunk at a time (and a batch larger than a chunk whole).
pub(crate) struct SegmentBatches<'a> {
    seg: &'a Segment,
    pos: u64,
    end: u64,
    buf: Bytes,
    buf_pos: u64,
}

impl<'a> SegmentBatches<'a> {
    pub(crate) fn new(seg: &'a Segment, start: u64, end: u64) -> Self {
        Self {
            seg,
            pos: start,
            end,
            buf: Bytes::new(),
            buf_pos: start,
        }
    }

    /// The bytes `[pos, pos + n)`, reading if the buffer does not hold them.
    fn window(&mut self, n: usize) -> Result<Option<Bytes>, StorageError> {
        let held_end = self.buf_pos + self.buf.len() as u64;
        if self.pos < self.buf_pos || self.pos + n as u64 > held_end {
            let want = (self.end - self.pos).min(READ_CHUNK.max(n) as u64) as usize;
            self.buf = self.seg.read_at(self.pos, want)?;
            self.buf_pos = self.pos;
        }
        let from = (self.pos - self.buf_pos) as usize;
        Ok(self
            .buf
            .get(from..from + n)
            .map(|_| self.buf.slice(from..from + n)))
    }

    /// The next batch: its header, position and bytes. A batch that is cut short or
    /// does not parse is corruption (closed segments hold only whole batches).
    pub(crate) fn next_batch(
        &mut self,
    ) -> Result<Option<(RecordBatchHeader, u64, Bytes)>, StorageError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let path = self.seg.log_path();
        let header_len = sluice_protocol::records::HEADER_SIZE;
        let torn = || StorageError::corrupt(path, "torn batch in a closed segment");
        let head = self.window(header_len)?.ok_or_else(torn)?;
        let header = RecordBatchHeader::parse(&head)
            .map_err(|e| StorageError::corrupt(path, format!("batch header: {e}")))?;
        let size = header.total_size();
        if self.pos + size as u64 > self.end {
            return Err(torn());
        }
        let batch = self.window(size)?.ok_or_else(torn)?;
        sluice_protocol::records::verify_crc(&batch)
            .map_err(|e| StorageError::corrupt(path, e.to_string()))?;
        let position = self.pos;
        self.pos += size as u64;
        Ok(Some((header, position, batch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(base_offset: i64, size: u64, ts: i64) -> CleanStat {
        CleanStat {
            base_offset,
            size,
            largest_timestamp: ts,
            first_batch_timestamp: ts,
        }
    }

    fn compact(ratio: f64, min_lag: i64, max_lag: i64) -> LogConfig {
        LogConfig {
            compact: true,
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: min_lag,
            max_compaction_lag_ms: max_lag,
            ..Default::default()
        }
    }

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        let c = CleanerCheckpoint {
            first_dirty_offset: 42,
            tombstone_expiry_ms: 1_234,
        };
        assert_eq!(CleanerCheckpoint::decode(&c.encode()), Some(c));
        for bad in ["", "1\nfirst-dirty-offset 1\n", "0\nfirst-dirty-offset 1\n"] {
            assert_eq!(CleanerCheckpoint::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn plan_table() {
        let now = 100_000;
        // Four segments of 100 offsets, 1000 bytes, timestamps 1000; the last is active.
        let segs: Vec<CleanStat> = (0..4).map(|i| stat(i * 100, 1000, 1_000)).collect();
        type Case = (
            &'static str,
            i64,
            i64,
            i64,
            LogConfig,
            Option<(usize, CleanReason)>,
        );
        let cases: Vec<Case> = vec![
            ("not compacted", 0, 400, -1, LogConfig::default(), None),
            (
                "all dirty",
                0,
                400,
                -1,
                compact(0.5, 0, i64::MAX),
                Some((3, CleanReason::DirtyRatio)),
            ),
            (
                "HW inside segment 2",
                0,
                250,
                -1,
                compact(0.5, 0, i64::MAX),
                Some((2, CleanReason::DirtyRatio)),
            ),
            (
                "HW inside segment 0",
                0,
                50,
                -1,
                compact(0.5, 0, i64::MAX),
                None,
            ),
            // 2000 clean, 1000 dirty: ratio 1/3.
            ("ratio below", 200, 400, -1, compact(0.5, 0, i64::MAX), None),
            (
                "ratio above",
                200,
                400,
                -1,
                compact(0.3, 0, i64::MAX),
                Some((3, CleanReason::DirtyRatio)),
            ),
            (
                "nothing dirty",
                300,
                400,
                -1,
                compact(0.0, 0, i64::MAX),
                None,
            ),
            (
                "max lag forces",
                200,
                400,
                -1,
                compact(0.9, 0, 50_000),
                Some((3, CleanReason::MaxCompactionLag)),
            ),
            (
                "max lag not yet",
                200,
                400,
                -1,
                compact(0.9, 0, 99_500),
                None,
            ),
            (
                "tombstones due",
                300,
                400,
                90_000,
                compact(0.5, 0, i64::MAX),
                Some((3, CleanReason::TombstonesDue)),
            ),
            (
                "tombstones not yet",
                300,
                400,
                100_001,
                compact(0.5, 0, i64::MAX),
                None,
            ),
            // min lag: dirty segments newer than the lag stop the range.
            (
                "min lag blocks all dirty",
                0,
                400,
                -1,
                compact(0.5, 99_500, i64::MAX),
                None,
            ),
            (
                "min lag passed",
                0,
                400,
                -1,
                compact(0.5, 99_000, i64::MAX),
                Some((3, CleanReason::DirtyRatio)),
            ),
        ];
        for (name, first_dirty, hw, expiry, cfg, want) in cases {
            let got = plan(&segs, first_dirty, hw, expiry, &cfg, now).map(|p| (p.end, p.reason));
            assert_eq!(got, want, "{name}");
        }
        // min lag with a recent dirty segment in the middle: the range stops before it.
        let mut mixed = segs.clone();
        mixed[1].largest_timestamp = now - 10;
        let p = plan(&mixed, 0, 400, -1, &compact(0.0, 1_000, i64::MAX), now).unwrap();
        assert_eq!((p.end, p.clean_bytes, p.dirty_bytes), (1, 0, 1000));
        // ... but clean segments are cleaned whatever their age.
        let p = plan(&mixed, 200, 400, -1, &compact(0.0, 1_000, i64::MAX), now).unwrap();
        assert_eq!((p.end, p.clean_bytes, p.dirty_bytes), (3, 2000, 1000));
        // A lone active segment is never cleaned.
        assert_eq!(plan(&segs[..1], 0, 400, 0, &compact(0.0, 0, 1), now), None);
    }

    #[test]
    fn offset_map_keeps_latest_and_counts_bytes() {
        let mut m = OffsetMap::default();
        m.insert(b"a", 1);
        m.insert(b"bb", 2);
        m.insert(b"a", 5);
        assert_eq!(
            (m.latest(b"a"), m.latest(b"bb"), m.latest(b"c")),
            (Some(5), Some(2), None)
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m.bytes(), 3 + 2 * MAP_ENTRY_OVERHEAD);
    }
}
