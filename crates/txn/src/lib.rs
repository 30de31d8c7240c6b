//! Sluice's transaction coordinator: Kafka's transactional producer protocol (KIP-98:
//! InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//! transaction timeouts, fencing of zombie producers), as a sans-io state machine.
//!
//! Nothing here does I/O or reads a clock: the broker passes the time in, carries out
//! the [`Effect`]s (answers, appends to `__transaction_state`, transaction markers to
//! partition leaders) and reports their completion back. The state of every
//! transactional id lives in the log of its `__transaction_state` partition, in Kafka's
//! record format, so the coordinator follows that partition's leadership: the broker
//! loads a shard when it starts leading the partition and unloads it when it stops.

mod config;
mod coordinator;
mod error;
pub mod records;
mod state;

#[cfg(test)]
mod tests;

pub use config::TxnConfig;
pub use coordinator::{
    Effect, Init, Listed, MarkerJob, MarkerJobId, Reply, ReplyId, TxnCoordinator, WriteId,
    PARK_MAX_MS,
};
pub use error::TxnError;
pub use records::KeyValue;
pub use state::{by_topic, TopicPartition, TxnMeta, TxnState};

/// The internal topic holding the transaction coordinator's state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
