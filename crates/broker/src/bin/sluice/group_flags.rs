//! Flags of the group coordinator (`group.*`, `offsets.*` broker properties), each also
//! read from `SLUICE_<NAME>`. Tests shorten the timeouts with them.

use clap::Args;
use sluice_broker::BrokerConfig;

#[derive(Debug, Args)]
pub struct GroupFlags {
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (fixed once
    /// the topic exists).
    #[arg(
        long,
        env = "SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS",
        default_value_t = 50
    )]
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_TOPIC_SEGMENT_BYTES",
        default_value_t = 104_857_600
    )]
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.retention.minutes`: how long offsets of an empty group are kept.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_RETENTION_MINUTES",
        default_value_t = 10_080
    )]
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: largest metadata string of a commit.
    #[arg(long, env = "SLUICE_OFFSET_METADATA_MAX_BYTES", default_value_t = 4096)]
    pub offset_metadata_max_bytes: usize,
    /// `group.min.session.timeout.ms`.
    #[arg(
        long,
        env = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    #[arg(
        long,
        env = "SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size`: members per group.
    #[arg(long, env = "SLUICE_GROUP_MAX_SIZE", default_value_t = i32::MAX)]
    pub group_max_size: i32,
    /// Members told MEMBER_ID_REQUIRED but not yet joined, per group (Sluice's bound
    /// against JoinGroup floods; Kafka has none).
    #[arg(
        long,
        env = "SLUICE_GROUP_MAX_PENDING_MEMBERS",
        default_value_t = 1_000
    )]
    pub group_max_pending_members: usize,
}

impl GroupFlags {
    pub fn apply(self, c: &mut BrokerConfig) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.offsets_topic_num_partitions),
            "--offsets-topic-num-partitions must be between 1 and 10000"
        );
        anyhow::ensure!(
            self.group_min_session_timeout_ms > 0
                && self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms,
            "--group-min-session-timeout-ms must be positive and at most --group-max-session-timeout-ms"
        );
        anyhow::ensure!(
            self.group_initial_rebalance_delay_ms >= 0,
            "--group-initial-rebalance-delay-ms must not be negative"
        );
        anyhow::ensure!(
            self.group_max_size >= 1,
            "--group-max-size must be at least 1"
        );
        anyhow::ensure!(
            self.offsets_retention_minutes >= 1 && self.offsets_retention_check_interval_ms >= 1,
            "offset retention settings must be positive"
        );
        // The topic is created with this as its segment.bytes, whose minimum (Kafka 4.0,
        // KIP-1030) is 1 MiB: a smaller value would only fail at the first group lookup.
        anyhow::ensure!(
            (1_048_576..=i64::from(i32::MAX)).contains(&self.offsets_topic_segment_bytes),
            "--offsets-topic-segment-bytes must be between 1048576 and 2147483647"
        );
        let g = &mut c.groups;
        g.offsets_partitions = self.offsets_topic_num_partitions;
        g.offsets_retention_ms = self.offsets_retention_minutes.saturating_mul(60_000);
        g.offsets_retention_check_interval_ms = self.offsets_retention_check_interval_ms;
        g.offset_metadata_max_bytes = self.offset_metadata_max_bytes;
        g.min_session_timeout_ms = self.group_min_session_timeout_ms;
        g.max_session_timeout_ms = self.group_max_session_timeout_ms;
        g.initial_rebalance_delay_ms = self.group_initial_rebalance_delay_ms;
        g.max_size = usize::try_from(self.group_max_size).unwrap_or(usize::MAX);
        g.max_pending_members_per_group = self.group_max_pending_members;
        c.offsets_topic_segment_bytes = self.offsets_topic_segment_bytes;
        Ok(())
    }
}
