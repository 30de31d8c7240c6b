//! One partition replica hosted by this node: the replication crate's [`Partition`]
//! (log, role, high watermark, waiters), opened with a topic's effective config.

use std::path::Path;

use sluice_storage::{LogConfig, StorageError};

use crate::topic_config::TopicConfig;

pub use sluice_replication::Replica as Partition;

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
    lc.producer_id_expiration_ms = cfg.producer_id_expiration_ms;
    lc
}

/// Opens this node's replica of partition `index` under `dir` with the topic's config.
pub fn open(
    dir: &Path,
    index: i32,
    cfg: &TopicConfig,
    now_ms: i64,
) -> Result<Partition, StorageError> {
    Partition::open(dir, index, log_config(cfg), now_ms)
}
