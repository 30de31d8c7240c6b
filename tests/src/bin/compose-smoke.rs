//! `compose-smoke`: one round of the compose cluster's smoke test (`cargo xtask compose
//! smoke`), as a user would do it from the host with librdkafka: produce `--count`
//! records (`<run>-<i>`, keyed, acks=all, idempotent) to `--topic`, then consume the
//! topic in consumer group `--group` until `--expect` records arrived, check that this
//! run's records are all there and nothing came twice, and commit the group's offsets.
//! Exits non-zero (with the reason) otherwise.

#![allow(clippy::print_stdout)] // A CLI tool: reports on stdout.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use sluice_system_tests::kafka::{group_config, produce_all, producer};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    bootstrap: String,
    topic: String,
    run: String,
    count: usize,
    group: String,
    expect: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        bootstrap: String::new(),
        topic: "smoke".into(),
        run: "r".into(),
        count: 1000,
        group: "smoke".into(),
        expect: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value,
            "--topic" => a.topic = value,
            "--run" => a.run = value,
            "--count" => a.count = value.parse()?,
            "--group" => a.group = value,
            "--expect" => a.expect = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.bootstrap.is_empty() {
        bail!("usage: compose-smoke --bootstrap HOST:PORT,... [--topic T] [--run R] [--count N] [--group G] [--expect M]");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse()?;
    let started = Instant::now();
    let p = producer(
        &a.bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let msgs: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..a.count)
        .map(|i| {
            (
                Some(i.to_string().into_bytes()),
                format!("{}-{i}", a.run).into_bytes(),
            )
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let delivered = runtime.block_on(produce_all(&p, &a.topic, None, &msgs));
    println!(
        "compose-smoke: produced {} records of run {} with acks=all in {:.1} s",
        delivered.len(),
        a.run,
        started.elapsed().as_secs_f64()
    );

    // The cluster runs Kafka's default group.min.session.timeout.ms (6 s).
    let consumer: BaseConsumer = group_config(
        &a.bootstrap,
        &a.group,
        &[
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ],
    )
    .create()?;
    consumer.subscribe(&[&a.topic])?;
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = HashSet::new();
    let mut duplicates = 0usize;
    while seen.len() + duplicates < a.expect && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => bail!("consume error: {e}"),
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                if !seen.insert(value) {
                    duplicates += 1;
                }
            }
        }
    }
    // Anything beyond what was expected shows up within a short extra poll.
    let extra_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < extra_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if !seen.insert(value) {
                duplicates += 1;
            }
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .context("committing the group's offsets")?;
    let missing = (0..a.count)
        .filter(|i| !seen.contains(&format!("{}-{i}", a.run)))
        .count();
    println!(
        "compose-smoke: group {} consumed {} distinct records ({duplicates} duplicates), {missing} of run {} missing",
        a.group,
        seen.len(),
        a.run
    );
    if missing > 0 || duplicates > 0 || seen.len() != a.expect {
        bail!(
            "expected {} distinct records with every one of run {} and no duplicates",
            a.expect,
            a.run
        );
    }
    Ok(())
}
