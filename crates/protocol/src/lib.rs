//! Sans-io Kafka wire codec: generated request/response types, framing, record batches.
//!
//! Nothing in this crate performs I/O or depends on an async runtime: it turns bytes
//! into values and back, and every decode failure is a value, never a panic.

pub mod api;
pub mod codec;
pub mod compression;
pub mod coordinator_key;
pub mod error;
pub mod frame;
pub mod messages;
pub mod records;
