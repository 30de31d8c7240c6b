//! Prometheus metrics of one node, served at `/metrics` (`http.rs`): what request paths
//! count as they go (per-API requests and latency, bytes per topic, ISR changes,
//! connections) and what a scrape reads off the node's state (partitions, controller
//! role, consumer-group lag).
//!
//! Hot paths touch only atomics they already hold: each API's counter and histogram are
//! created once at start and indexed by api key, and a topic's byte counters live in
//! its [`crate::topics::Topic`] (so a deleted topic's series go with it). Everything
//! derived from state is computed at scrape time rather than kept up to date.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::broker::Broker;

/// The media type of the OpenMetrics text format that `render` writes (Prometheus
/// negotiates it; plain-text scrapers read it too).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabel {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node_id: i32,
    cluster_id: String,
    version: &'static str,
}

/// One API's request count and latency.
#[derive(Debug, Clone)]
struct ApiMetrics {
    requests: Counter,
    latency: Histogram,
}

/// Bytes and records a topic took in from producers and gave out to consumers, counted
/// by the produce and fetch handlers (replication traffic is not included, as in
/// Kafka's `BytesInPerSec` / `BytesOutPerSec`).
#[derive(Debug, Default)]
pub struct TopicTraffic {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_in: AtomicU64,
}

impl TopicTraffic {
    pub fn produced(&self, bytes: usize, records: u64) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
    }

    pub fn fetched(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The node's counters and the registry they are exposed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Indexed by api key; `None` for keys this broker does not serve.
    apis: Vec<Option<ApiMetrics>>,
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    pub connections: Gauge,
    /// SASL outcomes, as Kafka's `successful-authentication-total` and friends.
    pub authentications: Counter,
    pub failed_authentications: Counter,
    pub reauthentications: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency buckets: 0.1 ms doubling up to about 13 s (an acks=all produce waits up to
/// its timeout, a fetch up to its max wait).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let requests = Family::<ApiLabel, Counter>::default();
        let latency = Family::<ApiLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        // Only the APIs this broker serves: others close the connection unanswered.
        let served = crate::handlers::SUPPORTED.iter().map(|(key, _)| *key);
        let max_key = served.clone().map(|k| k as usize).max().unwrap_or(0);
        let mut apis = vec![None; max_key + 1];
        for key in served {
            let label = ApiLabel { api: key.name() };
            apis[key as usize] = Some(ApiMetrics {
                requests: requests.get_or_create_owned(&label),
                latency: latency.get_or_create_owned(&label),
            });
        }
        registry.register("requests", "Kafka requests handled, by API", requests);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response being ready, by API",
            latency,
        );
        let isr_shrinks = Counter::default();
        let isr_expands = Counter::default();
        let connections = Gauge::default();
        registry.register(
            "isr_shrinks",
            "ISR shrinks this node wrote as partition leader",
            isr_shrinks.clone(),
        );
        registry.register(
            "isr_expands",
            "ISR expansions this node wrote as partition leader",
            isr_expands.clone(),
        );
        registry.register(
            "connections",
            "Open client connections on the Kafka listeners",
            connections.clone(),
        );
        let authentications = Counter::default();
        let failed_authentications = Counter::default();
        let reauthentications = Counter::default();
        registry.register(
            "successful_authentication",
            "SASL authentications that succeeded (re-authentications not included)",
            authentications.clone(),
        );
        registry.register(
            "failed_authentication",
            "SASL authentications that failed (the connection was closed)",
            failed_authentications.clone(),
        );
        registry.register(
            "successful_reauthentication",
            "SASL re-authentications (KIP-368) that succeeded",
            reauthentications.clone(),
        );
        Self {
            registry,
            apis,
            isr_shrinks,
            isr_expands,
            connections,
            authentications,
            failed_authentications,
            reauthentications,
        }
    }

    /// Counts one request of `api_key` that took from `started` until now.
    pub fn request_done(&self, api_key: i16, started: Instant) {
        let Some(Some(api)) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) else {
            return;
        };
        api.requests.inc();
        api.latency.observe(started.elapsed().as_secs_f64());
    }

    /// The exposition: the counters above plus what is read off `broker` now (nothing
    /// of it before the node has opened its broker).
    pub fn render(&self, node_id: i32, broker: Option<&Broker>) -> String {
        let mut scraped = Registry::with_prefix("sluice");
        let info = Family::<NodeLabel, Gauge>::default();
        info.get_or_create(&NodeLabel {
            node_id,
            cluster_id: broker.map(|b| b.cluster_id.clone()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        scraped.register("node_info", "This node's id, cluster id and version", info);
        if let Some(broker) = broker {
            read_state(&mut scraped, broker);
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would only cut the page short.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scraped))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// The metrics read off the node's state at scrape time.
fn read_state(r: &mut Registry, broker: &Broker) {
    let bytes_in = Family::<TopicLabel, Counter>::default();
    let bytes_out = Family::<TopicLabel, Counter>::default();
    let records_in = Family::<TopicLabel, Counter>::default();
    let hw = Family::<PartitionLabel, Gauge>::default();
    let (mut hosted, mut led, mut under_replicated, mut offline) = (0i64, 0i64, 0i64, 0i64);
    for topic in broker.topics.all() {
        let label = TopicLabel {
            topic: topic.name.clone(),
        };
        let t = &topic.traffic;
        bytes_in
            .get_or_create(&label)
            .inc_by(t.bytes_in.load(Ordering::Relaxed));
        bytes_out
            .get_or_create(&label)
            .inc_by(t.bytes_out.load(Ordering::Relaxed));
        records_in
            .get_or_create(&label)
            .inc_by(t.records_in.load(Ordering::Relaxed));
        for p in &topic.partitions {
            if p.leader < 0 {
                offline += 1;
            }
            let Some(replica) = &p.replica else { continue };
            hosted += 1;
            if p.led_here {
                led += 1;
                if p.isr.len() < p.replicas.len() {
                    under_replicated += 1;
                }
                hw.get_or_create(&PartitionLabel {
                    topic: topic.name.clone(),
                    partition: p.index,
                })
                .set(replica.log.high_watermark());
            }
        }
    }
    r.register(
        "topic_bytes_in",
        "Record bytes produced to the topic through this node",
        bytes_in,
    );
    r.register(
        "topic_bytes_out",
        "Record bytes fetched from the topic by consumers through this node",
        bytes_out,
    );
    r.register(
        "topic_records_in",
        "Records produced to the topic through this node",
        records_in,
    );
    r.register(
        "partition_high_watermark",
        "High watermark of each partition this node leads",
        hw,
    );
    let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        r.register(name, help, g);
    };
    gauge(
        r,
        "partitions",
        "Partition replicas hosted by this node",
        hosted,
    );
    gauge(r, "leader_partitions", "Partitions this node leads", led);
    gauge(
        r,
        "under_replicated_partitions",
        "Partitions this node leads whose ISR is smaller than their replica set",
        under_replicated,
    );
    gauge(
        r,
        "offline_partitions",
        "Partitions without a leader in this node's metadata: a cluster-wide count, the same on every node (take the max, not the sum)",
        offline,
    );
    let node = broker.config.node_id;
    let leader = broker.cluster.leader();
    gauge(
        r,
        "controller_active",
        "1 if this node is the active controller (the metadata quorum's leader)",
        i64::from(leader == u64::try_from(node).ok()),
    );
    gauge(
        r,
        "controller_leader_id",
        "Node id of the active controller this node knows (-1: none)",
        leader.and_then(|l| i64::try_from(l).ok()).unwrap_or(-1),
    );
    let image = broker.cluster.image();
    gauge(
        r,
        "broker_fenced",
        "1 while the controller holds this broker fenced (not serving)",
        i64::from(image.broker(node).is_none_or(|b| b.fenced)),
    );
    let committed = Family::<GroupPartitionLabel, Gauge>::default();
    let lag = Family::<GroupPartitionLabel, Gauge>::default();
    for (group, topic, partition, offset) in broker.groups.committed_offsets() {
        // The partition's end: the high watermark of this node's replica (exact where it
        // leads, at most one fetch behind where it follows).
        let end = broker.topics.get(&topic).and_then(|t| {
            t.state(partition)?
                .replica
                .as_ref()
                .map(|r| r.log.high_watermark())
        });
        let label = GroupPartitionLabel {
            group,
            topic,
            partition,
        };
        committed.get_or_create(&label).set(offset);
        if let Some(end) = end {
            lag.get_or_create(&label).set((end - offset).max(0));
        }
    }
    r.register(
        "consumer_group_committed_offset",
        "Committed offset of each partition of the groups this node coordinates",
        committed,
    );
    r.register(
        "consumer_group_lag",
        "High watermark minus committed offset, for the groups this node coordinates (partitions hosted here)",
        lag,
    );
}
