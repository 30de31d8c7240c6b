//! Flags of the metadata quorum and the broker lifecycle (KRaft's
//! `controller.quorum.voters`, `broker.session.timeout.ms`, ...), each also read from
//! `SLUICE_<NAME>`. Cluster tests shorten the timeouts with them.

use clap::Args;
use sluice_broker::cluster::bootstrap::parse_voters;
use sluice_broker::BrokerConfig;

#[derive(Debug, Args)]
pub struct ClusterFlags {
    /// Address the controller RPC listener binds (host:port). Default: this node's
    /// entry in --voters, or a free 127.0.0.1 port for a single node.
    #[arg(long, env = "SLUICE_RPC_LISTEN")]
    pub rpc_listen: Option<String>,
    /// `controller.quorum.voters`: `ID@HOST:PORT,...`, the controller RPC addresses of
    /// the voting nodes. Nodes listed run a voter (and a broker); others join as
    /// learners. Default: this node alone.
    #[arg(long, env = "SLUICE_VOTERS")]
    pub voters: Option<String>,
    /// Pins the cluster id. Default: derived from --voters (a single node draws one).
    #[arg(long, env = "SLUICE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// `broker.session.timeout.ms`: a broker that has not heartbeated for this long is
    /// fenced.
    #[arg(
        long,
        env = "SLUICE_BROKER_SESSION_TIMEOUT_MS",
        default_value_t = 9_000
    )]
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    #[arg(
        long,
        env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 500
    )]
    pub broker_heartbeat_interval_ms: u64,
    /// How long after a broker's heartbeat stream breaks (its process died) it is
    /// fenced, unless it heartbeats again first.
    #[arg(
        long,
        env = "SLUICE_BROKER_HEARTBEAT_LOSS_GRACE_MS",
        default_value_t = sluice_controller::heartbeat::DEFAULT_LOSS_GRACE_MS
    )]
    pub broker_heartbeat_loss_grace_ms: u64,
    /// Raft election timeout, lower bound (ms).
    #[arg(long, env = "SLUICE_ELECTION_TIMEOUT_MIN_MS", default_value_t = 300)]
    pub election_timeout_min_ms: u64,
    /// Raft election timeout, upper bound (ms).
    #[arg(long, env = "SLUICE_ELECTION_TIMEOUT_MAX_MS", default_value_t = 600)]
    pub election_timeout_max_ms: u64,
    /// Raft leader heartbeat interval (ms).
    #[arg(long, env = "SLUICE_RAFT_HEARTBEAT_INTERVAL_MS", default_value_t = 60)]
    pub raft_heartbeat_interval_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`-like: a metadata snapshot is
    /// taken after this many log entries, and the log before it purged.
    #[arg(
        long,
        env = "SLUICE_METADATA_SNAPSHOT_MAX_LOG_ENTRIES",
        default_value_t = 5_000
    )]
    pub metadata_snapshot_max_log_entries: u64,
    /// How long an admin request waits for the metadata quorum.
    #[arg(long, env = "SLUICE_ADMIN_TIMEOUT_MS", default_value_t = 30_000)]
    pub admin_timeout_ms: u64,
    /// `controlled.shutdown.*`: how long a clean stop waits for the controller to move
    /// this broker's leaderships away.
    #[arg(
        long,
        env = "SLUICE_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub controlled_shutdown_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller periodically moves
    /// leadership back to each partition's preferred (first) replica.
    #[arg(long, env = "SLUICE_AUTO_LEADER_REBALANCE_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds here (Kafka's is in
    /// seconds, default 300): how often the active controller checks leader imbalance.
    #[arg(
        long,
        env = "SLUICE_LEADER_IMBALANCE_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`: a broker not leading more than this
    /// percentage of the partitions it is the preferred replica of gets them back.
    #[arg(
        long,
        env = "SLUICE_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        default_value_t = 10
    )]
    pub leader_imbalance_per_broker_percentage: u32,
    /// Mutual TLS on the controller RPC port (Raft, broker registration and heartbeats,
    /// forwarded metadata writes), as Kafka secures `controller.listener.names` with
    /// SSL: uses the listeners' --ssl-certificate-location, --ssl-key-location and
    /// --ssl-truststore-location (required), read once at start. The certificate must
    /// name the hosts of --voters and allow client authentication; every node of the
    /// cluster must set this flag alike.
    #[arg(
        long,
        env = "SLUICE_CONTROLLER_TLS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub controller_tls: bool,
}

impl ClusterFlags {
    pub fn apply(self, c: &mut BrokerConfig) -> anyhow::Result<()> {
        let cluster = &mut c.cluster;
        if let Some(list) = &self.voters {
            cluster.voters = parse_voters(list).map_err(|e| anyhow::anyhow!("--voters: {e}"))?;
        }
        anyhow::ensure!(
            self.election_timeout_min_ms > self.raft_heartbeat_interval_ms
                && self.election_timeout_max_ms > self.election_timeout_min_ms,
            "need --raft-heartbeat-interval-ms < --election-timeout-min-ms < --election-timeout-max-ms"
        );
        anyhow::ensure!(
            self.broker_heartbeat_interval_ms > 0
                && self.broker_heartbeat_interval_ms < self.broker_session_timeout_ms,
            "--broker-heartbeat-interval-ms must be positive and below --broker-session-timeout-ms"
        );
        cluster.rpc_listen = self.rpc_listen;
        cluster.cluster_id = self.cluster_id;
        cluster.session_timeout_ms = self.broker_session_timeout_ms;
        cluster.heartbeat_interval_ms = self.broker_heartbeat_interval_ms;
        cluster.heartbeat_loss_grace_ms = self.broker_heartbeat_loss_grace_ms;
        cluster.election_timeout_min_ms = self.election_timeout_min_ms;
        cluster.election_timeout_max_ms = self.election_timeout_max_ms;
        cluster.raft_heartbeat_interval_ms = self.raft_heartbeat_interval_ms;
        cluster.snapshot_max_log_entries = self.metadata_snapshot_max_log_entries.max(1);
        cluster.admin_timeout_ms = self.admin_timeout_ms.max(1);
        cluster.controlled_shutdown_timeout_ms = self.controlled_shutdown_timeout_ms;
        anyhow::ensure!(
            self.leader_imbalance_check_interval_ms > 0,
            "--leader-imbalance-check-interval-ms must be positive"
        );
        anyhow::ensure!(
            self.leader_imbalance_per_broker_percentage <= 100,
            "--leader-imbalance-per-broker-percentage must be between 0 and 100"
        );
        cluster.auto_leader_rebalance_enable = self.auto_leader_rebalance_enable;
        cluster.leader_imbalance_check_interval_ms = self.leader_imbalance_check_interval_ms;
        cluster.leader_imbalance_per_broker_percentage =
            self.leader_imbalance_per_broker_percentage;
        // Only the switch: the TLS files are the listeners', set by the security flags
        // after these, so the controller reads them when it starts.
        cluster.rpc_tls = self.controller_tls;
        Ok(())
    }
}
