//! `txn-bench`: the driver of `cargo xtask bench transactions` (issue 6).
//!
//! Against a running broker or cluster (`--bootstrap`), with librdkafka:
//!
//! - `idempotent`: the baseline, an idempotent `acks=all` producer writing
//!   `--batches` groups of `--records` messages of `--size` bytes, each group sent and
//!   then flushed (every delivery report in) before the next;
//! - `transactions`: the same groups, each one transaction: begin, send, flush, commit.
//!   The flush takes what the baseline's does (the records replicated); the commit is
//!   what a transaction adds on top (EndTxn: the decision written to
//!   `__transaction_state`; the markers follow asynchronously).
//!
//! Prints one JSON document on stdout: per phase the throughput (groups/s, records/s,
//! MB/s) and the latency percentiles of each step. Progress goes to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use serde_json::{json, Value};

const USAGE: &str = "\
usage: txn-bench --bootstrap HOST:PORT [--batches N] [--records R] [--size S]
                 [--replication-factor F]
  --batches N             groups (transactions) per phase (default 500)
  --records R             records per group (default 100)
  --size S                value size in bytes (default 1024)
  --replication-factor F  of the topics created (default 1)";

const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    bootstrap: String,
    batches: usize,
    records: usize,
    size: usize,
    rf: i32,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        bootstrap: String::new(),
        batches: 500,
        records: 100,
        size: 1024,
        rf: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value()?,
            "--batches" => a.batches = value()?.parse().context("--batches")?,
            "--records" => a.records = value()?.parse().context("--records")?,
            "--size" => a.size = value()?.parse().context("--size")?,
            "--replication-factor" => a.rf = value()?.parse().context("--replication-factor")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.bootstrap.is_empty() || a.batches == 0 || a.records == 0 {
        bail!("--bootstrap is required; --batches and --records must be positive\n{USAGE}");
    }
    Ok(a)
}

fn create_topic(args: &Args, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .create()
        .context("admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(args.rf));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.create_topics([&new], &opts))? {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    Ok(())
}

/// Counts delivery reports, so a group's wait ends the moment its last one arrives
/// (librdkafka's flush() checks in steps of up to 100 ms).
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.delivered.fetch_add(1, Ordering::Release);
    }
}

type Prod = ThreadedProducer<Counter>;

fn producer(args: &Args, transactional_id: Option<&str>) -> Result<Prod> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("message.timeout.ms", "60000");
    if let Some(id) = transactional_id {
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", "60000");
    }
    let p: Prod = c
        .create_with_context(Counter::default())
        .context("producer")?;
    if transactional_id.is_some() {
        p.init_transactions(TIMEOUT).context("init_transactions")?;
    }
    Ok(p)
}

/// Sends one group of records and waits for all their delivery reports.
fn send_group(p: &Prod, topic: &str, args: &Args, payload: &[u8]) -> Result<()> {
    let target = p.context().delivered.load(Ordering::Acquire) + args.records as u64;
    for _ in 0..args.records {
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .payload(payload)
            .partition(0);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        bail!("enqueue: {e}");
                    }
                    rec = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    while p.context().delivered.load(Ordering::Acquire) < target {
        if Instant::now() > deadline {
            bail!("delivery reports missing after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let failed = p.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} deliveries failed");
    }
    Ok(())
}

/// p50/p99/max in milliseconds of `samples` (seconds).
fn percentiles(samples: &mut [f64]) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        (samples.get(i).copied().unwrap_or(0.0) * 1e6).round() / 1e3
    };
    json!({ "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

fn throughput(args: &Args, groups: usize, seconds: f64) -> Value {
    let records = (groups * args.records) as f64;
    json!({
        "groups": groups,
        "records": groups * args.records,
        "seconds": (seconds * 1e3).round() / 1e3,
        "groups_per_s": (groups as f64 / seconds * 10.0).round() / 10.0,
        "records_per_s": (records / seconds).round(),
        "mb_per_s": (records * args.size as f64 / 1e6 / seconds * 10.0).round() / 10.0,
    })
}

fn idempotent_phase(args: &Args, topic: &str) -> Result<Value> {
    create_topic(args, topic)?;
    let p = producer(args, None)?;
    let payload = vec![b'x'; args.size];
    send_group(&p, topic, args, &payload)?; // warm-up: connections, metadata, producer id
    let mut group_s = Vec::with_capacity(args.batches);
    let start = Instant::now();
    for _ in 0..args.batches {
        let t = Instant::now();
        send_group(&p, topic, args, &payload)?;
        group_s.push(t.elapsed().as_secs_f64());
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut v = throughput(args, args.batches, seconds);
    v["group_latency"] = percentiles(&mut group_s);
    Ok(v)
}

fn transactional_phase(args: &Args, topic: &str, id: &str) -> Result<Value> {
    create_topic(args, topic)?;
    let p = producer(args, Some(id))?;
    let payload = vec![b'x'; args.size];
    let txn = |p: &Prod| -> Result<(f64, f64)> {
        p.begin_transaction().context("begin")?;
        let t = Instant::now();
        send_group(p, topic, args, &payload)?;
        let flushed = t.elapsed().as_secs_f64();
        let c = Instant::now();
        p.commit_transaction(TIMEOUT).context("commit")?;
        Ok((flushed, c.elapsed().as_secs_f64()))
    };
    txn(&p)?; // warm-up: the coordinator, AddPartitionsToTxn's first write
    let (mut flush_s, mut commit_s, mut txn_s) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    for _ in 0..args.batches {
        let t = Instant::now();
        let (f, c) = txn(&p)?;
        txn_s.push(t.elapsed().as_secs_f64());
        flush_s.push(f);
        commit_s.push(c);
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut v = throughput(args, args.batches, seconds);
    v["transaction_latency"] = percentiles(&mut txn_s);
    v["flush_latency"] = percentiles(&mut flush_s);
    v["commit_latency"] = percentiles(&mut commit_s);
    Ok(v)
}

fn main() -> Result<()> {
    let args = parse()?;
    let run = std::process::id();
    eprintln!(
        "txn-bench: idempotent baseline, {} groups of {}",
        args.batches, args.records
    );
    let idempotent = idempotent_phase(&args, &format!("bench-idem-{run}"))?;
    eprintln!("txn-bench: transactions");
    let transactions = transactional_phase(
        &args,
        &format!("bench-txn-{run}"),
        &format!("bench-txn-{run}"),
    )?;
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let doc = json!({
        "librdkafka_version": version,
        "records_per_group": args.records,
        "value_bytes": args.size,
        "replication_factor": args.rf,
        "producer": "acks=all, enable.idempotence=true, linger.ms=5, no compression",
        "idempotent": idempotent,
        "transactions": transactions,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
