//! The controller's Raft storage on sled: the log and vote ([`LogStore`], openraft's
//! `RaftLogStorage`) and the metadata state machine with its snapshot
//! ([`StateMachineStore`], openraft's `RaftStateMachine`).
//!
//! Durability: sled on its own flushes to disk only every 500 ms, so a vote or an appended
//! entry would be lost by a crash inside that window after openraft was told it was saved
//! (a node could vote twice in one term, or a leader could count an acknowledgement the
//! follower forgets). Here `save_vote` returns, and `append` calls openraft's
//! `LogFlushed` callback, only after `flush_async` has put the write on disk. Truncation
//! and purge are flushed too, before they return.
//!
//! The state machine lives in memory and is rebuilt on open from the last snapshot (which
//! is stored flushed); openraft then re-applies the committed entries after it, using the
//! committed log id this store keeps.

// openraft's storage traits return its `StorageError` by value; the helpers here share
// that type rather than box it and convert at every trait method.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::types::{ControllerNode, MetadataResponse, NodeId, TypeConfig};

type StoreResult<T> = Result<T, StorageError<NodeId>>;

const LOG_TREE: &str = "raft_log";
const META_TREE: &str = "raft_meta";
const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// Opens (or creates) a node's controller store at `path`.
pub fn open_db(path: &Path) -> Result<sled::Db, ControllerError> {
    sled::Config::new()
        .path(path)
        .open()
        .map_err(|source| ControllerError::OpenStore {
            path: path.display().to_string(),
            source,
        })
}

/// Opens the log store and the state machine store sharing one sled database.
pub fn open_stores(db: &sled::Db) -> Result<(LogStore, StateMachineStore), ControllerError> {
    Ok((LogStore::open(db)?, StateMachineStore::open(db)?))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

fn read_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    err: fn(AnyError) -> StorageIOError<NodeId>,
) -> StoreResult<Option<T>> {
    let Some(bytes) = tree.get(key).map_err(|e| err(AnyError::new(&e)))? else {
        return Ok(None);
    };
    decode(&bytes)
        .map(Some)
        .map_err(|e| err(AnyError::new(&e)).into())
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The Raft log and vote. Cheap to clone: clones share the database (the log reader that
/// openraft's replication tasks use is such a clone).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    fn open(db: &sled::Db) -> Result<Self, ControllerError> {
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| {
                ControllerError::from(StorageError::from(StorageIOError::read_logs(&e)))
            })
        };
        Ok(Self {
            db: db.clone(),
            logs: tree(LOG_TREE)?,
            meta: tree(META_TREE)?,
        })
    }

    /// Puts every write so far on disk. sled flushes all trees of a database together.
    async fn flush(&self, err: fn(AnyError) -> StorageIOError<NodeId>) -> StoreResult<()> {
        self.db
            .flush_async()
            .await
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }

    fn last_purged(&self) -> StoreResult<Option<LogId<NodeId>>> {
        read_json(&self.meta, LAST_PURGED_KEY, |e| {
            StorageIOError::read_logs(e)
        })
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        err: fn(AnyError) -> StorageIOError<NodeId>,
    ) -> StoreResult<()> {
        let bytes = encode(value).map_err(|e| err(AnyError::new(&e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }

    /// Removes every entry whose index lies in `from..=to`.
    fn remove_range(&self, from: u64, to: Option<u64>) -> StoreResult<()> {
        let range = match to {
            Some(to) => self.logs.range(index_key(from)..=index_key(to)),
            None => self.logs.range(index_key(from)..),
        };
        let mut batch = sled::Batch::default();
        for item in range.keys() {
            let key = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(key);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.logs.range(index_key(start)..) {
            let (_, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry: Entry<TypeConfig> =
                decode(&value).map_err(|e| StorageIOError::read_logs(&e))?;
            if !range.contains(&entry.log_id.index) {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> =
                    decode(&value).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.put_meta(VOTE_KEY, vote, StorageIOError::write_vote)?;
        // The vote must survive a crash before the node acts on it (answers a vote
        // request or campaigns), or it could vote twice in one term.
        self.flush(StorageIOError::write_vote).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        read_json(&self.meta, VOTE_KEY, StorageIOError::read_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // A hint for re-applying on restart: not flushed, since losing the newest value
        // only means re-applying less at start (the leader tells us the rest).
        self.put_meta(COMMITTED_KEY, &committed, StorageIOError::write)
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> =
            read_json(&self.meta, COMMITTED_KEY, StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let value = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&index_key(entry.log_id.index), value);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Only a flushed entry may be reported saved: the leader counts this node's
        // acknowledgement towards the commit quorum.
        match self.db.flush_async().await {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "truncating the controller log");
        self.remove_range(log_id.index, None)?;
        self.flush(StorageIOError::write_logs).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "purging the controller log");
        // Record the purge point first: if we crash before the removal, the leftover
        // entries are below it and ignored.
        self.put_meta(LAST_PURGED_KEY, &log_id, StorageIOError::write_logs)?;
        self.flush(StorageIOError::write_logs).await?;
        self.remove_range(0, Some(log_id.index))?;
        self.flush(StorageIOError::write_logs).await
    }
}

/// The applied state: the metadata image plus what openraft needs to resume from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, ControllerNode>,
    pub image: MetadataImage,
}

/// A snapshot as stored in sled: its openraft metadata and the serialized
/// [`AppliedState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ControllerNode>,
    data: Vec<u8>,
}

/// Read access to a node's applied metadata, shared with the state machine.
#[derive(Clone)]
pub struct MetadataReader {
    state: Arc<RwLock<AppliedState>>,
    applied: watch::Sender<u64>,
}

impl MetadataReader {
    /// A copy of the image as applied so far.
    pub fn image(&self) -> MetadataImage {
        self.state.read().image.clone()
    }

    /// The id of the last applied log entry.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.state.read().last_applied
    }

    /// The image together with the index of the last entry it holds (0 before any).
    pub fn image_at(&self) -> (MetadataImage, u64) {
        let state = self.state.read();
        (
            state.image.clone(),
            state.last_applied.map_or(0, |id| id.index),
        )
    }

    /// The voters and learners of the quorum as last applied, with their addresses.
    pub fn membership(&self) -> StoredMembership<NodeId, ControllerNode> {
        self.state.read().membership.clone()
    }

    /// Follows the applied index: the receiver sees a change after every applied batch
    /// of entries or installed snapshot, so a broker reacts to metadata without polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// The metadata state machine and its snapshot store.
#[derive(Clone)]
pub struct StateMachineStore {
    db: sled::Db,
    meta: sled::Tree,
    state: Arc<RwLock<AppliedState>>,
    applied: watch::Sender<u64>,
}

impl StateMachineStore {
    fn open(db: &sled::Db) -> Result<Self, ControllerError> {
        let meta = db.open_tree(META_TREE).map_err(|e| {
            ControllerError::from(StorageError::from(StorageIOError::read_state_machine(&e)))
        })?;
        let mut store = Self {
            db: db.clone(),
            meta,
            state: Arc::default(),
            applied: watch::channel(0).0,
        };
        if let Some(snapshot) = store.stored_snapshot()? {
            let state: AppliedState = decode(&snapshot.data).map_err(|e| {
                StorageError::from(StorageIOError::read_snapshot(
                    Some(snapshot.meta.signature()),
                    &e,
                ))
            })?;
            store
                .applied
                .send_replace(state.last_applied.map_or(0, |id| id.index));
            store.state = Arc::new(RwLock::new(state));
        }
        Ok(store)
    }

    /// A handle that reads the applied image (for the broker and tests).
    pub fn reader(&self) -> MetadataReader {
        MetadataReader {
            state: self.state.clone(),
            applied: self.applied.clone(),
        }
    }

    fn stored_snapshot(&self) -> StoreResult<Option<StoredSnapshot>> {
        read_json(&self.meta, SNAPSHOT_KEY, |e| {
            StorageIOError::read_snapshot(None, e)
        })
    }

    async fn store_snapshot(&self, snapshot: &StoredSnapshot) -> StoreResult<()> {
        let signature = Some(snapshot.meta.signature());
        let err =
            |e: AnyError| StorageError::from(StorageIOError::write_snapshot(signature.clone(), e));
        let bytes = encode(snapshot).map_err(|e| err(AnyError::new(&e)))?;
        self.meta
            .insert(SNAPSHOT_KEY, bytes)
            .map_err(|e| err(AnyError::new(&e)))?;
        // Openraft purges the log behind a snapshot, so the snapshot must be on disk first.
        self.db
            .flush_async()
            .await
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let state = self.state.read().clone();
        let data = encode(&state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        self.store_snapshot(&stored).await?;
        tracing::debug!(snapshot_id = %stored.meta.snapshot_id, "built a metadata snapshot");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, ControllerNode>,
    )> {
        let state = self.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<MetadataResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write();
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => MetadataResponse::Internal,
                EntryPayload::Normal(record) => state.image.apply(&record),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    MetadataResponse::Internal
                }
            };
            responses.push(response);
        }
        let applied = state.last_applied.map_or(0, |id| id.index);
        drop(state);
        self.applied.send_replace(applied);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ControllerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let mut installed: AppliedState =
            decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The leader's metadata is authoritative for where the snapshot ends.
        installed.last_applied = meta.last_log_id;
        installed.membership = meta.last_membership.clone();
        self.store_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        tracing::info!(snapshot_id = %meta.snapshot_id, "installed a metadata snapshot");
        let applied = installed.last_applied.map_or(0, |id| id.index);
        *self.state.write() = installed;
        self.applied.send_replace(applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
        async fn build(&self) -> StoreResult<(tempfile::TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let db = open_db(dir.path()).map_err(|e| StorageIOError::write(&e))?;
            let (log, sm) = open_stores(&db).map_err(|e| StorageIOError::write(&e))?;
            Ok((dir, log, sm))
        }
    }

    /// Copies a sled directory as it is on disk now: what a `kill -9` would leave.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// With sled's background flusher off, a vote and appended entries are on disk as
    /// soon as the store reports them saved (nothing relies on a later flush or on drop).
    #[tokio::test]
    async fn vote_and_entries_are_on_disk_once_reported_saved() {
        use openraft::storage::RaftLogStorageExt;
        use openraft::testing::log_id;

        let root = tempfile::tempdir().unwrap();
        let live = root.path().join("live");
        let db = sled::Config::new()
            .path(&live)
            .flush_every_ms(None)
            .open()
            .unwrap();
        let (mut log, _sm) = open_stores(&db).unwrap();
        let vote = Vote::new(7, 2);
        log.save_vote(&vote).await.unwrap();
        let entries = (1..=3).map(|i| Entry::<TypeConfig> {
            log_id: log_id(7, 2, i),
            payload: EntryPayload::Normal(crate::MetadataRecord::Noop),
        });
        log.blocking_append(entries).await.unwrap();

        // Copy while the store is still open, so no flush on drop can help.
        let crashed = root.path().join("crashed");
        copy_dir(&live, &crashed);
        let reopened = open_db(&crashed).unwrap();
        let (mut log, _sm) = open_stores(&reopened).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(7, 2, 3)));
        let stored = log.try_get_log_entries(1..=3).await.unwrap();
        assert_eq!(stored.len(), 3);
        drop(db);
    }

    /// openraft's own conformance suite, each case on a fresh sled directory.
    #[test]
    fn openraft_storage_suite() -> StoreResult<()> {
        Suite::test_all(SledBuilder)
    }
}
