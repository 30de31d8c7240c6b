//! Transactions (KIP-98) against one node: transactional batches, WriteTxnMarkers
//! ending them, and what read_committed readers see (the last stable offset, the aborted
//! transactions in Fetch, ListOffsets latest) through raw requests and librdkafka.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::Offset;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::fetch_response::PartitionData;
use sluice_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use sluice_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::{
    fetch_one, fetch_request, init_producer_id, must_create, produce_ok, produce_v, producer_batch,
    values,
};
use sluice_system_tests::{kafka, Sluice};

/// Writes one marker for `pid` on `topic`-0; returns that partition's error code.
fn end_txn(
    c: &mut RawClient,
    topic: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> i16 {
    let req = WriteTxnMarkersRequest {
        markers: vec![WritableTxnMarker {
            producer_id: pid,
            producer_epoch: epoch,
            transaction_result: commit,
            topics: vec![WritableTxnMarkerTopic {
                name: topic.into(),
                partition_indexes: vec![0],
            }],
            coordinator_epoch,
        }],
    };
    let resp: WriteTxnMarkersResponse = c.call(ApiKey::WriteTxnMarkers, 1, &req);
    assert_eq!(resp.markers[0].producer_id, pid);
    resp.markers[0].topics[0].partitions[0].error_code
}

fn fetch(c: &mut RawClient, topic: &str, read_committed: bool) -> PartitionData {
    let mut req = fetch_request(topic, Uuid::ZERO, 0, 0);
    req.isolation_level = i8::from(read_committed);
    fetch_one(c, 12, &req)
}

fn latest(c: &mut RawClient, topic: &str, read_committed: bool) -> i64 {
    let req = ListOffsetsRequest {
        replica_id: -1,
        isolation_level: i8::from(read_committed),
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch: -1,
                timestamp: -1,
                max_num_offsets: 1,
            }],
        }],
        timeout_ms: 0,
    };
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn txn_write(c: &mut RawClient, topic: &str, pid: i64, seq: i32, values: &[&[u8]]) {
    let p = produce_v(c, 9, topic, 0, producer_batch(pid, 0, seq, true, values));
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
}

fn consumed(addr: &str, topic: &str, isolation: &str, count: usize) -> Vec<String> {
    let consumer = kafka::consumer(addr, &[("isolation.level", isolation)]);
    kafka::consume(
        &consumer,
        topic,
        &[(0, Offset::Beginning)],
        count,
        Duration::from_secs(5),
    )
    .into_iter()
    .map(|g| String::from_utf8(g.value.unwrap_or_default()).unwrap())
    .collect()
}

#[test]
fn read_committed_readers_see_only_committed_transactions() {
    let s = Sluice::start(&[]);
    let mut c = RawClient::connect(&s.addr);
    must_create(&mut c, "txn", 1);
    let a = init_producer_id(&mut c);
    let b = init_producer_id(&mut c);

    txn_write(&mut c, "txn", a, 0, &[b"a1", b"a2"]);
    txn_write(&mut c, "txn", b, 0, &[b"b1"]);
    txn_write(&mut c, "txn", a, 2, &[b"a3"]);
    produce_ok(&mut c, "txn", 0, &[b"plain"]);
    // A plain write from a producer whose transaction is open is refused.
    let refused = produce_v(&mut c, 9, "txn", 0, producer_batch(a, 0, 3, false, &[b"x"]));
    assert_eq!(refused.error_code, ErrorCode::InvalidTxnState.code());

    // Nothing is stable yet: a's transaction starts at offset 0.
    let open = fetch(&mut c, "txn", true);
    assert_eq!((open.high_watermark, open.last_stable_offset), (5, 0));
    assert_eq!(open.records.as_ref().map(Bytes::len), Some(0));
    assert_eq!(latest(&mut c, "txn", true), 0);
    assert_eq!(latest(&mut c, "txn", false), 5);
    assert_eq!(fetch(&mut c, "txn", false).last_stable_offset, 0);

    assert_eq!(end_txn(&mut c, "txn", a, 0, false, 0), 0, "abort a");
    assert_eq!(end_txn(&mut c, "txn", b, 0, true, 0), 0, "commit b");
    let done = fetch(&mut c, "txn", true);
    assert_eq!((done.high_watermark, done.last_stable_offset), (7, 7));
    let aborted: Vec<(i64, i64)> = done
        .aborted_transactions
        .unwrap_or_default()
        .iter()
        .map(|t| (t.producer_id, t.first_offset))
        .collect();
    assert_eq!(aborted, vec![(a, 0)]);
    // Every batch comes back, the two markers (6-byte values) last.
    let all = values(done.records.as_ref().unwrap());
    assert_eq!(all.len(), 7);
    assert_eq!(all[..5], ["a1", "a2", "b1", "a3", "plain"]);
    // read_uncommitted gets no aborted list (null).
    assert!(fetch(&mut c, "txn", false).aborted_transactions.is_none());
    assert_eq!(latest(&mut c, "txn", true), 7);

    // librdkafka drops the aborted records under read_committed, and only then.
    assert_eq!(
        consumed(&s.addr, "txn", "read_committed", 2),
        vec!["b1", "plain"]
    );
    assert_eq!(
        consumed(&s.addr, "txn", "read_uncommitted", 5),
        vec!["a1", "a2", "b1", "a3", "plain"]
    );
}

#[test]
fn markers_are_checked_like_kafka() {
    let s = Sluice::start(&[]);
    let mut c = RawClient::connect(&s.addr);
    must_create(&mut c, "m", 1);
    let pid = init_producer_id(&mut c);
    txn_write(&mut c, "m", pid, 0, &[b"one"]);
    assert_eq!(end_txn(&mut c, "m", pid, 0, true, 5), 0);
    // An older coordinator epoch is fenced; an older producer epoch is refused.
    assert_eq!(
        end_txn(&mut c, "m", pid, 0, true, 4),
        ErrorCode::TransactionCoordinatorFenced.code()
    );
    assert_eq!(end_txn(&mut c, "m", pid, 2, false, 5), 0, "epoch bump");
    assert_eq!(
        end_txn(&mut c, "m", pid, 1, false, 5),
        ErrorCode::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end_txn(&mut c, "unknown", pid, 2, false, 5),
        ErrorCode::UnknownTopicOrPartition.code()
    );
    // The epoch bump fenced the old epoch's data too.
    let old = produce_v(&mut c, 9, "m", 0, producer_batch(pid, 0, 1, true, &[b"x"]));
    assert_eq!(old.error_code, ErrorCode::InvalidProducerEpoch.code());
    // Transactional records without a producer are invalid.
    let bare = produce_v(&mut c, 9, "m", 0, producer_batch(-1, -1, -1, true, &[b"x"]));
    assert_eq!(bare.error_code, ErrorCode::InvalidRecord.code());
}

/// A transactional librdkafka producer with `id`.
fn txn_producer(addr: &str, id: &str) -> rdkafka::producer::FutureProducer {
    kafka::producer(
        addr,
        &[
            ("transactional.id", id),
            ("transaction.timeout.ms", "30000"),
        ],
    )
}

async fn send(p: &rdkafka::producer::FutureProducer, topic: &str, value: &str) {
    let rec = rdkafka::producer::FutureRecord::<(), str>::to(topic)
        .payload(value)
        .partition(0);
    p.send(rec, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_transactions_commit_and_abort_across_topics() {
    use rdkafka::producer::Producer;
    let s = Sluice::start(&[]);
    kafka::create_topic(&s.addr, "in-a", 1, &[]).await;
    kafka::create_topic(&s.addr, "in-b", 1, &[]).await;
    let p = txn_producer(&s.addr, "tx-app");
    let t = Duration::from_secs(15);
    p.init_transactions(t).expect("init_transactions");

    p.begin_transaction().unwrap();
    send(&p, "in-a", "a-committed").await;
    send(&p, "in-b", "b-committed").await;
    p.commit_transaction(t).expect("commit");

    p.begin_transaction().unwrap();
    send(&p, "in-a", "a-aborted").await;
    send(&p, "in-b", "b-aborted").await;
    p.abort_transaction(t).expect("abort");

    p.begin_transaction().unwrap();
    send(&p, "in-a", "a-last").await;
    p.commit_transaction(t).expect("commit");

    for (topic, committed, all) in [
        (
            "in-a",
            vec!["a-committed", "a-last"],
            vec!["a-committed", "a-aborted", "a-last"],
        ),
        (
            "in-b",
            vec!["b-committed"],
            vec!["b-committed", "b-aborted"],
        ),
    ] {
        assert_eq!(
            consumed(&s.addr, topic, "read_committed", committed.len()),
            committed
        );
        assert_eq!(consumed(&s.addr, topic, "read_uncommitted", all.len()), all);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_offsets_commit_with_the_transaction_and_only_then() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::Producer;
    use rdkafka::TopicPartitionList;
    let s = Sluice::start(&[]);
    kafka::create_topic(&s.addr, "ctp-in", 1, &[]).await;
    kafka::create_topic(&s.addr, "ctp-out", 1, &[]).await;
    let plain = kafka::producer(&s.addr, &[]);
    for i in 0..10 {
        send(&plain, "ctp-in", &format!("in-{i}")).await;
    }
    let consumer: BaseConsumer = kafka::client_config(&s.addr)
        .set("group.id", "ctp")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let p = txn_producer(&s.addr, "ctp-app");
    let t = Duration::from_secs(15);
    p.init_transactions(t).expect("init_transactions");
    let committed = |c: &BaseConsumer| -> i64 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("ctp-in", 0);
        let got = c.committed_offsets(tpl, t).expect("committed");
        match got.find_partition("ctp-in", 0).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        }
    };

    // Two rounds of five: the first commits, the second aborts.
    let input = kafka::consume(
        &consumer,
        "ctp-in",
        &[(0, Offset::Beginning)],
        10,
        Duration::from_secs(10),
    );
    assert_eq!(input.len(), 10);
    for (round, commit) in [(0usize, true), (1, false)] {
        p.begin_transaction().unwrap();
        for g in &input[round * 5..round * 5 + 5] {
            let v = String::from_utf8(g.value.clone().unwrap()).unwrap();
            send(&p, "ctp-out", &format!("out-{v}")).await;
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("ctp-in", 0, Offset::Offset(input[round * 5 + 4].offset + 1))
            .unwrap();
        let meta = consumer.group_metadata().expect("group metadata");
        p.send_offsets_to_transaction(&offsets, &meta, t)
            .expect("send offsets");
        if commit {
            p.commit_transaction(t).expect("commit");
        } else {
            p.abort_transaction(t).expect("abort");
        }
        assert_eq!(committed(&consumer), 5, "after round {round}");
    }
    let out = consumed(&s.addr, "ctp-out", "read_committed", 5);
    assert_eq!(
        out,
        (0..5).map(|i| format!("out-in-{i}")).collect::<Vec<_>>()
    );
}
