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
    /// The TLS handshake failed: the certificate did not verify on either side, or the
    /// peer is not a TLS listener.
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}: the host is not a valid TLS server name")]
    ServerName(String),
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
    /// The SASL login on the connection failed (wrong credentials, mechanism not enabled).
    #[error("SASL login to {addr} failed: {reason}")]
    Sasl { addr: String, reason: String },
}

impl ReplicationError {
    /// Whether this error shows the peer's process gone rather than slow: the
    /// connection was refused, reset or closed. A timeout proves nothing (a paused
    /// process or a lossy network looks the same), so it does not count; nor does a
    /// failed TLS handshake, as a peer refusing our certificate also closes the
    /// connection, yet is alive.
    pub fn shows_peer_gone(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            Self::Connect { source, .. } => source.kind() == ErrorKind::ConnectionRefused,
            Self::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}
