//! The HTTP endpoint (`--http-listen`) of real `sluice` processes: liveness and
//! readiness as a container orchestrator sees them (live but not ready without a quorum;
//! ready once joined; `sluice healthcheck` exits accordingly), and `/metrics` following
//! what happens in a three-node cluster (requests, bytes per topic, consumer lag, ISR
//! shrink and expansion, under-replicated partitions, the active controller).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_system_tests::cluster::{free_ports, Cluster};
use sluice_system_tests::{kafka, launch, sigterm, sluice_bin, wait_for, wait_timeout, wire, Log};

const CONVERGE: Duration = Duration::from_secs(15);

/// GET `path` from 127.0.0.1:`port`: (status, body); status 0 if nothing answered.
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The value of the sample `name{labels}` (labels exactly as exposed, in order), or of
/// `name` without labels; 0 when absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// `sample` summed over the nodes' pages.
fn total(ports: &[u16], series: &str) -> f64 {
    ports
        .iter()
        .map(|p| sample(&get(*p, "/metrics").1, series))
        .sum()
}

/// `sluice healthcheck` against `port`: whether it exited 0.
fn healthcheck(port: u16, live: bool) -> bool {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["--http-listen", &format!("127.0.0.1:{port}"), "healthcheck"]);
    if live {
        cmd.arg("--live");
    }
    cmd.output()
        .expect("run sluice healthcheck")
        .status
        .success()
}

#[test]
fn a_node_without_its_quorum_is_live_but_not_ready() {
    let ports = free_ports(4);
    let (rpc, http) = (ports[0], ports[3]);
    // Voters 2 and 3 never start: no quorum can form.
    let voters = format!(
        "1@127.0.0.1:{rpc},2@127.0.0.1:{},3@127.0.0.1:{}",
        ports[1], ports[2]
    );
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = [
        "--node-id",
        "1",
        "--voters",
        &voters,
        "--rpc-listen",
        &format!("127.0.0.1:{rpc}"),
        "--http-listen",
        &format!("127.0.0.1:{http}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut node = launch(
        dir.path(),
        &extra,
        "127.0.0.1:0",
        "[alone]",
        &Log::default(),
    );
    wait_for(CONVERGE, "the HTTP endpoint to answer", || {
        get(http, "/health/live").0 == 200
    });
    let (status, body) = get(http, "/health/ready");
    assert_eq!(status, 503, "ready without a quorum: {body}");
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(healthcheck(http, true), "healthcheck --live");
    assert!(!healthcheck(http, false), "healthcheck (ready)");
    let (status, metrics) = get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sluice_node_info{node_id=\"1\""),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert_eq!(get(http, "/nope").0, 404);
    // Still waiting for its quorum, it stops at once on SIGTERM (as PID 1 of a
    // container it must handle the signal itself).
    sigterm(&node.child);
    let status = wait_timeout(&mut node.child, Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM while starting: {status:?}"
    );
}

#[test]
fn metrics_follow_requests_lag_and_isr_changes_in_a_cluster() {
    let http = free_ports(3);
    let port = |id: i32| http[(id - 1) as usize];
    let c = Cluster::start_with(3, &["--replica-lag-time-max-ms", "1500"], |id| {
        vec!["--http-listen".into(), format!("127.0.0.1:{}", port(id))]
    });
    for id in 1..=3 {
        wait_for(CONVERGE, &format!("node {id} ready"), || {
            get(port(id), "/health/ready").0 == 200
        });
        assert!(healthcheck(port(id), false), "healthcheck of node {id}");
        let page = get(port(id), "/metrics").1;
        assert!(
            page.contains(&format!("sluice_node_info{{node_id=\"{id}\"")),
            "node {id}: {page}"
        );
    }
    assert_eq!(total(&http, "sluice_controller_active"), 1.0);

    wire::must_create_assigned(
        &mut c.raw(1),
        "m",
        &[&[1, 2, 3]],
        &[("min.insync.replicas", "2")],
    );
    c.converged(CONVERGE, "m led by 1", |v| {
        v.topics
            .get("m")
            .is_some_and(|t| t.partitions[0].leader == 1)
    });
    let producer = kafka::producer(&c.bootstrap(), &[("acks", "all")]);
    let msgs: Vec<(i32, Vec<u8>)> = (0..50).map(|i| (0, format!("v{i}").into_bytes())).collect();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kafka::produce_to(&producer, "m", &msgs));
    assert_eq!(
        total(&http, "sluice_topic_records_in_total{topic=\"m\"}"),
        50.0
    );
    assert!(total(&http, "sluice_topic_bytes_in_total{topic=\"m\"}") > 50.0 * 2.0);
    assert!(
        sample(
            &get(port(1), "/metrics").1,
            "sluice_requests_total{api=\"Produce\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &get(port(1), "/metrics").1,
            "sluice_request_duration_seconds_count{api=\"Produce\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &get(port(1), "/metrics").1,
            "sluice_partition_high_watermark{topic=\"m\",partition=\"0\"}"
        ),
        50.0
    );

    // A group that committed 30 of 50: its coordinator reports lag 20.
    let consumer: BaseConsumer = kafka::group_config(&c.bootstrap(), "lag-g", &[])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("m", 0, Offset::Offset(30))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let lag = "sluice_consumer_group_lag{group=\"lag-g\",topic=\"m\",partition=\"0\"}";
    let committed =
        "sluice_consumer_group_committed_offset{group=\"lag-g\",topic=\"m\",partition=\"0\"}";
    wait_for(CONVERGE, "the lag of lag-g in /metrics", || {
        total(&http, committed) == 30.0 && total(&http, lag) == 20.0
    });

    // A stopped follower leaves the ISR: the leader counts the shrink and reports the
    // partition under-replicated; back, it rejoins and the leader counts the expansion.
    c.signal(3, "STOP");
    wait_for(CONVERGE, "node 1 to report m-0 under-replicated", || {
        let page = get(port(1), "/metrics").1;
        sample(&page, "sluice_under_replicated_partitions") >= 1.0
            && sample(&page, "sluice_isr_shrinks_total") >= 1.0
    });
    c.signal(3, "CONT");
    wait_for(CONVERGE, "node 1 to count the ISR expansion", || {
        let page = get(port(1), "/metrics").1;
        sample(&page, "sluice_under_replicated_partitions") == 0.0
            && sample(&page, "sluice_isr_expands_total") >= 1.0
    });
    wait_for(CONVERGE, "node 3 ready again", || {
        get(port(3), "/health/ready").0 == 200
    });
}
