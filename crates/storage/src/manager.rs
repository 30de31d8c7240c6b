//! [`LogManager`]: the partition logs of one data directory, found by their
//! `<topic>-<partition>` directory names, created and deleted on demand.
//!
//! Topic metadata (ids, configs) belongs to the broker; the manager only maps names to
//! directories. Deletion renames the directory to `<topic>-<partition>.<uuid>-delete`
//! first (durably) and removes it afterwards, so a crash in between never brings the
//! partition back: the next [`LogManager::open_all`] finishes the removal.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::fileio::sync_dir;
use crate::locks;
use crate::log::PartitionLog;

const DELETE_SUFFIX: &str = "-delete";
/// Kafka's limit on topic name length.
const MAX_TOPIC_LEN: usize = 249;

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name, splitting at the last '-' (topic names may contain '-'
    /// and '.'); `None` unless the topic is a legal name and the partition a non-negative
    /// integer.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if !partition.bytes().all(|b| b.is_ascii_digit()) || partition.starts_with('+') {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        validate_topic(topic).ok()?;
        Some(Self::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Kafka's topic-name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`. It also
/// keeps names from escaping the data directory.
pub fn validate_topic(topic: &str) -> Result<(), StorageError> {
    let legal = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if legal {
        Ok(())
    } else {
        Err(StorageError::InvalidTopicName(topic.to_string()))
    }
}

/// The logs under one data directory.
pub struct LogManager {
    data_dir: PathBuf,
    logs: RwLock<HashMap<TopicPartition, Arc<PartitionLog>>>,
}

impl fmt::Debug for LogManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogManager")
            .field("data_dir", &self.data_dir)
            .field("logs", &locks::read(&self.logs).len())
            .finish()
    }
}

impl LogManager {
    /// Opens (recovering as needed) every `<topic>-<partition>` directory in `data_dir`,
    /// creating `data_dir` if missing. `config_for` supplies each log's config. Other
    /// entries (files, the controller's directory) are left alone; leftover `-delete`
    /// directories are removed.
    pub fn open_all(
        data_dir: &Path,
        now_ms: i64,
        mut config_for: impl FnMut(&TopicPartition) -> LogConfig,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir).ctx(|| format!("create {}", data_dir.display()))?;
        let mut logs = HashMap::new();
        for entry in std::fs::read_dir(data_dir).ctx(|| format!("list {}", data_dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", data_dir.display()))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(DELETE_SUFFIX) {
                tracing::debug!(dir = %path.display(), "finishing interrupted delete");
                std::fs::remove_dir_all(&path).ctx(|| format!("remove {}", path.display()))?;
                continue;
            }
            let Some(tp) = TopicPartition::parse_dir_name(&name) else {
                tracing::debug!(dir = %path.display(), "not a partition directory, skipped");
                continue;
            };
            let config = config_for(&tp);
            let log = PartitionLog::open(&path, config, now_ms)?;
            logs.insert(tp, Arc::new(log));
        }
        tracing::debug!(data_dir = %data_dir.display(), logs = logs.len(), "logs opened");
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            logs: RwLock::new(logs),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        locks::read(&self.logs)
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    /// Every open log.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        let mut all: Vec<_> = locks::read(&self.logs)
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Creates the partition's log, or returns the existing one (whose config is then
    /// left as it is; use [`PartitionLog::set_config`]).
    pub fn create(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<PartitionLog>, StorageError> {
        validate_topic(topic)?;
        if partition < 0 {
            return Err(StorageError::InvalidTopicName(format!(
                "{topic}-{partition}"
            )));
        }
        let tp = TopicPartition::new(topic, partition);
        let mut logs = locks::write(&self.logs);
        if let Some(log) = logs.get(&tp) {
            return Ok(Arc::clone(log));
        }
        let dir = self.data_dir.join(tp.dir_name());
        let log = Arc::new(PartitionLog::open(&dir, config, now_ms)?);
        sync_dir(&self.data_dir)?;
        logs.insert(tp, Arc::clone(&log));
        Ok(log)
    }

    /// Deletes the partition's log and its directory. Returns false if there was none.
    /// Readers holding the log keep reading the (unlinked) files; writes fail with `Closed`.
    pub fn delete(&self, topic: &str, partition: i32) -> Result<bool, StorageError> {
        let tp = TopicPartition::new(topic, partition);
        let Some(log) = locks::write(&self.logs).remove(&tp) else {
            return Ok(false);
        };
        log.mark_deleted();
        let dir = log.dir().to_path_buf();
        let unique = uuid::Uuid::new_v4().simple();
        let doomed = self
            .data_dir
            .join(format!("{}.{unique}{DELETE_SUFFIX}", tp.dir_name()));
        std::fs::rename(&dir, &doomed).ctx(|| format!("rename {} for deletion", dir.display()))?;
        sync_dir(&self.data_dir)?;
        std::fs::remove_dir_all(&doomed).ctx(|| format!("remove {}", doomed.display()))?;
        tracing::debug!(partition = %tp, "log deleted");
        Ok(true)
    }

    /// Closes every log cleanly (the first error is returned after trying them all).
    pub fn close_all(&self) -> Result<(), StorageError> {
        let mut first_err = None;
        for (_, log) in self.all() {
            if let Err(e) = log.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names() {
        let cases = [
            ("orders-0", Some(("orders", 0))),
            ("my-topic-12", Some(("my-topic", 12))),
            ("a.b-c_d-3", Some(("a.b-c_d", 3))),
            ("topic--1", Some(("topic-", 1))),
            ("topic", None),
            ("topic-", None),
            ("topic-x", None),
            ("-0", None),
            ("..-0", None),
            ("topic-+1", None),
            ("topic-99999999999", None),
            ("orders-0.1f2e-delete", None),
            ("sp ace-0", None),
        ];
        for (name, want) in cases {
            let got = TopicPartition::parse_dir_name(name);
            assert_eq!(got, want.map(|(t, p)| TopicPartition::new(t, p)), "{name}");
            if let Some(tp) = got {
                assert_eq!(tp.dir_name(), name);
            }
        }
    }

    #[test]
    fn topic_validation() {
        assert!(validate_topic("ok.name_1-x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
    }
}
