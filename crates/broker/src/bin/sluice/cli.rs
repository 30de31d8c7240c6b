//! Command-line flags of `sluice`, with Kafka's property names in the help and an
//! `SLUICE_<NAME>` environment variable for each (for containers).

use std::path::PathBuf;

use clap::Parser;
use sluice_broker::conn_limits;
use sluice_broker::listeners::{self, ListenerConfig};
use sluice_broker::topic_config::BrokerLogDefaults;
use sluice_broker::BrokerConfig;

use crate::cluster_flags::ClusterFlags;
use crate::group_flags::GroupFlags;
use crate::replication_flags::ReplicationFlags;
use crate::security_flags::SecurityFlags;
use crate::txn_flags::TxnFlags;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible streaming broker"
)]
pub struct Cli {
    /// Directory holding this node's logs and metadata.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds (host:port), as one listener named PLAINTEXT;
    /// the default when --listeners is not given is 127.0.0.1:9092.
    #[arg(long, env = "SLUICE_LISTEN", conflicts_with = "listeners")]
    pub listen: Option<String>,
    /// Address given to clients in Metadata (host:port); defaults to --listen.
    #[arg(long, env = "SLUICE_ADVERTISE", conflicts_with = "listeners")]
    pub advertise: Option<String>,
    /// `listeners`: named listeners, `NAME://host:port,...` (e.g.
    /// `INTERNAL://0.0.0.0:9093,EXTERNAL://0.0.0.0:9092`).
    #[arg(long, env = "SLUICE_LISTENERS")]
    pub listeners: Option<String>,
    /// `advertised.listeners`: what each named listener tells clients,
    /// `NAME://host:port,...`; a listener not named here advertises its bind address.
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS", requires = "listeners")]
    pub advertised_listeners: Option<String>,
    /// `inter.broker.listener.name`: the listener other brokers connect to (default:
    /// the first listener).
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTENER")]
    pub inter_broker_listener: Option<String>,
    /// This node's id (`node.id`).
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// Take the node id from the host name's ordinal suffix plus one, as a Kubernetes
    /// StatefulSet names its pods (`sluice-0` is node 1, `sluice-2` node 3); instead
    /// of --node-id.
    #[arg(long, env = "SLUICE_NODE_ID_FROM_HOSTNAME", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub node_id_from_hostname: bool,
    /// Address of the HTTP endpoint: `/health/live`, `/health/ready` and `/metrics`
    /// (Prometheus). `off` turns it off.
    #[arg(long, env = "SLUICE_HTTP_LISTEN", default_value = "127.0.0.1:9644")]
    pub http_listen: String,
    /// Rack of this node (`broker.rack`).
    #[arg(long, env = "SLUICE_RACK")]
    pub rack: Option<String>,
    /// Log filter, e.g. `info` or `sluice_broker=debug`. openraft's own logs are off by
    /// default (they repeat every heartbeat while a peer is down); the quorum's leadership
    /// changes are logged by Sluice itself. `info,openraft=info` shows them.
    #[arg(long, env = "SLUICE_LOG_LEVEL", default_value = "info,openraft=off")]
    pub log_level: String,
    /// `num.partitions`: partitions of auto-created topics.
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,
    /// `default.replication.factor` (capped at the number of brokers).
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics_enable: bool,
    /// `log.retention.ms` (-1: keep forever). Takes precedence over --log-retention-hours.
    #[arg(long, env = "SLUICE_LOG_RETENTION_MS")]
    pub log_retention_ms: Option<i64>,
    /// `log.retention.hours`.
    #[arg(long, env = "SLUICE_LOG_RETENTION_HOURS")]
    pub log_retention_hours: Option<i64>,
    /// `log.retention.bytes` per partition (-1: no limit).
    #[arg(long, env = "SLUICE_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// `log.retention.check.interval.ms`.
    #[arg(
        long,
        env = "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for logs to compact.
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000)]
    pub log_cleaner_backoff_ms: u64,
    /// `log.segment.bytes`.
    #[arg(long, env = "SLUICE_LOG_SEGMENT_BYTES")]
    pub log_segment_bytes: Option<i64>,
    /// `log.roll.ms`.
    #[arg(long, env = "SLUICE_LOG_ROLL_MS")]
    pub log_roll_ms: Option<i64>,
    /// `log.flush.interval.messages`.
    #[arg(long, env = "SLUICE_LOG_FLUSH_INTERVAL_MESSAGES")]
    pub log_flush_interval_messages: Option<i64>,
    /// `log.flush.interval.ms`.
    #[arg(long, env = "SLUICE_LOG_FLUSH_INTERVAL_MS")]
    pub log_flush_interval_ms: Option<i64>,
    /// `log.cleanup.policy`.
    #[arg(long, env = "SLUICE_LOG_CLEANUP_POLICY")]
    pub log_cleanup_policy: Option<String>,
    /// `log.message.timestamp.type` (CreateTime or LogAppendTime).
    #[arg(long, env = "SLUICE_LOG_MESSAGE_TIMESTAMP_TYPE")]
    pub log_message_timestamp_type: Option<String>,
    /// `producer.id.expiration.ms`: how long a partition keeps an idle producer's state
    /// (its last sequence numbers) before a retry from it is no longer recognized
    /// [default: 86400000, one day, storage's default].
    #[arg(long, env = "SLUICE_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<i64>,
    /// `message.max.bytes`: largest record batch accepted.
    #[arg(long, env = "SLUICE_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<i64>,
    /// `min.insync.replicas`.
    #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i64>,
    /// `socket.request.max.bytes`: larger request frames close the connection.
    #[arg(
        long,
        env = "SLUICE_SOCKET_REQUEST_MAX_BYTES",
        default_value_t = 104_857_600
    )]
    pub socket_request_max_bytes: usize,
    /// `max.connections`.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections one client IP may hold; more are closed
    /// when accepted.
    #[arg(
        long,
        env = "SLUICE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 2_147_483_647
    )]
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `ip:count,...` (IP addresses; IPv6 in
    /// brackets).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_IP_OVERRIDES")]
    pub max_connections_per_ip_overrides: Option<String>,
    /// `listener.name.<name>.max.connections` for each named listener:
    /// `NAME=count,...`.
    #[arg(long, env = "SLUICE_LISTENER_MAX_CONNECTIONS")]
    pub listener_max_connections: Option<String>,
    /// `connections.max.idle.ms`: close connections idle this long.
    #[arg(
        long,
        env = "SLUICE_CONNECTIONS_MAX_IDLE_MS",
        default_value_t = 600_000
    )]
    pub connections_max_idle_ms: u64,
    /// `fetch.max.bytes`: the most one Fetch response carries.
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES", default_value_t = 57_671_680)]
    pub fetch_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes buffered across all connections
    /// (Kafka: unbounded by default; Sluice: 512 MiB).
    #[arg(long, env = "SLUICE_QUEUED_MAX_REQUEST_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub queued_max_request_bytes: usize,
    /// Responses a connection may have queued before the broker stops reading from it.
    #[arg(long, env = "SLUICE_MAX_INFLIGHT_REQUESTS", default_value_t = 100)]
    pub max_inflight_requests: usize,
    #[command(flatten)]
    pub groups: GroupFlags,
    #[command(flatten)]
    pub txns: TxnFlags,
    #[command(flatten)]
    pub cluster: ClusterFlags,
    #[command(flatten)]
    pub replication: ReplicationFlags,
    #[command(flatten)]
    pub security: SecurityFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running a node.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Asks the node's HTTP endpoint (--http-listen, on this host) whether it is ready,
    /// or with --live alive, and exits 0 if so, 1 if not: a container healthcheck for an
    /// image that has no shell or curl.
    Healthcheck {
        /// Check liveness instead of readiness.
        #[arg(long)]
        live: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Adds the first SCRAM users to the node's data dir before it starts (Kafka's
    /// `kafka-storage format --add-scram`): each
    /// `SCRAM-SHA-512=[name=admin,password=admin-secret]` is salted and stored, never
    /// the password, and written to the cluster's metadata when the node starts.
    AddScram {
        /// `MECHANISM=[name=...,password=...(,iterations=N)]`, one or more.
        #[arg(required = true)]
        credentials: Vec<String>,
    },
}

/// The node id a StatefulSet pod's host name implies: its trailing ordinal plus one.
pub fn node_id_from_hostname(hostname: &str) -> anyhow::Result<i32> {
    let ordinal = hostname
        .rsplit_once('-')
        .map(|(_, n)| n)
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| *n >= 0 && *n < i32::MAX)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "host name {hostname:?} does not end in -<ordinal> (--node-id-from-hostname)"
            )
        })?;
    Ok(ordinal + 1)
}

fn hostname() -> anyhow::Result<String> {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.is_empty() {
            return Ok(h);
        }
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(h.trim().to_string())
}

impl Cli {
    pub fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut defaults = BrokerLogDefaults::default();
        let mut set = |key: &str, v: Option<String>| -> anyhow::Result<()> {
            if let Some(v) = v {
                // Validate against the topic config the broker property supplies.
                if let Some(def) = sluice_broker::topic_config::TOPIC_CONFIGS
                    .iter()
                    .find(|d| d.broker_key == Some(key))
                {
                    sluice_broker::topic_config::validate_topic_config(def.name, &v)
                        .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                }
                defaults.values.insert(key.to_string(), v);
            }
            Ok(())
        };
        let retention_ms = self.log_retention_ms.or(self
            .log_retention_hours
            .map(|h| h.saturating_mul(3_600_000)));
        set("log.retention.ms", retention_ms.map(|v| v.to_string()))?;
        set(
            "log.retention.bytes",
            self.log_retention_bytes.map(|v| v.to_string()),
        )?;
        set(
            "log.segment.bytes",
            self.log_segment_bytes.map(|v| v.to_string()),
        )?;
        set("log.roll.ms", self.log_roll_ms.map(|v| v.to_string()))?;
        set(
            "log.flush.interval.messages",
            self.log_flush_interval_messages.map(|v| v.to_string()),
        )?;
        set(
            "log.flush.interval.ms",
            self.log_flush_interval_ms.map(|v| v.to_string()),
        )?;
        set("log.cleanup.policy", self.log_cleanup_policy)?;
        set(
            "log.message.timestamp.type",
            self.log_message_timestamp_type,
        )?;
        set(
            "message.max.bytes",
            self.message_max_bytes.map(|v| v.to_string()),
        )?;
        set(
            "min.insync.replicas",
            self.min_insync_replicas.map(|v| v.to_string()),
        )?;
        if self.producer_id_expiration_ms.is_some_and(|ms| ms < 1) {
            anyhow::bail!("--producer-id-expiration-ms must be at least 1");
        }
        defaults.producer_id_expiration_ms = self.producer_id_expiration_ms;
        if self.num_partitions < 1 {
            anyhow::bail!("--num-partitions must be at least 1");
        }
        let mut c = BrokerConfig::new(self.data_dir);
        c.node_id = if self.node_id_from_hostname {
            node_id_from_hostname(&hostname()?)?
        } else {
            self.node_id
        };
        c.http_listen = (self.http_listen != "off").then_some(self.http_listen);
        c.listeners = match &self.listeners {
            Some(list) => listeners::configure(list, self.advertised_listeners.as_deref())?,
            None => vec![ListenerConfig {
                name: listeners::DEFAULT_LISTENER.to_string(),
                bind: self.listen.unwrap_or_else(|| "127.0.0.1:9092".to_string()),
                advertise: self.advertise,
            }],
        };
        if c.listeners.len() == 1 {
            listeners::split_host_port(&c.listeners[0].bind)?;
            if let Some(a) = &c.listeners[0].advertise {
                listeners::split_host_port(a)?;
            }
        }
        c.inter_broker_listener = match self.inter_broker_listener {
            Some(name) => {
                let name = name.to_ascii_uppercase();
                anyhow::ensure!(
                    c.listeners.iter().any(|l| l.name == name),
                    "--inter-broker-listener {name} is not among the listeners"
                );
                name
            }
            None => c.listeners[0].name.clone(),
        };
        c.rack = self.rack;
        c.num_partitions = self.num_partitions;
        c.default_replication_factor = self.default_replication_factor;
        c.auto_create_topics_enable = self.auto_create_topics_enable;
        c.log_defaults = defaults;
        c.retention_check_interval_ms = self.log_retention_check_interval_ms;
        c.log_cleaner_backoff_ms = self.log_cleaner_backoff_ms;
        c.socket_request_max_bytes = self.socket_request_max_bytes;
        c.max_connections = self.max_connections;
        c.max_connections_per_ip = self.max_connections_per_ip;
        if let Some(list) = &self.max_connections_per_ip_overrides {
            c.max_connections_per_ip_overrides = conn_limits::parse_ip_overrides(list)
                .map_err(|e| anyhow::anyhow!("--max-connections-per-ip-overrides: {e}"))?;
        }
        if let Some(list) = &self.listener_max_connections {
            let limits = conn_limits::parse_listener_limits(list)
                .map_err(|e| anyhow::anyhow!("--listener-max-connections: {e}"))?;
            if let Some(name) = limits
                .keys()
                .find(|n| !c.listeners.iter().any(|l| &l.name == *n))
            {
                anyhow::bail!("--listener-max-connections: {name} is not among the listeners");
            }
            c.listener_max_connections = limits;
        }
        c.max_inflight_requests = self.max_inflight_requests;
        c.fetch_max_bytes = self.fetch_max_bytes;
        c.connections_max_idle_ms = self.connections_max_idle_ms;
        c.queued_max_request_bytes = self.queued_max_request_bytes;
        self.groups.apply(&mut c)?;
        self.txns.apply(&mut c)?;
        self.cluster.apply(&mut c)?;
        self.replication.apply(&mut c)?;
        self.security.apply(&mut c)?;
        Ok(c)
    }
}
