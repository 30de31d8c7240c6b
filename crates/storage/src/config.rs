//! Per-topic log settings, with Kafka's names and defaults (the broker parses them).

use sluice_protocol::records::HEADER_SIZE;

use crate::error::StorageError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The topic-level configs the log engine honours. Field names map one to one onto
/// Kafka's (`segment_bytes` is `segment.bytes`, ...), and so do the types and defaults.
/// `cleanup.policy` is the pair `delete` / `compact`, as in Kafka's own `LogConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: i32,
    /// `segment.ms`: roll the active segment once it is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: size limit of each index file (a full index rolls the segment).
    pub segment_index_bytes: i32,
    /// `index.interval.bytes`: log bytes between two offset-index entries.
    pub index_interval_bytes: i32,
    /// `retention.ms`: delete segments whose newest record is older; -1 means forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 means no limit.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync once this many messages are unflushed (default: never).
    pub flush_messages: i64,
    /// `flush.ms`: fsync once the last flush is this old (default: never).
    pub flush_ms: i64,
    /// `cleanup.policy` contains `delete`: `retention.ms` and `retention.bytes` delete
    /// old segments. Without it only the log start offset (DeleteRecords) removes data.
    pub delete: bool,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone (null value) stays readable.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment with a record younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the
    /// dirty ratio; it also caps the age of the active segment (Kafka's `maxSegmentMs`).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes / cleanable bytes exceed it.
    pub min_cleanable_dirty_ratio: f64,
    /// `producer.id.expiration.ms` (a broker config in Kafka): an idempotent producer's
    /// state (epoch, last sequences) is dropped once its last batch is this old, after
    /// which its next batch is accepted at any sequence.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * DAY_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            delete: true,
            compact: false,
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            producer_id_expiration_ms: DAY_MS,
        }
    }
}

impl LogConfig {
    /// Checks the ranges Kafka enforces, except that `segment.bytes` may be as small as
    /// one batch header (Kafka's minimum is 1 MiB; tests want tiny segments).
    pub fn validate(&self) -> Result<(), StorageError> {
        let checks: [(bool, &str); 13] = [
            (
                self.segment_bytes >= HEADER_SIZE as i32,
                "segment.bytes must be at least 61",
            ),
            (self.segment_ms >= 1, "segment.ms must be at least 1"),
            (
                self.segment_index_bytes >= 12,
                "segment.index.bytes must be at least 12",
            ),
            (
                self.index_interval_bytes >= 0,
                "index.interval.bytes must not be negative",
            ),
            (self.retention_ms >= -1, "retention.ms must be -1 or more"),
            (
                self.retention_bytes >= -1,
                "retention.bytes must be -1 or more",
            ),
            (
                self.flush_messages >= 1,
                "flush.messages must be at least 1",
            ),
            (self.flush_ms >= 0, "flush.ms must not be negative"),
            (
                self.delete_retention_ms >= 0,
                "delete.retention.ms must not be negative",
            ),
            (
                self.min_compaction_lag_ms >= 0,
                "min.compaction.lag.ms must not be negative",
            ),
            (
                self.max_compaction_lag_ms >= 1,
                "max.compaction.lag.ms must be at least 1",
            ),
            (
                (0.0..=1.0).contains(&self.min_cleanable_dirty_ratio),
                "min.cleanable.dirty.ratio must be between 0 and 1",
            ),
            (
                self.producer_id_expiration_ms >= 1,
                "producer.id.expiration.ms must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(StorageError::InvalidConfig((*msg).to_string())),
            None => Ok(()),
        }
    }

    /// Age at which the active segment rolls: `segment.ms`, capped by
    /// `max.compaction.lag.ms` on compacted logs so that no record waits longer than that
    /// in the (never cleaned) active segment (Kafka's `maxSegmentMs`).
    pub(crate) fn roll_ms(&self) -> i64 {
        if self.compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// Most offset-index entries a segment may hold (8 bytes each).
    pub(crate) fn max_index_entries(&self) -> usize {
        (self.segment_index_bytes.max(0) as usize) / crate::index::OFFSET_ENTRY_SIZE
    }

    /// Most time-index entries a segment may hold (12 bytes each).
    pub(crate) fn max_time_index_entries(&self) -> usize {
        (self.segment_index_bytes.max(0) as usize) / crate::time_index::TIME_ENTRY_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.segment_index_bytes, 10_485_760);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.flush_messages, i64::MAX);
        assert_eq!(c.flush_ms, i64::MAX);
        assert!(c.delete && !c.compact);
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_compaction_lag_ms, 0);
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(c.producer_id_expiration_ms, 86_400_000);
        assert!(c.validate().is_ok());
        assert_eq!(c.roll_ms(), c.segment_ms);
        let compacted = LogConfig {
            compact: true,
            max_compaction_lag_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(compacted.roll_ms(), 1_000);
        assert_eq!(c.max_index_entries(), 1_310_720);
    }

    #[test]
    fn validate_rejects_out_of_range() {
        let cases: Vec<(LogConfig, bool)> = vec![
            (
                LogConfig {
                    segment_bytes: 60,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    segment_bytes: 61,
                    ..Default::default()
                },
                true,
            ),
            (
                LogConfig {
                    segment_ms: 0,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    retention_ms: -2,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    retention_ms: -1,
                    ..Default::default()
                },
                true,
            ),
            (
                LogConfig {
                    retention_bytes: -1,
                    ..Default::default()
                },
                true,
            ),
            (
                LogConfig {
                    flush_messages: 0,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    segment_index_bytes: 8,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    min_cleanable_dirty_ratio: 1.5,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    min_cleanable_dirty_ratio: 0.0,
                    ..Default::default()
                },
                true,
            ),
            (
                LogConfig {
                    max_compaction_lag_ms: 0,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    producer_id_expiration_ms: 0,
                    ..Default::default()
                },
                false,
            ),
            (
                LogConfig {
                    delete_retention_ms: -1,
                    ..Default::default()
                },
                false,
            ),
        ];
        for (cfg, ok) in cases {
            assert_eq!(cfg.validate().is_ok(), ok, "{cfg:?}");
        }
    }
}
