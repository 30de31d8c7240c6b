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

// ---------------------------------------------------------------------------------
// The coordinator over raw requests: Kafka's error codes for bad input, timeouts, and
// the admin views (DescribeTransactions, ListTransactions, DescribeProducers).
// ---------------------------------------------------------------------------------

mod raw_txn {
    use sluice_protocol::api::ApiKey;
    use sluice_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use sluice_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse,
        FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest,
        InitProducerIdResponse,
    };
    use sluice_system_tests::raw::RawClient;

    /// FindCoordinator for a transactional id (creating `__transaction_state`).
    pub fn find(c: &mut RawClient, id: &str) -> i16 {
        let req = FindCoordinatorRequest {
            key: id.into(),
            key_type: 1,
            ..Default::default()
        };
        let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &req);
        resp.error_code
    }

    /// (error, producer id, epoch).
    pub fn init(c: &mut RawClient, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
        let req = InitProducerIdRequest {
            transactional_id: Some(id.into()),
            transaction_timeout_ms: timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
        };
        let resp: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req);
        (resp.error_code, resp.producer_id, resp.producer_epoch)
    }

    /// Every partition's code, in request order.
    pub fn add(
        c: &mut RawClient,
        version: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> Vec<i16> {
        let req = AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: id.into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: parts
                .iter()
                .map(|(t, p)| AddPartitionsToTxnTopic {
                    name: t.to_string(),
                    partitions: vec![*p],
                })
                .collect(),
            ..Default::default()
        };
        let resp: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, version, &req);
        resp.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect()
    }

    pub fn end(
        c: &mut RawClient,
        version: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> i16 {
        let req = EndTxnRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            committed: commit,
        };
        let resp: EndTxnResponse = c.call(ApiKey::EndTxn, version, &req);
        resp.error_code
    }
}

#[test]
fn bad_transactional_requests_get_kafkas_error_codes() {
    let s = Sluice::start(&["--transaction-max-timeout-ms", "60000"]);
    let mut c = RawClient::connect(&s.addr);
    must_create(&mut c, "bad", 1);
    assert_eq!(raw_txn::find(&mut c, "b1"), 0);
    let (code, ..) = raw_txn::init(&mut c, "b1", 60_001);
    assert_eq!(code, ErrorCode::InvalidTransactionTimeout.code());
    let (code, pid, epoch) = raw_txn::init(&mut c, "b1", 10_000);
    assert_eq!((code, epoch), (0, 0));
    // EndTxn with no transaction open; with an unknown id.
    assert_eq!(
        raw_txn::end(&mut c, 3, "b1", pid, epoch, true),
        ErrorCode::InvalidTxnState.code()
    );
    assert_eq!(
        raw_txn::end(&mut c, 3, "nobody", pid, epoch, true),
        ErrorCode::InvalidProducerIdMapping.code()
    );
    // An unknown partition spoils the whole request.
    assert_eq!(
        raw_txn::add(&mut c, 3, "b1", pid, epoch, &[("bad", 0), ("bad", 7)]),
        vec![
            ErrorCode::OperationNotAttempted.code(),
            ErrorCode::UnknownTopicOrPartition.code()
        ]
    );
    assert_eq!(
        raw_txn::add(&mut c, 3, "b1", pid, epoch, &[("bad", 0)]),
        vec![0]
    );
    // Sequences out of order inside the transaction.
    let first = produce_v(
        &mut c,
        9,
        "bad",
        0,
        producer_batch(pid, epoch, 0, true, &[b"x"]),
    );
    assert_eq!(first.error_code, 0);
    let gap = produce_v(
        &mut c,
        9,
        "bad",
        0,
        producer_batch(pid, epoch, 5, true, &[b"y"]),
    );
    assert_eq!(gap.error_code, ErrorCode::OutOfOrderSequenceNumber.code());
    // A second instance fences the first: it retries while the open transaction is
    // aborted, then gets the next epoch.
    let (code, ..) = raw_txn::init(&mut c, "b1", 10_000);
    assert_eq!(code, ErrorCode::ConcurrentTransactions.code());
    let bumped = loop {
        let (code, p2, e2) = raw_txn::init(&mut c, "b1", 10_000);
        if code == 0 {
            assert_eq!(p2, pid);
            break e2;
        }
        assert_eq!(code, ErrorCode::ConcurrentTransactions.code());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        bumped, 2,
        "one bump to fence and abort, one for the new instance"
    );
    // The old epoch: PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before.
    assert_eq!(
        raw_txn::add(&mut c, 3, "b1", pid, epoch, &[("bad", 0)]),
        vec![ErrorCode::ProducerFenced.code()]
    );
    assert_eq!(
        raw_txn::add(&mut c, 1, "b1", pid, epoch, &[("bad", 0)]),
        vec![ErrorCode::InvalidProducerEpoch.code()]
    );
    assert_eq!(
        raw_txn::end(&mut c, 1, "b1", pid, epoch, true),
        ErrorCode::InvalidProducerEpoch.code()
    );
    // The fenced transaction was aborted: nothing of it is visible to read_committed.
    let data = fetch(&mut c, "bad", true);
    assert_eq!(data.last_stable_offset, data.high_watermark);
    let aborted = data.aborted_transactions.unwrap_or_default();
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (pid, 0));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_shows_in_the_admin_views() {
    use sluice_protocol::messages::describe_producers_request::TopicRequest;
    use sluice_protocol::messages::{
        DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
        DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
    };
    let s = Sluice::start(&[
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "100",
    ]);
    let mut c = RawClient::connect(&s.addr);
    must_create(&mut c, "slow", 1);
    raw_txn::find(&mut c, "slow-app");
    let (_, pid, epoch) = raw_txn::init(&mut c, "slow-app", 1_000);
    assert_eq!(
        raw_txn::add(&mut c, 3, "slow-app", pid, epoch, &[("slow", 0)]),
        vec![0]
    );
    txn_write(&mut c, "slow", pid, 0, &[b"never committed"]);

    let describe = |c: &mut RawClient| -> (String, i16, Vec<String>) {
        let req = DescribeTransactionsRequest {
            transactional_ids: vec!["slow-app".into()],
        };
        let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req);
        let t = &resp.transaction_states[0];
        assert_eq!(
            (t.error_code, t.producer_id, t.transaction_timeout_ms),
            (0, pid, 1_000)
        );
        (
            t.transaction_state.clone(),
            t.producer_epoch,
            t.topics.iter().map(|t| t.topic.clone()).collect(),
        )
    };
    assert_eq!(describe(&mut c), ("Ongoing".into(), 0, vec!["slow".into()]));
    let list = |c: &mut RawClient, states: &[&str]| -> ListTransactionsResponse {
        let req = ListTransactionsRequest {
            state_filters: states.iter().map(|s| s.to_string()).collect(),
            producer_id_filters: vec![],
            duration_filter: -1,
        };
        c.call(ApiKey::ListTransactions, 1, &req)
    };
    let ongoing = list(&mut c, &["Ongoing", "Bogus"]);
    assert_eq!(ongoing.unknown_state_filters, vec!["Bogus".to_string()]);
    assert_eq!(ongoing.transaction_states.len(), 1);
    assert_eq!(ongoing.transaction_states[0].transactional_id, "slow-app");
    let producers: DescribeProducersResponse = c.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest {
            topics: vec![TopicRequest {
                name: "slow".into(),
                partition_indexes: vec![0],
            }],
        },
    );
    let active = &producers.topics[0].partitions[0].active_producers;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].producer_id, active[0].current_txn_start_offset),
        (pid, 0)
    );

    // The coordinator aborts it under a bumped epoch within the timeout plus a check.
    sluice_system_tests::wait_for(Duration::from_secs(10), "the timed-out abort", || {
        describe(&mut c).0 == "CompleteAbort"
    });
    assert_eq!(describe(&mut c).1, epoch + 1);
    assert!(list(&mut c, &["Ongoing"]).transaction_states.is_empty());
    let data = fetch(&mut c, "slow", true);
    assert_eq!(data.last_stable_offset, data.high_watermark);
    assert_eq!(data.aborted_transactions.unwrap_or_default().len(), 1);
    assert_eq!(
        raw_txn::end(&mut c, 3, "slow-app", pid, epoch, true),
        ErrorCode::ProducerFenced.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_instance_fences_the_zombie() {
    use rdkafka::producer::Producer;
    let s = Sluice::start(&[]);
    kafka::create_topic(&s.addr, "zombie", 1, &[]).await;
    let t = Duration::from_secs(15);
    let old = txn_producer(&s.addr, "app-1");
    old.init_transactions(t).expect("init old");
    old.begin_transaction().unwrap();
    send(&old, "zombie", "from-the-zombie").await;

    // The restarted instance takes over the transactional id.
    let new = txn_producer(&s.addr, "app-1");
    new.init_transactions(t).expect("init new");
    let err = old
        .commit_transaction(t)
        .expect_err("the zombie must be fenced");
    assert!(
        err.to_string().to_lowercase().contains("fenced") || err.to_string().contains("epoch"),
        "{err}"
    );
    new.begin_transaction().unwrap();
    send(&new, "zombie", "from-the-new-instance").await;
    new.commit_transaction(t).expect("commit new");
    assert_eq!(
        consumed(&s.addr, "zombie", "read_committed", 1),
        vec!["from-the-new-instance"]
    );
    assert_eq!(
        consumed(&s.addr, "zombie", "read_uncommitted", 2),
        vec!["from-the-zombie", "from-the-new-instance"]
    );
}

/// Runs `txn-app` to its end (or its crash); returns whether it exited successfully.
fn run_app(addr: &str, extra: &[&str]) -> bool {
    let mut args = vec![addr, "ctp-app-id", "ctp-group", "eos-in", "eos-out", "100"];
    args.extend_from_slice(extra);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_txn-app"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn txn-app");
    sluice_system_tests::wait_timeout(&mut child, Duration::from_secs(120))
        .expect("txn-app finishes")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_is_exactly_once_across_an_application_crash() {
    let s = Sluice::start(&[]);
    kafka::create_topic(&s.addr, "eos-in", 1, &[]).await;
    kafka::create_topic(&s.addr, "eos-out", 1, &[]).await;
    let plain = kafka::producer(&s.addr, &[]);
    for i in 0..100 {
        send(&plain, "eos-in", &format!("{i}")).await;
    }
    // Three transactions of 10 commit; the fourth has 7 records flushed when the
    // process dies.
    assert!(
        !run_app(&s.addr, &["--crash-after", "37"]),
        "the app crashed"
    );
    // The restarted app (same transactional id) fences the dead one's transaction,
    // resumes from the committed offset 30 and finishes.
    assert!(run_app(&s.addr, &[]), "the restarted app finished");
    let expected: Vec<String> = (0..100).map(|i| format!("out-{i}")).collect();
    assert_eq!(
        consumed(&s.addr, "eos-out", "read_committed", 101),
        expected
    );
    // Underneath, the dead transaction's 7 records are there, aborted.
    assert_eq!(
        consumed(&s.addr, "eos-out", "read_uncommitted", 108).len(),
        107
    );
}
