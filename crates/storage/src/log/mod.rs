//! [`PartitionLog`]: one partition's log (appends, reads, offsets, truncation, retention,
//! compaction, flushing, checkpoints), synchronous and safe to share between threads.
//!
//! Locking: one mutex (`inner`) serialises everything that changes the log (appends,
//! rolls, truncation, retention, DeleteRecords). Readers never take it: they clone an
//! `Arc` of the current segment list (a brief read lock), load the offsets from atomics,
//! and read with positional I/O. A writer publishes a segment's new size only after the
//! bytes are written, and the new log end offset after that, so a reader only sees whole
//! batches. fsync runs outside `inner` (under its own `flush` lock) and does not stall
//! appends or reads; a roll only marks the finished segments for the next
//! `maybe_flush`. Checkpoint writes by retention and DeleteRecords still happen in the
//! caller's thread, under `inner`. Compaction reads and rewrites outside `inner` (one
//! pass at a time, under `cleaner_lock`) and takes it only to swap a segment in.
//!
//! Producer state ([`crate::producer_state`]) lives in `inner` too: a leader append
//! validates against it and updates it under the same lock as the write, so checking a
//! sequence and storing the batch are one step. The first offset of an undecided
//! transaction is published in an atomic beside the high watermark, so readers get the
//! last stable offset without the lock; both are updated under `inner`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;

use crate::compaction::CleanerCheckpoint;
use crate::config::LogConfig;
use crate::epoch_cache::{EpochEntry, LeaderEpochCache};
use crate::error::StorageError;
use crate::locks;
use crate::producer_state::{self, ProducerSnapshotEntry, ProducerState};
use crate::recovery;
use crate::segment::Segment;
use crate::transactions::AbortedTxn;

mod append;
mod compact;
mod delete;
mod durability;
mod read;

pub use compact::CompactionOutcome;

/// What an append stored.
///
/// For a leader append of one idempotent batch that the log already holds (a producer's
/// retry: same producer id, epoch and sequence range as one of its last 5 batches),
/// nothing is written and `duplicate` is set: `first_offset` and `last_offset` are then
/// the original batch's, `max_timestamp` its max timestamp (`offset_of_max_timestamp` its
/// last offset), `batch_count` and `size_bytes` 0, and the log start / end offsets the
/// current ones (as Kafka answers a duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest batch `maxTimestamp` among the appended batches (-1 if none has one).
    pub max_timestamp: i64,
    /// Offset recorded for `max_timestamp`: in the first batch carrying it, its last
    /// offset (CreateTime) or its first (LogAppendTime). -1 if no timestamp.
    pub offset_of_max_timestamp: i64,
    pub log_start_offset: i64,
    /// Log end offset after the append (`last_offset + 1`).
    pub log_end_offset: i64,
    pub batch_count: usize,
    pub size_bytes: usize,
    /// The batch was a retry of one already in the log; nothing was appended.
    pub duplicate: bool,
}

/// Whole batches returned by [`PartitionLog::read`], with the log's offsets at read time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// What [`PartitionLog::apply_retention`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    /// Segments deleted because of `retention.ms`, `retention.bytes`, and because they lie
    /// wholly below the log start offset, respectively.
    pub deleted_by_time: usize,
    pub deleted_by_size: usize,
    pub deleted_by_start_offset: usize,
    /// The active segment was rolled (because of `segment.ms`, or to delete it).
    pub rolled: bool,
    pub log_start_offset: i64,
}

struct Inner {
    config: LogConfig,
    /// Oldest first; the last one is the active segment. Never empty.
    segments: Vec<Arc<Segment>>,
    epochs: LeaderEpochCache,
    /// The epoch checkpoint on disk is stale (a write failed); retried at the next flush.
    epochs_dirty: bool,
    last_flush_ms: i64,
    /// Latest `now_ms` any call passed in (flush() takes no clock).
    last_now_ms: i64,
    /// Bumped by every truncation, so a flush that raced one does not advance the
    /// recovery point over data that was replaced.
    generation: u64,
    /// Segment files were created since the directory was last fsynced.
    dir_dirty: bool,
    /// The cleaner's progress, as in `cleaner-offset-checkpoint`.
    cleaner: CleanerCheckpoint,
    /// Idempotent producers' epochs and last batches, as of the log end offset.
    producers: ProducerState,
}

/// One partition's log. See the module docs for the concurrency model.
pub struct PartitionLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
    view: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    high_watermark: AtomicI64,
    /// The producer state's first unstable offset (`i64::MAX`: none), see
    /// [`PartitionLog::last_stable_offset`].
    first_unstable_offset: AtomicI64,
    /// Whether the producer state remembers any aborted transaction: read_committed
    /// fetches (librdkafka's default) of a partition that never had one skip the lock.
    has_aborted: AtomicBool,
    recovery_point: AtomicI64,
    flush_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
    closed: AtomicBool,
    /// The directory is gone: flushes and checkpoints become no-ops.
    deleted: AtomicBool,
    /// Base offset of the newest segment rolled since the last flush (-1: none). The
    /// segments below it are fsynced by the next [`PartitionLog::maybe_flush`], off the
    /// appending thread (Kafka also flushes rolled segments asynchronously).
    pending_roll_flush: AtomicI64,
    /// Held for a whole compaction pass, so passes on one log never overlap.
    cleaner_lock: Mutex<()>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .field("high_watermark", &self.high_watermark())
            .finish()
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (creating it if needed), recovering it after an unclean stop.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Self, StorageError> {
        config.validate()?;
        let loaded = recovery::load(dir, &config, now_ms)?;
        let cleaner = compact::read_cleaner_checkpoint(dir)?;
        let mut producers = producer_state::rebuild(
            dir,
            &loaded.segments,
            loaded.log_start_offset,
            loaded.log_end_offset,
        )?;
        producers.remove_expired(now_ms, config.producer_id_expiration_ms);
        producers.on_high_watermark(loaded.high_watermark);
        let first_unstable = producers.first_unstable_offset().unwrap_or(i64::MAX);
        let has_aborted = producers.aborted_count() > 0;
        let log = Self {
            dir: dir.to_path_buf(),
            view: RwLock::new(Arc::new(loaded.segments.clone())),
            log_start_offset: AtomicI64::new(loaded.log_start_offset),
            log_end_offset: AtomicI64::new(loaded.log_end_offset),
            high_watermark: AtomicI64::new(loaded.high_watermark),
            first_unstable_offset: AtomicI64::new(first_unstable),
            has_aborted: AtomicBool::new(has_aborted),
            recovery_point: AtomicI64::new(loaded.recovery_point),
            inner: Mutex::new(Inner {
                config,
                segments: loaded.segments,
                epochs: loaded.epochs,
                epochs_dirty: loaded.epochs_changed,
                last_flush_ms: now_ms,
                last_now_ms: now_ms,
                generation: 0,
                dir_dirty: false,
                cleaner,
                producers,
            }),
            flush_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            pending_roll_flush: AtomicI64::new(-1),
            cleaner_lock: Mutex::new(()),
        };
        {
            let mut inner = locks::lock(&log.inner);
            log.write_epoch_checkpoint(&mut inner)?;
        }
        log.write_offsets_checkpoint()?;
        tracing::debug!(
            dir = %dir.display(),
            log_start_offset = loaded.log_start_offset,
            log_end_offset = loaded.log_end_offset,
            "log opened"
        );
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        locks::lock(&self.inner).config.clone()
    }

    /// Replaces the config (AlterConfigs); takes effect from the next append or retention run.
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        locks::lock(&self.inner).config = config;
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Sets the high watermark, clamped to `[log start offset, log end offset]`; returns
    /// the value stored. It is checkpointed by the next flush, close or
    /// [`Self::write_checkpoints`].
    pub fn set_high_watermark(&self, high_watermark: i64) -> i64 {
        let mut inner = locks::lock(&self.inner);
        let hw = high_watermark
            .min(self.log_end_offset())
            .max(self.log_start_offset());
        self.high_watermark.store(hw, Ordering::Release);
        self.refresh_stable(&mut inner);
        hw
    }

    /// Moves the high watermark forward to `high_watermark` (clamped to the log end),
    /// never back: concurrent appenders may report their end offsets out of order.
    /// Returns the value now stored.
    pub fn advance_high_watermark(&self, high_watermark: i64) -> i64 {
        let mut inner = locks::lock(&self.inner);
        let hw = high_watermark
            .min(self.log_end_offset())
            .max(self.high_watermark.load(Ordering::Acquire));
        self.high_watermark.store(hw, Ordering::Release);
        self.refresh_stable(&mut inner);
        hw
    }

    /// The last stable offset (KIP-98): the high watermark, or the first offset of a
    /// transaction not yet decided below it if that is lower (never below the log start
    /// offset). `read_committed` consumers read only below it.
    pub fn last_stable_offset(&self) -> i64 {
        let first_unstable = self.first_unstable_offset.load(Ordering::Acquire);
        self.high_watermark()
            .min(first_unstable)
            .max(self.log_start_offset())
    }

    /// The aborted transactions with a record in `[from, upper)`, for a `read_committed`
    /// fetch of that range (Kafka's `collectAbortedTransactions`).
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        if !self.has_aborted_transactions() {
            return Vec::new();
        }
        locks::lock(&self.inner)
            .producers
            .aborted_between(from, upper)
    }

    /// Whether any aborted transaction is remembered (a lock-free check).
    pub fn has_aborted_transactions(&self) -> bool {
        self.has_aborted.load(Ordering::Acquire)
    }

    /// Lets the producer state see the current high watermark and republishes its first
    /// unstable offset; called under `inner` after anything that moves either.
    fn refresh_stable(&self, inner: &mut Inner) {
        inner.producers.on_high_watermark(self.high_watermark());
        let first = inner.producers.first_unstable_offset().unwrap_or(i64::MAX);
        self.first_unstable_offset.store(first, Ordering::Release);
        self.has_aborted
            .store(inner.producers.aborted_count() > 0, Ordering::Release);
    }

    /// Every offset below this is known to be on disk (fsynced).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.snapshot().iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.snapshot().len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.snapshot().iter().map(|s| s.base_offset()).collect()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&locks::read(&self.view))
    }

    fn publish(&self, inner: &Inner) {
        *locks::write(&self.view) = Arc::new(inner.segments.clone());
    }

    /// The write lock, refusing if the log was closed.
    fn lock_open(&self) -> Result<MutexGuard<'_, Inner>, StorageError> {
        let inner = locks::lock(&self.inner);
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed(self.dir.clone()));
        }
        Ok(inner)
    }

    fn active(inner: &Inner) -> Result<&Arc<Segment>, StorageError> {
        inner
            .segments
            .last()
            .ok_or_else(|| StorageError::corrupt(Path::new(""), "log has no segment"))
    }

    /// OffsetForLeaderEpoch (KIP-101/279): the largest epoch `<= epoch` and its end offset
    /// (the start of the next epoch, or the log end offset for the latest). `None` for
    /// undefined (an unknown future epoch, a negative one, or an empty cache).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let inner = locks::lock(&self.inner);
        inner.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that `epoch` starts at the current log end offset, as a new leader does
    /// on taking over (Kafka's `assign(leaderEpoch, logEndOffset)` in `makeLeader`), so
    /// OffsetForLeaderEpoch answers for the new epoch before its first append. Returns
    /// the epoch's start offset (the log end offset it was recorded at, or the existing
    /// start if the epoch was already known).
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<i64, StorageError> {
        let mut inner = self.lock_open()?;
        let leo = self.log_end_offset();
        if inner.epochs.assign(epoch, leo) {
            inner.epochs_dirty = true;
            self.try_write_epoch_checkpoint(&mut inner);
        }
        Ok(inner
            .epochs
            .entries()
            .iter()
            .find(|e| e.epoch == epoch)
            .map_or(leo, |e| e.start_offset))
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        locks::lock(&self.inner).epochs.latest_epoch()
    }

    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        locks::lock(&self.inner).epochs.entries().to_vec()
    }

    /// Every idempotent producer the log currently tracks, by producer id (for
    /// DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerSnapshotEntry> {
        locks::lock(&self.inner).producers.entries()
    }

    /// Marks the log closed without writing anything (its directory is being deleted).
    pub(crate) fn mark_deleted(&self) {
        let _inner = locks::lock(&self.inner);
        self.closed.store(true, Ordering::Release);
        self.deleted.store(true, Ordering::Release);
    }
}
