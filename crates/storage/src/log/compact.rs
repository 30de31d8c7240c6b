//! One compaction pass over a partition log ([`PartitionLog::compact`]): plan, build the
//! key map, rewrite each cleanable segment into `.cleaned` files, swap them in.
//!
//! The reading and writing run without the log's write lock (appends and reads go on);
//! only the swap of each segment takes it, after checking that the segment is still in
//! the log and nothing was truncated meanwhile. A rewrite replaces its segment one for
//! one under the same base offset, so offsets, the log start offset, the high watermark
//! and the leader-epoch cache never change; a segment left empty is deleted (the first
//! one stays, empty, so the log start offset keeps a segment).
//!
//! Crash safety of the swap, step by step (the directory is fsynced after each):
//! 1. the `.cleaned` log and indexes are complete and fsynced;
//! 2. the old `.index` / `.timeindex` are deleted: a crash now reopens the old log
//!    and rebuilds its indexes;
//! 3. `<base>.log.cleaned` is renamed over `<base>.log`, the commit point: a crash
//!    now reopens the new log and rebuilds its indexes;
//! 4. the `.cleaned` indexes are renamed into place.
//!
//! Opening deletes any `.cleaned` leftovers (see `recovery.rs`). Readers holding the
//! old segment keep reading its (unlinked) file and see the old, complete data; the new
//! segment list is published only once the new segment is open.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_protocol::records::RecordBatchHeader;

use super::{Inner, PartitionLog};
use crate::batches::BatchInfo;
use crate::checkpoint;
use crate::compaction::{
    self, AbortedRanges, CleanReason, CleanStat, CleanerCheckpoint, FilterStats, Filtered,
    OffsetMap, SegmentBatches, CLEANER_CHECKPOINT_FILE, MAX_MAP_BYTES,
};
use crate::error::{IoContext, StorageError};
use crate::fileio::{cleaned_file, segment_file, sync_dir};
use crate::locks;
use crate::segment::Segment;

/// Output bytes gathered before one write to the cleaned segment.
const WRITE_CHUNK: usize = 1024 * 1024;

/// What [`PartitionLog::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    /// Why the pass ran; `None` if nothing was due (or the log is not compacted).
    pub reason: Option<CleanReason>,
    /// Segments examined by the pass.
    pub segments_cleaned: usize,
    /// Segments replaced by a smaller rewrite.
    pub segments_rewritten: usize,
    /// Segments deleted because no record in them survived.
    pub segments_deleted: usize,
    /// Records removed, tombstones included.
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Size of the examined segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Keys in the map built from the dirty section.
    pub keys_mapped: usize,
    /// The first dirty offset after the pass (everything below has been cleaned).
    pub first_dirty_offset: i64,
}

/// How one segment came out of cleaning.
enum Cleaned {
    /// Nothing to remove: the segment stays as it is.
    Unchanged,
    /// No record survived and no file was written.
    Empty,
    /// `.cleaned` files hold the rewrite (possibly empty, for the first segment).
    Rewritten,
}

/// How the swap went.
enum Swapped {
    /// The rewrite is in place; its size.
    Replaced(u64),
    /// The emptied segment is gone.
    Deleted,
    /// The log changed since the pass began; nothing was swapped.
    Abandoned,
}

/// What cleaning one segment needs to know.
struct CleanJob<'a> {
    map: &'a OffsetMap,
    aborted: &'a AbortedRanges,
    /// The segment is past `delete.retention.ms`: its latest-for-key tombstones go too.
    drop_tombstones: bool,
    /// Write an empty rewrite rather than report [`Cleaned::Empty`] (the first segment
    /// stays so that the log start offset keeps a segment).
    keep_empty: bool,
    interval: u64,
    now_ms: i64,
}

/// Accumulates batches and writes them to the `.cleaned` segment.
struct CleanedWriter {
    seg: Segment,
    buf: Vec<u8>,
    infos: Vec<BatchInfo>,
    interval: u64,
    now_ms: i64,
}

impl CleanedWriter {
    fn create(dir: &Path, base: i64, job: &CleanJob<'_>) -> Result<Self, StorageError> {
        Ok(Self {
            seg: Segment::create_cleaned(dir, base, job.now_ms)?,
            buf: Vec::new(),
            infos: Vec::new(),
            interval: job.interval,
            now_ms: job.now_ms,
        })
    }

    fn push(&mut self, header: &RecordBatchHeader, batch: &[u8]) -> Result<(), StorageError> {
        self.infos
            .push(BatchInfo::from_header(header, self.buf.len() as u64));
        self.buf.extend_from_slice(batch);
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), StorageError> {
        if !self.infos.is_empty() {
            self.seg
                .append(&self.buf, &self.infos, self.interval, self.now_ms)?;
        }
        self.buf.clear();
        self.infos.clear();
        Ok(())
    }

    /// Writes the rest, records the final time-index entry, keeps the original's
    /// last-modified time and fsyncs.
    fn finish(mut self, last_modified_ms: i64) -> Result<u64, StorageError> {
        self.write_out()?;
        self.seg.on_inactive()?;
        self.seg.set_last_modified(last_modified_ms)?;
        self.seg.flush()?;
        Ok(self.seg.size())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("delete {}", path.display())),
    }
}

/// Best effort: drops an abandoned rewrite (opening deletes leftovers anyway).
fn discard_cleaned(dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex"] {
        if let Err(err) = remove_if_exists(&cleaned_file(dir, base, ext)) {
            tracing::warn!(%err, "could not remove a compaction leftover");
        }
    }
}

/// Steps 2-4 of the swap described in the module docs.
fn swap_files(dir: &Path, base: i64) -> Result<(), StorageError> {
    for ext in ["index", "timeindex"] {
        remove_if_exists(&segment_file(dir, base, ext))?;
    }
    sync_dir(dir)?;
    let rename = |ext: &str| {
        let (from, to) = (cleaned_file(dir, base, ext), segment_file(dir, base, ext));
        std::fs::rename(&from, &to).ctx(|| format!("rename {} to {}", from.display(), to.display()))
    };
    rename("log")?;
    sync_dir(dir)?;
    rename("index")?;
    rename("timeindex")?;
    sync_dir(dir)
}

impl PartitionLog {
    /// Runs one compaction pass if the log is compacted and a pass is due (see
    /// [`crate::compaction`] for the rules). Returns what it did; a default outcome
    /// (`reason: None`) means nothing was due.
    pub fn compact(&self, now_ms: i64) -> Result<CompactionOutcome, StorageError> {
        let _cleaning = locks::lock(&self.cleaner_lock);
        // Cleaning stops at the last stable offset, as Kafka's first uncleanable offset:
        // below it every transaction is decided, so the aborted ones are all known.
        let hw = self.last_stable_offset();
        let (config, generation, state, segments, aborted) = {
            let inner = self.lock_open()?;
            (
                inner.config.clone(),
                inner.generation,
                inner.cleaner,
                inner.segments.clone(),
                AbortedRanges::new(&inner.producers.aborted_between(i64::MIN, hw)),
            )
        };
        let mut outcome = CompactionOutcome::default();
        if !config.compact {
            return Ok(outcome);
        }
        let lso = self.log_start_offset();
        let leo = self.log_end_offset();
        // Kafka: a checkpoint outside the log (data lost, or the start moved past it)
        // means cleaning from the start.
        let first_dirty = if state.first_dirty_offset < lso || state.first_dirty_offset > leo {
            lso
        } else {
            state.first_dirty_offset
        };
        outcome.first_dirty_offset = first_dirty;
        let lag_matters = config.max_compaction_lag_ms < i64::MAX;
        let mut stats = Vec::with_capacity(segments.len());
        for (i, s) in segments.iter().enumerate() {
            let dirty = segments
                .get(i + 1)
                .is_none_or(|n| n.base_offset() > first_dirty);
            stats.push(CleanStat {
                base_offset: s.base_offset(),
                size: s.size(),
                largest_timestamp: s.meta().largest_timestamp(),
                first_batch_timestamp: if dirty && lag_matters {
                    s.first_batch_timestamp()?
                } else {
                    -1
                },
            });
        }
        let Some(plan) = compaction::plan(
            &stats,
            first_dirty,
            hw,
            state.tombstone_expiry_ms,
            &config,
            now_ms,
        ) else {
            return Ok(outcome);
        };
        outcome.reason = Some(plan.reason);

        let (map, map_end) = self.build_map(&segments, first_dirty, hw, &aborted)?;
        outcome.keys_mapped = map.len();
        // Clean only what the map covers, in whole segments (the map always covers the
        // clean section and the first dirty segment).
        let end = (0..plan.end)
            .take_while(|&i| stats[i + 1].base_offset <= map_end)
            .count();
        tracing::debug!(
            dir = %self.dir.display(), reason = ?plan.reason, segments = end, first_dirty,
            dirty_bytes = plan.dirty_bytes, clean_bytes = plan.clean_bytes, keys = map.len(),
            "compacting"
        );

        let interval = config.index_interval_bytes.max(0) as u64;
        let mut tombstone_expiry = i64::MAX;
        for (i, seg) in segments.iter().enumerate().take(end) {
            let last_modified = seg.meta().last_modified_ms;
            let drop_tombstones = now_ms.saturating_sub(last_modified) > config.delete_retention_ms;
            let mut filtered = FilterStats::default();
            let job = CleanJob {
                map: &map,
                aborted: &aborted,
                drop_tombstones,
                keep_empty: i == 0,
                interval,
                now_ms,
            };
            let cleaned = self.clean_segment(seg, &job, &mut filtered)?;
            outcome.segments_cleaned += 1;
            outcome.bytes_before += seg.size();
            if filtered.tombstones_kept > 0 {
                // The first moment `drop_tombstones` holds for this segment.
                let expiry = last_modified
                    .saturating_add(config.delete_retention_ms)
                    .saturating_add(1);
                tombstone_expiry = tombstone_expiry.min(expiry);
            }
            let size_after = match cleaned {
                Cleaned::Unchanged => seg.size(),
                Cleaned::Empty | Cleaned::Rewritten => {
                    match self.swap_in(
                        seg,
                        matches!(cleaned, Cleaned::Empty),
                        generation,
                        interval,
                        now_ms,
                    )? {
                        Swapped::Replaced(size) => {
                            outcome.segments_rewritten += 1;
                            size
                        }
                        Swapped::Deleted => {
                            outcome.segments_deleted += 1;
                            0
                        }
                        Swapped::Abandoned => {
                            // Truncated, retained away or closed meanwhile: stop here.
                            discard_cleaned(&self.dir, seg.base_offset());
                            tracing::debug!(dir = %self.dir.display(), "log changed under the cleaner, pass abandoned");
                            return Ok(outcome);
                        }
                    }
                }
            };
            outcome.bytes_after += size_after;
            outcome.records_removed += filtered.records_removed;
            outcome.tombstones_removed += filtered.tombstones_removed;
        }

        let next = CleanerCheckpoint {
            first_dirty_offset: stats
                .get(end)
                .map_or(first_dirty, |s| s.base_offset)
                .max(first_dirty),
            tombstone_expiry_ms: if tombstone_expiry == i64::MAX {
                -1
            } else {
                tombstone_expiry
            },
        };
        let mut inner = self.lock_open()?;
        if inner.generation == generation {
            self.set_cleaner_checkpoint(&mut inner, next)?;
            outcome.first_dirty_offset = next.first_dirty_offset;
        }
        tracing::debug!(dir = %self.dir.display(), ?outcome, "compaction done");
        Ok(outcome)
    }

    /// The latest offset of each key in `[first_dirty, hw)` outside aborted transactions,
    /// and where the map stops: `hw`, or the base offset of the segment at which it
    /// outgrew [`MAX_MAP_BYTES`].
    fn build_map(
        &self,
        segments: &[Arc<Segment>],
        first_dirty: i64,
        hw: i64,
        aborted: &AbortedRanges,
    ) -> Result<(OffsetMap, i64), StorageError> {
        let mut map = OffsetMap::default();
        let mut scanned_any = false;
        for (i, seg) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map(|s| s.base_offset());
            if next_base.is_some_and(|b| b <= first_dirty) {
                continue;
            }
            if seg.base_offset() >= hw {
                break;
            }
            if scanned_any && map.bytes() > MAX_MAP_BYTES {
                return Ok((map, seg.base_offset()));
            }
            scanned_any = true;
            let mut batches = SegmentBatches::new(seg, 0, seg.size());
            while let Some((header, _, batch)) = batches.next_batch()? {
                if header.last_offset() < first_dirty {
                    continue;
                }
                if header.base_offset >= hw {
                    break;
                }
                if aborted.contains(&header) {
                    continue;
                }
                compaction::map_keys(&mut map, &batch, &header, hw);
            }
        }
        Ok((map, hw))
    }

    /// Filters every batch of `seg` into `.cleaned` files, which are only created once
    /// something is removed (the batches before that are then copied over).
    fn clean_segment(
        &self,
        seg: &Segment,
        job: &CleanJob<'_>,
        stats: &mut FilterStats,
    ) -> Result<Cleaned, StorageError> {
        let mut writer: Option<CleanedWriter> = None;
        let mut batches = SegmentBatches::new(seg, 0, seg.size());
        while let Some((header, position, batch)) = batches.next_batch()? {
            let filtered = compaction::filter_batch(
                &batch,
                &header,
                job.map,
                job.aborted,
                job.drop_tombstones,
                stats,
            )?;
            if writer.is_none() && matches!(filtered, Filtered::Unchanged) {
                continue;
            }
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    // The first change: start the rewrite with the batches before it.
                    let mut w = CleanedWriter::create(&self.dir, seg.base_offset(), job)?;
                    let mut before = SegmentBatches::new(seg, 0, position);
                    while let Some((h, _, b)) = before.next_batch()? {
                        w.push(&h, &b)?;
                    }
                    writer.insert(w)
                }
            };
            match filtered {
                Filtered::Unchanged => w.push(&header, &batch)?,
                Filtered::Dropped => {}
                Filtered::Rewritten(b) => {
                    let h = RecordBatchHeader::parse(&b)?;
                    w.push(&h, &b)?;
                }
            }
        }
        let Some(w) = writer else {
            return Ok(Cleaned::Unchanged);
        };
        let written = w.finish(seg.meta().last_modified_ms)?;
        if written == 0 && !job.keep_empty {
            discard_cleaned(&self.dir, seg.base_offset());
            return Ok(Cleaned::Empty);
        }
        Ok(Cleaned::Rewritten)
    }

    /// Replaces `old` with its `.cleaned` rewrite, or deletes it if `empty`, under the
    /// write lock, provided the log still holds it as a closed segment and was not
    /// truncated since the pass began.
    fn swap_in(
        &self,
        old: &Arc<Segment>,
        empty: bool,
        generation: u64,
        interval: u64,
        now_ms: i64,
    ) -> Result<Swapped, StorageError> {
        let mut inner = self.lock_open()?;
        let Some(idx) = inner.segments.iter().position(|s| Arc::ptr_eq(s, old)) else {
            return Ok(Swapped::Abandoned);
        };
        // Abandoned too: an emptied segment that became the first (retention removed the
        // ones before it), since the log start offset must keep a segment.
        if inner.generation != generation || idx + 1 >= inner.segments.len() || (empty && idx == 0)
        {
            return Ok(Swapped::Abandoned);
        }
        if empty {
            inner.segments.remove(idx);
            self.publish(&inner);
            old.delete_files()?;
            return Ok(Swapped::Deleted);
        }
        let base = old.base_offset();
        swap_files(&self.dir, base)?;
        let new = Arc::new(self.open_swapped(base, interval, now_ms)?);
        // Offsets up to the next segment belong to this one (gaps included), as
        // recovery assumes for every closed segment.
        new.set_next_offset_hint(new.meta().next_offset.max(old.meta().next_offset));
        let size = new.size();
        inner.segments[idx] = new;
        self.publish(&inner);
        Ok(Swapped::Replaced(size))
    }

    /// Opens a swapped-in segment as recovery would.
    fn open_swapped(&self, base: i64, interval: u64, now_ms: i64) -> Result<Segment, StorageError> {
        let (seg, sound) = Segment::open(&self.dir, base, now_ms)?;
        if !sound || !seg.load_tail(true)? {
            seg.recover(base, interval, &mut |_| {})?;
        }
        Ok(seg)
    }

    /// Stores and persists the cleaner checkpoint (under the write lock, so truncation,
    /// which lowers it, cannot interleave).
    pub(super) fn set_cleaner_checkpoint(
        &self,
        inner: &mut Inner,
        next: CleanerCheckpoint,
    ) -> Result<(), StorageError> {
        if inner.cleaner == next || self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        checkpoint::write_atomic(&self.dir, CLEANER_CHECKPOINT_FILE, next.encode().as_bytes())?;
        inner.cleaner = next;
        Ok(())
    }

    /// After truncation to `end`: data at or above it is new, hence dirty (Kafka's
    /// `maybeTruncateCheckpoint`).
    pub(super) fn lower_cleaner_checkpoint(
        &self,
        inner: &mut Inner,
        end: i64,
    ) -> Result<(), StorageError> {
        if inner.cleaner.first_dirty_offset > end {
            let next = CleanerCheckpoint {
                first_dirty_offset: end,
                ..inner.cleaner
            };
            self.set_cleaner_checkpoint(inner, next)?;
        }
        Ok(())
    }
}

/// Reads the cleaner checkpoint of a partition directory (default if absent or bad).
pub(super) fn read_cleaner_checkpoint(dir: &Path) -> Result<CleanerCheckpoint, StorageError> {
    Ok(checkpoint::read_optional(dir, CLEANER_CHECKPOINT_FILE)?
        .and_then(|t| {
            let c = CleanerCheckpoint::decode(&t);
            if c.is_none() {
                tracing::warn!(dir = %dir.display(), "malformed cleaner checkpoint ignored");
            }
            c
        })
        .unwrap_or_default())
}
