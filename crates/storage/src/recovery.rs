//! Opening a partition directory: find the segments, read the checkpoints, and after an
//! unclean stop recover every segment from the recovery point on (CRC-check each batch,
//! truncate at the first torn or corrupt one, drop later segments, rebuild indexes).
//!
//! After a clean shutdown (the marker file exists) only the tail of the last segment, the
//! bytes after its last index entry, is checked; a segment whose index files look wrong is
//! recovered in full either way.
//!
//! Compaction leftovers: `.cleaned` files are a rewrite that never got swapped in and are
//! deleted (the original is intact). A crash during the swap itself leaves either the old
//! or the new `.log` (the rename is the commit point) with its index files missing, which
//! rebuilds them from that log; see `log/compact.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::{
    self, OffsetsCheckpoint, CLEAN_SHUTDOWN_FILE, EPOCH_FILE, OFFSETS_FILE, TMP_SUFFIX,
};
use crate::config::LogConfig;
use crate::epoch_cache::LeaderEpochCache;
use crate::error::{IoContext, StorageError};
use crate::fileio::{parse_segment_file, sync_dir, CLEANED_SUFFIX};
use crate::segment::Segment;

/// Everything `PartitionLog::open` starts from.
pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub recovery_point: i64,
    pub epochs: LeaderEpochCache,
    /// The epoch cache differs from its checkpoint and must be written.
    pub epochs_changed: bool,
}

/// Lists segment base offsets, deleting leftovers: temp files of interrupted checkpoint
/// writes, `.cleaned` files of an interrupted compaction, and index files whose log is
/// gone (a deletion interrupted half-way).
fn scan_dir(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = parse_segment_file(&name, "log") {
            logs.insert(base);
        } else if let Some(base) =
            parse_segment_file(&name, "index").or_else(|| parse_segment_file(&name, "timeindex"))
        {
            indexes.push((base, entry.path()));
        } else if name.ends_with(TMP_SUFFIX) {
            remove(&entry.path())?;
        } else if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(path = %entry.path().display(), "removing an interrupted compaction's file");
            remove(&entry.path())?;
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            tracing::debug!(path = %path.display(), "removing orphan index");
            remove(&path)?;
        }
    }
    Ok(logs.into_iter().collect())
}

fn remove(path: &Path) -> Result<(), StorageError> {
    std::fs::remove_file(path).ctx(|| format!("remove {}", path.display()))
}

fn read_checkpoints(
    dir: &Path,
) -> Result<(Option<OffsetsCheckpoint>, Option<LeaderEpochCache>), StorageError> {
    let offsets = checkpoint::read_optional(dir, OFFSETS_FILE)?.and_then(|t| {
        let c = OffsetsCheckpoint::decode(&t);
        if c.is_none() {
            tracing::warn!(dir = %dir.display(), "malformed offsets checkpoint ignored");
        }
        c
    });
    let epochs = checkpoint::read_optional(dir, EPOCH_FILE)?.and_then(|t| {
        let c = LeaderEpochCache::decode(&t);
        if c.is_none() {
            tracing::warn!(dir = %dir.display(), "malformed leader-epoch checkpoint ignored");
        }
        c
    });
    Ok((offsets, epochs))
}

pub(crate) fn load(dir: &Path, config: &LogConfig, now_ms: i64) -> Result<Loaded, StorageError> {
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    let bases = scan_dir(dir)?;
    let (offsets, epochs) = read_checkpoints(dir)?;
    let mut epochs_changed = epochs.is_none();
    let mut epochs = epochs.unwrap_or_default();
    let recovery_point = offsets.map_or(0, |c| c.recovery_point);
    let interval = config.index_interval_bytes.max(0) as u64;
    tracing::debug!(dir = %dir.display(), clean, segments = bases.len(), recovery_point, "loading log");

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    let mut sound = Vec::with_capacity(bases.len());
    for &base in &bases {
        let (seg, ok) = Segment::open(dir, base, now_ms)?;
        if !ok {
            tracing::warn!(dir = %dir.display(), base, "index files corrupt, rebuilding from the log");
        }
        segments.push(Arc::new(seg));
        sound.push(ok);
    }

    let mut expected = segments.first().map_or(0, |s| s.base_offset());
    let mut i = 0;
    while i < segments.len() {
        let seg = Arc::clone(&segments[i]);
        let next_base = segments.get(i + 1).map(|s| s.base_offset());
        // Kafka's `logSegments(recoveryPoint, MaxValue)`: segments holding any offset at
        // or above the recovery point, which always includes the last one.
        let unflushed = next_base.is_none_or(|b| b > recovery_point);
        let mut recover = !sound[i] || (!clean && unflushed);
        if !recover && next_base.is_none() {
            // Clean shutdown: the tail must still hold whole, valid batches.
            recover = !seg.load_tail(true)?;
        }
        if recover {
            let rec = seg.recover(expected, interval, &mut |b| {
                epochs_changed |= epochs.assign_if_newer(b.leader_epoch, b.base_offset);
            })?;
            tracing::debug!(segment = %seg.log_path().display(), valid_bytes = rec.valid_bytes, "segment recovered");
            expected = rec.next_offset;
            if rec.truncated_bytes > 0 {
                tracing::warn!(
                    segment = %seg.log_path().display(), truncated_bytes = rec.truncated_bytes,
                    later_segments = segments.len() - i - 1, "recovery truncated the log"
                );
                for later in segments.drain(i + 1..) {
                    later.delete_files()?;
                }
            }
        } else if let Some(b) = next_base {
            seg.set_next_offset_hint(b);
            expected = b;
        } else {
            expected = seg.meta().next_offset;
        }
        i += 1;
    }

    let checkpoint_lso = offsets.map_or(0, |c| c.log_start_offset);
    let mut log_end_offset = segments
        .last()
        .map_or(checkpoint_lso, |s| s.meta().next_offset);
    let first_base = segments.first().map(|s| s.base_offset());
    let log_start_offset = checkpoint_lso.max(first_base.unwrap_or(checkpoint_lso));
    if segments.is_empty() || log_end_offset < log_start_offset {
        // Nothing left, or everything left is below the checkpointed start (data lost in
        // a crash after DeleteRecords): start afresh at the log start offset, as Kafka does,
        // so offsets below it are never handed out again.
        if !segments.is_empty() {
            tracing::warn!(dir = %dir.display(), log_end_offset, log_start_offset, "log ends before its start offset, starting afresh");
        }
        for seg in segments.drain(..) {
            seg.delete_files()?;
        }
        segments.push(Arc::new(Segment::create(dir, log_start_offset, now_ms)?));
        log_end_offset = log_start_offset;
        epochs_changed |= epochs.truncate_from_end(log_start_offset);
    }
    epochs_changed |= epochs.truncate_from_end(log_end_offset);
    epochs_changed |= epochs.truncate_from_start(log_start_offset);

    let high_watermark = offsets
        .map_or(0, |c| c.high_watermark)
        .max(log_start_offset)
        .min(log_end_offset);
    // After an unclean stop the recovered data may still sit only in the page cache, so
    // the recovery point stays where it was (Kafka does the same).
    let recovery_point = if clean {
        log_end_offset
    } else {
        recovery_point.max(log_start_offset).min(log_end_offset)
    };
    if clean {
        // From here on a crash must be detected as unclean.
        remove(&marker)?;
    }
    sync_dir(dir)?;
    Ok(Loaded {
        segments,
        log_start_offset,
        log_end_offset,
        high_watermark,
        recovery_point,
        epochs,
        epochs_changed,
    })
}
