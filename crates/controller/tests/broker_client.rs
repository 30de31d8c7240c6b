//! The broker side of the lifecycle over the wire: three controller nodes in one process and
//! `BrokerClient`s heartbeating the active controller over a stream. Brokers register and
//! are unfenced on every node; controlled shutdown leaves a broker fenced; a crashed broker
//! (its runtime dropped, so its connection breaks) is fenced after the loss grace rather
//! than the session, while a stalled one (stream open, no heartbeats) only after its
//! session; a controller failover moves every broker to the new leader and fences only the
//! old controller's own broker, promptly; and the stream's server rules (one stream per
//! broker, malformed requests).

// Test helpers outside `#[test]` functions: a failed step should fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_controller::proto::pb;
use sluice_controller::{
    BrokerClient, BrokerClientConfig, BrokerEndpoint, BrokerStatus, Controller, MetadataImage,
    NodeId,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

mod common;
use common::{init_tracing, lifecycle_config, wait_leader};

const LONG_SESSION_MS: u64 = 10_000;
const GRACE_MS: u64 = 300;
const TICK: Duration = Duration::from_millis(50);
/// Bound of every wait in this test.
const WAIT: Duration = Duration::from_secs(10);

async fn start_voters(root: &Path, session_timeout_ms: u64) -> Vec<Controller> {
    let nodes = common::start_voters(root, |id, dir| {
        lifecycle_config(id, dir, session_timeout_ms, GRACE_MS, TICK)
    })
    .await;
    wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    nodes
}

/// A broker's Kafka listener: a bound socket the controller's probe can connect to while
/// it is open (the kernel accepts into the backlog), and is refused by once closed.
fn kafka_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn client_config(broker_id: i32, nodes: &[Controller], port: u16) -> BrokerClientConfig {
    let voters = nodes
        .iter()
        .map(|n| (n.node_id(), n.rpc_addr().to_string()))
        .collect();
    let endpoints = vec![BrokerEndpoint {
        listener: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port,
    }];
    let mut config = BrokerClientConfig::new(broker_id, endpoints, voters);
    config.heartbeat_interval = Duration::from_millis(200);
    config.connect_timeout = Duration::from_millis(200);
    config.rpc_timeout = Duration::from_millis(1000);
    config
}

/// Starts the client of broker `id`, following the applied offset of `node` (combined
/// mode: the broker is the node with its id). Its Kafka listener stays open for the rest
/// of the test binary, as a live broker's would.
fn start_client(id: i32, node: &Controller, nodes: &[Controller]) -> BrokerClient {
    let listener: &'static std::net::TcpListener = Box::leak(Box::new(kafka_listener()));
    let port = listener.local_addr().unwrap().port();
    BrokerClient::start(client_config(id, nodes, port), node.metadata().subscribe())
}

fn node(nodes: &[Controller], id: NodeId) -> &Controller {
    nodes.iter().find(|n| n.node_id() == id).unwrap()
}

fn fenced(image: &MetadataImage, id: i32) -> Option<bool> {
    image.broker(id).map(|b| b.fenced)
}

/// Polls `done` until it holds; fails after `within`. Returns how long it took.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Waits until every node's image satisfies `done`.
async fn wait_images(
    nodes: &[Controller],
    what: &str,
    within: Duration,
    done: impl Fn(&MetadataImage) -> bool,
) -> Duration {
    wait_until(what, within, || {
        nodes.iter().all(|n| done(&n.metadata().image()))
    })
    .await
}

async fn wait_status(
    client: &BrokerClient,
    what: &str,
    done: impl Fn(&BrokerStatus) -> bool,
) -> BrokerStatus {
    let mut status = client.status();
    let waited = tokio::time::timeout(WAIT, async {
        status.wait_for(|s| done(s)).await.map(|s| s.clone())
    })
    .await;
    match waited {
        Ok(Ok(status)) => status,
        _ => panic!("timed out waiting: {what} ({:?})", *status.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_and_unfence_everywhere_and_controlled_shutdown_leaves_one_fenced() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_voters(root.path(), LONG_SESSION_MS).await;
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    let clients: Vec<(i32, BrokerClient)> = nodes
        .iter()
        .map(|n| {
            let id = i32::try_from(n.node_id()).unwrap();
            (id, start_client(id, n, &nodes))
        })
        .collect();
    wait_images(&nodes, "all brokers unfenced", WAIT, |image| {
        (1..=3).all(|id| fenced(image, id) == Some(false))
    })
    .await;
    for (id, client) in &clients {
        let status = wait_status(client, "unfenced and caught up", |s| {
            !s.fenced && s.caught_up
        })
        .await;
        assert_eq!(status.controller, Some(leader), "broker {id}");
        let epoch = node(&nodes, leader)
            .metadata()
            .image()
            .broker(*id)
            .unwrap()
            .epoch;
        assert_eq!(status.epoch, Some(epoch), "broker {id}");
        assert!(!status.shutdown_complete);
    }

    // Controlled shutdown: broker 3 is fenced and told it may exit; the others stay.
    let (_, third) = &clients[2];
    assert!(third.controlled_shutdown(WAIT).await);
    let status = third.status().borrow().clone();
    assert!(status.shutdown_complete && status.fenced, "{status:?}");
    wait_images(&nodes, "broker 3 fenced", WAIT, |image| {
        fenced(image, 3) == Some(true)
    })
    .await;
    let mut clients = clients;
    let (_, third) = clients.pop().unwrap();
    third.stop().await;
    // Stopping after a completed shutdown reports no lost connection; it is fenced anyway
    // and the others are untouched.
    tokio::time::sleep(Duration::from_millis(GRACE_MS) + TICK * 4).await;
    for n in &nodes {
        let image = n.metadata().image();
        assert_eq!(fenced(&image, 3), Some(true));
        assert_eq!(fenced(&image, 1), Some(false));
        assert_eq!(fenced(&image, 2), Some(false));
    }
    for (_, client) in clients {
        client.stop().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// Starts brokers 1 and 2, "crashes" broker 1 (its client's runtime is dropped, which
/// ends its stream without a goodbye, as a killed process would), closing its Kafka
/// listener too unless `port_stays_open`, and returns how long until every node shows it
/// fenced. Broker 2 must stay unfenced throughout.
async fn time_to_fence_a_crash(port_stays_open: bool) -> Duration {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_voters(root.path(), LONG_SESSION_MS).await;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = kafka_listener();
    let port = listener.local_addr().unwrap().port();
    let crashing = {
        let _enter = runtime.enter();
        BrokerClient::start(
            client_config(1, &nodes, port),
            nodes[0].metadata().subscribe(),
        )
    };
    let survivor = start_client(2, &nodes[1], &nodes);
    wait_images(&nodes, "both brokers unfenced", WAIT, |image| {
        fenced(image, 1) == Some(false) && fenced(image, 2) == Some(false)
    })
    .await;

    let crashed = Instant::now();
    // A frozen process keeps its sockets; a dead one's listener is closed by the kernel.
    let kept = port_stays_open.then_some(listener);
    runtime.shutdown_background();
    wait_images(&nodes, "the crashed broker fenced", WAIT, |image| {
        fenced(image, 1) == Some(true)
    })
    .await;
    let took = crashed.elapsed();
    tracing::info!(?took, port_stays_open, "crashed broker fenced");
    for n in &nodes {
        assert_eq!(fenced(&n.metadata().image(), 2), Some(false));
    }
    drop((crashing, kept));
    survivor.stop().await;
    for n in nodes {
        n.shutdown().await;
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_broker_that_still_accepts_is_fenced_after_the_loss_grace_not_the_session() {
    init_tracing();
    let took = time_to_fence_a_crash(true).await;
    assert!(took < Duration::from_secs(2), "fenced only after {took:?}");
    assert!(
        took >= Duration::from_millis(GRACE_MS),
        "fenced before the grace: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_broker_whose_listener_refuses_is_fenced_without_the_grace() {
    init_tracing();
    let took = time_to_fence_a_crash(false).await;
    assert!(
        took < Duration::from_millis(GRACE_MS),
        "waited out the grace: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_with_its_stream_open_is_fenced_only_after_its_session() {
    const SESSION_MS: u64 = 3000;
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_voters(root.path(), SESSION_MS).await;
    let client = start_client(1, &nodes[0], &nodes);
    wait_status(&client, "unfenced", |s| !s.fenced).await;
    wait_images(&nodes, "broker unfenced", WAIT, |image| {
        fenced(image, 1) == Some(false)
    })
    .await;

    // Taken before the pause: its last heartbeat was sent no later than this.
    let paused = Instant::now();
    client.pause_heartbeats_for_test(true);
    let took = wait_images(
        &nodes,
        "the stalled broker fenced",
        Duration::from_millis(SESSION_MS) + Duration::from_secs(3),
        |image| fenced(image, 1) == Some(true),
    )
    .await;
    let took = took.max(paused.elapsed());
    tracing::info!(?took, "stalled broker fenced");
    // Its last heartbeat was at most one heartbeat interval before the pause.
    assert!(
        took >= Duration::from_millis(SESSION_MS) - Duration::from_millis(200),
        "fenced before its session lapsed: {took:?}"
    );
    assert!(client.status().borrow().controller.is_some());

    // Resuming on the same stream unfences it again.
    client.pause_heartbeats_for_test(false);
    wait_images(&nodes, "broker unfenced again", WAIT, |image| {
        fenced(image, 1) == Some(false)
    })
    .await;
    client.stop().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_failover_moves_every_broker_and_fences_only_the_old_controllers() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_voters(root.path(), LONG_SESSION_MS).await;
    let old_leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    let mut clients: BTreeMap<i32, BrokerClient> = nodes
        .iter()
        .map(|n| {
            let id = i32::try_from(n.node_id()).unwrap();
            (id, start_client(id, n, &nodes))
        })
        .collect();
    wait_images(&nodes, "all brokers unfenced", WAIT, |image| {
        (1..=3).all(|id| fenced(image, id) == Some(false))
    })
    .await;
    for client in clients.values() {
        wait_status(client, "unfenced", |s| !s.fenced).await;
    }
    let old_broker = i32::try_from(old_leader).unwrap();
    // Each survivor's status must never say fenced again.
    let (refenced_tx, mut refenced) = mpsc::unbounded_channel();
    let mut monitors = Vec::new();
    for (id, client) in &clients {
        if *id == old_broker {
            continue;
        }
        let (id, mut status, refenced_tx) = (*id, client.status(), refenced_tx.clone());
        monitors.push(tokio::spawn(async move {
            while status.changed().await.is_ok() {
                if status.borrow().fenced {
                    let _ = refenced_tx.send(id);
                }
            }
        }));
    }

    // The controller leader dies together with its broker.
    let killed = Instant::now();
    let index = nodes
        .iter()
        .position(|n| n.node_id() == old_leader)
        .unwrap();
    let dead = nodes.remove(index);
    let dead_client = clients.remove(&old_broker).unwrap();
    // Both in the background: the node's shutdown waits for its server to drain.
    let dead = tokio::spawn(dead.shutdown());
    let dead_client = tokio::spawn(dead_client.stop());
    let new_leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), Some(old_leader)).await;
    wait_images(
        &nodes,
        "the old controller's broker fenced",
        WAIT,
        |image| fenced(image, old_broker) == Some(true),
    )
    .await;
    let took = killed.elapsed();
    tracing::info!(?took, "old controller's broker fenced");
    assert!(took < Duration::from_secs(2), "fenced only after {took:?}");

    for (id, client) in &clients {
        let status = wait_status(client, "moved to the new leader", |s| {
            s.controller == Some(new_leader) && !s.fenced
        })
        .await;
        assert!(status.epoch.is_some(), "broker {id}");
    }
    // A while later (well inside the session, but several grace periods), nobody else
    // was fenced.
    tokio::time::sleep(Duration::from_millis(GRACE_MS * 3)).await;
    for n in &nodes {
        for id in clients.keys() {
            assert_eq!(
                fenced(&n.metadata().image(), *id),
                Some(false),
                "broker {id}"
            );
        }
    }
    assert!(refenced.try_recv().is_err(), "a live broker was fenced");
    for client in clients.into_values() {
        client.stop().await;
    }
    for monitor in monitors {
        monitor.await.unwrap();
    }
    dead.await.unwrap();
    dead_client.await.unwrap();
    for n in nodes {
        n.shutdown().await;
    }
}

type Client = pb::broker_lifecycle_client::BrokerLifecycleClient<tonic::transport::Channel>;

fn heartbeat(broker_id: i32, broker_epoch: i64) -> pb::BrokerHeartbeatRequest {
    pb::BrokerHeartbeatRequest {
        broker_id,
        broker_epoch,
        current_metadata_offset: u64::MAX,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Opens a raw heartbeat stream and returns its request sender and answers.
async fn open_stream(
    client: &mut Client,
) -> (
    mpsc::Sender<pb::BrokerHeartbeatRequest>,
    tonic::Streaming<pb::BrokerHeartbeatResponse>,
) {
    let (tx, rx) = mpsc::channel(4);
    let responses = client
        .broker_heartbeat_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, responses)
}

async fn answer(
    responses: &mut tonic::Streaming<pb::BrokerHeartbeatResponse>,
) -> Result<Option<pb::BrokerHeartbeatResponse>, tonic::Status> {
    tokio::time::timeout(WAIT, responses.message())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_per_broker_and_malformed_requests_end_the_stream() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let nodes = start_voters(root.path(), LONG_SESSION_MS).await;
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), None).await;
    let leader = node(&nodes, leader);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", leader.rpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = Client::new(channel);
    // Retried while the new leader is not yet the active controller.
    let deadline = Instant::now() + WAIT;
    let mut epoch = -1;
    while epoch < 0 {
        assert!(Instant::now() < deadline, "broker 7 not registered");
        let response = client
            .register_broker(pb::RegisterBrokerRequest {
                broker_id: 7,
                incarnation_id: vec![7; 16],
                listeners: vec![pb::BrokerListener {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9007,
                }],
                rack: None,
            })
            .await
            .unwrap()
            .into_inner();
        epoch = response.broker_epoch;
        if epoch < 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A first stream: answered in order, and unfenced.
    let (first_tx, mut first) = open_stream(&mut client).await;
    for _ in 0..3 {
        first_tx.send(heartbeat(7, epoch)).await.unwrap();
    }
    for _ in 0..3 {
        let response = answer(&mut first).await.unwrap().unwrap();
        assert_eq!(response.error, pb::LifecycleError::None as i32);
    }
    wait_images(&nodes, "broker 7 unfenced", WAIT, |image| {
        fenced(image, 7) == Some(false)
    })
    .await;

    // A second stream for the same broker replaces the first, whose end reports nothing.
    let (second_tx, mut second) = open_stream(&mut client).await;
    second_tx.send(heartbeat(7, epoch)).await.unwrap();
    let response = answer(&mut second).await.unwrap().unwrap();
    assert!(!response.is_fenced, "{response:?}");
    let status = answer(&mut first).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    drop(first_tx);
    tokio::time::sleep(Duration::from_millis(GRACE_MS) + TICK * 4).await;
    for n in &nodes {
        assert_eq!(fenced(&n.metadata().image(), 7), Some(false));
    }

    // Another broker's heartbeat on the stream is malformed: INVALID_ARGUMENT, the stream
    // ends, and the broker's connection counts as lost.
    second_tx.send(heartbeat(8, 1)).await.unwrap();
    let status = answer(&mut second).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let took = wait_images(&nodes, "broker 7 fenced after the grace", WAIT, |image| {
        fenced(image, 7) == Some(true)
    })
    .await;
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A bad broker id is INVALID_ARGUMENT too, before anything is claimed.
    let (third_tx, mut third) = open_stream(&mut client).await;
    third_tx.send(heartbeat(-3, 1)).await.unwrap();
    let status = answer(&mut third).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // A clean EOF after heartbeats is a lost connection as well; a new stream's heartbeat
    // before the grace keeps the broker.
    let (fourth_tx, mut fourth) = open_stream(&mut client).await;
    fourth_tx.send(heartbeat(7, epoch)).await.unwrap();
    answer(&mut fourth).await.unwrap().unwrap();
    wait_images(&nodes, "broker 7 unfenced again", WAIT, |image| {
        fenced(image, 7) == Some(false)
    })
    .await;
    drop(fourth_tx);
    assert!(answer(&mut fourth).await.unwrap().is_none());
    let (fifth_tx, mut fifth) = open_stream(&mut client).await;
    fifth_tx.send(heartbeat(7, epoch)).await.unwrap();
    assert!(!answer(&mut fifth).await.unwrap().unwrap().is_fenced);
    tokio::time::sleep(Duration::from_millis(GRACE_MS) + TICK * 4).await;
    for n in &nodes {
        assert_eq!(fenced(&n.metadata().image(), 7), Some(false));
    }
    drop(fifth_tx);
    for n in nodes {
        n.shutdown().await;
    }
}
