//! Helpers shared by the controller's integration tests.

#![allow(dead_code)] // each test crate uses its own subset

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_controller::{
    Controller, ControllerConfig, ControllerNode, HeartbeatConfig, LifecycleConfig, NodeId,
};
use tokio::net::TcpListener;

/// How long any wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);

/// A port that accepts connections for the rest of the test binary, as a live broker's
/// Kafka port does: a controller that takes over probes the previous controller's broker
/// and fences it at once if nothing listens on its registered port.
pub fn live_port() -> u16 {
    let listener: &'static std::net::TcpListener = Box::leak(Box::new(
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port"),
    ));
    listener.local_addr().expect("bound address").port()
}

/// Waits until every node agrees on one leader among them and returns its id.
pub async fn wait_leader(nodes: &[&Controller], not: Option<NodeId>) -> NodeId {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft().metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first() {
            let agreed = leaders.iter().all(|l| *l == Some(*leader));
            let member = nodes.iter().any(|n| n.node_id() == *leader);
            if agreed && member && Some(*leader) != not {
                return *leader;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Test logs at `warn` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A node config with fast Raft timing and the given broker session settings.
pub fn lifecycle_config(
    id: NodeId,
    dir: &Path,
    session_timeout_ms: u64,
    loss_grace_ms: u64,
    tick_interval: Duration,
) -> ControllerConfig {
    let mut config = ControllerConfig::new(id, dir);
    config.raft.heartbeat_interval = 100;
    config.raft.election_timeout_min = 300;
    config.raft.election_timeout_max = 600;
    config.rpc_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(200);
    config.lifecycle = LifecycleConfig {
        heartbeat: HeartbeatConfig {
            session_timeout_ms,
            loss_grace_ms,
        },
        tick_interval,
        ..LifecycleConfig::default()
    };
    config
}

/// Starts nodes 1-3 under `root` on free ports with `config(id, dir)` and initializes
/// them as one quorum through node 1 (without waiting for the election).
pub async fn start_voters(
    root: &Path,
    config: impl Fn(NodeId, &Path) -> ControllerConfig,
) -> Vec<Controller> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = root.join(format!("node-{id}"));
        nodes.push(Controller::start(config(id, &dir), listener).await.unwrap());
    }
    let voters: BTreeMap<NodeId, ControllerNode> = nodes
        .iter()
        .map(|n| (n.node_id(), ControllerNode::new(n.rpc_addr().to_string())))
        .collect();
    nodes[0].initialize(voters).await.unwrap();
    nodes
}
