//! The crate's error type.

use sluice_protocol::codec::{DecodeError, EncodeError};
use sluice_protocol::error::ErrorCode;
use sluice_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("connection to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("encoding a request: {0}")]
    Encode(#[from] EncodeError),
    #[error("decoding a response: {0}")]
    Decode(#[from] DecodeError),
    #[error("response frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    #[error("response correlation id {got} does not match the request's {expected}")]
    Correlation { expected: i32, got: i32 },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("this replica is not the leader")]
    NotLeader,
    #[error("broker answered {0:?}")]
    Kafka(ErrorCode),
}
