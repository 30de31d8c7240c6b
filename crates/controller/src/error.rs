//! The crate's error type.

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::StorageError;

use crate::types::{ControllerNode, NodeId};

/// What can go wrong starting, driving or stopping a controller node. openraft's errors
/// are large, so they are boxed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("opening the controller store at {path}: {source}")]
    OpenStore {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("controller store: {0}")]
    Store(#[source] Box<StorageError<NodeId>>),
    #[error("invalid controller configuration: {0}")]
    Config(String),
    #[error("controller RPC listener: {0}")]
    Listener(#[from] std::io::Error),
    #[error("raft stopped: {0}")]
    Fatal(#[source] Box<Fatal<NodeId>>),
    #[error("initializing the quorum: {0}")]
    Initialize(#[source] Box<RaftError<NodeId, InitializeError<NodeId, ControllerNode>>>),
    #[error("writing a metadata record: {0}")]
    Write(#[source] Box<RaftError<NodeId, ClientWriteError<NodeId, ControllerNode>>>),
}

impl From<StorageError<NodeId>> for ControllerError {
    fn from(e: StorageError<NodeId>) -> Self {
        Self::Store(Box::new(e))
    }
}

impl From<Fatal<NodeId>> for ControllerError {
    fn from(e: Fatal<NodeId>) -> Self {
        Self::Fatal(Box::new(e))
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, ControllerNode>>> for ControllerError {
    fn from(e: RaftError<NodeId, InitializeError<NodeId, ControllerNode>>) -> Self {
        Self::Initialize(Box::new(e))
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, ControllerNode>>> for ControllerError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, ControllerNode>>) -> Self {
        Self::Write(Box::new(e))
    }
}
