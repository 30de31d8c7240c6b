//! Replication across real `sluice` processes: ISR shrink and expansion, acks=all and
//! `min.insync.replicas`, truncation after a double failover, catching up after an
//! outage, idempotent retries across a failover, group offsets across a coordinator
//! failover, and a rolling restart under an idempotent acks=all producer (librdkafka).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use sluice_protocol::api::ApiKey;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::produce_response::PartitionProduceResponse;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse, ProduceResponse};
use sluice_system_tests::cluster::{Cluster, PartitionView};
use sluice_system_tests::{kafka, wait_for, wire};

/// Short enough that a stopped follower leaves the ISR within a test.
const LAG: &str = "1500";
const CONVERGE: Duration = Duration::from_secs(15);

fn start3() -> Cluster {
    Cluster::start(3, &["--replica-lag-time-max-ms", LAG])
}

/// Creates `name` through a live node with an explicit assignment per partition and
/// waits until every node sees each partition led.
fn create_assigned(c: &Cluster, name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) {
    wire::must_create_assigned(&mut c.raw(c.live()[0]), name, replicas, configs);
    c.converged(CONVERGE, &format!("{name} led everywhere"), |v| {
        v.topics.get(name).is_some_and(|t| {
            t.partitions.len() == replicas.len() && t.partitions.iter().all(|p| p.leader >= 0)
        })
    });
}

/// Partition `p` of `topic` as node `via` (any live node) sees it.
fn partition(c: &Cluster, topic: &str, p: usize) -> PartitionView {
    let via = c.live()[0];
    c.view(via).expect("metadata").topics[topic].partitions[p].clone()
}

/// Waits until `ok` holds for partition `p` of `topic` as the first live node serves it
/// (a node may be SIGSTOPped, so not every live node answers).
fn await_partition(
    c: &Cluster,
    topic: &str,
    p: usize,
    what: &str,
    ok: impl Fn(&PartitionView) -> bool,
) -> PartitionView {
    let via = c.live()[0];
    let mut last = None;
    wait_for(CONVERGE, what, || {
        last = c.view(via).ok().and_then(|v| {
            v.topics
                .get(topic)
                .and_then(|t| t.partitions.get(p))
                .cloned()
        });
        last.as_ref().is_some_and(&ok)
    });
    last.expect("partition seen")
}

/// Produce of one batch with `acks` to node `node`; the partition's answer.
fn produce(
    c: &Cluster,
    node: i32,
    topic: &str,
    p: i32,
    acks: i16,
    batch: Bytes,
) -> PartitionProduceResponse {
    let resp: ProduceResponse = c.raw(node).call(
        ApiKey::Produce,
        9,
        &wire::produce_request(topic, p, acks, batch),
    );
    resp.responses[0].partition_responses[0].clone()
}

fn latest(c: &Cluster, node: i32, topic: &str, p: i32) -> (i16, i64) {
    let r = wire::list_offset(&mut c.raw(node), 7, topic, p, -1);
    (r.error_code, r.offset)
}

/// Every `.log` segment of `topic-p` in node `id`'s data dir, by file name.
fn segments(c: &Cluster, id: i32, topic: &str, p: i32) -> BTreeMap<String, Vec<u8>> {
    let dir: PathBuf = c.node(id).data_dir.join(format!("{topic}-{p}"));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            (name, std::fs::read(e.path()).expect("read segment"))
        })
        .collect()
}

/// Waits until every replica in `ids` holds byte-identical segments of `topic-p`.
fn await_identical(c: &Cluster, ids: &[i32], topic: &str, p: i32) {
    wait_for(
        CONVERGE,
        &format!("{topic}-{p} identical on {ids:?}"),
        || {
            let first = segments(c, ids[0], topic, p);
            ids[1..]
                .iter()
                .all(|id| segments(c, *id, topic, p) == first)
        },
    );
}

/// Every value of `topic-p` below the high watermark, read from its leader.
fn values(c: &Cluster, topic: &str, p: i32) -> Vec<String> {
    let leader = partition(c, topic, p as usize).leader;
    values_of(c, leader, topic, p)
}

fn values_of(c: &Cluster, node: i32, topic: &str, p: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let d = wire::fetch_at(&mut c.raw(node), topic, p, offset);
        assert_eq!(d.error_code, 0, "fetch {topic}-{p} at {offset}");
        let records = d.records.unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        for r in wire::records(&records) {
            offset = r.offset + 1;
            out.push(String::from_utf8_lossy(&r.value).to_string());
        }
    }
}

#[test]
fn the_isr_shrinks_when_a_follower_stops_and_expands_when_it_catches_up() {
    let c = start3();
    create_assigned(&c, "shrink", &[&[1, 2, 3]], &[("min.insync.replicas", "2")]);
    let producer = kafka::producer(&c.bootstrap(), &[("acks", "all")]);
    let send = |n: usize, tag: &str| {
        futures_executor(async {
            for i in 0..n {
                let v = format!("{tag}-{i}");
                producer
                    .send(
                        FutureRecord::<(), _>::to("shrink").payload(&v).partition(0),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("acks=all produce {v}: {e}"));
            }
        })
    };
    send(50, "before");
    c.signal(3, "STOP");
    let started = Instant::now();
    let p = await_partition(&c, "shrink", 0, "node 3 out of the ISR", |p| {
        p.isr == [1, 2]
    });
    println!(
        "ISR shrank to {:?} {:?} after SIGSTOP",
        p.isr,
        started.elapsed()
    );
    // With two in sync (min.insync.replicas 2), acks=all still succeeds.
    send(50, "while-stopped");
    c.signal(3, "CONT");
    let started = Instant::now();
    await_partition(&c, "shrink", 0, "node 3 back in the ISR", |p| {
        p.isr.len() == 3
    });
    println!("ISR expanded {:?} after SIGCONT", started.elapsed());
    await_identical(&c, &[1, 2, 3], "shrink", 0);
    assert_eq!(values(&c, "shrink", 0).len(), 100);
}

#[test]
fn acks_all_below_min_isr_is_refused_and_nothing_becomes_visible() {
    let mut c = start3();
    create_assigned(&c, "strict", &[&[1, 2, 3]], &[("min.insync.replicas", "3")]);
    let r = produce(&c, 1, "strict", 0, -1, wire::batch(&[b"all-three"]));
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(latest(&c, 1, "strict", 0), (0, 1));

    c.kill9(3);
    await_partition(&c, "strict", 0, "node 3 fenced out of the ISR", |p| {
        p.isr == [1, 2]
    });
    let r = produce(&c, 1, "strict", 0, -1, wire::batch(&[b"refused"]));
    assert_eq!(
        r.error_code,
        ErrorCode::NotEnoughReplicas.code(),
        "{:?}",
        r.error_message
    );
    // acks=1 is appended, but below min.insync.replicas the high watermark holds
    // (KIP-966), so consumers do not see it.
    let r = produce(&c, 1, "strict", 0, 1, wire::batch(&[b"held"]));
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.base_offset, 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        latest(&c, 1, "strict", 0),
        (0, 1),
        "nothing visible past the refused write"
    );
    assert_eq!(values_of(&c, 1, "strict", 0), ["all-three"]);

    c.restart(3);
    await_partition(&c, "strict", 0, "node 3 back in the ISR", |p| {
        p.isr.len() == 3
    });
    wait_for(CONVERGE, "the held record committed", || {
        latest(&c, 1, "strict", 0) == (0, 2)
    });
    assert_eq!(values_of(&c, 1, "strict", 0), ["all-three", "held"]);
}

#[test]
fn a_double_failover_ends_with_identical_logs() {
    // Session timeout 3 s (the harness's), lag time long: a stopped follower stays in
    // the ISR for the few hundred milliseconds this takes.
    let mut c = Cluster::start(3, &["--replica-lag-time-max-ms", "30000"]);
    create_assigned(&c, "double", &[&[1, 2]], &[]);
    let r = produce(&c, 1, "double", 0, -1, wire::batch(&[b"a0", b"a1"]));
    assert_eq!(r.error_code, 0);
    await_identical(&c, &[1, 2], "double", 0);

    // A (node 1) appends what B (node 2) never gets, then dies. B's fetch parked on A
    // is answered (empty) into B's socket first, so no fetch of B's is outstanding
    // when A appends.
    c.signal(2, "STOP");
    std::thread::sleep(Duration::from_millis(800));
    let r = produce(
        &c,
        1,
        "double",
        0,
        1,
        wire::batch(&[b"lost-1", b"lost-2", b"lost-3"]),
    );
    assert_eq!((r.error_code, r.base_offset), (0, 2));
    c.kill9(1);
    c.signal(2, "CONT");
    let p = await_partition(&c, "double", 0, "node 2 leads", |p| p.leader == 2);
    assert_eq!(p.isr, [2]);
    // B leads in a new epoch and appends at the offsets A had used.
    let r = produce(&c, 2, "double", 0, -1, wire::batch(&[b"b2", b"b3"]));
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 2),
        "{:?}",
        r.error_message
    );

    // A returns as a follower, truncates to where the epochs agree, and copies B.
    c.restart(1);
    await_partition(&c, "double", 0, "node 1 back in the ISR", |p| {
        p.isr.len() == 2
    });
    await_identical(&c, &[1, 2], "double", 0);
    assert_eq!(values_of(&c, 2, "double", 0), ["a0", "a1", "b2", "b3"]);
    assert!(
        c.log(1).contains("truncated to the leader's epoch end"),
        "node 1 should have truncated"
    );
}

#[test]
fn a_broker_back_from_a_long_outage_catches_up_and_rejoins_the_isr() {
    let mut c = start3();
    create_assigned(
        &c,
        "outage",
        &[&[1, 2, 3], &[2, 3, 1]],
        &[("segment.bytes", "1048576")],
    );
    c.kill9(3);
    await_partition(&c, "outage", 0, "node 3 out", |p| !p.isr.contains(&3));
    let producer = kafka::producer(&c.bootstrap(), &[("acks", "all"), ("linger.ms", "20")]);
    let msgs: Vec<(i32, Vec<u8>)> = (0..24_000).map(|i| (i % 2, vec![b'x'; 200])).collect();
    let acked = futures_executor(kafka::produce_to(&producer, "outage", &msgs));
    assert_eq!(acked.len(), msgs.len());
    assert!(
        segments(&c, 1, "outage", 0).len() > 1,
        "several segments written meanwhile"
    );
    let started = Instant::now();
    c.restart(3);
    for p in 0..2 {
        await_partition(&c, "outage", p, "node 3 rejoined", |v| v.isr.len() == 3);
        await_identical(&c, &[1, 2, 3], "outage", p as i32);
    }
    println!(
        "caught up and rejoined {:?} after restart",
        started.elapsed()
    );
}

#[test]
fn a_retried_batch_after_a_lost_ack_is_not_duplicated_across_failover() {
    let mut c = start3();
    create_assigned(&c, "idem", &[&[1, 2, 3]], &[]);
    let pid = wire::init_producer_id(&mut c.raw(2));
    let other = wire::init_producer_id(&mut c.raw(3));
    assert_ne!(pid, other, "producer ids are unique across brokers");

    let first = wire::idempotent_batch(pid, 0, &[b"one", b"two"]);
    let r = produce(&c, 1, "idem", 0, -1, first.clone());
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    // The same batch again (the client never saw the answer): its original offset.
    let r = produce(&c, 1, "idem", 0, -1, first.clone());
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(latest(&c, 1, "idem", 0), (0, 2));

    // The leader dies after replicating; the retry reaches the new leader, whose
    // producer state came from the replicated log.
    c.kill9(1);
    let p = await_partition(&c, "idem", 0, "a new leader", |p| {
        p.leader != 1 && p.leader >= 0
    });
    let leader = p.leader;
    let r = produce(&c, leader, "idem", 0, -1, first);
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 0),
        "{:?}",
        r.error_message
    );
    let r = produce(
        &c,
        leader,
        "idem",
        0,
        -1,
        wire::idempotent_batch(pid, 2, &[b"three"]),
    );
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 2),
        "{:?}",
        r.error_message
    );
    // A gap in the sequence.
    let r = produce(
        &c,
        leader,
        "idem",
        0,
        -1,
        wire::idempotent_batch(pid, 5, &[b"gap"]),
    );
    assert_eq!(r.error_code, ErrorCode::OutOfOrderSequenceNumber.code());
    wait_for(CONVERGE, "HW at 3", || {
        latest(&c, leader, "idem", 0) == (0, 3)
    });
    assert_eq!(values_of(&c, leader, "idem", 0), ["one", "two", "three"]);
}

fn coordinator(c: &Cluster, group: &str) -> i32 {
    let mut out = -1;
    wait_for(CONVERGE, "a coordinator", || {
        let req = FindCoordinatorRequest {
            key: group.into(),
            key_type: 0,
            coordinator_keys: Vec::new(),
        };
        let Ok(mut raw) = c.try_raw(c.live()[0]) else {
            return false;
        };
        let resp: Result<FindCoordinatorResponse, _> =
            raw.try_call(ApiKey::FindCoordinator, 3, &req);
        match resp {
            Ok(r) if r.error_code == 0 => {
                out = r.node_id;
                true
            }
            _ => false,
        }
    });
    out
}

#[test]
fn group_offsets_survive_a_kill_of_the_coordinators_broker() {
    let mut c = start3();
    create_assigned(&c, "grouped", &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]], &[]);
    let group = "g-failover";
    let config = |addr: &str| {
        let mut cfg = kafka::group_config(addr, group, &[]);
        cfg.set("enable.auto.commit", "false");
        cfg
    };
    let consumer: BaseConsumer = config(&c.bootstrap()).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, off) in [(0, 7), (1, 11), (2, 13)] {
        tpl.add_partition_offset("grouped", p, Offset::Offset(off))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);

    let coord = coordinator(&c, group);
    c.kill9(coord);
    let started = Instant::now();
    let consumer: BaseConsumer = config(&c.bootstrap()).create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition("grouped", p);
    }
    let mut got = Vec::new();
    wait_for(
        CONVERGE,
        "committed offsets from the new coordinator",
        || match consumer.committed_offsets(wanted.clone(), Duration::from_secs(3)) {
            Ok(list) => {
                got = list
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), e.offset()))
                    .collect();
                got.iter().all(|(_, o)| *o != Offset::Invalid)
            }
            Err(_) => false,
        },
    );
    println!(
        "new coordinator {} served offsets {:?} after the kill",
        coordinator(&c, group),
        started.elapsed()
    );
    assert_eq!(
        got,
        [
            (0, Offset::Offset(7)),
            (1, Offset::Offset(11)),
            (2, Offset::Offset(13))
        ]
    );
}

#[test]
fn a_rolling_restart_under_idempotent_acks_all_load_fails_nothing() {
    let mut c = Cluster::start(
        3,
        &[
            "--replica-lag-time-max-ms",
            LAG,
            "--min-insync-replicas",
            "2",
        ],
    );
    create_assigned(&c, "rolling", &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]], &[]);
    let producer = kafka::producer(
        &c.bootstrap(),
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
        ],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            futures_executor(async {
                let mut acked = Vec::new();
                let mut failed = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let values: Vec<(String, i32)> = (0..20)
                        .map(|_| {
                            i += 1;
                            (format!("r-{i:08}"), (i % 3) as i32)
                        })
                        .collect();
                    let batch: Vec<_> = values
                        .iter()
                        .map(|(v, p)| {
                            let rec = FutureRecord::<(), _>::to("rolling")
                                .payload(v)
                                .partition(*p);
                            (v.clone(), producer.send_result(rec).map_err(|(e, _)| e))
                        })
                        .collect();
                    for (v, f) in batch {
                        let outcome = match f {
                            Ok(f) => match f.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(e.to_string()),
                                Err(_) => Err("delivery dropped".to_string()),
                            },
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome {
                            Ok(()) => acked.push(v),
                            Err(e) => failed.push(format!("{v}: {e}")),
                        }
                    }
                }
                (acked, failed)
            })
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for id in [1, 2, 3] {
        c.stop(id);
        std::thread::sleep(Duration::from_millis(500));
        c.restart(id);
        for p in 0..3 {
            await_partition(&c, "rolling", p, "ISR full again", |v| v.isr.len() == 3);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = writer.join().expect("writer");
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(acked.len() > 100, "only {} acked", acked.len());
    let mut read: Vec<String> = (0..3).flat_map(|p| values(&c, "rolling", p)).collect();
    read.sort();
    let mut want = acked.clone();
    want.sort();
    assert_eq!(
        read.len(),
        want.len(),
        "every acked value exactly once, nothing else"
    );
    assert_eq!(read, want);
    println!("{} acked across a rolling restart, 0 failed", acked.len());
}

/// Runs a future on a small current-thread runtime (the tests themselves are sync).
fn futures_executor<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
