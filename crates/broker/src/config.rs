//! The broker's own settings, as the `sluice` binary hands them over after parsing flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_group::GroupConfig;
use sluice_txn::TxnConfig;

use crate::listeners::{ListenerConfig, DEFAULT_LISTENER};
use crate::security::SecurityConfig;
use crate::topic_config::BrokerLogDefaults;

/// Everything a node needs to start. Built by the binary from flags / `SLUICE_*` env vars;
/// tests build it directly.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// The Kafka listeners (`listeners` / `advertised.listeners`), in order; the first
    /// is the one logged as `listen=` at start.
    pub listeners: Vec<ListenerConfig>,
    /// `inter.broker.listener.name`: the listener other brokers use.
    pub inter_broker_listener: String,
    pub rack: Option<String>,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// Broker-level defaults of topic configs (`log.retention.ms`, `message.max.bytes`, ...).
    pub log_defaults: BrokerLogDefaults,
    /// `log.retention.check.interval.ms`: how often retention runs.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for compacted logs to clean.
    pub log_cleaner_backoff_ms: u64,
    /// `log.flush.scheduler.interval.ms`-like cadence of the background flusher that
    /// enforces `flush.ms` (with the default `flush.ms`, rolls advance recovery points).
    pub flush_check_interval_ms: u64,
    /// `socket.request.max.bytes`: larger frames are refused before allocation.
    pub socket_request_max_bytes: usize,
    /// `max.connections`: accepted connections beyond this are closed at once.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections one client IP may hold.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: other limits for given IPs.
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// `listener.name.<name>.max.connections`, by upper-case listener name.
    pub listener_max_connections: BTreeMap<String, usize>,
    /// Responses queued per connection before the broker stops reading from it.
    pub max_inflight_requests: usize,
    /// Upper bound on `max_wait_ms` of a parked fetch, whatever a client asks.
    pub fetch_max_wait_cap_ms: u64,
    /// `connections.max.idle.ms`: a connection that sends nothing for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `fetch.max.bytes`: the most a Fetch response carries, whatever a client asks.
    pub fetch_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes buffered across all connections.
    pub queued_max_request_bytes: usize,
    /// The group coordinator's settings (`group.*`, `offsets.*`).
    pub groups: GroupConfig,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: i64,
    /// The transaction coordinator's settings (`transaction.*`, `transactional.id.*`).
    pub txns: TxnConfig,
    /// `transaction.state.log.segment.bytes`.
    pub txn_state_segment_bytes: i64,
    /// `transaction.state.log.min.isr` (capped at the topic's replication factor).
    pub txn_state_min_isr: i64,
    /// Where the HTTP endpoint (health and metrics) listens; `None` turns it off.
    pub http_listen: Option<String>,
    /// The metadata quorum and the broker's lifecycle in it.
    pub cluster: ClusterConfig,
    /// Listener security protocols, TLS, SASL and the authorizer.
    pub security: SecurityConfig,
    /// Replica fetching and ISR upkeep (`replica.*`).
    pub replication: ReplicationConfig,
}

/// Kafka's `replica.*` settings.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: a follower's long-poll wait.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.backoff.ms`: a follower's pause after a fetch error.
    pub fetch_backoff_ms: u64,
    /// `replica.fetch.max.bytes`: per partition per fetch.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per fetch.
    pub fetch_response_max_bytes: i32,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            // Kafka's default is 1000 ms; errors here are mostly a leader change the
            // metadata is about to announce, and a shorter pause shortens failover.
            fetch_backoff_ms: 100,
            fetch_max_bytes: 1024 * 1024,
            fetch_response_max_bytes: 10 * 1024 * 1024,
        }
    }
}

/// How the node takes part in the metadata quorum (KRaft's `controller.quorum.voters`,
/// `broker.session.timeout.ms`, ...).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Controller RPC listener. `None`: the node's own `voters` address, or an ephemeral
    /// port on 127.0.0.1 for a single node that talks to nobody.
    pub rpc_listen: Option<String>,
    /// Voter id -> `host:port` of its controller RPC listener. Empty: this node alone, a
    /// one-voter quorum initialised on first start.
    pub voters: BTreeMap<u64, String>,
    /// Pins the cluster id; by default a single node picks a random one and a multi-node
    /// cluster derives it from `voters`, so every node agrees without talking.
    pub cluster_id: Option<String>,
    /// `broker.session.timeout.ms`: a broker that has not heartbeated for this long is fenced.
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// Fencing delay after a broker's heartbeat stream breaks (a crashed process).
    pub heartbeat_loss_grace_ms: u64,
    /// Raft election timeout range and leader heartbeat interval.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub raft_heartbeat_interval_ms: u64,
    /// A snapshot is taken after this many log entries since the last one (the log
    /// before it is then purged).
    pub snapshot_max_log_entries: u64,
    /// How long an admin write may wait for the quorum before REQUEST_TIMED_OUT.
    pub admin_timeout_ms: u64,
    /// How long a clean shutdown waits for the controller to move leadership away.
    pub controlled_shutdown_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller periodically gives
    /// leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds here.
    pub leader_imbalance_check_interval_ms: u64,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Mutual TLS on the controller RPC port (Raft, broker lifecycle, forwarded metadata
    /// writes) with the listeners' certificate, key and CA (`security.tls`, read once at
    /// start), as Kafka secures `controller.listener.names` with SSL. Every node of the
    /// cluster must agree on it.
    pub rpc_tls: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            rpc_listen: None,
            voters: BTreeMap::new(),
            cluster_id: None,
            session_timeout_ms: 9_000,
            heartbeat_interval_ms: 500,
            heartbeat_loss_grace_ms: sluice_controller::heartbeat::DEFAULT_LOSS_GRACE_MS,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            raft_heartbeat_interval_ms: 60,
            snapshot_max_log_entries: 5_000,
            admin_timeout_ms: 30_000,
            controlled_shutdown_timeout_ms: 10_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
            rpc_tls: false,
        }
    }
}

impl BrokerConfig {
    /// Kafka's defaults on 127.0.0.1:9092 with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id: 1,
            data_dir: data_dir.into(),
            listeners: vec![ListenerConfig {
                name: DEFAULT_LISTENER.to_string(),
                bind: "127.0.0.1:9092".to_string(),
                advertise: None,
            }],
            inter_broker_listener: DEFAULT_LISTENER.to_string(),
            rack: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            log_defaults: BrokerLogDefaults::default(),
            retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            flush_check_interval_ms: 1_000,
            replication: ReplicationConfig::default(),
            socket_request_max_bytes: 104_857_600,
            max_connections: 10_000,
            max_connections_per_ip: 2_147_483_647,
            max_connections_per_ip_overrides: BTreeMap::new(),
            listener_max_connections: BTreeMap::new(),
            max_inflight_requests: 100,
            fetch_max_wait_cap_ms: 30_000,
            connections_max_idle_ms: 600_000,
            fetch_max_bytes: 57_671_680,
            // Kafka leaves this unbounded (-1); Sluice bounds it so that memory held by
            // requests in progress has a ceiling, generous enough for several 100 MiB frames.
            queued_max_request_bytes: 512 * 1024 * 1024,
            groups: GroupConfig::default(),
            offsets_topic_segment_bytes: 104_857_600,
            txns: TxnConfig::default(),
            txn_state_segment_bytes: 104_857_600,
            txn_state_min_isr: 2,
            http_listen: None,
            cluster: ClusterConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}
