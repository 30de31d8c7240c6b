//! Errors of the txn crate: only the decoding and encoding of `__transaction_state`
//! records can fail; protocol-level outcomes are Kafka error codes in replies.

use sluice_protocol::codec::{DecodeError, EncodeError};

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("malformed __transaction_state record: {0}")]
    BadRecord(&'static str),
    #[error("__transaction_state record with unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
