//! The openraft type configuration: node ids, node addresses, and the metadata records
//! that form the Raft log's application data.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use sluice_auth::acl::AclBinding;

use crate::image::{
    BrokerEndpoint, PartitionAssignment, PartitionChange, ProducerIdBlock, RejectReason,
};

/// A controller node's id (the `--node-id` of the node that runs it).
pub type NodeId = u64;

/// What the quorum knows of a member: where its Raft RPC service listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    /// `host:port` of the node's controller RPC listener.
    pub rpc_addr: String,
}

impl ControllerNode {
    pub fn new(rpc_addr: impl Into<String>) -> Self {
        Self {
            rpc_addr: rpc_addr.into(),
        }
    }
}

impl fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rpc_addr)
    }
}

/// One change to the cluster metadata, appended through Raft and applied by every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Changes nothing; lets a caller confirm it can commit through the current leader.
    Noop,
    /// A broker (re)registers; a registration starts fenced, as in KRaft.
    RegisterBroker {
        id: i32,
        /// The broker's incarnation: must grow with every registration of the same id.
        epoch: i64,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    },
    /// The broker with this id and epoch may lead and join ISRs.
    UnfenceBroker { id: i32, epoch: i64 },
    /// The broker with this id and epoch may not lead nor join ISRs.
    FenceBroker { id: i32, epoch: i64 },
    /// A new topic with its full replica assignment, placed by the active controller
    /// before proposing (see [`crate::placement`]) so every node applies the same one.
    /// Each partition's ISR is its unfenced replicas as of this record's place in the
    /// log, and its leader the first of them.
    CreateTopic {
        name: String,
        /// Kafka's topic ID (a UUID), as its 16 bytes.
        id: [u8; 16],
        /// One entry per partition, partition 0 first.
        partitions: Vec<PartitionAssignment>,
        configs: BTreeMap<String, String>,
    },
    /// Removes a topic and all its partitions. With `topic_id`, only if the topic still
    /// has that ID, so a retried delete never removes a topic re-created meanwhile.
    DeleteTopic {
        name: String,
        #[serde(default)]
        topic_id: Option<[u8; 16]>,
    },
    /// Adds partitions to a topic (Kafka's CreatePartitions), numbered from
    /// `first_partition`, which must be the topic's current partition count: a record
    /// computed from an older count is rejected instead of adding twice.
    CreatePartitions {
        topic: String,
        topic_id: [u8; 16],
        first_partition: u32,
        partitions: Vec<PartitionAssignment>,
    },
    /// Sets (`Some`) or removes (`None`) topic configs, as Kafka's ConfigRecord does; the
    /// active controller resolves AlterConfigs and IncrementalAlterConfigs into this.
    AlterTopicConfigs {
        topic: String,
        changes: BTreeMap<String, Option<String>>,
    },
    /// A new leader and ISR for one partition.
    PartitionChange(PartitionChange),
    /// Hands the next block of producer ids to a broker (Kafka's AllocateProducerIds).
    /// The block is chosen when the record is applied, so two allocations proposed at
    /// once still get different blocks.
    AllocateProducerIds { broker_id: i32, broker_epoch: i64 },
    /// Adds ACLs (Kafka's CreateAcls); those already present are no-ops. Rejected whole
    /// if any binding fails [`AclBinding::validate`].
    CreateAcls { bindings: Vec<AclBinding> },
    /// Removes exactly these ACLs; absent ones are ignored. The broker resolves
    /// DeleteAcls filters against its image into this list, so every node removes the
    /// same bindings whatever it holds.
    RemoveAcls { bindings: Vec<AclBinding> },
    /// Sets a user's SCRAM credential for one mechanism (Kafka's
    /// AlterUserScramCredentials upsertion, after the broker derived the keys from the
    /// salted password it was sent). Neither the password nor the salted password is
    /// ever stored.
    UpsertScramCredential {
        user: String,
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        mechanism: String,
        salt: Vec<u8>,
        iterations: u32,
        /// H(ClientKey) and HMAC(SaltedPassword, "Server Key"): the hash's size each.
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    },
    /// Removes a user's SCRAM credential for one mechanism, which must exist.
    DeleteScramCredential { user: String, mechanism: String },
}

/// The state machine's answer to one applied log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataResponse {
    /// The record changed the image (or was a no-op record).
    Applied,
    /// The record was committed but left the image unchanged, for this reason. Every node
    /// decides this identically, since it depends only on the image.
    Rejected(RejectReason),
    /// An [`MetadataRecord::AllocateProducerIds`] was applied and handed out this block.
    ProducerIds(ProducerIdBlock),
    /// A Raft-internal entry (blank or membership change).
    Internal,
}

openraft::declare_raft_types!(
    /// The openraft types of the metadata quorum.
    pub TypeConfig:
        D = MetadataRecord,
        R = MetadataResponse,
        NodeId = NodeId,
        Node = ControllerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
