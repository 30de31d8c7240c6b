//! The topic table: which topics exist, their IDs, configs and partitions, and the admin
//! operations that change it (create, delete, add partitions, alter configs).
//!
//! Readers (produce, fetch, metadata) take an `Arc<Topic>` snapshot under a brief read
//! lock; admin changes are serialized by one mutex, persisted through [`TopicStore`]
//! before they take effect, and swap in new `Arc<Topic>` values (copy on write), so a
//! request never sees a half-changed topic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use tracing::{info, warn};

use crate::error::BrokerError;
use crate::partition::Partition;
use crate::topic_config::{validate_topic_config, BrokerLogDefaults, TopicConfig};
use crate::topic_store::{TopicRecord, TopicStore};

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Kafka refuses more partitions per request than this; a bound on work a peer can ask for.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
    pub fn is_internal(&self) -> bool {
        matches!(
            self.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        )
    }
    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partitions.len() as i32,
            configs: self.overrides.clone(),
        }
    }
}

/// An admin operation's failure, answered as a Kafka error code plus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: ErrorCode,
    pub message: String,
}

impl AdminError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Kafka's topic name rules (`Topic.validate`): 1-249 chars of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    let bad = |why: &str| AdminError::new(ErrorCode::InvalidTopicException, why.to_string());
    if name.is_empty() {
        return Err(bad("Topic name is illegal, it can't be empty"));
    }
    if name == "." || name == ".." {
        return Err(bad("Topic name cannot be \".\" or \"..\""));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(bad(&format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(bad(&format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Metric names replace '.' with '_', so Kafka refuses topics that differ only there.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// All topics of this node.
pub struct Topics {
    data_dir: PathBuf,
    defaults: BrokerLogDefaults,
    table: RwLock<Table>,
    /// Serializes admin changes so the metadata file and the table change in one order.
    admin: Mutex<()>,
    store: TopicStore,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Topics {
    /// Loads the topic table and opens (recovering if needed) every partition log.
    pub fn open(
        data_dir: &Path,
        defaults: BrokerLogDefaults,
        now_ms: i64,
    ) -> Result<Self, BrokerError> {
        let store = TopicStore::new(data_dir);
        let mut table = Table::default();
        for rec in store.load()? {
            let topic = Arc::new(open_topic(data_dir, &defaults, rec, now_ms)?);
            table.by_id.insert(topic.id, topic.clone());
            table.by_name.insert(topic.name.clone(), topic);
        }
        remove_stray_partitions(data_dir, &table);
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            defaults,
            table: RwLock::new(table),
            admin: Mutex::new(()),
            store,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.table.read().by_name.get(name).cloned()
    }

    /// The topic, or the UNKNOWN_TOPIC_OR_PARTITION answer admin APIs give for it.
    pub fn existing(&self, name: &str) -> Result<Arc<Topic>, AdminError> {
        self.get(name).ok_or_else(|| {
            AdminError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })
    }

    pub fn get_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.table.read().by_id.get(id).cloned()
    }

    /// Every topic, sorted by name so responses are stable.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.table.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn defaults(&self) -> &BrokerLogDefaults {
        &self.defaults
    }

    /// Creates a topic (or, with `validate_only`, checks that it could be created).
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, AdminError> {
        validate_topic_name(name)?;
        let _guard = self.admin.lock();
        // As Kafka: an existing topic is reported before anything else is checked.
        {
            let table = self.table.read();
            if table.by_name.contains_key(name) {
                return Err(AdminError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ));
            }
            let key = collision_key(name);
            if let Some(other) = table.by_name.keys().find(|n| collision_key(n) == key) {
                return Err(AdminError::new(
                    ErrorCode::InvalidTopicException,
                    format!("Topic '{name}' collides with existing topic: {other}"),
                ));
            }
        }
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!("Number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, got {partitions}"),
            ));
        }
        let config = self.validated_config(&overrides)?;
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id: Uuid::ZERO,
                overrides,
                config,
                partitions: Vec::new(),
            }));
        }
        let rec = TopicRecord {
            name: name.to_string(),
            id: Uuid(*uuid::Uuid::new_v4().as_bytes()),
            partitions,
            configs: overrides,
        };
        self.persist_with(Some(&rec), None)?;
        let topic = match open_topic(&self.data_dir, &self.defaults, rec, now_ms) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                // Take the record back so a restart does not trip over a topic whose
                // partitions could not be opened.
                if let Err(undo) = self.persist_with(None, Some(name)) {
                    warn!(topic = %name, error = %undo.message, "could not undo a failed topic creation");
                }
                return Err(AdminError::new(ErrorCode::KafkaStorageError, e.to_string()));
            }
        };
        let mut table = self.table.write();
        table.by_id.insert(topic.id, topic.clone());
        table.by_name.insert(topic.name.clone(), topic.clone());
        info!(topic = %topic.name, id = %topic.id, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data. Parked fetches on it are woken to notice.
    pub fn delete(&self, name: &str) -> Result<Uuid, AdminError> {
        let _guard = self.admin.lock();
        let topic = self.existing(name)?;
        self.persist_with(None, Some(name))?;
        {
            let mut table = self.table.write();
            table.by_name.remove(name);
            table.by_id.remove(&topic.id);
        }
        for p in &topic.partitions {
            p.notify();
            let dir = partition_dir(&self.data_dir, name, p.index);
            if let Err(e) = delete_dir(&dir) {
                warn!(dir = %dir.display(), error = %e, "could not remove deleted partition; it is removed at the next start");
            }
        }
        info!(topic = %name, "deleted topic");
        Ok(topic.id)
    }

    /// Raises the partition count of a topic to `total`.
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), AdminError> {
        let _guard = self.admin.lock();
        let topic = self.existing(name)?;
        let current = topic.partitions.len() as i32;
        if total < current {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {total}."),
            ));
        }
        if total == current {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!("Topic already has {current} partitions."),
            ));
        }
        if total > MAX_PARTITIONS_PER_TOPIC {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!("Number of partitions must be at most {MAX_PARTITIONS_PER_TOPIC}"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let mut rec = topic.record();
        rec.partitions = total;
        self.persist_with(Some(&rec), None)?;
        let mut partitions = topic.partitions.clone();
        for index in current..total {
            let dir = partition_dir(&self.data_dir, name, index);
            let p = Partition::open(&dir, index, &topic.config, now_ms)
                .map_err(|e| AdminError::new(ErrorCode::KafkaStorageError, e.to_string()))?;
            write_partition_metadata(&dir, &topic.id)
                .map_err(|e| AdminError::new(ErrorCode::KafkaStorageError, e.to_string()))?;
            partitions.push(Arc::new(p));
        }
        self.swap(Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides: topic.overrides.clone(),
            config: topic.config.clone(),
            partitions,
        });
        Ok(())
    }

    /// Changes a topic's config overrides: `change` maps the current overrides to the
    /// new set under the admin lock (so concurrent incremental changes never lose one),
    /// then everything is validated before anything is stored.
    pub fn update_overrides(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
    ) -> Result<(), AdminError> {
        let _guard = self.admin.lock();
        let topic = self.existing(name)?;
        let overrides = change(&topic.overrides)?;
        let config = self.validated_config(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let mut rec = topic.record();
        rec.configs = overrides.clone();
        self.persist_with(Some(&rec), None)?;
        for p in &topic.partitions {
            p.apply_config(&config)
                .map_err(|e| AdminError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        }
        self.swap(Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides,
            config,
            partitions: topic.partitions.clone(),
        });
        Ok(())
    }

    /// Checks every override and the storage settings they produce, so that nothing
    /// stored can later stop a partition from opening.
    fn validated_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, AdminError> {
        for (k, v) in overrides {
            validate_topic_config(k, v)
                .map_err(|e| AdminError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        }
        let config = self.defaults.effective(overrides);
        crate::partition::log_config(&config)
            .validate()
            .map_err(|e| AdminError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        Ok(config)
    }

    fn swap(&self, topic: Topic) {
        let topic = Arc::new(topic);
        let mut table = self.table.write();
        table.by_id.insert(topic.id, topic.clone());
        table.by_name.insert(topic.name.clone(), topic);
    }

    /// Writes the table as it will be after upserting `upsert` and removing `remove`.
    fn persist_with(
        &self,
        upsert: Option<&TopicRecord>,
        remove: Option<&str>,
    ) -> Result<(), AdminError> {
        let table = self.table.read();
        let mut records: BTreeMap<String, TopicRecord> = table
            .by_name
            .values()
            .map(|t| (t.name.clone(), t.record()))
            .collect();
        drop(table);
        if let Some(name) = remove {
            records.remove(name);
        }
        if let Some(rec) = upsert {
            records.insert(rec.name.clone(), rec.clone());
        }
        self.store
            .save(records.values())
            .map_err(|e| AdminError::new(ErrorCode::KafkaStorageError, e.to_string()))
    }

    /// Runs `f` over every hosted partition (retention, flushing, shutdown).
    pub fn for_each_partition(&self, mut f: impl FnMut(&Topic, &Partition)) {
        for topic in self.all() {
            for p in &topic.partitions {
                f(&topic, p);
            }
        }
    }
}

fn open_topic(
    data_dir: &Path,
    defaults: &BrokerLogDefaults,
    rec: TopicRecord,
    now_ms: i64,
) -> Result<Topic, BrokerError> {
    let config = defaults.effective(&rec.configs);
    let mut partitions = Vec::with_capacity(rec.partitions.max(0) as usize);
    for index in 0..rec.partitions {
        let dir = partition_dir(data_dir, &rec.name, index);
        // A directory left by an earlier topic of the same name (a delete that could
        // not finish) must never be served as this topic's data.
        if read_partition_metadata(&dir).is_some_and(|id| id != rec.id.to_string()) {
            warn!(dir = %dir.display(), "removing a partition directory of an older topic with this name");
            delete_dir(&dir).map_err(|e| BrokerError::io(&dir, e))?;
        }
        let p = Partition::open(&dir, index, &config, now_ms)?;
        write_partition_metadata(&dir, &rec.id)?;
        partitions.push(Arc::new(p));
    }
    Ok(Topic {
        name: rec.name,
        id: rec.id,
        overrides: rec.configs,
        config,
        partitions,
    })
}

const PARTITION_METADATA: &str = "partition.metadata";

/// Kafka's `partition.metadata`: ties a partition directory to its topic ID, so a
/// directory left by a deleted topic is never mistaken for a new topic of the same name.
fn write_partition_metadata(dir: &Path, id: &Uuid) -> Result<(), BrokerError> {
    let path = dir.join(PARTITION_METADATA);
    let body = format!("version: 0\ntopic_id: {id}\n");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(body.as_str()) {
        return Ok(());
    }
    crate::topic_store::write_atomically(&path, body.as_bytes())
}

fn read_partition_metadata(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: ").map(|s| s.trim().to_string()))
}

/// Removes partition directories that belong to no current topic (a crash during a
/// delete, or a topic deleted and recreated with a new ID), and leftover `-delete` dirs.
fn remove_stray_partitions(data_dir: &Path, table: &Table) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let stray = if name.ends_with("-delete") {
            true
        } else if let Some((topic, part)) = name.rsplit_once('-') {
            match (table.by_name.get(topic), part.parse::<i32>()) {
                (Some(t), Ok(p)) => {
                    p >= t.partitions.len() as i32
                        || read_partition_metadata(&path).is_some_and(|id| id != t.id.to_string())
                }
                (None, Ok(_)) => read_partition_metadata(&path).is_some(),
                _ => false,
            }
        } else {
            false
        };
        if stray {
            warn!(dir = %path.display(), "removing stray partition directory");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                warn!(dir = %path.display(), error = %e, "could not remove stray partition directory");
            }
        }
    }
}

/// Renames first so a crash halfway through never leaves a directory that looks live.
fn delete_dir(dir: &Path) -> std::io::Result<()> {
    let mut tomb = dir.as_os_str().to_owned();
    tomb.push(format!(".{}-delete", uuid::Uuid::new_v4().simple()));
    let tomb = PathBuf::from(tomb);
    std::fs::rename(dir, &tomb)?;
    std::fs::remove_dir_all(&tomb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().code,
                ErrorCode::InvalidTopicException,
                "{bad}"
            );
        }
    }
}
