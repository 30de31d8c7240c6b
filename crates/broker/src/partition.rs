//! One partition replica hosted by this node: its log plus the high-watermark signal
//! that parked fetches wait on.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use sluice_storage::{AppendInfo, LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;

use crate::topic_config::TopicConfig;

/// A partition replica this node hosts. Until replication exists the high watermark is
/// the log end offset right after each append on the leader.
#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    pub log: PartitionLog,
    /// The current leader epoch from the metadata image, stamped into every batch this
    /// node appends as leader and checked against clients' `current_leader_epoch`.
    leader_epoch: AtomicI32,
    /// Publishes the high watermark. A fetch parked for `min_bytes` subscribes and wakes
    /// on the next change: event-driven, no timer polling.
    hw: watch::Sender<i64>,
}

/// Maps a topic's effective config onto the storage engine's settings.
pub fn log_config(cfg: &TopicConfig) -> LogConfig {
    let mut lc = LogConfig::default();
    // Int-typed Kafka configs are validated to fit an i32 before they are stored.
    let int = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
    lc.segment_bytes = int(cfg.segment_bytes);
    lc.segment_ms = cfg.segment_ms;
    lc.segment_index_bytes = int(cfg.segment_index_bytes);
    lc.index_interval_bytes = int(cfg.index_interval_bytes);
    lc.retention_ms = cfg.retention_ms;
    lc.retention_bytes = cfg.retention_bytes;
    lc.flush_messages = cfg.flush_messages;
    lc.flush_ms = cfg.flush_ms;
    lc.delete = cfg.delete();
    lc.compact = cfg.compact();
    lc.delete_retention_ms = cfg.delete_retention_ms;
    lc.min_compaction_lag_ms = cfg.min_compaction_lag_ms;
    lc.max_compaction_lag_ms = cfg.max_compaction_lag_ms;
    lc.min_cleanable_dirty_ratio = cfg.min_cleanable_dirty_ratio;
    lc
}

impl Partition {
    pub fn open(
        dir: &Path,
        index: i32,
        cfg: &TopicConfig,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let log = PartitionLog::open(dir, log_config(cfg), now_ms)?;
        // Single node: everything recovered is committed.
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        let (hw, _) = watch::channel(leo);
        Ok(Self {
            index,
            log,
            leader_epoch: AtomicI32::new(0),
            hw,
        })
    }

    /// Appends validated batches as leader, then publishes the new high watermark.
    pub fn append(&self, batches: &mut [u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        let info = self
            .log
            .append_as_leader(batches, self.leader_epoch(), now_ms)?;
        // Two connections appending to one partition can get here in either order; the
        // watermark only moves forward, or acknowledged records would hide from
        // consumers until the next append.
        let hw = self.log.advance_high_watermark(info.log_end_offset);
        self.hw.send_if_modified(|current| {
            let advanced = hw > *current;
            if advanced {
                *current = hw;
            }
            advanced
        });
        Ok(info)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Follows the metadata image's leader epoch for this partition.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Release);
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    /// A receiver that sees every later high-watermark change.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Re-publishes the watermark so parked fetches re-evaluate (after DeleteRecords,
    /// truncation or deletion, which change what a fetch would see).
    pub fn notify(&self) {
        self.hw.send_modify(|_| {});
    }

    pub fn apply_config(&self, cfg: &TopicConfig) -> Result<(), StorageError> {
        self.log.set_config(log_config(cfg))
    }
}
