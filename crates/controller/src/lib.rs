//! sluice-controller: the metadata quorum. An openraft (0.9, storage-v2) Raft group whose
//! log is stored in sled and whose RPCs travel over tonic; the state machine is the
//! cluster's [`MetadataImage`] (brokers and topics), built by applying [`MetadataRecord`]s.
//!
//! Durability invariant: a vote or a log entry is reported saved to openraft only after
//! sled has flushed it to disk (see [`store`]).

pub mod controller;
pub mod error;
pub mod image;
pub mod network;
pub mod proto;
pub mod server;
pub mod store;
pub mod types;

pub use controller::{Controller, ControllerConfig};
pub use error::ControllerError;
pub use image::{BrokerEndpoint, BrokerRegistration, MetadataImage, RejectReason, TopicImage};
pub use types::{ControllerNode, MetadataRecord, MetadataResponse, NodeId, TypeConfig};
