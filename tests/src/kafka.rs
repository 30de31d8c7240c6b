//! Helpers around the `rdkafka` crate (librdkafka): producers, assign-based consumers
//! and admin calls with bounded waits, so each system test stays short.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

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
