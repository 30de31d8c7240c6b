//! Errors of the group crate: only the decoding and encoding of `__consumer_offsets`
//! records can fail; protocol-level outcomes are Kafka error codes in responses.

use sluice_protocol::codec::{DecodeError, EncodeError};

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("malformed __consumer_offsets record: {0}")]
    BadRecord(&'static str),
    #[error("__consumer_offsets record with unknown key version {0}")]
    UnknownRecordVersion(i16),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
