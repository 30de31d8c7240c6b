//! Broker lifecycle over the wire, three controller nodes in one process: brokers register
//! with the active controller and heartbeat it, are unfenced on every node, a broker that
//! stops heartbeating is fenced within its session and loses its leadership to another ISR
//! member, and a follower answers NOT_CONTROLLER naming the leader; controlled shutdown
//! and malformed requests; and a controller failover that fences only the old
//! controller's own broker, after the loss grace rather than a whole session.

// Test helpers outside `#[test]` functions: a failed step should fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_controller::proto::pb;
use sluice_controller::{
    Controller, MetadataImage, MetadataRecord, MetadataResponse, NodeId, PartitionAssignment,
};

mod common;
use common::{init_tracing, lifecycle_config, wait_leader};
use tonic::transport::Channel;

const SESSION_MS: u64 = 1000;
const GRACE_MS: u64 = 200;
const TICK: Duration = Duration::from_millis(50);
/// Bound of every wait in this test.
const WAIT: Duration = Duration::from_secs(5);

async fn start_voters(root: &Path, session_timeout_ms: u64) -> Vec<Controller> {
    let nodes = common::start_voters(root, |id, dir| {
        lifecycle_config(id, dir, session_timeout_ms, GRACE_MS, TICK)
    })
    .await;
    nodes
}

type Client = pb::broker_lifecycle_client::BrokerLifecycleClient<Channel>;

/// A client that connects on first use, so a stopped node only fails its calls.
fn lazy_client(node: &Controller) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.rpc_addr()))
        .unwrap()
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .connect_lazy();
    Client::new(channel)
}

async fn client(node: &Controller) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.rpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Client::new(channel)
}

fn heartbeat(broker_id: i32, broker_epoch: i64, offset: u64) -> pb::BrokerHeartbeatRequest {
    pb::BrokerHeartbeatRequest {
        broker_id,
        broker_epoch,
        current_metadata_offset: offset,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Registers `broker_id`, retrying while the new leader is not yet active.
async fn register(client: &mut Client, broker_id: i32) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = client
            .register_broker(pb::RegisterBrokerRequest {
                broker_id,
                incarnation_id: vec![u8::try_from(broker_id).unwrap(); 16],
                listeners: vec![pb::BrokerListener {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9000 + u32::try_from(broker_id).unwrap(),
                }],
                rack: None,
            })
            .await
            .unwrap()
            .into_inner();
        if response.error == pb::LifecycleError::None as i32 {
            return response.broker_epoch;
        }
        assert_eq!(
            response.error,
            pb::LifecycleError::NotController as i32,
            "{response:?}"
        );
        assert!(Instant::now() < deadline, "registration: {response:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node's image satisfies `done`; returns how long that took.
async fn wait_all(nodes: &[Controller], what: &str, done: impl Fn(&MetadataImage) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !nodes.iter().all(|n| done(&n.metadata().image())) {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fenced(image: &MetadataImage, id: i32) -> Option<bool> {
    image.broker(id).map(|b| b.fenced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_are_unfenced_fenced_on_a_lapsed_session_and_followers_name_the_leader() {
    init_tracing();
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_voters(root.path(), SESSION_MS).await;
    let leader_id = wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    let leader = nodes.iter().find(|n| n.node_id() == leader_id).unwrap();
    let follower = nodes.iter().find(|n| n.node_id() != leader_id).unwrap();
    let mut to_leader = client(leader).await;

    // Two brokers register; they start fenced and are unfenced once caught up.
    let epoch_a = register(&mut to_leader, 101).await;
    let epoch_b = register(&mut to_leader, 102).await;
    assert_eq!(
        register(&mut to_leader, 101).await,
        epoch_a,
        "a retry keeps its epoch"
    );
    let applied = || leader.metadata().last_applied().map_or(0, |id| id.index);
    // Taken before 101's last heartbeat is sent, so its session ends after this + SESSION.
    let mut silent = Instant::now();
    for (id, epoch) in [(101, epoch_a), (102, epoch_b)] {
        let response = to_leader
            .broker_heartbeat(heartbeat(id, epoch, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.error, pb::LifecycleError::None as i32);
        assert!(!response.is_caught_up && response.is_fenced, "{response:?}");
        if id == 101 {
            silent = Instant::now();
        }
        let response = to_leader
            .broker_heartbeat(heartbeat(id, epoch, applied()))
            .await
            .unwrap()
            .into_inner();
        assert!(response.is_caught_up && !response.is_fenced, "{response:?}");
    }
    wait_all(&nodes, "both brokers unfenced", |image| {
        fenced(image, 101) == Some(false) && fenced(image, 102) == Some(false)
    })
    .await;

    // A partition led by 101 with 102 in sync.
    let create = MetadataRecord::CreateTopic {
        name: "t".into(),
        id: [9; 16],
        partitions: vec![PartitionAssignment {
            replicas: vec![101, 102],
        }],
        configs: BTreeMap::new(),
    };
    assert_eq!(
        leader.write(create).await.unwrap(),
        MetadataResponse::Applied
    );
    let p = leader
        .metadata()
        .image()
        .partition("t", 0)
        .cloned()
        .unwrap();
    assert_eq!((p.leader, p.isr.clone()), (101, vec![101, 102]));

    // A follower names the leader; a stale epoch is refused.
    let response = client(follower)
        .await
        .broker_heartbeat(heartbeat(102, epoch_b, applied()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.error, pb::LifecycleError::NotController as i32);
    let named = response.leader.unwrap();
    assert_eq!(named.leader_id, i64::try_from(leader_id).unwrap());
    assert_eq!(named.rpc_addr, leader.rpc_addr().to_string());
    let response = to_leader
        .broker_heartbeat(heartbeat(102, epoch_b - 1, applied()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.error, pb::LifecycleError::StaleBrokerEpoch as i32);
    let response = to_leader
        .broker_heartbeat(heartbeat(103, 1, applied()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.error,
        pb::LifecycleError::BrokerIdNotRegistered as i32
    );

    // 102 keeps heartbeating (well inside its session); 101 goes silent.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let mut keeper = to_leader.clone();
    let keep_alive = tokio::spawn(async move {
        loop {
            let response = keeper
                .broker_heartbeat(heartbeat(102, epoch_b, u64::MAX))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.error, pb::LifecycleError::None as i32);
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(SESSION_MS / 4)) => {}
            }
        }
    });
    // A pause of half the session fences nobody.
    tokio::time::sleep(Duration::from_millis(SESSION_MS / 2).saturating_sub(silent.elapsed()))
        .await;
    for node in &nodes {
        assert_eq!(fenced(&node.metadata().image(), 101), Some(false));
    }
    wait_all(
        &nodes,
        "101 fenced and its leadership moved to 102",
        |image| {
            let moved = image
                .partition("t", 0)
                .is_some_and(|p| p.leader == 102 && p.isr == [102] && p.leader_epoch == 1);
            fenced(image, 101) == Some(true) && moved
        },
    )
    .await;
    let took = silent.elapsed();
    tracing::info!(?took, "fenced after the last heartbeat");
    assert!(
        took >= Duration::from_millis(SESSION_MS),
        "fenced before the session lapsed: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(SESSION_MS) + TICK * 2 + Duration::from_millis(500),
        "fenced too late: {took:?}"
    );
    for node in &nodes {
        assert_eq!(fenced(&node.metadata().image(), 102), Some(false));
    }

    // The silent broker comes back with its registration's epoch: unfenced once caught up.
    let response = to_leader
        .broker_heartbeat(heartbeat(101, epoch_a, applied()))
        .await
        .unwrap()
        .into_inner();
    assert!(!response.is_fenced, "{response:?}");

    stop.send(true).unwrap();
    keep_alive.await.unwrap();

    // Controlled shutdown: 102 gives up its leadership (no other ISR member is left, so
    // t-0 goes offline rather than to an out-of-sync replica) and is told it may exit.
    let mut shutdown = heartbeat(102, epoch_b, applied());
    shutdown.want_shutdown = true;
    let response = to_leader
        .broker_heartbeat(shutdown)
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.is_fenced && response.should_shut_down,
        "{response:?}"
    );
    let p = leader
        .metadata()
        .image()
        .partition("t", 0)
        .cloned()
        .unwrap();
    assert_eq!((p.leader, p.isr), (-1, vec![102]));

    // Malformed requests are INVALID_ARGUMENT.
    let good = pb::RegisterBrokerRequest {
        broker_id: 104,
        incarnation_id: vec![4; 16],
        listeners: vec![pb::BrokerListener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9104,
        }],
        rack: None,
    };
    let bad = [
        pb::RegisterBrokerRequest {
            incarnation_id: vec![4; 3],
            ..good.clone()
        },
        pb::RegisterBrokerRequest {
            broker_id: -1,
            ..good.clone()
        },
        pb::RegisterBrokerRequest {
            listeners: Vec::new(),
            ..good.clone()
        },
        pb::RegisterBrokerRequest {
            listeners: vec![pb::BrokerListener {
                port: 70000,
                ..good.listeners[0].clone()
            }],
            ..good.clone()
        },
    ];
    for request in bad {
        let status = to_leader.register_broker(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let status = to_leader
        .broker_heartbeat(heartbeat(-5, 1, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    for node in nodes {
        node.shutdown().await;
    }
    tracing::info!(elapsed = ?started.elapsed(), "done");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_failover_fences_only_the_old_controllers_broker_and_promptly() {
    const LONG_SESSION_MS: u64 = 3000;
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_voters(root.path(), LONG_SESSION_MS).await;
    let old_leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    // Combined mode: each node is also the broker with its id.
    let mut epochs = BTreeMap::new();
    for node in &nodes {
        let id = i32::try_from(node.node_id()).unwrap();
        let mut to_leader = client(nodes.iter().find(|n| n.node_id() == old_leader).unwrap()).await;
        epochs.insert(id, register(&mut to_leader, id).await);
    }
    let clients: Vec<(NodeId, Client)> = nodes
        .iter()
        .map(|n| (n.node_id(), lazy_client(n)))
        .collect();
    let old_broker = i32::try_from(old_leader).unwrap();
    let others: Vec<i32> = epochs
        .keys()
        .copied()
        .filter(|id| *id != old_broker)
        .collect();

    // Every broker heartbeats whichever node is the active controller.
    let (stop, stopped) = tokio::sync::watch::channel(BTreeMap::<i32, bool>::new());
    let mut keepers = Vec::new();
    for (&id, &epoch) in &epochs {
        let mut clients = clients.clone();
        let mut stopped = stopped.clone();
        keepers.push(tokio::spawn(async move {
            // Whether a heartbeat was ever answered fenced after the broker was unfenced.
            let mut unfenced = false;
            let mut refenced = false;
            loop {
                for (_, client) in &mut clients {
                    let Ok(response) = client
                        .broker_heartbeat(heartbeat(id, epoch, u64::MAX))
                        .await
                    else {
                        continue;
                    };
                    let response = response.into_inner();
                    if response.error == pb::LifecycleError::None as i32 {
                        refenced |= unfenced && response.is_fenced;
                        unfenced |= !response.is_fenced;
                        break;
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
                if stopped.borrow().get(&id).copied().unwrap_or(false) {
                    return refenced;
                }
            }
        }));
    }
    wait_all(&nodes, "all brokers unfenced", |image| {
        epochs.keys().all(|id| fenced(image, *id) == Some(false))
    })
    .await;
    let leader = nodes.iter().find(|n| n.node_id() == old_leader).unwrap();
    let create = MetadataRecord::CreateTopic {
        name: "t".into(),
        id: [9; 16],
        partitions: vec![PartitionAssignment {
            replicas: vec![old_broker, others[0], others[1]],
        }],
        configs: BTreeMap::new(),
    };
    assert_eq!(
        leader.write(create).await.unwrap(),
        MetadataResponse::Applied
    );

    // The controller leader dies with its broker (its heartbeats stop with it).
    stop.send_modify(|m| {
        m.insert(old_broker, true);
    });
    let index = nodes
        .iter()
        .position(|n| n.node_id() == old_leader)
        .unwrap();
    let killed = Instant::now();
    nodes.remove(index).shutdown().await;
    wait_all(
        &nodes,
        "the old controller's broker fenced, its partition moved",
        |image| {
            let moved = image
                .partition("t", 0)
                .is_some_and(|p| p.leader == others[0] && !p.isr.contains(&old_broker));
            fenced(image, old_broker) == Some(true) && moved
        },
    )
    .await;
    let took = killed.elapsed();
    tracing::info!(?took, "old controller's broker fenced");
    // Election plus the loss grace, well inside the session it would otherwise take.
    assert!(
        took < Duration::from_millis(LONG_SESSION_MS),
        "fenced only after {took:?}"
    );

    // The leader change fenced nobody else, then or for a whole session after it.
    tokio::time::sleep(Duration::from_millis(
        LONG_SESSION_MS - took.as_millis() as u64 + 200,
    ))
    .await;
    for node in &nodes {
        for id in &others {
            assert_eq!(
                fenced(&node.metadata().image(), *id),
                Some(false),
                "broker {id}"
            );
        }
    }
    stop.send_modify(|m| {
        for id in &others {
            m.insert(*id, true);
        }
    });
    for keeper in keepers {
        assert!(!keeper.await.unwrap(), "a live broker was fenced");
    }
    for node in nodes {
        node.shutdown().await;
    }
}
