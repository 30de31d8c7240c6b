//! Sans-io Kafka wire codec: generated request/response types, framing, record batches.
//!
//! Nothing in this crate performs I/O or depends on an async runtime: it turns bytes
//! into values and back, and every decode failure is a value, never a panic.

pub mod compression;
pub mod error;
pub mod records;
