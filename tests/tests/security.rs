//! Listener security end to end: SASL on the wire (what is served before
//! authentication, failures, PLAIN's v0 raw tokens, KIP-368 session expiry), the
//! `add-scram` bootstrap, unauthenticated connection floods, and a three-node cluster
//! whose brokers replicate to each other over mutual TLS with certificate principals.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::messages::create_topics_request::CreatableTopic;
use sluice_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use sluice_system_tests::certs::{TestPki, BROKER_PRINCIPAL};
use sluice_system_tests::cluster::Cluster;
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::secure::{SecuredNode, ADMIN, ADMIN_PASSWORD};
use sluice_system_tests::wire::{batch, produce_request};
use sluice_system_tests::{sluice_bin, wait_for, Sluice};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// Metadata of every topic the principal may describe.
fn metadata(c: &mut RawClient) -> MetadataResponse {
    let req = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    c.call(ApiKey::Metadata, 12, &req)
}

fn api_versions(c: &mut RawClient) -> ApiVersionsResponse {
    let req = ApiVersionsRequest {
        client_software_name: "sluice-tests".into(),
        client_software_version: "1.0".into(),
    };
    c.call(ApiKey::ApiVersions, 3, &req)
}

/// The connection is closed by the broker: a request gets no answer.
fn closed(mut c: RawClient) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.is_closed_by_peer()
}

fn create_topic(c: &mut RawClient, name: &str, partitions: i32, rf: i16) -> i16 {
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    };
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req);
    resp.topics[0].error_code
}

/// Produces `n` records with acks=all; the partition's error code.
fn produce_all(c: &mut RawClient, topic: &str, n: usize) -> i16 {
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("v{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let req = produce_request(topic, 0, -1, batch(&refs));
    let resp: sluice_protocol::messages::ProduceResponse = c.call(ApiKey::Produce, 9, &req);
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn only_sasl_is_served_before_authentication() {
    let node = SecuredNode::start(&[]);
    // ApiVersions is answered before authentication, and lists the SASL APIs.
    let mut c = RawClient::connect(node.addr());
    let versions = api_versions(&mut c);
    assert_eq!(versions.error_code, 0);
    for key in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate] {
        assert!(
            versions.api_keys.iter().any(|k| k.api_key == key as i16),
            "{key:?} advertised"
        );
    }
    // Anything else before authentication closes the connection unanswered.
    c.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        closed(c),
        "a Metadata request before SASL closes the connection"
    );

    // A mechanism the listener does not offer: the answer lists what it offers.
    let mut c = RawClient::connect(node.addr());
    let resp: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest {
            mechanism: "GSSAPI".into(),
        },
    );
    assert_eq!(resp.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(
        resp.mechanisms,
        vec!["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
    );
    assert!(closed(c));

    // Wrong password (SCRAM and PLAIN): SASL_AUTHENTICATION_FAILED, then closed.
    let mut c = RawClient::connect(node.addr());
    assert_eq!(
        c.sasl_scram("SCRAM-SHA-256", ADMIN, "not-it"),
        SASL_AUTHENTICATION_FAILED
    );
    assert!(closed(c));
    let mut c = RawClient::connect(node.addr());
    assert_eq!(c.sasl_plain("alice", "wrong"), SASL_AUTHENTICATION_FAILED);
    assert!(closed(c));
    // An unknown user fails the same way, at the first SCRAM message.
    let mut c = RawClient::connect(node.addr());
    assert_eq!(
        c.sasl_scram("SCRAM-SHA-512", "nobody", "x"),
        SASL_AUTHENTICATION_FAILED
    );

    // The right password: requests flow.
    let mut admin = node.admin();
    assert_eq!(metadata(&mut admin).brokers.len(), 1);
}

#[test]
fn plain_with_a_v0_handshake_takes_raw_tokens() {
    // Before SaslAuthenticate existed (KIP-152), the tokens followed a v0 handshake as
    // bare frames; clients such as older kafka-python still do that.
    let node = SecuredNode::start(&[]);
    let mut c = RawClient::connect(node.addr());
    let resp: SaslHandshakeResponse = c.call(
        ApiKey::SaslHandshake,
        0,
        &SaslHandshakeRequest {
            mechanism: "PLAIN".into(),
        },
    );
    assert_eq!(resp.error_code, 0);
    let token = b"\0alice\0alice-secret";
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    c.write_raw(&frame).unwrap();
    assert_eq!(c.read_frame().expect("token answer"), Bytes::new());
    assert_eq!(metadata(&mut c).brokers.len(), 1, "authenticated as alice");
}

#[test]
fn sessions_expire_unless_reauthenticated() {
    let node = SecuredNode::start(&["--connections-max-reauth-ms", "1500"]);
    let mut c = RawClient::connect(node.addr());
    assert_eq!(c.sasl_handshake("PLAIN"), 0);
    let started = Instant::now();
    let resp: SaslAuthenticateResponse = c.call(
        ApiKey::SaslAuthenticate,
        1,
        &SaslAuthenticateRequest {
            auth_bytes: Bytes::from_static(b"\0alice\0alice-secret"),
        },
    );
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.session_lifetime_ms, 1500, "the lifetime is announced");
    // Re-authenticate on the same connection before the session ends (KIP-368)...
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(c.sasl_plain("alice", "alice-secret"), 0);
    // ...so past the first session's end, requests are still served.
    let until = started + Duration::from_millis(1800);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    assert_eq!(metadata(&mut c).brokers.len(), 1);
    // Re-authenticating as someone else is refused and closes the connection.
    assert_eq!(
        c.sasl_plain("bob", "bob-secret"),
        SASL_AUTHENTICATION_FAILED
    );
    assert!(closed(c));
    // A session left to expire: the next request closes the connection.
    let mut c = node.login("alice");
    std::thread::sleep(Duration::from_millis(1700));
    c.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(closed(c), "a request after the session expired closes it");
}

#[test]
fn unauthenticated_floods_do_not_stop_authenticated_clients() {
    let node = SecuredNode::start(&[
        "--max-connections-per-ip",
        "20",
        "--max-connections-per-ip-overrides",
        "127.0.0.1:100",
        "--authentication-timeout-ms",
        "1500",
    ]);
    let flooder: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    // A flood from one host: 20 idle connections are admitted, the rest are refused.
    let mut flood: Vec<RawClient> = (0..20)
        .map(|_| RawClient::connect_from(node.addr(), flooder).unwrap())
        .collect();
    let extra = RawClient::connect_from(node.addr(), flooder).unwrap();
    assert!(
        closed(extra),
        "the 21st connection from 127.0.0.2 is closed"
    );
    // Meanwhile an authenticated client works.
    let mut admin = node.admin();
    assert_eq!(create_topic(&mut admin, "flooded", 1, 1), 0);
    assert_eq!(produce_all(&mut admin, "flooded", 10), 0);
    // Connections that never authenticate are closed after the authentication timeout,
    // which frees the flooder's slots too.
    let started = Instant::now();
    for c in flood.iter_mut() {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            c.is_closed_by_peer(),
            "an idle unauthenticated connection is closed"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_for(Duration::from_secs(5), "127.0.0.2's slots back", || {
        let mut c = RawClient::connect_from(node.addr(), flooder).unwrap();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        c.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        c.read_frame().is_some()
    });
    // The authenticated connection outlived all of it.
    assert_eq!(produce_all(&mut admin, "flooded", 10), 0);
}

#[test]
fn add_scram_bootstraps_the_first_user_without_storing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "add-scram",
            "SCRAM-SHA-512=[name=root,password=root-pw-123]",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = std::fs::read_to_string(dir.path().join("bootstrap-scram.json")).unwrap();
    assert!(stored.contains("root") && !stored.contains("root-pw-123"));
    let node = Sluice::start_in(
        dir.path(),
        &[
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--authorizer",
            "standard",
            "--super-users",
            "User:root",
        ],
    );
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(c.sasl_scram("SCRAM-SHA-512", "root", "root-pw-123"), 0);
    assert_eq!(create_topic(&mut c, "rooted", 1, 1), 0);
    let mut c = RawClient::connect(&node.addr);
    assert_eq!(
        c.sasl_scram("SCRAM-SHA-512", "root", "root-pw-124"),
        SASL_AUTHENTICATION_FAILED
    );
}

/// The `listeners=` field of a node's `sluice listening` line: NAME -> bound address.
fn listener_addr(log: &str, name: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("sluice listening"))
        .expect("listening line");
    let field = line.split("listeners=").nth(1).expect("listeners field");
    field
        .split(", ")
        .find_map(|item| item.strip_prefix(&format!("{name}=")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name} listener in {line}"))
        .to_string()
}

#[test]
fn brokers_replicate_and_vote_over_mutual_tls_as_a_certificate_principal() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(pki_dir.path()).unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let (cert, key, ca) = (
        path(&pki.server_pem),
        path(&pki.server_key_pem),
        path(&pki.ca_pem),
    );
    let scram = format!("SCRAM-SHA-256=[name={ADMIN},password={ADMIN_PASSWORD}]");
    let super_users = format!("User:{ADMIN};{BROKER_PRINCIPAL}");
    // PLAIN (the harness's anonymous view of the cluster), CLIENT (SASL) and BROKER
    // (SSL with required client certificates: the inter-broker listener).
    let cluster = Cluster::start_with(3, &[], |_| {
        [
            "--listeners",
            "PLAIN://127.0.0.1:0,CLIENT://127.0.0.1:0,BROKER://127.0.0.1:0",
            "--listener-security-protocol-map",
            "PLAIN:PLAINTEXT,CLIENT:SASL_PLAINTEXT,BROKER:SSL",
            "--inter-broker-listener",
            "BROKER",
            "--ssl-certificate-location",
            &cert,
            "--ssl-key-location",
            &key,
            "--ssl-truststore-location",
            &ca,
            "--ssl-client-auth",
            "required",
            // The quorum's own RPCs over mutual TLS with the same certificates.
            "--controller-tls",
            "--add-scram",
            &scram,
            "--authorizer",
            "standard",
            "--super-users",
            &super_users,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    });
    let client = listener_addr(&cluster.log(1).text(), "CLIENT");
    let mut admin = RawClient::connect(&client);
    assert_eq!(admin.sasl_scram("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD), 0);
    // Create through whichever node; then produce to the leader with acks=all, which
    // completes only once both followers fetched over the BROKER listener (as the
    // certificate principal, which needs ClusterAction: a super user here).
    assert_eq!(create_topic(&mut admin, "replicated", 1, 3), 0);
    let mut leader = -1;
    wait_for(Duration::from_secs(20), "a leader for replicated", || {
        let md = metadata(&mut admin);
        leader = md
            .topics
            .iter()
            .find(|t| t.name.as_deref() == Some("replicated"))
            .and_then(|t| t.partitions.first())
            .map_or(-1, |p| p.leader_id);
        leader > 0
    });
    let mut leader_admin =
        RawClient::connect(&listener_addr(&cluster.log(leader).text(), "CLIENT"));
    assert_eq!(
        leader_admin.sasl_scram("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD),
        0
    );
    // The leader may not have taken up its leadership yet when Metadata (from another
    // node) names it: retry that first write as a client would, then all must succeed.
    let mut first = -1;
    wait_for(Duration::from_secs(20), "a first acks=all write", || {
        first = produce_all(&mut leader_admin, "replicated", 100);
        assert!(
            [0, 6, 7, 19].contains(&first),
            "first write: error {first} is not retriable"
        );
        first == 0
    });
    for _ in 0..4 {
        assert_eq!(produce_all(&mut leader_admin, "replicated", 100), 0);
    }
    // ANONYMOUS on the PLAINTEXT listener sees the brokers but no topic.
    let mut anonymous = cluster.raw(leader);
    let md = metadata(&mut anonymous);
    assert_eq!(md.brokers.len(), 3);
    assert!(md.topics.is_empty(), "ANONYMOUS may not describe topics");
}
