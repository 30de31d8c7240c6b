//! Helpers around the `rdkafka` crate (librdkafka): producers, assign-based consumers,
//! consumer-group members that record their rebalances, and admin calls with bounded
//! waits, so each system test stays short.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_protocol::codec::Decode;
use sluice_protocol::messages::{GroupMetadataKey, GroupMetadataValue};

/// A consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

pub fn client_config(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    c
}

pub fn producer(addr: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(addr);
    c.set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

pub fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    client_config(addr).create().expect("admin client")
}

/// Creates a topic and waits for the result, panicking on failure.
pub async fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(addr);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let res = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// A consumer with no group: partitions are assigned explicitly.
pub fn consumer(addr: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(addr);
    c.set("enable.auto.commit", "false")
        .set("group.id", "sluice-tests-unused")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// Assigns `(partition, offset)` pairs of `topic` and polls until `count` messages came
/// or `timeout` passed; returns what arrived, in arrival order.
pub fn consume(
    consumer: &BaseConsumer,
    topic: &str,
    from: &[(i32, Offset)],
    count: usize,
    timeout: Duration,
) -> Vec<Got> {
    let mut tpl = TopicPartitionList::new();
    for (p, off) in from {
        tpl.add_partition_offset(topic, *p, *off).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push(Got {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|hd| (hd.key.to_string(), hd.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out
}

/// Produces `values` to one partition and returns each message's assigned offset.
pub async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    msgs: &[(Option<Vec<u8>>, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let futures: Vec<_> = msgs
        .iter()
        .map(|(k, v)| {
            let mut rec = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).payload(v);
            if let Some(k) = k {
                rec = rec.key(k);
            }
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            producer.send_result(rec).expect("enqueue")
        })
        .collect();
    delivered(futures).await
}

/// Produces each `(partition, value)` (keyless) and returns where each one landed.
pub async fn produce_to(
    producer: &FutureProducer,
    topic: &str,
    msgs: &[(i32, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let futures: Vec<_> = msgs
        .iter()
        .map(|(p, v)| {
            let rec = FutureRecord::<(), Vec<u8>>::to(topic)
                .payload(v)
                .partition(*p);
            producer.send_result(rec).expect("enqueue")
        })
        .collect();
    delivered(futures).await
}

/// Awaits every delivery, panicking on a failed one; `(partition, offset)` in order.
async fn delivered(futures: Vec<DeliveryFuture>) -> Vec<(i32, i64)> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        let delivery = f.await.expect("delivery future dropped");
        match delivery {
            Ok(d) => out.push((d.partition, d.offset)),
            Err((e, _)) => panic!("delivery failed: {e}"),
        }
    }
    out
}

// Consumer groups.

/// Settings of a consumer-group member: manual commits, reading from the start when
/// nothing is committed, and short session timeouts so a lost member is noticed within
/// seconds (the broker must allow them: `--group-min-session-timeout-ms 1000`).
pub fn group_config(addr: &str, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("socket.timeout.ms", "10000")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "300")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
        if *k == "debug" {
            // Otherwise librdkafka's debug lines are filtered before they are logged.
            c.set_log_level(RDKafkaLogLevel::Debug);
        }
    }
    c
}

/// The partitions of a list, sorted (the tests use one topic per group).
pub fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

/// Which rebalance callback ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

/// What a rebalance callback was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
    Error(String),
}

/// One rebalance callback, in the order librdkafka ran them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalanceEvent {
    pub phase: Phase,
    pub change: Change,
}

/// What one group member saw: its rebalances, its assignment after the last one, and
/// every record it consumed (and then committed).
#[derive(Debug, Default)]
pub struct MemberLog {
    pub events: Mutex<Vec<RebalanceEvent>>,
    pub assignment: Mutex<Vec<i32>>,
    /// `(partition, offset, value)` in consumption order.
    pub records: Mutex<Vec<(i32, i64, Vec<u8>)>>,
    /// Commits that still failed after retrying.
    pub commit_failures: AtomicUsize,
}

impl MemberLog {
    pub fn events(&self) -> Vec<RebalanceEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn assignment(&self) -> Vec<i32> {
        self.assignment.lock().unwrap().clone()
    }

    pub fn records(&self) -> Vec<(i32, i64, Vec<u8>)> {
        self.records.lock().unwrap().clone()
    }

    /// The partition lists of the `Pre` callbacks of one kind (`revoke` or assign).
    pub fn changes(&self, revoke: bool) -> Vec<Vec<i32>> {
        self.events()
            .into_iter()
            .filter(|e| e.phase == Phase::Pre)
            .filter_map(|e| match e.change {
                Change::Revoke(p) if revoke => Some(p),
                Change::Assign(p) if !revoke => Some(p),
                _ => None,
            })
            .collect()
    }
}

/// A consumer context that records rebalances into a [`MemberLog`].
pub struct RecordingContext(pub Arc<MemberLog>);

impl RecordingContext {
    fn record(&self, phase: Phase, rebalance: &Rebalance<'_>) {
        let change = match rebalance {
            Rebalance::Assign(tpl) => Change::Assign(partitions(tpl)),
            Rebalance::Revoke(tpl) => Change::Revoke(partitions(tpl)),
            Rebalance::Error(e) => Change::Error(e.to_string()),
        };
        self.0
            .events
            .lock()
            .unwrap()
            .push(RebalanceEvent { phase, change });
    }
}

impl ClientContext for RecordingContext {
    /// librdkafka's own log lines go to stderr, which the test runner shows for a
    /// failing test; a member configured with `("debug", "cgrp")` traces its group
    /// protocol there.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("[librdkafka {level:?}] {fac} {message}");
    }
}

impl ConsumerContext for RecordingContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.record(Phase::Pre, rebalance);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.record(Phase::Post, rebalance);
        if let Ok(a) = consumer.assignment() {
            *self.0.assignment.lock().unwrap() = partitions(&a);
        }
    }
}

/// Commits one processed message synchronously, retrying for a few seconds while the
/// coordinator answers with a retriable error (a rebalance in its sync phase answers
/// REBALANCE_IN_PROGRESS). False if it never succeeded.
pub fn commit_processed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    message: &BorrowedMessage<'_>,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match consumer.commit_message(message, CommitMode::Sync) {
            Ok(()) => return true,
            Err(e) if Instant::now() < deadline => {
                eprintln!(
                    "commit of {}-{}@{} failed, retrying: {e}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => return false,
        }
    }
}

/// A consumer-group member on its own thread: subscribes to one topic and, for each
/// message, records it and then commits it synchronously. Dropping it closes the
/// consumer (which leaves the group, unless it is a static member).
pub struct GroupMember {
    pub log: Arc<MemberLog>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMember {
    pub fn start(addr: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> GroupMember {
        let log = Arc::new(MemberLog::default());
        let stop = Arc::new(AtomicBool::new(false));
        let config = group_config(addr, group, extra);
        let topic = topic.to_string();
        let (thread_log, thread_stop) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let consumer: BaseConsumer<RecordingContext> = config
                .create_with_context(RecordingContext(thread_log.clone()))
                .expect("group consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            while !thread_stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)) {
                    None => {}
                    Some(Err(e)) => eprintln!("consumer error (librdkafka retries): {e}"),
                    Some(Ok(m)) => {
                        thread_log.records.lock().unwrap().push((
                            m.partition(),
                            m.offset(),
                            m.payload().unwrap_or_default().to_vec(),
                        ));
                        if !commit_processed(&consumer, &m) {
                            thread_log.commit_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            // Dropping the consumer closes it: final rebalance callbacks, LeaveGroup.
        });
        GroupMember {
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn assignment(&self) -> Vec<i32> {
        self.log.assignment()
    }

    /// Stops polling and closes the consumer, waiting until it is closed.
    pub fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread panicked");
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The group's latest metadata record in `__consumer_offsets` (generation, protocol,
/// leader, members with their ids and instance ids), read from `offsets_partition` of
/// that topic up to its high watermark. `None` if there is none or it is a tombstone.
pub fn stored_group(addr: &str, group: &str, offsets_partition: i32) -> Option<GroupMetadataValue> {
    const TOPIC: &str = "__consumer_offsets";
    let c = consumer(addr, &[]);
    let (low, high) = c
        .fetch_watermarks(TOPIC, offsets_partition, Duration::from_secs(10))
        .expect("watermarks of __consumer_offsets");
    if high <= low {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, offsets_partition, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut latest = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets-{offsets_partition} not read up to {high} in time"
        );
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("read __consumer_offsets");
        if let Some(key) = m.key() {
            let mut key = Bytes::copy_from_slice(key);
            // Key version 2 is group metadata (0 and 1 are committed offsets).
            if key.len() >= 2 && key.get_i16() == 2 {
                let k = GroupMetadataKey::decode(&mut key, 2).expect("group metadata key");
                if k.group == group {
                    latest = m.payload().map(|v| {
                        let mut v = Bytes::copy_from_slice(v);
                        let version = v.get_i16();
                        GroupMetadataValue::decode(&mut v, version).expect("group metadata value")
                    });
                }
            }
        }
        if m.offset() + 1 >= high {
            return latest;
        }
    }
}
