//! Durability with real clients: restart persistence, kill -9 in the middle of a
//! produce run, and recovery of a torn or corrupted last segment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use sluice_system_tests::kafka::{consume, consumer, create_topic, produce_all, producer};
use sluice_system_tests::Sluice;

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_everything_acknowledged() {
    let mut node = Sluice::start(&[]);
    create_topic(&node.addr, "persist", 3, &[("segment.bytes", "1048576")]).await;
    let p = producer(&node.addr, &[("acks", "all")]);
    let msgs: Vec<_> = (0..3000)
        .map(|i| {
            (
                Some(format!("key{}", i % 7).into_bytes()),
                vec![b'x'; 1000 + i % 10],
            )
        })
        .collect();
    let placed = produce_all(&p, "persist", None, &msgs).await;
    drop(p);
    node.stop();
    node.restart();
    let c = consumer(&node.addr, &[]);
    let from: Vec<_> = (0..3).map(|p| (p, Offset::Beginning)).collect();
    let got = consume(&c, "persist", &from, msgs.len(), Duration::from_secs(30));
    assert_eq!(got.len(), msgs.len());
    let mut expected: Vec<(i32, i64, Vec<u8>)> = placed
        .iter()
        .zip(&msgs)
        .map(|((p, o), (_, v))| (*p, *o, v.clone()))
        .collect();
    let mut actual: Vec<(i32, i64, Vec<u8>)> = got
        .into_iter()
        .map(|m| (m.partition, m.offset, m.value.unwrap()))
        .collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    // 3 MB over 3 partitions with 1 MiB segments: at least one partition rolled.
    let rolled =
        (0..3).any(|p| segment_files(&node.data_dir.join(format!("persist-{p}"))).len() > 1);
    assert!(rolled, "segment.bytes=1MiB should have rolled a segment");
}

/// (offset, value) of every acknowledged message, filled by the delivery tasks.
type Acked = Arc<Mutex<Vec<(i64, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_produce_loses_no_acknowledged_message() {
    let mut node = Sluice::start(&[]);
    create_topic(&node.addr, "crash", 1, &[]).await;
    let acked: Acked = Arc::default();
    let p = Arc::new(producer(
        &node.addr,
        &[
            ("acks", "all"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "5000"),
            ("retries", "0"),
        ],
    ));
    let mut tasks = Vec::new();
    for i in 0..200_000usize {
        let value = format!("crash-{i:08}").into_bytes();
        let fut = match p.send_result(
            FutureRecord::<(), Vec<u8>>::to("crash")
                .partition(0)
                .payload(&value),
        ) {
            Ok(f) => f,
            Err(_) => break,
        };
        let sink = acked.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(d)) = fut.await {
                sink.lock().unwrap().push((d.offset, value));
            }
        }));
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
            if acked.lock().unwrap().len() > 20_000 {
                break;
            }
        }
    }
    // Wait (bounded) until a good number were acknowledged, then crash the broker.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 20_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill9();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    drop(p);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20_000,
        "only {} acknowledged before the crash",
        acked.len()
    );

    node.restart();
    let c = consumer(&node.addr, &[]);
    let (low, high) = c
        .fetch_watermarks("crash", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(low, 0);
    let max_acked = acked.iter().map(|a| a.0).max().unwrap();
    assert!(
        high > max_acked,
        "high watermark {high} must cover every acknowledged offset (max {max_acked})"
    );
    let got = consume(
        &c,
        "crash",
        &[(0, Offset::Beginning)],
        high as usize,
        Duration::from_secs(60),
    );
    assert_eq!(got.len() as i64, high, "the log is readable to its end");
    for (offset, value) in &acked {
        let m = &got[*offset as usize];
        assert_eq!(m.offset, *offset);
        assert_eq!(
            m.value.as_deref(),
            Some(&value[..]),
            "acknowledged offset {offset} changed"
        );
    }
}

/// Produces `n` single-message batches, SIGKILLs the broker and returns the last segment.
async fn crash_with_batches(node: &mut Sluice, topic: &str, n: usize) -> PathBuf {
    create_topic(&node.addr, topic, 1, &[]).await;
    let p = producer(&node.addr, &[("linger.ms", "0"), ("acks", "all")]);
    for i in 0..n {
        // Awaiting each send makes every message its own batch.
        let v = format!("{topic}-{i}");
        p.send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(&v),
            Duration::from_secs(10),
        )
        .await
        .expect("send");
    }
    drop(p);
    node.kill9();
    let segs = segment_files(&node.data_dir.join(format!("{topic}-0")));
    segs.last().cloned().expect("a segment")
}

async fn assert_recovered_prefix(node: &mut Sluice, topic: &str, valid: usize) {
    node.restart();
    let c = consumer(&node.addr, &[]);
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        high, valid as i64,
        "recovery keeps exactly the valid batches"
    );
    let got = consume(
        &c,
        topic,
        &[(0, Offset::Beginning)],
        valid,
        Duration::from_secs(20),
    );
    let values: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.value.clone().unwrap()).unwrap())
        .collect();
    let expected: Vec<String> = (0..valid).map(|i| format!("{topic}-{i}")).collect();
    assert_eq!(values, expected);
    // The log accepts new data right after the recovered end.
    let p = producer(&node.addr, &[("linger.ms", "0")]);
    let placed = produce_all(&p, topic, Some(0), &[(None, b"after-recovery".to_vec())]).await;
    assert_eq!(placed, vec![(0, valid as i64)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_last_batch_is_truncated_on_recovery() {
    let mut node = Sluice::start(&[]);
    let seg = crash_with_batches(&mut node, "torn", 50).await;
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    assert_recovered_prefix(&mut node, "torn", 49).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_last_batch_is_truncated_on_recovery() {
    let mut node = Sluice::start(&[]);
    let seg = crash_with_batches(&mut node, "corrupt", 50).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 3; // inside the last record's value: covered by the CRC
    bytes[last] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    assert_recovered_prefix(&mut node, "corrupt", 49).await;
}

/// A single-node data dir from before the metadata quorum kept its topics in
/// `topics.json`: the node carries them into the metadata log with their topic IDs and
/// serves the data already on disk (rather than removing the directories as strays).
#[test]
fn a_data_dir_from_before_the_metadata_quorum_keeps_its_topics_and_data() {
    use sluice_system_tests::raw::RawClient;
    use sluice_system_tests::wire::{fetch_at, must_create, produce_ok, values};

    let mut node = Sluice::start(&[]);
    let mut c = RawClient::connect(&node.addr);
    let id = must_create(&mut c, "legacy", 2);
    produce_ok(&mut c, "legacy", 1, &[b"kept-1", b"kept-2"]);
    drop(c);
    node.stop();
    // The layout of the old releases: no metadata log, topics in topics.json.
    std::fs::remove_dir_all(node.data_dir.join("controller")).unwrap();
    let hex: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    let file = format!(
        r#"{{"version":1,"topics":[{{"name":"legacy","id":"{hex}","partitions":2,"configs":{{"retention.ms":"123456789"}}}}]}}"#
    );
    std::fs::write(node.data_dir.join("topics.json"), file).unwrap();
    node.restart();
    let mut c = RawClient::connect(&node.addr);
    let m = sluice_system_tests::wire::metadata(&mut c, 12, Some(&["legacy"]), false);
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].topic_id, id, "the topic keeps its ID");
    assert_eq!(m.topics[0].partitions.len(), 2);
    let data = fetch_at(&mut c, "legacy", 1, 0);
    assert_eq!(
        values(data.records.as_ref().unwrap()),
        vec!["kept-1".to_string(), "kept-2".to_string()]
    );
    assert!(!node.data_dir.join("topics.json").exists());
    assert!(node.data_dir.join("topics.json.migrated").exists());
}
