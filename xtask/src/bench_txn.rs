//! `cargo xtask bench transactions`: transactional producer figures with librdkafka (the
//! driver is `tests/src/bin/txn-bench.rs`): transactions of 100 records (1 KiB values)
//! committed one after the other, against the idempotent `acks=all` baseline writing
//! the same groups without transactions, on one node and on a three-node cluster
//! (replication factor 3, `min.insync.replicas` 2). The table shows transactions/s,
//! records/s, and the latency a commit adds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::{
    bar_panel, code_state, fmt_num, loadavg, machine_info, publish, start_nodes, stop_all,
    svg_start, Server, SmallOpts,
};
use crate::util::{cargo, output, run as run_cmd};

fn drive(bin: &Path, bootstrap: &str, batches: &str, rf: &str) -> Result<Value> {
    let out = Command::new(bin.join("txn-bench"))
        .args(["--bootstrap", bootstrap, "--batches", batches])
        .args(["--replication-factor", rf])
        .output()
        .context("running txn-bench")?;
    if !out.status.success() {
        bail!("txn-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("txn-bench output")
}

fn single_node(bin: &Path, opts: &SmallOpts, batches: &str) -> Result<Value> {
    let data = opts.out.join(format!("txn-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let data_arg = data.to_string_lossy().into_owned();
    let result = (|| -> Result<Value> {
        let server = Server::start(
            &bin.join("sluice"),
            &crate::bench::node_args(&data_arg),
            "sluice listening",
            &opts.out.join("txn-broker.log"),
            Some(("SLUICE_LOG_LEVEL", "info")),
        )?;
        let r = drive(bin, &server.addr, batches, "1");
        server.stop()?;
        r
    })();
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn cluster(bin: &Path, opts: &SmallOpts, batches: &str) -> Result<Value> {
    let data = opts.out.join(format!("txn-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let logs: Vec<PathBuf> = (1..=3)
        .map(|i| opts.out.join(format!("txn-cluster-node-{i}.log")))
        .collect();
    let result = (|| -> Result<Value> {
        let servers = start_nodes(bin, &data, &logs, 3, 2)?;
        let bootstrap: Vec<&str> = servers.iter().map(|s| s.addr.as_str()).collect();
        let r = drive(bin, &bootstrap.join(","), batches, "3");
        stop_all(servers)?;
        r
    })();
    let _ = std::fs::remove_dir_all(&data);
    result
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let opts = SmallOpts::parse(root, args, "transactions")?;
    let started = Instant::now();
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-system-tests", "--bins"]))?;
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    std::fs::create_dir_all(&opts.out)?;
    let bin = root.join("target/release");
    let batches = if opts.quick { "100" } else { "500" };
    let load_before = loadavg();
    eprintln!("xtask bench transactions: one node");
    let single = single_node(&bin, &opts, batches)?;
    eprintln!("xtask bench transactions: three nodes, replication factor 3");
    let three = cluster(&bin, &opts, batches)?;
    let doc = json!({
        "date": output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).map(|s| s.trim().to_string()).unwrap_or_default(),
        "machine": machine_info(),
        "code": code_state(root),
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "librdkafka_version": single["librdkafka_version"],
        "single_node": single,
        "three_nodes": three,
        "total_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let table = table(&doc);
    publish(&opts.out, "transactions", &doc, &table, &svg(&doc))?;
    Ok(())
}

fn table(doc: &Value) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| transactions of {} x {} B records (librdkafka {}) | transactions/s | records/s | MB/s | per transaction p50 / p99 | commit adds p50 / p99 |",
        doc["single_node"]["records_per_group"],
        doc["single_node"]["value_bytes"],
        doc["librdkafka_version"].as_str().unwrap_or("?")
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|");
    for (name, run) in [
        ("1 node", &doc["single_node"]),
        ("3 nodes, RF 3", &doc["three_nodes"]),
    ] {
        let i = &run["idempotent"];
        let x = &run["transactions"];
        let _ = writeln!(
            t,
            "| {name}: idempotent acks=all, send + flush per group | {} | {} | {} | {} / {} ms | - |",
            fmt_num(&i["groups_per_s"], 1),
            fmt_num(&i["records_per_s"], 0),
            fmt_num(&i["mb_per_s"], 1),
            fmt_num(&i["group_latency"]["p50_ms"], 2),
            fmt_num(&i["group_latency"]["p99_ms"], 2),
        );
        let _ = writeln!(
            t,
            "| {name}: transactional, begin + send + flush + commit | {} | {} | {} | {} / {} ms | {} / {} ms |",
            fmt_num(&x["groups_per_s"], 1),
            fmt_num(&x["records_per_s"], 0),
            fmt_num(&x["mb_per_s"], 1),
            fmt_num(&x["transaction_latency"]["p50_ms"], 2),
            fmt_num(&x["transaction_latency"]["p99_ms"], 2),
            fmt_num(&x["commit_latency"]["p50_ms"], 2),
            fmt_num(&x["commit_latency"]["p99_ms"], 2),
        );
    }
    t
}

fn svg(doc: &Value) -> String {
    let mut s = String::new();
    let title = format!(
        "sluice transactions, librdkafka {}, {} ({})",
        doc["librdkafka_version"].as_str().unwrap_or("?"),
        doc["date"].as_str().unwrap_or(""),
        doc["code"]["head"].as_str().unwrap_or("").trim()
    );
    svg_start(&mut s, 1400, &title);
    let one = &doc["single_node"];
    let three = &doc["three_nodes"];
    bar_panel(
        &mut s,
        40.0,
        "Records per second",
        "records/s",
        &[
            (
                "1 node\nidempotent".into(),
                one["idempotent"]["records_per_s"].as_f64(),
                "#85c1e9",
            ),
            (
                "1 node\ntransactions".into(),
                one["transactions"]["records_per_s"].as_f64(),
                "#2e86c1",
            ),
            (
                "3 nodes\nidempotent".into(),
                three["idempotent"]["records_per_s"].as_f64(),
                "#82e0aa",
            ),
            (
                "3 nodes\ntransactions".into(),
                three["transactions"]["records_per_s"].as_f64(),
                "#28b463",
            ),
        ],
        &[],
        0,
    );
    bar_panel(
        &mut s,
        500.0,
        "Transactions per second",
        "transactions/s",
        &[
            (
                "1 node".into(),
                one["transactions"]["groups_per_s"].as_f64(),
                "#2e86c1",
            ),
            (
                "3 nodes".into(),
                three["transactions"]["groups_per_s"].as_f64(),
                "#28b463",
            ),
        ],
        &[],
        1,
    );
    bar_panel(
        &mut s,
        960.0,
        "Commit latency (what a transaction adds)",
        "ms",
        &[
            (
                "1 node p50".into(),
                one["transactions"]["commit_latency"]["p50_ms"].as_f64(),
                "#f5b041",
            ),
            (
                "1 node p99".into(),
                one["transactions"]["commit_latency"]["p99_ms"].as_f64(),
                "#dc7633",
            ),
            (
                "3 nodes p50".into(),
                three["transactions"]["commit_latency"]["p50_ms"].as_f64(),
                "#af7ac5",
            ),
            (
                "3 nodes p99".into(),
                three["transactions"]["commit_latency"]["p99_ms"].as_f64(),
                "#7d3c98",
            ),
        ],
        &[],
        2,
    );
    s.push_str("</svg>\n");
    s
}
