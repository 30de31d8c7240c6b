//! sluice-controller: the metadata quorum. An openraft (0.9, storage-v2) Raft group whose
//! log is stored in sled and whose RPCs travel over tonic; the state machine is the
//! cluster's [`MetadataImage`] (brokers, topics, partitions, producer ids), built by
//! applying [`MetadataRecord`]s. [`placement`], [`election`] and [`delta`] are the pure
//! functions around it: where new replicas go, which leadership changes fencing (or a
//! preferred-leader election) causes, and what a change means for one broker.
//! [`heartbeat`] decides broker sessions (sans-io) and [`lifecycle`] registers, unfences
//! and fences brokers through Raft on the active controller (and rebalances leadership
//! to preferred replicas), fencing at once a broker [`probe`] finds gone;
//! [`broker_client`] is the broker's side of it, registering and heartbeating the
//! active controller over one stream.
//!
//! Durability invariant: a vote or a log entry is reported saved to openraft only after
//! sled has flushed it to disk (see [`store`]).

pub mod broker_client;
pub mod controller;
pub mod delta;
pub mod election;
pub mod error;
pub mod forward;
pub mod heartbeat;
pub mod image;
pub mod lifecycle;
pub mod network;
pub mod placement;
pub mod probe;
pub mod proto;
pub mod rpc_tls;
pub mod security;
pub mod server;
pub mod store;
pub mod types;

pub use broker_client::{BrokerClient, BrokerClientConfig, BrokerClientError, BrokerStatus};
pub use controller::{Controller, ControllerConfig};
pub use delta::{broker_delta, BrokerDelta};
pub use election::{LeaderImbalance, PreferredElection};
pub use error::ControllerError;
pub use forward::{ForwardError, MetadataClient, WriteOutcome};
pub use heartbeat::{BrokerHeartbeatManager, HeartbeatConfig};
pub use image::{
    BrokerEndpoint, BrokerRegistration, IsrMember, MetadataImage, PartitionAssignment,
    PartitionChange, PartitionImage, ProducerIdBlock, RejectReason, TopicImage, NO_LEADER,
};
pub use lifecycle::{Lifecycle, LifecycleConfig, RebalanceConfig};
pub use placement::{place, LiveBroker, PlacementError};
pub use security::{SecurityImage, StoredScramCredential};
pub use store::MetadataReader;
pub use types::{ControllerNode, MetadataRecord, MetadataResponse, NodeId, TypeConfig};
