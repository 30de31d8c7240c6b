//! `txn-app`: a consume-transform-produce application with exactly-once semantics, as
//! its own process, for the system tests that crash it mid-transaction
//! (tests/tests/transactions.rs) and the transactional benchmark.
//!
//! Usage: `txn-app BOOTSTRAP TXN_ID GROUP IN OUT TOTAL [--batch N] [--crash-after K]`
//!
//! It reads partition 0 of IN from GROUP's committed offset (read_committed), and per
//! transaction of up to N records (default 10) writes `out-<value>` to partition 0 of
//! OUT, sends the consumed offsets to the transaction and commits, printing
//! `committed <next offset>` after each commit. It stops once it has committed offset
//! TOTAL. With `--crash-after K` it aborts the process (as a kill -9 would stop it) in
//! the middle of the transaction during which its K-th record of this run was flushed
//! to the broker, before committing that transaction.

// Test code: it reports to the test on stdio, and any setup failure should abort it.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::expect_used)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_system_tests::kafka::client_config;

const TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!(
            "usage: txn-app BOOTSTRAP TXN_ID GROUP IN OUT TOTAL [--batch N] [--crash-after K]"
        );
        std::process::exit(2);
    }
    let (bootstrap, txn_id, group, input, output) =
        (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let total: i64 = args[5].parse().expect("TOTAL");
    let mut batch = 10usize;
    let mut crash_after: Option<usize> = None;
    let mut rest = args[6..].iter();
    while let Some(arg) = rest.next() {
        let value = rest.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--batch" => batch = value,
            "--crash-after" => crash_after = Some(value),
            other => panic!("unknown argument {other}"),
        }
    }

    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(input, 0, Offset::Stored)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");

    let mut produced = 0usize;
    let mut next = -1i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < total {
        assert!(Instant::now() < deadline, "txn-app did not finish in time");
        producer.begin_transaction().expect("begin");
        let mut in_txn = 0usize;
        let started = Instant::now();
        while in_txn < batch && started.elapsed() < Duration::from_millis(500) {
            let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let msg = msg.expect("consume");
            let value = String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string();
            let out = format!("out-{value}");
            let rec = BaseRecord::<(), str>::to(output).payload(&out).partition(0);
            producer.send(rec).map_err(|(e, _)| e).expect("send");
            next = msg.offset() + 1;
            in_txn += 1;
            produced += 1;
            if crash_after == Some(produced) {
                producer.flush(TIMEOUT).expect("flush");
                eprintln!("txn-app: crashing with an open transaction at offset {next}");
                std::process::abort();
            }
        }
        if in_txn == 0 {
            producer.abort_transaction(TIMEOUT).expect("abort empty");
            continue;
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(input, 0, Offset::Offset(next))
            .expect("offsets");
        let meta = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &meta, TIMEOUT)
            .expect("send offsets");
        producer.commit_transaction(TIMEOUT).expect("commit");
        println!("committed {next}");
    }
}
