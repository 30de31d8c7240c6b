//! Sluice's group coordinator: Kafka's classic consumer-group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), committed offsets, and the group admin APIs, as a
//! sans-io state machine.
//!
//! Nothing here does I/O or reads a clock: the broker passes the time in, carries out
//! the [`Effect`]s (responses to parked requests, appends to `__consumer_offsets`) and
//! reports write completions back. That keeps every rebalance rule testable with plain
//! function calls, and lets the same coordinator run unchanged where the offsets
//! partitions are replicated: the broker loads and unloads shards as it gains and loses
//! their leadership.

mod admin;
mod config;
mod coordinator;
mod error;
mod group;
mod join;
mod membership;
mod offsets;
pub mod records;
mod subscription;
mod txn_offsets;

#[cfg(test)]
mod tests;

pub use config::GroupConfig;
pub use coordinator::{ClientInfo, Coordinator, Effect, Reply, ReplyId, TxnProducer, WriteId};
pub use error::GroupError;
pub use group::GroupState;
pub use records::{partition_for, CommittedOffset, KeyValue};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
