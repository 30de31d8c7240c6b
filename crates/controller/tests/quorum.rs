//! Three controller nodes in one process on 127.0.0.1: election, replication of metadata
//! records, failover when the leader stops, and a restarted node keeping its log.

// Test helpers outside `#[test]` functions: a failed step should fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use sluice_controller::store;
use sluice_controller::{
    place, Controller, ControllerConfig, ControllerNode, LiveBroker, MetadataImage, MetadataRecord,
    MetadataResponse, NodeId,
};
use tokio::net::TcpListener;

mod common;
use common::{live_port, wait_leader};

const HEARTBEAT_MS: u64 = 100;
const ELECTION_MIN_MS: u64 = 300;
const ELECTION_MAX_MS: u64 = 600;
/// Bound of every wait in this test.
const WAIT: Duration = Duration::from_secs(5);

fn config(id: NodeId, dir: &Path) -> ControllerConfig {
    let mut config = ControllerConfig::new(id, dir);
    config.raft.heartbeat_interval = HEARTBEAT_MS;
    config.raft.election_timeout_min = ELECTION_MIN_MS;
    config.raft.election_timeout_max = ELECTION_MAX_MS;
    config.rpc_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(200);
    // Purge everything a snapshot covers, and send snapshots in many small chunks, so
    // the snapshot test exercises InstallSnapshot over the wire.
    config.raft.max_in_snapshot_log_to_keep = 0;
    config.raft.snapshot_max_chunk_size = 1024;
    // These tests write broker records directly and no broker heartbeats: keep the
    // active controller from fencing them (and moving leaderships) after a failover.
    config.lifecycle.heartbeat.session_timeout_ms = 3_600_000;
    config.lifecycle.heartbeat.loss_grace_ms = 3_600_000;
    config
}

/// Starts node `id` on `addr` (port 0 for any), retrying while the previous
/// incarnation's store lock or port is still being released.
async fn start(id: NodeId, dir: &Path, addr: SocketAddr) -> Controller {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
            Controller::start(config(id, dir), listener)
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(controller) => return controller,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(id, error = %e, "retrying start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {id} did not start: {e}"),
        }
    }
}

/// Waits until every node has applied the same log id as `nodes[0]`'s last log, and
/// returns the (identical) image.
async fn wait_converged(nodes: &[&Controller], at_least: u64) -> MetadataImage {
    let deadline = Instant::now() + WAIT;
    loop {
        let applied: Vec<_> = nodes.iter().map(|n| n.metadata().last_applied()).collect();
        let done = applied
            .iter()
            .all(|a| a.is_some() && *a == applied[0] && a.map(|id| id.index) >= Some(at_least));
        if done {
            let image = nodes[0].metadata().image();
            for node in nodes {
                assert_eq!(node.metadata().image(), image, "node {}", node.node_id());
            }
            return image;
        }
        assert!(Instant::now() < deadline, "not converged: {applied:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last log index in a stopped node's store, read directly from sled.
async fn stored_last_log_index(dir: &Path) -> Option<u64> {
    let deadline = Instant::now() + WAIT;
    let db = loop {
        match store::open_db(dir) {
            Ok(db) => break db,
            Err(e) => {
                assert!(Instant::now() < deadline, "store stays locked: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (mut log, _) = store::open_stores(&db).unwrap();
    log.get_log_state()
        .await
        .unwrap()
        .last_log_id
        .map(|id| id.index)
}

/// Topic `topic-{n}` with `n % 7 + 1` partitions placed on brokers 1 to 3 (see
/// [`brokers_up`]), three replicas each.
fn topic(n: u32) -> MetadataRecord {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    let brokers: Vec<LiveBroker> = (1..=3).map(|id| LiveBroker { id, rack: None }).collect();
    MetadataRecord::CreateTopic {
        name: format!("topic-{n}"),
        id,
        partitions: place(&brokers, 0, n % 7 + 1, 3, u64::from(n)).unwrap(),
        configs: BTreeMap::from([("retention.ms".to_string(), (n * 1000).to_string())]),
    }
}

/// Registers and unfences brokers 1 to 3, so topics can be placed on them.
fn brokers_up() -> Vec<MetadataRecord> {
    let mut records: Vec<MetadataRecord> = (1..=3).map(register).collect();
    records.extend((1..=3).map(|id| MetadataRecord::UnfenceBroker { id, epoch: 1 }));
    records
}

fn register(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id,
        epoch: 1,
        endpoints: vec![sluice_controller::BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: live_port(),
        }],
        rack: None,
    }
}

/// Starts one node per dir (ids 1, 2, ...) on free ports and initializes them as one
/// quorum of voters through node 1.
async fn start_voters(dirs: &[PathBuf]) -> Vec<Option<Controller>> {
    let mut nodes: Vec<Option<Controller>> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        nodes.push(Some(start(i as NodeId + 1, dir, any_port).await));
    }
    let voters: BTreeMap<NodeId, ControllerNode> = nodes
        .iter()
        .flatten()
        .map(|n| (n.node_id(), ControllerNode::new(n.rpc_addr().to_string())))
        .collect();
    by_id(&nodes, 1).initialize(voters).await.unwrap();
    nodes
}

fn by_id(nodes: &[Option<Controller>], id: NodeId) -> &Controller {
    nodes
        .iter()
        .flatten()
        .find(|n| n.node_id() == id)
        .expect("node is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_fail_over_and_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| root.path().join(format!("node-{i}")))
        .collect();

    let mut nodes = start_voters(&dirs).await;

    let all: Vec<&Controller> = nodes.iter().flatten().collect();
    let leader = wait_leader(&all, None).await;
    tracing::info!(leader, elapsed = ?started.elapsed(), "first leader");

    // 100 records through the leader: 3 brokers registered and unfenced, 93 topics, 1
    // deletion.
    let mut records = brokers_up();
    records.extend((0..93).map(topic));
    records.push(MetadataRecord::DeleteTopic {
        name: "topic-0".into(),
        topic_id: None,
    });
    assert_eq!(records.len(), 100);
    for record in records {
        let response = by_id(&nodes, leader).write(record).await.unwrap();
        assert_eq!(response, MetadataResponse::Applied);
    }
    let last = by_id(&nodes, leader)
        .metadata()
        .last_applied()
        .map(|id| id.index)
        .unwrap();
    let image = wait_converged(&all, last).await;
    assert_eq!(image.brokers().count(), 3);
    assert_eq!(image.topics().count(), 92);
    assert!(image.topic("topic-0").is_none());
    assert_eq!(
        image.topic("topic-92").map(|t| t.partitions.len()),
        Some(92 % 7 + 1)
    );

    // Stop the leader: the other two elect a new one within the election timeout.
    let old_index = nodes
        .iter()
        .position(|n| n.as_ref().map(|n| n.node_id()) == Some(leader))
        .unwrap();
    let old_addr = by_id(&nodes, leader).rpc_addr();
    let stopped = Instant::now();
    nodes[old_index].take().unwrap().shutdown().await;
    tracing::info!(shutdown = ?stopped.elapsed(), "old leader stopped");
    let survivors: Vec<&Controller> = nodes.iter().flatten().collect();
    let new_leader = wait_leader(&survivors, Some(leader)).await;
    let failover = stopped.elapsed();
    tracing::info!(new_leader, ?failover, "failover");
    // Usually one election timeout plus a vote round; a split vote costs another
    // timeout, so the bound allows a few rounds on a loaded machine.
    assert!(
        failover < Duration::from_millis(5 * ELECTION_MAX_MS),
        "failover took {failover:?}"
    );

    for n in 100..120 {
        let response = by_id(&nodes, new_leader).write(topic(n)).await.unwrap();
        assert_eq!(response, MetadataResponse::Applied);
    }
    let last = by_id(&nodes, new_leader)
        .metadata()
        .last_applied()
        .map(|id| id.index)
        .unwrap();
    let survivors: Vec<&Controller> = nodes.iter().flatten().collect();
    let image = wait_converged(&survivors, last).await;
    assert_eq!(image.topics().count(), 112);

    // Restart the old leader from its sled dir, on its old address: it still has its
    // log before anyone sends it anything, then catches up with what it missed.
    let stored_last_log = stored_last_log_index(&dirs[old_index]).await;
    assert!(
        stored_last_log >= Some(101),
        "stopped node lost its log: last log index {stored_last_log:?}"
    );
    let restarted = start(leader, &dirs[old_index], old_addr).await;
    nodes[old_index] = Some(restarted);
    let all: Vec<&Controller> = nodes.iter().flatten().collect();
    let image_after = wait_converged(&all, last).await;
    assert_eq!(image_after, image);
    assert_eq!(wait_leader(&all, None).await, new_leader);

    // Writes keep working with all three back.
    let response = by_id(&nodes, new_leader)
        .write(MetadataRecord::Noop)
        .await
        .unwrap();
    assert_eq!(response, MetadataResponse::Applied);

    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
    tracing::info!(elapsed = ?started.elapsed(), "done");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rpc_payloads_get_invalid_argument_and_the_node_keeps_working() {
    use sluice_controller::proto::pb;

    let root = tempfile::tempdir().unwrap();
    let node = start(1, root.path(), "127.0.0.1:0".parse().unwrap()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.rpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::raft_client::RaftClient::new(channel);
    for payload in [&b""[..], b"not json", b"{\"vote\":1}", &[0xff; 64]] {
        let request = || pb::RaftRequest {
            payload: payload.to_vec(),
        };
        let statuses = [
            client.append_entries(request()).await.unwrap_err(),
            client.vote(request()).await.unwrap_err(),
            client.install_snapshot(request()).await.unwrap_err(),
        ];
        for status in statuses {
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        }
    }

    // The node still forms a quorum of one and commits.
    let me = BTreeMap::from([(1, ControllerNode::new(node.rpc_addr().to_string()))]);
    node.initialize(me).await.unwrap();
    wait_leader(&[&node], None).await;
    assert_eq!(
        node.write(register(1)).await.unwrap(),
        MetadataResponse::Applied
    );
    assert_eq!(node.metadata().image().brokers().count(), 1);

    // A vote request from a node id outside the membership, with a far higher term:
    // refused, and the leader neither steps down nor changes term.
    let term = node.raft().metrics().borrow().current_term;
    let stray = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(term + 10, 99), None);
    let status = client
        .vote(sluice_controller::proto::encode_request(&stray).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("node 99"), "{status:?}");
    let m = node.raft().metrics().borrow().clone();
    assert_eq!((m.current_term, m.current_leader), (term, Some(1)));
    assert_eq!(
        node.write(register(2)).await.unwrap(),
        MetadataResponse::Applied
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| root.path().join(format!("node-{i}")))
        .collect();
    let mut nodes = start_voters(&dirs).await;
    let all: Vec<&Controller> = nodes.iter().flatten().collect();
    let leader = wait_leader(&all, None).await;

    // Stop a follower, then move the log on and compact it past where the follower is.
    let behind = nodes
        .iter()
        .position(|n| n.as_ref().map(|n| n.node_id()) != Some(leader))
        .unwrap();
    let behind_id = behind as NodeId + 1;
    let behind_addr = by_id(&nodes, behind_id).rpc_addr();
    nodes[behind].take().unwrap().shutdown().await;
    for record in brokers_up() {
        let response = by_id(&nodes, leader).write(record).await.unwrap();
        assert_eq!(response, MetadataResponse::Applied);
    }
    for n in 0..60 {
        let response = by_id(&nodes, leader).write(topic(n)).await.unwrap();
        assert_eq!(response, MetadataResponse::Applied);
    }
    let leader_node = by_id(&nodes, leader);
    let last = leader_node.metadata().last_applied().unwrap().index;
    leader_node.raft().trigger().snapshot().await.unwrap();
    leader_node
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.map(|id| id.index) >= Some(last),
            "leader snapshots and purges its log",
        )
        .await
        .unwrap();

    // The restarted follower cannot be sent the purged entries: it gets the snapshot.
    let restarted = start(behind_id, &dirs[behind], behind_addr).await;
    nodes[behind] = Some(restarted);
    let all: Vec<&Controller> = nodes.iter().flatten().collect();
    let image = wait_converged(&all, last).await;
    assert_eq!(image.topics().count(), 60);
    let installed = by_id(&nodes, behind_id).raft().metrics().borrow().snapshot;
    assert!(
        installed.map(|id| id.index) >= Some(last),
        "follower caught up without a snapshot: {installed:?}"
    );

    // And it keeps following after the snapshot.
    by_id(&nodes, leader).write(topic(60)).await.unwrap();
    let last = by_id(&nodes, leader)
        .metadata()
        .last_applied()
        .unwrap()
        .index;
    let all: Vec<&Controller> = nodes.iter().flatten().collect();
    assert_eq!(wait_converged(&all, last).await.topics().count(), 61);
    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }
}
