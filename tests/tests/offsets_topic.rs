//! `__consumer_offsets` as tools see it: records in Kafka's own key/value layout, kept
//! bounded by compaction, and replayed after a restart to the latest commit.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_system_tests::kafka::{consumer, create_topic};
use sluice_system_tests::{wait_for, Sluice};

const OFFSETS: &str = "__consumer_offsets";

/// A committed-offset record as Burrow or a lag exporter reads it: key version 0/1
/// (group, topic, partition as int16-length strings and an int32), value version
/// 0-4 starting with the int64 offset.
#[derive(Debug, PartialEq)]
struct OffsetRecord {
    group: String,
    topic: String,
    partition: i32,
    value_version: i16,
    offset: Option<i64>,
}

fn take_str(b: &mut &[u8]) -> String {
    let len = i16::from_be_bytes([b[0], b[1]]) as usize;
    let s = String::from_utf8(b[2..2 + len].to_vec()).unwrap();
    *b = &b[2 + len..];
    s
}

fn parse(key: &[u8], value: Option<&[u8]>) -> Option<OffsetRecord> {
    let version = i16::from_be_bytes([key[0], key[1]]);
    if version > 1 {
        return None; // group metadata
    }
    let mut k = &key[2..];
    let group = take_str(&mut k);
    let topic = take_str(&mut k);
    let partition = i32::from_be_bytes(k[..4].try_into().unwrap());
    assert_eq!(k.len(), 4, "nothing after the partition");
    let (value_version, offset) = match value {
        Some(v) => (
            i16::from_be_bytes([v[0], v[1]]),
            Some(i64::from_be_bytes(v[2..10].try_into().unwrap())),
        ),
        None => (-1, None),
    };
    Some(OffsetRecord {
        group,
        topic,
        partition,
        value_version,
        offset,
    })
}

/// Every committed-offset record of partition 0 of the offsets topic, in log order.
fn offset_records(addr: &str) -> Vec<OffsetRecord> {
    let c = consumer(addr, &[]);
    let (low, high) = c
        .fetch_watermarks(OFFSETS, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(OFFSETS, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next = low;
    while next < high {
        assert!(Instant::now() < deadline, "{OFFSETS} not read in time");
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        next = m.offset() + 1;
        if let Some(r) = parse(m.key().unwrap(), m.payload()) {
            out.push(r);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_commits_are_compacted_and_the_latest_survives_a_restart() {
    let mut node = Sluice::start(&[
        "--offsets-topic-num-partitions",
        "1",
        // Segments roll every 100 ms (log.roll.ms applies to the offsets topic too), so
        // the commits below fill several closed segments for the cleaner.
        "--log-roll-ms",
        "100",
        "--log-cleaner-backoff-ms",
        "200",
    ]);
    create_topic(&node.addr, "commits", 2, &[]).await;
    // A standalone committer (assign, no membership), as kcat or Flink commit.
    let c: BaseConsumer = consumer(&node.addr, &[("group.id", "committer")]);
    const COMMITS: i64 = 2000;
    for i in 1..=COMMITS {
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(110));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("commits", (i % 2) as i32, Offset::Offset(i))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }
    drop(c);

    // Kafka's layout, readable by any tool: key v1, value v3 (with leader epoch).
    let first = offset_records(&node.addr);
    assert!(!first.is_empty());
    assert!(first
        .iter()
        .all(|r| r.group == "committer" && r.topic == "commits" && r.value_version == 3));
    // The cleaner keeps only the latest commit per partition in closed segments.
    wait_for(
        Duration::from_secs(30),
        "the offsets topic to be compacted",
        || offset_records(&node.addr).len() < 100,
    );
    let latest = |records: &[OffsetRecord], p: i32| {
        records
            .iter()
            .rfind(|r| r.partition == p)
            .and_then(|r| r.offset)
    };
    let compacted = offset_records(&node.addr);
    assert_eq!(latest(&compacted, 0), Some(COMMITS));
    assert_eq!(latest(&compacted, 1), Some(COMMITS - 1));

    node.stop();
    node.restart();
    let c: BaseConsumer = consumer(&node.addr, &[("group.id", "committer")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("commits", 0);
    tpl.add_partition("commits", 1);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let offsets: Vec<(i32, Offset)> = got
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(
        offsets,
        vec![
            (0, Offset::Offset(COMMITS)),
            (1, Offset::Offset(COMMITS - 1))
        ]
    );
}

/// Committed offsets of `group` for partitions 0..n of `topic`, via OffsetFetch.
fn committed(addr: &str, group: &str, topic: &str, n: i32) -> Vec<Offset> {
    let c: BaseConsumer = consumer(addr, &[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements().iter().map(|e| e.offset()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_partition_count_does_not_move_existing_groups() {
    let mut node = Sluice::start(&["--offsets-topic-num-partitions", "3"]);
    create_topic(&node.addr, "t", 1, &[]).await;
    let groups: Vec<String> = (0..12).map(|i| format!("group-{i}")).collect();
    for (i, g) in groups.iter().enumerate() {
        let c: BaseConsumer = consumer(&node.addr, &[("group.id", g)]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(100 + i as i64))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }
    node.stop();
    // offsets.topic.num.partitions only applies when the topic is created: the groups
    // stay on the partitions that hold them.
    let node = Sluice::start_in(&node.data_dir, &["--offsets-topic-num-partitions", "7"]);
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(
            committed(&node.addr, g, "t", 1),
            vec![Offset::Offset(100 + i as i64)],
            "{g}"
        );
    }
}
