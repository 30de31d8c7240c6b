//! A cluster of real `sluice` processes on 127.0.0.1: node `i` (ids 1..=n) runs with
//! `--node-id i`, its own data dir, a Kafka listener and a controller RPC listener on
//! ports reserved up front, every node named in `--voters`, and short broker session
//! timeouts so fencing shows within a second. Nodes can be killed, stopped gracefully and
//! restarted on the same ports and data; [`View`] summarizes a node's Metadata so tests
//! can compare what the nodes serve.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::messages::{
    describe_quorum_request, DescribeQuorumRequest, DescribeQuorumResponse, MetadataRequest,
    MetadataResponse,
};

use crate::nodes::Nodes;
use crate::raw::RawClient;
use crate::{launch, sigterm, wait_timeout, Launched, Log};

/// How long a node may take to report listening (the quorum must unfence it first).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take (controlled shutdown included).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Connect and read timeout of the requests the harness sends.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The flags every node gets besides its addresses: short broker sessions.
const TIMEOUTS: &[&str] = &[
    "--broker-session-timeout-ms",
    "3000",
    "--broker-heartbeat-interval-ms",
    "200",
    "--broker-heartbeat-loss-grace-ms",
    "200",
];

/// Ports that were free a moment ago: each bound to port 0, all held until every one
/// is chosen (so they differ), then released for the node to bind.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One node of the cluster.
pub struct Node {
    pub id: i32,
    /// The Kafka address (the first listener), fixed across restarts.
    pub addr: String,
    /// The controller RPC address, as in `--voters`.
    pub rpc: String,
    pub data_dir: PathBuf,
    /// Everything after `--data-dir` (and `--listen`).
    args: Vec<String>,
    child: Option<Child>,
    /// All output of every run of this node.
    pub log: Log,
}

impl Node {
    fn launch(&self) -> Launched {
        launch(
            &self.data_dir,
            &self.args,
            &self.addr,
            &format!("[node-{}]", self.id),
            &self.log,
        )
    }
}

/// A running (or partly running) cluster; every process is SIGKILLed on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    /// The `--voters` value.
    pub voters: String,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` voters with `extra` flags each and waits until every one listens.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, |_| Vec::new())
    }

    /// Like [`Cluster::start`], with flags of node `id` from `per_node(id)`. If those name
    /// `--listeners`, no `--listen` is given and the node's address is its first listener.
    pub fn start_with(n: usize, extra: &[&str], per_node: impl Fn(i32) -> Vec<String>) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(2 * n);
        let ids: Vec<i32> = (1..=n as i32).collect();
        let rpc = |i: usize| format!("127.0.0.1:{}", ports[2 * i + 1]);
        let voters = ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{id}@{}", rpc(i)))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let mut args: Vec<String> = [
                    "--node-id",
                    &id.to_string(),
                    "--rpc-listen",
                    &rpc(i),
                    "--voters",
                    &voters,
                ]
                .iter()
                .chain(TIMEOUTS)
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
                args.extend(per_node(id));
                Node {
                    id,
                    addr: format!("127.0.0.1:{}", ports[2 * i]),
                    rpc: rpc(i),
                    data_dir: tmp.path().join(format!("node-{id}")),
                    args,
                    child: None,
                    log: Log::default(),
                }
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            voters,
            _tmp: tmp,
        };
        cluster.start_all();
        cluster
    }

    /// Starts every node that is not running, all at once (a node reports listening only
    /// once the quorum unfenced it, which takes a majority), waits for each, then until
    /// every node's Metadata lists every running node as a broker. (A node answers
    /// admin requests from its own view: before that it may place replicas on fewer
    /// brokers than are up.)
    pub fn start_all(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let launched: Vec<(usize, Launched)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_none())
            .map(|(i, n)| (i, n.launch()))
            .collect();
        let mut launched = launched.into_iter();
        while let Some((i, l)) = launched.next() {
            let node = &mut self.nodes[i];
            let who = format!("node {}", node.id);
            let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                l.wait_listening(deadline, &who)
            }));
            let (child, addr) = match waited {
                Ok(started) => started,
                Err(panic) => {
                    // The nodes not yet waited for are not in `nodes`, so Drop would
                    // not kill them: kill them here before passing the panic on.
                    for (_, mut rest) in launched {
                        let _ = rest.child.kill();
                        let _ = rest.child.wait();
                    }
                    std::panic::resume_unwind(panic)
                }
            };
            node.child = Some(child);
            node.addr = addr;
        }
        let live = self.live();
        self.converged(START_TIMEOUT, "every node listed as a broker", |v| {
            v.brokers.keys().copied().eq(live.iter().copied())
        });
    }

    pub fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The nodes whose process runs (as far as the harness knows: not killed or stopped).
    pub fn live(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn is_live(&self, id: i32) -> bool {
        self.node(id).child.is_some()
    }

    pub fn addr(&self, id: i32) -> &str {
        &self.node(id).addr
    }

    /// The bootstrap list of every node's Kafka address.
    pub fn bootstrap(&self) -> String {
        Nodes::bootstrap(self)
    }

    pub fn log(&self, id: i32) -> &Log {
        &self.node(id).log
    }

    /// SIGKILL: a crash, no controlled shutdown.
    pub fn kill9(&mut self, id: i32) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to node `id`'s process.
    pub fn signal(&self, id: i32, signal: &str) {
        let child = self.node(id).child.as_ref().expect("node is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} node {id}");
    }

    /// SIGTERM and a bounded wait for a clean exit (status 0).
    pub fn stop(&mut self, id: i32) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            sigterm(&child);
            let status = wait_timeout(&mut child, STOP_TIMEOUT);
            assert!(
                status.is_some_and(|s| s.success()),
                "node {id} did not exit cleanly on SIGTERM within {STOP_TIMEOUT:?}: {status:?}"
            );
        }
    }

    /// SIGTERM to every running node at once, then a bounded wait for each to exit
    /// cleanly; returns how long the slowest took.
    pub fn stop_all(&mut self) -> Duration {
        let start = Instant::now();
        let mut children: Vec<(i32, Child)> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take().map(|c| (n.id, c)))
            .collect();
        for (_, c) in &children {
            sigterm(c);
        }
        for (id, c) in &mut children {
            let left = STOP_TIMEOUT.saturating_sub(start.elapsed());
            let status = wait_timeout(c, left);
            assert!(
                status.is_some_and(|s| s.success()),
                "node {id} did not exit cleanly on SIGTERM within {STOP_TIMEOUT:?}: {status:?}"
            );
        }
        start.elapsed()
    }

    /// Starts a stopped or killed node again with the same flags, ports and data, and
    /// waits until it listens (it has rejoined and been unfenced).
    pub fn restart(&mut self, id: i32) {
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "stop or kill node {id} first");
        let (child, addr) = node
            .launch()
            .wait_listening(Instant::now() + START_TIMEOUT, &format!("node {id}"));
        node.child = Some(child);
        node.addr = addr;
    }

    /// Gives `flag` the value `value` in node `id`'s flags for its next start (replacing
    /// the value it had, or adding the flag).
    pub fn set_arg(&mut self, id: i32, flag: &str, value: &str) {
        let args = &mut self.node_mut(id).args;
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
    }

    /// Starts stopped node `id` expecting it to refuse: waits up to `timeout` for it to
    /// exit and returns its exit status and what it wrote in that run. Panics if it is
    /// still running then (or reports listening).
    pub fn start_expecting_exit(
        &mut self,
        id: i32,
        timeout: Duration,
    ) -> (std::process::ExitStatus, String) {
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "stop or kill node {id} first");
        let before = node.log.len();
        let status = node.launch().wait_exit(timeout);
        let text = node.log.text_since(before);
        let status = status.unwrap_or_else(|| {
            panic!("node {id} was still running after {timeout:?}; it wrote:\n{text}")
        });
        (status, text)
    }

    /// A fresh connection to node `id` (panics if it cannot connect).
    pub fn raw(&self, id: i32) -> RawClient {
        RawClient::connect(self.addr(id))
    }

    /// A fresh connection with [`REQUEST_TIMEOUT`], or the error.
    pub fn try_raw(&self, id: i32) -> std::io::Result<RawClient> {
        RawClient::try_connect(self.addr(id), REQUEST_TIMEOUT)
    }

    /// Metadata v12 for every topic from node `id`, or the I/O error.
    pub fn try_metadata(&self, id: i32) -> std::io::Result<MetadataResponse> {
        metadata_at(self.addr(id))
    }

    /// Metadata v12 for every topic from node `id`.
    pub fn metadata(&self, id: i32) -> MetadataResponse {
        self.try_metadata(id)
            .unwrap_or_else(|e| panic!("metadata from node {id}: {e}"))
    }

    /// Node `id`'s Metadata, summarized.
    pub fn view(&self, id: i32) -> std::io::Result<View> {
        self.try_metadata(id).map(|m| View::of(&m))
    }

    /// DescribeQuorum v1 of `__cluster_metadata` partition 0 to node `id`; `None` when the
    /// node does not answer or answers with an error.
    pub fn quorum(&self, id: i32) -> Option<Quorum> {
        quorum_at(self.addr(id))
    }

    /// The controller leader every live node names (same leader and term), itself live
    /// and not `except`, waited for up to `timeout`. Returns it and how long that took.
    pub fn await_controller_leader(
        &self,
        timeout: Duration,
        except: Option<i32>,
    ) -> (i32, Duration) {
        Nodes::await_controller_leader(self, timeout, except).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The controller leader the live nodes agree on (waiting up to 30 s).
    pub fn controller_leader(&self) -> i32 {
        self.await_controller_leader(Duration::from_secs(30), None)
            .0
    }

    /// Waits until every live node serves the same [`View`] and it satisfies `ok`;
    /// returns that view. On timeout the panic shows what each node served.
    pub fn converged(&self, timeout: Duration, what: &str, ok: impl Fn(&View) -> bool) -> View {
        let start = Instant::now();
        loop {
            let views: Vec<(i32, std::io::Result<View>)> = self
                .live()
                .into_iter()
                .map(|id| (id, self.view(id)))
                .collect();
            if let Some(Ok(first)) = views.first().map(|(_, v)| v) {
                let same = views
                    .iter()
                    .all(|(_, v)| v.as_ref().is_ok_and(|v| v == first));
                if same && ok(first) {
                    return first.clone();
                }
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for the live nodes to converge on {what}; \
                 they serve: {views:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Metadata v12 for every topic from the node at `addr` (with [`REQUEST_TIMEOUT`]), or
/// the I/O error.
pub fn metadata_at(addr: &str) -> std::io::Result<MetadataResponse> {
    let req = MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
    };
    RawClient::try_connect(addr, REQUEST_TIMEOUT)?.try_call(ApiKey::Metadata, 12, &req)
}

/// DescribeQuorum v1 of `__cluster_metadata` partition 0 to the node at `addr`; `None`
/// when the node does not answer or answers with an error.
pub fn quorum_at(addr: &str) -> Option<Quorum> {
    let req = DescribeQuorumRequest {
        topics: vec![describe_quorum_request::TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![describe_quorum_request::PartitionData { partition_index: 0 }],
        }],
    };
    let r: DescribeQuorumResponse = RawClient::try_connect(addr, REQUEST_TIMEOUT)
        .and_then(|mut c| c.try_call(ApiKey::DescribeQuorum, 1, &req))
        .ok()?;
    let p = r.topics.first()?.partitions.first()?;
    (r.error_code == 0 && p.error_code == 0).then_some(Quorum {
        leader: p.leader_id,
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// What DescribeQuorum says of the metadata quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub leader: i32,
    /// The Raft term.
    pub epoch: i32,
    pub high_watermark: i64,
}

/// A node's Metadata answer, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Live (unfenced) brokers: id -> (host, port).
    pub brokers: BTreeMap<i32, (String, i32)>,
    pub topics: BTreeMap<String, TopicView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub id: Uuid,
    pub error_code: i16,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

impl View {
    pub fn of(m: &MetadataResponse) -> View {
        let brokers = m
            .brokers
            .iter()
            .map(|b| (b.node_id, (b.host.clone(), b.port)))
            .collect();
        let topics = m
            .topics
            .iter()
            .map(|t| {
                let mut parts: Vec<_> = t.partitions.iter().collect();
                parts.sort_by_key(|p| p.partition_index);
                let partitions = parts
                    .into_iter()
                    .map(|p| PartitionView {
                        leader: p.leader_id,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.clone(),
                        isr: p.isr_nodes.clone(),
                        offline: p.offline_replicas.clone(),
                    })
                    .collect();
                let view = TopicView {
                    id: t.topic_id,
                    error_code: t.error_code,
                    partitions,
                };
                (t.name.clone().unwrap_or_default(), view)
            })
            .collect();
        View { brokers, topics }
    }

    pub fn topic_names(&self) -> Vec<&str> {
        self.topics.keys().map(String::as_str).collect()
    }

    /// Every partition leader of every topic.
    pub fn leaders(&self) -> Vec<i32> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| p.leader))
            .collect()
    }
}
