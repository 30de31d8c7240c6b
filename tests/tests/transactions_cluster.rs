//! Transactions on a three-node cluster: the transaction coordinator's broker is killed
//! (SIGKILL) while librdkafka commits, and the outcome must still be atomic: a commit
//! that returned success is wholly visible to read_committed consumers; one that failed
//! is wholly visible or wholly absent; and a new producer instance with the same
//! transactional id converges (fences the old one and commits its own transactions).

use std::collections::BTreeMap;
use std::time::Duration;

use rand_like::jitter_ms;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Offset;
use sluice_protocol::api::ApiKey;
use sluice_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use sluice_system_tests::cluster::Cluster;
use sluice_system_tests::{kafka, wire};

const TXN_ID: &str = "killed-coordinator";
const TOPIC: &str = "tx-data";
const CONVERGE: Duration = Duration::from_secs(20);

/// A small deterministic spread of kill delays, without a random-number dependency.
mod rand_like {
    pub fn jitter_ms(round: u64) -> u64 {
        (round * 7 + 3) % 25
    }
}

/// The broker coordinating `TXN_ID`, as `via` sees it (retried until there is one).
fn coordinator(c: &Cluster, via: i32) -> i32 {
    let mut found = -1;
    sluice_system_tests::wait_for(CONVERGE, "a transaction coordinator", || {
        let Ok(mut raw) = c.try_raw(via) else {
            return false;
        };
        let req = FindCoordinatorRequest {
            key: TXN_ID.into(),
            key_type: 1,
            ..Default::default()
        };
        let resp: FindCoordinatorResponse = raw.call(ApiKey::FindCoordinator, 3, &req);
        found = resp.node_id;
        resp.error_code == 0 && c.is_live(found)
    });
    found
}

/// Values of `partitions` of `TOPIC` as a read_committed consumer returns them, until
/// `want` arrived or `limit` passed. Transport errors are expected while a killed node
/// is down: librdkafka reports them and goes on.
fn read_committed(
    bootstrap: &str,
    partitions: &[i32],
    want: usize,
    limit: Duration,
) -> Vec<String> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    let consumer = kafka::consumer(bootstrap, &[("isolation.level", "read_committed")]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < want && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    out
}

fn producer(bootstrap: &str) -> FutureProducer {
    let p = kafka::producer(
        bootstrap,
        &[
            ("transactional.id", TXN_ID),
            ("transaction.timeout.ms", "60000"),
            ("message.timeout.ms", "60000"),
        ],
    );
    p.init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_coordinator_during_commit_keeps_transactions_atomic() {
    let mut c = Cluster::start(3, &["--replica-lag-time-max-ms", "1500"]);
    wire::must_create_assigned(&mut c.raw(1), TOPIC, &[&[1, 2, 3], &[2, 3, 1]], &[]);
    c.converged(CONVERGE, "tx-data led", |v| {
        v.topics
            .get(TOPIC)
            .is_some_and(|t| t.partitions.iter().all(|p| p.leader >= 0))
    });
    let bootstrap = c.bootstrap();
    let mut p = producer(&bootstrap);
    // Per round: whether commit_transaction returned success.
    let mut outcomes: BTreeMap<u64, bool> = BTreeMap::new();
    for round in 0..3u64 {
        let victim = coordinator(&c, c.live()[0]);
        p.begin_transaction().expect("begin");
        for (part, tag) in [(0, "a"), (1, "b")] {
            let value = format!("r{round}-{tag}");
            let rec = FutureRecord::<(), str>::to(TOPIC)
                .payload(&value)
                .partition(part);
            p.send(rec, Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
        }
        let committing = {
            let p = p.clone();
            std::thread::spawn(move || p.commit_transaction(Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(jitter_ms(round)));
        c.kill9(victim);
        let committed = committing.join().expect("commit thread").is_ok();
        outcomes.insert(round, committed);
        if !committed {
            // What an application does after a failed commit: a new instance.
            p = producer(&bootstrap);
        }
        c.restart(victim);
        c.converged(CONVERGE, "every node back", |v| v.brokers.len() == 3);
    }
    // One more transaction from whichever instance is current: the id still works.
    p.begin_transaction().expect("begin");
    let rec = FutureRecord::<(), str>::to(TOPIC)
        .payload("last")
        .partition(0);
    p.send(rec, Duration::from_secs(30))
        .await
        .expect("send last");
    p.commit_transaction(Duration::from_secs(60))
        .expect("commit last");

    eprintln!("commit outcomes by round: {outcomes:?}");
    let values = read_committed(&bootstrap, &[0, 1], 7, Duration::from_secs(8));
    assert!(values.contains(&"last".to_string()), "{values:?}");
    for (round, committed) in outcomes {
        let seen: Vec<&String> = values
            .iter()
            .filter(|v| v.starts_with(&format!("r{round}-")))
            .collect();
        if committed {
            assert_eq!(seen.len(), 2, "round {round} committed: {values:?}");
        } else {
            assert!(
                seen.is_empty() || seen.len() == 2,
                "round {round} is partly visible: {values:?}"
            );
        }
    }
}

/// The decided-commit path, made deterministic: the leader of one data partition is
/// stopped so that the markers cannot all be written; the commit returns (PrepareCommit
/// is in the transaction log); the coordinator is killed; the partition leader resumes.
/// The coordinator taking over must finish the commit from its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decided_commit_completes_after_the_coordinator_dies() {
    let mut c = Cluster::start(3, &["--replica-lag-time-max-ms", "1500"]);
    let coord = coordinator(&c, 1);
    // Partition 0 led by a node that is not the coordinator.
    let other = c.ids().into_iter().find(|&n| n != coord).unwrap();
    let third = c
        .ids()
        .into_iter()
        .find(|&n| n != coord && n != other)
        .unwrap();
    wire::must_create_assigned(&mut c.raw(coord), TOPIC, &[&[other, third, coord]], &[]);
    c.converged(CONVERGE, "tx-data led", |v| {
        v.topics
            .get(TOPIC)
            .is_some_and(|t| t.partitions.iter().all(|p| p.leader == other))
    });
    let bootstrap = c.bootstrap();
    let p = producer(&bootstrap);
    p.begin_transaction().expect("begin");
    for value in ["decided-1", "decided-2"] {
        let rec = FutureRecord::<(), str>::to(TOPIC)
            .payload(value)
            .partition(0);
        p.send(rec, Duration::from_secs(30)).await.expect("send");
    }
    c.signal(other, "STOP");
    p.commit_transaction(Duration::from_secs(60))
        .expect("the decision is written: commit returns");
    c.kill9(coord);
    c.signal(other, "CONT");
    let values = read_committed(&bootstrap, &[0], 2, Duration::from_secs(30));
    assert_eq!(values, vec!["decided-1", "decided-2"]);
    c.restart(coord);
}
