//! The broker library's error type. A request-path `Err` closes that one connection;
//! protocol-level failures are Kafka error codes inside responses instead.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Net(#[from] std::io::Error),
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("storage: {0}")]
    Storage(#[from] sluice_storage::StorageError),
    #[error("frame: {0}")]
    Frame(#[from] sluice_protocol::frame::FrameError),
    #[error("decode: {0}")]
    Decode(#[from] sluice_protocol::codec::DecodeError),
    #[error("encode: {0}")]
    Encode(#[from] sluice_protocol::codec::EncodeError),
    #[error("api key {api_key} version {version} is not served")]
    UnsupportedApi { api_key: i16, version: i16 },
    /// Kafka's answer to a failed acks=0 produce: the only signal such a producer gets.
    #[error("acks=0 produce failed; closing the connection")]
    AcksZeroFailure,
    #[error("bad listener address {0}")]
    Address(String),
    #[error("configuration: {0}")]
    Config(String),
    /// A TLS setting that cannot be used (unreadable PEM, missing CA), or a handshake
    /// that failed or timed out.
    #[error("tls: {0}")]
    Tls(String),
}

impl BrokerError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BrokerError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
