//! One module per Kafka API, each stating the versions it serves.
//!
//! Versions follow DESIGN section 2: every version in Kafka's schemas that works with
//! the v2 record format (Produce v3+, Fetch v4+), none marked `latestVersionUnstable`,
//! and exactly what ApiVersions advertises.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod replica_fetch;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use sluice_protocol::api::ApiKey;

/// Every API this broker serves with its (min, max) version, as ApiVersions advertises.
pub const SUPPORTED: &[(ApiKey, (i16, i16))] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    (ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    (ApiKey::JoinGroup, join_group::VERSIONS),
    (ApiKey::Heartbeat, heartbeat::VERSIONS),
    (ApiKey::LeaveGroup, leave_group::VERSIONS),
    (ApiKey::SyncGroup, sync_group::VERSIONS),
    (ApiKey::DescribeGroups, describe_groups::VERSIONS),
    (ApiKey::ListGroups, list_groups::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    (ApiKey::AlterConfigs, alter_configs::VERSIONS),
    (ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::VERSIONS,
    ),
    (ApiKey::DeleteGroups, delete_groups::VERSIONS),
    (ApiKey::OffsetDelete, offset_delete::VERSIONS),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    (ApiKey::DescribeQuorum, describe_quorum::VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::ElectLeaders, elect_leaders::VERSIONS),
    (
        ApiKey::DescribeTopicPartitions,
        describe_topic_partitions::VERSIONS,
    ),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS),
    (ApiKey::EndTxn, end_txn::VERSIONS),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS),
    (ApiKey::WriteTxnMarkers, write_txn_markers::VERSIONS),
    (ApiKey::DescribeProducers, describe_producers::VERSIONS),
    (
        ApiKey::DescribeTransactions,
        describe_transactions::VERSIONS,
    ),
    (ApiKey::ListTransactions, list_transactions::VERSIONS),
    (ApiKey::SaslHandshake, crate::session::HANDSHAKE_VERSIONS),
    (
        ApiKey::SaslAuthenticate,
        crate::session::AUTHENTICATE_VERSIONS,
    ),
    (ApiKey::DescribeAcls, describe_acls::VERSIONS),
    (ApiKey::CreateAcls, create_acls::VERSIONS),
    (ApiKey::DeleteAcls, delete_acls::VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        describe_user_scram_credentials::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        alter_user_scram_credentials::VERSIONS,
    ),
];

pub fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _)| *k == api).map(|(_, v)| *v)
}

/// Kafka's "authorized operations" bitfields when no authorizer is configured: every
/// operation the resource type supports.
pub mod authorized_ops {
    const fn bits(ops: &[u8]) -> i32 {
        let mut v = 0i32;
        let mut i = 0;
        while i < ops.len() {
            v |= 1 << ops[i];
            i += 1;
        }
        v
    }
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    pub const TOPIC: i32 = bits(&[3, 4, 5, 6, 7, 8, 10, 11]);
    /// CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE.
    pub const CLUSTER: i32 = bits(&[5, 7, 8, 9, 10, 11, 12]);
    /// READ, DELETE, DESCRIBE.
    pub const GROUP: i32 = bits(&[3, 6, 8]);
    /// The value Kafka sends when the client did not ask for authorized operations.
    pub const NOT_REQUESTED: i32 = i32::MIN;
}
