//! Sluice storage: the partition log engine (Kafka's on-disk layout: segments, sparse
//! offset and time indexes, checkpoints, recovery, retention, compaction).
//!
//! Synchronous by design: the broker decides where blocking is acceptable (it appends
//! and reads on its async threads, which only touch the page cache; fsyncs run in its
//! background flusher and admin work on the blocking pool). The entry points are
//! [`PartitionLog`] (one partition) and [`LogManager`] (the partitions of a data
//! directory). Record batches are stored exactly as received after offset assignment;
//! only their v2 headers are interpreted (records only for timestamp lookups and by
//! compaction, which rewrites closed segments of `cleanup.policy=compact` logs). Each log
//! also keeps idempotent-producer state (`producer_state`) to deduplicate retried batches.

mod batches;
mod checkpoint;
mod compaction;
mod config;
mod epoch_cache;
mod error;
mod fileio;
mod index;
mod locks;
mod log;
mod manager;
mod producer_state;
mod record_scan;
mod recovery;
mod retention;
mod scan;
mod segment;
mod time_index;
mod transactions;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use checkpoint::write_atomic;
pub use compaction::CleanReason;
pub use config::LogConfig;
pub use epoch_cache::EpochEntry;
pub use error::StorageError;
pub use log::{AppendInfo, CompactionOutcome, PartitionLog, ReadResult, RetentionOutcome};
pub use manager::{validate_topic, LogManager, TopicPartition};
pub use producer_state::ProducerSnapshotEntry;
pub use transactions::AbortedTxn;
