//! The topic table: this node's view of the metadata image's topics (IDs, configs,
//! partition leadership) plus the replicas it hosts, and the checks admin requests get
//! before they are turned into metadata records.
//!
//! The table changes only by [`Topics::apply_image`], which the cluster's sync task calls
//! with each newly applied metadata image: it opens the replicas this node is assigned,
//! applies config changes, moves leadership, and deletes what the image no longer has.
//! Readers (produce, fetch, metadata) take an `Arc<Topic>` snapshot under a brief read
//! lock; each change swaps in new `Arc<Topic>` values (copy on write), so a request never
//! sees a half-changed topic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_controller::{MetadataImage, PartitionImage, TopicImage};
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_replication::LeaderInfo;
use tracing::{info, warn};

use crate::error::BrokerError;
use crate::metrics::TopicTraffic;
use crate::partition::Partition;
use crate::topic_config::{validate_topic_config, BrokerLogDefaults, TopicConfig};

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
    /// Every partition of the topic, indexed by partition id, hosted here or not.
    pub partitions: Vec<PartitionState>,
    /// Produce and fetch traffic through this node, for `/metrics`; carried over from
    /// one snapshot of the topic to the next, started afresh for a new topic.
    pub traffic: Arc<TopicTraffic>,
}

/// One partition as the metadata image describes it, with this node's replica if it
/// hosts one.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub index: i32,
    /// The leader's broker id, or -1 when the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by every change to the partition's leader or ISR.
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// This node's replica, if it is one of `replicas`.
    pub replica: Option<Arc<Partition>>,
    /// Whether this node is the leader (then `replica` is set).
    pub led_here: bool,
}

impl Topic {
    /// This node's replica of partition `index` if this node leads it: the one replica
    /// that serves produce, fetch and offset lookups.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        self.lookup(index).ok()
    }

    /// Like [`Topic::partition`], with the error a client gets otherwise: a partition
    /// the topic does not have is UNKNOWN_TOPIC_OR_PARTITION, one led elsewhere (or by
    /// nobody) NOT_LEADER_OR_FOLLOWER, so the client refreshes its metadata.
    pub fn lookup(&self, index: i32) -> Result<&Arc<Partition>, ErrorCode> {
        let state = self
            .state(index)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        match (&state.replica, state.led_here) {
            (Some(replica), true) => Ok(replica),
            _ => Err(ErrorCode::NotLeaderOrFollower),
        }
    }

    /// Partition `index`'s metadata, whoever hosts it.
    pub fn state(&self, index: i32) -> Option<&PartitionState> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// The replicas this node hosts.
    pub fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().filter_map(|p| p.replica.as_ref())
    }

    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state")
}

/// A leadership this node gained or lost in one [`Topics::apply_image`] call.
#[derive(Debug, Clone)]
pub struct LeadershipChange {
    pub topic: String,
    pub partition: i32,
    /// The replica, when this node now leads it; `None` when it no longer does.
    pub now_leading: Option<Arc<Partition>>,
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

/// All topics of the cluster as this node last applied them.
pub struct Topics {
    data_dir: PathBuf,
    defaults: BrokerLogDefaults,
    table: RwLock<Table>,
    /// Serializes [`Topics::apply_image`] calls.
    apply: Mutex<()>,
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
    /// An empty table over `data_dir`; the first [`Topics::apply_image`] fills it.
    pub fn new(data_dir: &Path, defaults: BrokerLogDefaults) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            defaults,
            table: RwLock::new(Table::default()),
            apply: Mutex::new(()),
        }
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

    /// Checks that a topic could be created as asked (Kafka's order: an existing name
    /// first, then the name's form, collisions, the partition count and the configs),
    /// returning its effective config.
    pub fn check_new(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, AdminError> {
        {
            let table = self.table.read();
            if table.by_name.contains_key(name) {
                return Err(AdminError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ));
            }
            validate_topic_name(name)?;
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
        self.validated_config(overrides)
    }

    /// Checks that `name` may grow to `total` partitions, returning the topic.
    pub fn check_add_partitions(&self, name: &str, total: i32) -> Result<Arc<Topic>, AdminError> {
        let topic = self.existing(name)?;
        let current = topic.partition_count();
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
        Ok(topic)
    }

    /// Checks every override and the storage settings they produce, so that nothing
    /// stored can later stop a partition from opening.
    pub fn validated_config(
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

    /// Makes the table follow `image`: opens the replicas assigned to `node` (recovering
    /// their logs), applies config changes, moves leadership and deletes topics the image
    /// no longer has (or has under a new ID). Blocking: it opens and removes files.
    /// Returns the leaderships `node` gained or lost.
    pub fn apply_image(
        &self,
        image: &MetadataImage,
        node: i32,
        now_ms: i64,
    ) -> Vec<LeadershipChange> {
        let _apply = self.apply.lock();
        let mut changes = Vec::new();
        let old: Vec<Arc<Topic>> = self.all();
        // Deletions first, so a topic re-created under its old name starts clean.
        for topic in &old {
            let live = image
                .topic(&topic.name)
                .is_some_and(|t| Uuid(t.id) == topic.id);
            if !live {
                self.remove(topic, &mut changes);
            }
        }
        let fenced = image.broker(node).is_none_or(|b| b.fenced);
        for t in image.topics() {
            let current = self.get(&t.name).filter(|c| c.id == Uuid(t.id));
            let topic = self.follow(current.as_deref(), t, node, fenced, now_ms, &mut changes);
            let topic = Arc::new(topic);
            let mut table = self.table.write();
            table.by_id.insert(topic.id, topic.clone());
            table.by_name.insert(topic.name.clone(), topic);
        }
        changes
    }

    /// The new state of one topic: `current` (if this node already has it) brought to
    /// the image's `t`.
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        current: Option<&Topic>,
        t: &TopicImage,
        node: i32,
        fenced: bool,
        now_ms: i64,
        changes: &mut Vec<LeadershipChange>,
    ) -> Topic {
        let id = Uuid(t.id);
        // Configs were validated before they were written; a value this node cannot use
        // (another version's defaults) falls back to the defaults rather than stopping it.
        let config = self.validated_config(&t.configs).unwrap_or_else(|e| {
            warn!(topic = %t.name, error = %e.message, "ignoring topic configs this node cannot apply");
            self.defaults.effective(&BTreeMap::new())
        });
        let config_changed = current.is_some_and(|c| c.overrides != t.configs);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (i, p) in t.partitions.iter().enumerate() {
            let index = i32::try_from(i).unwrap_or(i32::MAX);
            let before = current.and_then(|c| c.state(index));
            let hosted = p.replicas.contains(&node);
            let replica = match (hosted, before.and_then(|b| b.replica.clone())) {
                (true, Some(replica)) => {
                    if config_changed {
                        if let Err(e) = replica.apply_config(crate::partition::log_config(&config))
                        {
                            warn!(topic = %t.name, partition = index, error = %e, "cannot apply topic config");
                        }
                    }
                    Some(replica)
                }
                (true, None) => match self.open_replica(&t.name, &id, index, &config, now_ms) {
                    Ok(replica) => Some(Arc::new(replica)),
                    Err(e) => {
                        warn!(topic = %t.name, partition = index, error = %e, "cannot open replica; it stays offline here");
                        None
                    }
                },
                (false, Some(replica)) => {
                    // Reassigned away: this node no longer holds the partition.
                    self.drop_replica(&t.name, &replica);
                    None
                }
                (false, None) => None,
            };
            // A fenced broker leads nothing, even where the image still names it (a
            // restarted broker's old leaderships until the controller moves them).
            let led_here = p.leader == node && replica.is_some() && !fenced;
            if let Some(r) = &replica {
                set_role(r, &t.name, p, node, led_here, &config, now_ms);
            }
            let was_leading = before.is_some_and(|b| b.led_here);
            if led_here != was_leading {
                changes.push(LeadershipChange {
                    topic: t.name.clone(),
                    partition: index,
                    now_leading: if led_here { replica.clone() } else { None },
                });
            }
            partitions.push(PartitionState {
                index,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                replica,
                led_here,
            });
        }
        if current.is_none() {
            info!(topic = %t.name, id = %id, partitions = partitions.len(), "topic added");
        }
        Topic {
            name: t.name.clone(),
            id,
            overrides: t.configs.clone(),
            config,
            partitions,
            traffic: current.map(|c| c.traffic.clone()).unwrap_or_default(),
        }
    }

    fn open_replica(
        &self,
        topic: &str,
        id: &Uuid,
        index: i32,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<Partition, BrokerError> {
        let dir = partition_dir(&self.data_dir, topic, index);
        // A directory left by an earlier topic of the same name (a delete that could
        // not finish) must never be served as this topic's data.
        if read_partition_metadata(&dir).is_some_and(|old| old != id.to_string()) {
            warn!(dir = %dir.display(), "removing a partition directory of an older topic with this name");
            delete_dir(&dir).map_err(|e| BrokerError::io(&dir, e))?;
        }
        let p = crate::partition::open(&dir, index, config, now_ms)?;
        write_partition_metadata(&dir, id)?;
        Ok(p)
    }

    /// Forgets a topic and deletes its replicas' data. Parked fetches are woken to notice.
    fn remove(&self, topic: &Topic, changes: &mut Vec<LeadershipChange>) {
        {
            let mut table = self.table.write();
            table.by_name.remove(&topic.name);
            table.by_id.remove(&topic.id);
        }
        for p in &topic.partitions {
            if p.led_here {
                changes.push(LeadershipChange {
                    topic: topic.name.clone(),
                    partition: p.index,
                    now_leading: None,
                });
            }
            if let Some(replica) = &p.replica {
                self.drop_replica(&topic.name, replica);
            }
        }
        info!(topic = %topic.name, "deleted topic");
    }

    fn drop_replica(&self, topic: &str, replica: &Partition) {
        replica.notify();
        if let Err(e) = replica.log.close() {
            warn!(topic, partition = replica.index, error = %e, "close before delete failed");
        }
        let dir = partition_dir(&self.data_dir, topic, replica.index);
        if let Err(e) = delete_dir(&dir) {
            warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition; it is removed at the next start");
        }
    }

    /// Removes partition directories no topic of the table owns (a crash during a
    /// delete, a topic deleted while this node was down). Call only once the table
    /// holds every topic that existed before this start (the broker is unfenced).
    pub fn remove_strays(&self, node: i32) {
        let table = self.table.read();
        remove_stray_partitions(&self.data_dir, &table, node);
    }

    /// Runs `f` over every hosted replica (retention, flushing, shutdown).
    pub fn for_each_partition(&self, mut f: impl FnMut(&Topic, &Partition)) {
        for topic in self.all() {
            for p in topic.hosted() {
                f(&topic, p);
            }
        }
    }
}

/// Makes this node's replica lead (with the image's ISR and the topic's
/// `min.insync.replicas`) or follow the image's leader. A replica that stops leading
/// refuses writes from here on and fails its parked acks=all requests.
fn set_role(
    replica: &Partition,
    topic: &str,
    p: &PartitionImage,
    node: i32,
    led_here: bool,
    config: &TopicConfig,
    now_ms: i64,
) {
    if led_here {
        let info = LeaderInfo {
            node,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            min_isr: usize::try_from(config.min_insync_replicas.max(1)).unwrap_or(1),
        };
        if let Err(e) = replica.become_leader(&info, now_ms) {
            warn!(topic, partition = replica.index, error = %e, "cannot take leadership");
        }
    } else {
        let leader = (p.leader >= 0 && p.leader != node).then_some(p.leader);
        replica.become_follower(leader, p.leader_epoch);
    }
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

/// Removes partition directories that belong to no current topic or to a partition not
/// assigned to `node` (a crash during a delete, a topic deleted and recreated with a new
/// ID), and leftover `-delete` dirs.
fn remove_stray_partitions(data_dir: &Path, table: &Table, node: i32) {
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
                    t.state(p).is_none_or(|s| !s.replicas.contains(&node))
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
