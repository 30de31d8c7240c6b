//! `group-member`: one consumer-group member as its own process, for the system tests
//! that kill a member without letting it leave (tests/tests/consumer_groups.rs).
//!
//! Usage: `group-member BOOTSTRAP GROUP TOPIC [--delay-ms N] [PROPERTY=VALUE ...]`
//!
//! It subscribes to TOPIC in GROUP (settings from `kafka::group_config`, overridden by
//! the librdkafka properties given) and writes one line to stdout per event:
//!
//! - `assignment P,P,...` after every rebalance callback (its whole assignment then);
//! - `record P O` for each consumed record, printed *before* the record is committed
//!   synchronously, so a kill between the two leaves exactly that record uncommitted.
//!
//! `--delay-ms` waits that long between printing and committing, widening the window a
//! kill can fall into. The member closes (leaving the group) when its stdin reaches
//! end of file; SIGKILL leaves it in the group until its session times out.

// Test code: it reports to the test on stdio, and any setup failure should abort it.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::expect_used)]

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use sluice_system_tests::kafka::{commit_processed, group_config, partitions};

/// Prints the member's assignment after every rebalance callback.
struct PrintingContext;

impl ClientContext for PrintingContext {}

impl ConsumerContext for PrintingContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        let assigned = consumer
            .assignment()
            .map(|a| partitions(&a))
            .unwrap_or_default();
        let list: Vec<String> = assigned.iter().map(i32::to_string).collect();
        println!("assignment {}", list.join(","));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: group-member BOOTSTRAP GROUP TOPIC [--delay-ms N] [PROPERTY=VALUE ...]");
        std::process::exit(2);
    }
    let (bootstrap, group, topic) = (&args[0], &args[1], &args[2]);
    let mut delay = Duration::ZERO;
    let mut props: Vec<(String, String)> = Vec::new();
    let mut rest = args[3..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--delay-ms" {
            let ms = rest
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--delay-ms N");
            delay = Duration::from_millis(ms);
        } else if let Some((k, v)) = arg.split_once('=') {
            props.push((k.to_string(), v.to_string()));
        } else {
            panic!("unexpected argument {arg:?}");
        }
    }
    let props: Vec<(&str, &str)> = props
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let consumer: BaseConsumer<PrintingContext> = group_config(bootstrap, group, &props)
        .create_with_context(PrintingContext)
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");

    let done = Arc::new(AtomicBool::new(false));
    let stdin_done = done.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        stdin_done.store(true, Ordering::Relaxed);
    });

    while !done.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(e)) => eprintln!("group-member: consumer error: {e}"),
            Some(Ok(m)) => {
                // stdout is line-buffered: the line is out before the commit starts.
                println!("record {} {}", m.partition(), m.offset());
                std::thread::sleep(delay);
                if !commit_processed(&consumer, &m) {
                    eprintln!(
                        "group-member: giving up committing {}@{}",
                        m.partition(),
                        m.offset()
                    );
                }
            }
        }
    }
    // Dropping the consumer closes it: revoke callback, final commit state, LeaveGroup.
    drop(consumer);
}
