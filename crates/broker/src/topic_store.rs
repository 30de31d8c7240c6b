//! The node identity (`meta.properties`: node id and cluster id), and the topics file
//! (`topics.json`) single-node data dirs kept before the metadata quorum existed: it is
//! read once, to carry those topics into the metadata log (`Cluster::migrate_legacy_topics`),
//! then retired.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_protocol::codec::Uuid;

use crate::error::BrokerError;

/// What is persisted for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredFile {
    version: u32,
    topics: Vec<StoredTopic>,
}

/// The topics file and the node identity file (`meta.properties`, as Kafka names it).
#[derive(Debug)]
pub struct TopicStore {
    path: PathBuf,
}

fn hex(id: &Uuid) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Uuid> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in out.iter_mut().enumerate() {
        *chunk = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(Uuid(out))
}

impl TopicStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("topics.json"),
        }
    }

    pub fn load(&self) -> Result<Vec<TopicRecord>, BrokerError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BrokerError::io(&self.path, e)),
        };
        let file: StoredFile = serde_json::from_slice(&text)
            .map_err(|e| BrokerError::Metadata(format!("{}: {e}", self.path.display())))?;
        file.topics
            .into_iter()
            .map(|t| {
                let id = unhex(&t.id).ok_or_else(|| {
                    BrokerError::Metadata(format!("bad topic id {:?} for {}", t.id, t.name))
                })?;
                Ok(TopicRecord {
                    name: t.name,
                    id,
                    partitions: t.partitions,
                    configs: t.configs,
                })
            })
            .collect()
    }

    /// Renames the file out of the way once its topics are in the metadata log.
    pub fn retire(&self) -> Result<(), BrokerError> {
        let retired = self.path.with_extension("json.migrated");
        fs::rename(&self.path, &retired).map_err(|e| BrokerError::io(&self.path, e))
    }

    /// Replaces the file atomically: write a temp file, fsync it, rename, fsync the dir.
    pub fn save<'a>(
        &self,
        topics: impl Iterator<Item = &'a TopicRecord>,
    ) -> Result<(), BrokerError> {
        let file = StoredFile {
            version: 1,
            topics: topics
                .map(|t| StoredTopic {
                    name: t.name.clone(),
                    id: hex(&t.id),
                    partitions: t.partitions,
                    configs: t.configs.clone(),
                })
                .collect(),
        };
        let body =
            serde_json::to_vec_pretty(&file).map_err(|e| BrokerError::Metadata(e.to_string()))?;
        write_atomically(&self.path, &body)
    }
}

/// Writes `body` to `path` so that a crash leaves either the old or the new content
/// (storage's temp-file, fsync, rename and directory-fsync sequence).
pub fn write_atomically(path: &Path, body: &[u8]) -> Result<(), BrokerError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(BrokerError::Metadata(format!(
            "{}: not a file path",
            path.display()
        )));
    };
    Ok(sluice_storage::write_atomic(dir, name, body)?)
}

/// Reads or creates `meta.properties` (cluster id and node id), refusing a data dir that
/// belongs to another node or, when `expected` names the cluster this node is configured
/// for, to another cluster. A new file records `expected`, or a random id if none.
pub fn load_or_init_identity(
    data_dir: &Path,
    node_id: i32,
    expected: Option<&str>,
) -> Result<String, BrokerError> {
    let path = data_dir.join("meta.properties");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut cluster = None;
            let mut node = None;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("cluster.id=") {
                    cluster = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("node.id=") {
                    node = v.trim().parse::<i32>().ok();
                }
            }
            let cluster = cluster.ok_or_else(|| {
                BrokerError::Metadata(format!("{}: no cluster.id", path.display()))
            })?;
            if node != Some(node_id) {
                return Err(BrokerError::Metadata(format!(
                    "{} belongs to node {:?}, not node {node_id}",
                    path.display(),
                    node
                )));
            }
            if let Some(expected) = expected.filter(|e| *e != cluster) {
                return Err(BrokerError::Metadata(format!(
                    "{} belongs to cluster {cluster}, but this node is configured for cluster \
                     {expected} (--cluster-id, or derived from --voters when it is not given: \
                     if --voters changed, restore the original list, since changing the voter \
                     set is not supported); refusing to start rather than mix two clusters' data",
                    path.display()
                )));
            }
            Ok(cluster)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster = match expected {
                Some(id) => id.to_string(),
                None => Uuid(*uuid::Uuid::new_v4().as_bytes()).to_string(),
            };
            let body = format!("version=1\ncluster.id={cluster}\nnode.id={node_id}\n");
            write_atomically(&path, body.as_bytes())?;
            Ok(cluster)
        }
        Err(e) => Err(BrokerError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = TopicStore::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let topics = vec![TopicRecord {
            name: "a.b-c".into(),
            id: Uuid([7; 16]),
            partitions: 3,
            configs,
        }];
        store.save(topics.iter()).unwrap();
        assert_eq!(store.load().unwrap(), topics);
    }

    #[test]
    fn identity_is_stable_and_guards_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_init_identity(dir.path(), 1, None).unwrap();
        assert_eq!(load_or_init_identity(dir.path(), 1, None).unwrap(), first);
        assert_eq!(
            load_or_init_identity(dir.path(), 1, Some(&first)).unwrap(),
            first
        );
        assert!(load_or_init_identity(dir.path(), 2, None).is_err());
        let err = load_or_init_identity(dir.path(), 1, Some("another")).unwrap_err();
        assert!(err.to_string().contains("belongs to cluster"), "{err}");
    }
}
