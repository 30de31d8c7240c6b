//! Kafka's replication protocol for one broker: the partition replicas it hosts
//! ([`Replica`]), the leader's view of its followers (ISR and high watermark,
//! [`leader::LeaderState`]), event-driven waiting on offsets ([`waiters`]), and the
//! replica fetchers that copy leaders' logs ([`fetcher`]) over the Kafka protocol
//! ([`client`]).
//!
//! The crate knows nothing of the metadata quorum: the broker tells replicas what they
//! are (leader with an ISR, follower of a broker) from its metadata image, and carries
//! the ISR changes a leader asks for ([`leader::IsrProposal`]) to the controller.

pub mod client;
pub mod error;
pub mod fetcher;
pub mod leader;
pub mod replica;
pub mod waiters;

pub use error::ReplicationError;
pub use leader::{IsrProposal, LeaderState};
pub use replica::{AckError, AppendError, LeaderInfo, Replica, Role};
