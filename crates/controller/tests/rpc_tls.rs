//! The controller RPC port over mutual TLS, three nodes in one process with certificates
//! from a test CA made by rcgen: the quorum elects a leader and commits, a follower
//! forwards a write to the leader and a broker registers and is unfenced, all over TLS;
//! a node whose certificate comes from another CA is shut out (its vote requests never
//! reach the others, it never learns a committed record, and its forwarded writes fail),
//! and so is a client speaking plain HTTP/2 to the TLS port.

// Test helpers outside `#[test]` functions: a failed step should fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sluice_controller::rpc_tls::RpcTls;
use sluice_controller::{
    BrokerClient, BrokerClientConfig, BrokerEndpoint, Controller, ControllerConfig, ControllerNode,
    ForwardError, MetadataClient, MetadataRecord, MetadataResponse, NodeId,
};
use tokio::net::TcpListener;

mod common;
use common::{init_tracing, lifecycle_config, live_port, wait_leader};

/// Bound of every wait in this test, and (twice over) of each whole test.
const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority that signs node certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Node `id`'s TLS material: a certificate from this CA naming the voters' hosts (as
    /// a deployment's would) and 127.0.0.1, where these tests' nodes listen, with
    /// `trusted` as the CA it accepts peers from.
    fn node_tls(&self, id: NodeId, trusted: &Ca) -> RpcTls {
        let key = KeyPair::generate().unwrap();
        let names = ["localhost", "sluice-1", "sluice-2", "sluice-3", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("sluice-{id}"));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let tls = RpcTls::from_pem(cert.pem(), key.serialize_pem(), trusted.pem.clone());
        tls.validate().unwrap();
        tls
    }
}

fn config(id: NodeId, dir: &Path, tls: RpcTls) -> ControllerConfig {
    // A long session: the broker in these tests heartbeats, nobody should be fenced.
    let mut config = lifecycle_config(id, dir, 10_000, 1_000, Duration::from_millis(50));
    config.tls = Some(tls);
    config
}

/// Starts nodes 1-3 on free 127.0.0.1 ports with `tls(id)`; the voter set is returned
/// for the caller to initialize.
async fn start_nodes(
    root: &Path,
    tls: impl Fn(NodeId) -> RpcTls,
) -> (Vec<Controller>, BTreeMap<NodeId, ControllerNode>) {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = root.join(format!("node-{id}"));
        nodes.push(
            Controller::start(config(id, &dir, tls(id)), listener)
                .await
                .unwrap(),
        );
    }
    let voters = nodes
        .iter()
        .map(|n| (n.node_id(), ControllerNode::new(n.rpc_addr().to_string())))
        .collect();
    (nodes, voters)
}

fn node(nodes: &[Controller], id: NodeId) -> &Controller {
    nodes.iter().find(|n| n.node_id() == id).unwrap()
}

fn register(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id,
        epoch: 1,
        endpoints: vec![BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: live_port(),
        }],
        rack: None,
    }
}

/// Polls `done` until it holds; fails after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_broker(node: &Controller, id: i32) -> bool {
    node.metadata().image().broker(id).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_forward_and_register_a_broker_over_mutual_tls() {
    init_tracing();
    let ca = Ca::new("sluice test CA");
    let root = tempfile::tempdir().unwrap();
    let run = async {
        let (nodes, voters) = start_nodes(root.path(), |id| ca.node_tls(id, &ca)).await;
        assert!(nodes[0].initialize(voters.clone()).await.unwrap());
        let all: Vec<&Controller> = nodes.iter().collect();
        let leader = wait_leader(&all, None).await;

        // Replication: a record written on the leader reaches every node over TLS.
        let written = node(&nodes, leader).write(register(101)).await.unwrap();
        assert_eq!(written, MetadataResponse::Applied);
        wait_until("every node applies broker 101", || {
            nodes.iter().all(|n| has_broker(n, 101))
        })
        .await;

        // Forwarding: a follower's write travels to the leader's MetadataWriter over TLS.
        let follower = nodes.iter().find(|n| n.node_id() != leader).unwrap();
        let addrs: Vec<String> = voters.values().map(|n| n.rpc_addr.clone()).collect();
        let client = MetadataClient::new(
            follower.node_id(),
            follower.raft().clone(),
            addrs.clone(),
            Duration::from_millis(200),
            Duration::from_secs(2),
        )
        .with_tls(Some(ca.node_tls(follower.node_id(), &ca)));
        let outcome = client.write(register(102), WAIT).await.unwrap();
        assert_eq!(outcome.response, MetadataResponse::Applied);
        wait_until("every node applies broker 102", || {
            nodes.iter().all(|n| has_broker(n, 102))
        })
        .await;

        // The broker lifecycle: broker 1 registers with the active controller over TLS
        // and, caught up, is unfenced on every node.
        let mut broker = BrokerClientConfig::new(
            1,
            vec![BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: live_port(),
            }],
            voters
                .iter()
                .map(|(id, n)| (*id, n.rpc_addr.clone()))
                .collect(),
        );
        broker.heartbeat_interval = Duration::from_millis(200);
        broker.connect_timeout = Duration::from_millis(500);
        broker.tls = Some(ca.node_tls(1, &ca));
        let broker = BrokerClient::start(broker, node(&nodes, 1).metadata().subscribe());
        let mut status = broker.status();
        let unfenced = tokio::time::timeout(WAIT, async {
            status.wait_for(|s| !s.fenced).await.map(|s| s.clone())
        })
        .await;
        match unfenced {
            Ok(Ok(seen)) => assert_eq!(seen.controller, Some(leader), "{seen:?}"),
            _ => panic!("broker 1 not unfenced over TLS: {:?}", *status.borrow()),
        }
        wait_until("every node sees broker 1 unfenced", || {
            nodes
                .iter()
                .all(|n| n.metadata().image().broker(1).is_some_and(|b| !b.fenced))
        })
        .await;

        broker.stop().await;
        for n in nodes {
            n.shutdown().await;
        }
    };
    tokio::time::timeout(WAIT * 2, run)
        .await
        .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_from_another_ca_is_shut_out() {
    init_tracing();
    let ca = Ca::new("sluice test CA");
    let rogue = Ca::new("rogue CA");
    let root = tempfile::tempdir().unwrap();
    let run = async {
        // Node 3 trusts the cluster's CA (it could have copied the CA certificate) but
        // its own certificate comes from another CA.
        let (nodes, voters) = start_nodes(root.path(), |id| match id {
            3 => rogue.node_tls(id, &ca),
            _ => ca.node_tls(id, &ca),
        })
        .await;
        let (good, bad) = (&nodes[..2], &nodes[2]);
        assert!(nodes[0].initialize(voters.clone()).await.unwrap());
        // Node 3 thinks it is a voter of the same quorum, so it campaigns: were its vote
        // requests delivered, their higher terms would depose the leader.
        assert!(bad.initialize(voters.clone()).await.unwrap());

        // Two of three voters are a majority: the good pair elects a leader and commits.
        let leader = wait_leader(&good.iter().collect::<Vec<_>>(), None).await;
        let written = node(&nodes, leader).write(register(201)).await.unwrap();
        assert_eq!(written, MetadataResponse::Applied);
        wait_until("both good nodes apply broker 201", || {
            good.iter().all(|n| has_broker(n, 201))
        })
        .await;

        // Node 3 keeps campaigning in ever higher terms without reaching anybody: the
        // good nodes stay below its term, and it never learns a leader or the record.
        let term = |n: &Controller| n.raft().metrics().borrow().current_term;
        wait_until("node 3 campaigns past the good nodes' term", || {
            term(bad) > good.iter().map(term).max().unwrap_or(0) + 1
        })
        .await;
        assert!(good.iter().all(|n| term(n) < term(bad)));
        assert_eq!(bad.raft().metrics().borrow().current_leader, None);
        assert_eq!(bad.metadata().last_applied(), None);
        assert!(!has_broker(bad, 201));
        for n in good {
            assert_eq!(
                n.raft().metrics().borrow().current_leader,
                Some(leader),
                "node {} lost its leader",
                n.node_id()
            );
        }

        // Node 3's forwarded writes fail: the good nodes refuse its certificate (and it
        // refuses theirs). So do a plain-HTTP client's.
        let addrs: Vec<String> = voters.values().map(|n| n.rpc_addr.clone()).collect();
        let forward = |tls: Option<RpcTls>| {
            MetadataClient::new(
                3,
                bad.raft().clone(),
                addrs.clone(),
                Duration::from_millis(200),
                Duration::from_millis(500),
            )
            .with_tls(tls)
        };
        let refused = forward(Some(rogue.node_tls(3, &ca)))
            .write(register(202), Duration::from_millis(1_500))
            .await;
        assert!(
            matches!(
                refused,
                Err(ForwardError::Unavailable(_) | ForwardError::Timeout)
            ),
            "{refused:?}"
        );
        let plain = forward(None)
            .write(register(203), Duration::from_millis(1_500))
            .await;
        assert!(
            matches!(
                plain,
                Err(ForwardError::Unavailable(_) | ForwardError::Timeout)
            ),
            "{plain:?}"
        );
        // The good leader still commits, and nothing of the refused writes got in.
        let written = node(&nodes, leader).write(register(204)).await.unwrap();
        assert_eq!(written, MetadataResponse::Applied);
        wait_until("both good nodes apply broker 204", || {
            good.iter().all(|n| has_broker(n, 204))
        })
        .await;
        for n in good {
            assert!(!has_broker(n, 202) && !has_broker(n, 203));
        }
        assert!(!has_broker(bad, 204));

        for n in nodes {
            n.shutdown().await;
        }
    };
    tokio::time::timeout(WAIT * 2, run)
        .await
        .expect("the test took too long");
}
