//! The coordinator's settings, with Kafka's names and defaults.

/// Group coordinator configuration (`group.*`, `offsets.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: how many shards the groups are spread over.
    pub offsets_partitions: i32,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a group that was empty waits for more
    /// members before its first generation, extended while members keep arriving.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`: members (joined plus pending) per group.
    pub max_size: usize,
    /// Our own bound: members told MEMBER_ID_REQUIRED that have not joined yet, per
    /// group and in all. Kafka has none; without one, a client sending JoinGroups with
    /// empty member ids in a loop grows the pending set until session timeouts expire.
    pub max_pending_members_per_group: usize,
    pub max_pending_members_total: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// How long a brand-new member may wait in a join phase (Kafka's fixed 5 minutes).
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            offsets_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            max_pending_members_per_group: 1_000,
            max_pending_members_total: 100_000,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            new_member_join_timeout_ms: 300_000,
        }
    }
}
