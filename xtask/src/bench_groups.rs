//! `cargo xtask bench groups`: consumer-group figures with librdkafka (the driver is
//! `tests/src/bin/group-bench.rs`): how long a 3-member group takes to settle (all 6
//! partitions assigned and consuming) when it forms and when a third member joins, and
//! how fast offsets commit (commits/s, latency p99).
//!
//! Two brokers run one after the other: one with `group.initial.rebalance.delay.ms=0`,
//! which shows the coordinator's own time, and one with Kafka's default (3000 ms),
//! which shows what a default deployment gives a new group.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::{
    bar_panel, code_state, fmt_num, loadavg, machine_info, publish, svg_start, Server, SmallOpts,
};
use crate::util::{cargo, output, run as run_cmd};

/// Starts a broker with `extra` flags on a fresh data dir and runs the driver phases.
fn run_against(
    root: &Path,
    opts: &SmallOpts,
    name: &str,
    extra: &[&str],
    driver_args: &[&str],
) -> Result<Value> {
    let bin = root.join("target/release");
    let data_dir = opts
        .out
        .join(format!("groups-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let data_arg = data_dir.to_string_lossy().into_owned();
    let mut args = crate::bench::node_args(&data_arg).to_vec();
    args.extend_from_slice(extra);
    let result = (|| -> Result<Value> {
        let server = Server::start(
            &bin.join("sluice"),
            &args,
            "sluice listening",
            &opts.out.join(format!("groups-broker-{name}.log")),
            Some(("SLUICE_LOG_LEVEL", "info")),
        )?;
        let out = Command::new(bin.join("group-bench"))
            .args(["--bootstrap", &server.addr])
            .args(driver_args)
            .output()
            .context("running group-bench")?;
        server.stop()?;
        if !out.status.success() {
            bail!(
                "group-bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("group-bench output")
    })();
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let opts = SmallOpts::parse(root, args, "groups")?;
    let started = Instant::now();
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-system-tests", "--bins"]))?;
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    let code = code_state(root);
    std::fs::create_dir_all(&opts.out)?;
    let rounds = if opts.quick { "1" } else { "3" };
    let commits = if opts.quick { "2000" } else { "20000" };
    let load_before = loadavg();
    eprintln!("xtask bench groups: broker with group.initial.rebalance.delay.ms=0");
    let fast = run_against(
        root,
        &opts,
        "nodelay",
        &["--group-initial-rebalance-delay-ms", "0"],
        &[
            "--phases",
            "cold,join,commit",
            "--rounds",
            rounds,
            "--commits",
            commits,
        ],
    )?;
    eprintln!("xtask bench groups: broker with Kafka's default delay (3000 ms)");
    let default = run_against(
        root,
        &opts,
        "default",
        &[],
        &["--phases", "cold", "--rounds", rounds],
    )?;
    let doc = json!({
        "date": output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).map(|s| s.trim().to_string()).unwrap_or_default(),
        "machine": machine_info(),
        "code": code,
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "librdkafka_version": fast["librdkafka_version"],
        "client_settings": fast["client_settings"],
        "no_initial_delay": fast["phases"],
        "default_initial_delay": default["phases"],
        "total_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let table = table(&doc);
    publish(&opts.out, "groups", &doc, &table, &svg(&doc))?;
    Ok(())
}

fn table(doc: &Value) -> String {
    let nd = &doc["no_initial_delay"];
    let dd = &doc["default_initial_delay"];
    let c = &nd["commit"];
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| consumer groups (librdkafka {}) | figure |",
        doc["librdkafka_version"].as_str().unwrap_or("?")
    );
    let _ = writeln!(t, "|---|---|");
    let _ = writeln!(t, "| 3 members form a group, 6 partitions: last join -> all assigned and consuming (initial delay 0) | {} ms |", fmt_num(&nd["cold"]["median_ms"], 0));
    let _ = writeln!(
        t,
        "| same, Kafka's default group.initial.rebalance.delay.ms=3000 | {} ms |",
        fmt_num(&dd["cold"]["median_ms"], 0)
    );
    let _ = writeln!(
        t,
        "| third member joins a stable group of 2: join -> all assigned and consuming | {} ms |",
        fmt_num(&nd["join"]["median_ms"], 0)
    );
    let _ = writeln!(
        t,
        "| commits, one member, synchronous | {} commits/s, p50 {} ms, p99 {} ms |",
        fmt_num(&c["single_member"]["commits_per_s"], 0),
        fmt_num(&c["single_member"]["p50_ms"], 3),
        fmt_num(&c["single_member"]["p99_ms"], 3)
    );
    let _ = writeln!(
        t,
        "| commits, {} standalone committers in parallel | {} commits/s, p99 {} ms |",
        c["parallel"]["committers"],
        fmt_num(&c["parallel"]["commits_per_s"], 0),
        fmt_num(&c["parallel"]["p99_ms"], 3)
    );
    t
}

fn svg(doc: &Value) -> String {
    let nd = &doc["no_initial_delay"];
    let dd = &doc["default_initial_delay"];
    let c = &nd["commit"];
    let mut s = String::new();
    let title = format!(
        "sluice consumer groups, librdkafka {}, {} ({})",
        doc["librdkafka_version"].as_str().unwrap_or("?"),
        doc["date"].as_str().unwrap_or(""),
        doc["code"]["head"].as_str().unwrap_or("").trim()
    );
    svg_start(&mut s, 1400, &title);
    bar_panel(
        &mut s,
        40.0,
        "Group settles (median)",
        "ms from last join to all 6 partitions consuming",
        &[
            (
                "form, delay 0".into(),
                nd["cold"]["median_ms"].as_f64(),
                "#2e86c1",
            ),
            (
                "form, delay 3000".into(),
                dd["cold"]["median_ms"].as_f64(),
                "#85c1e9",
            ),
            (
                "3rd joins".into(),
                nd["join"]["median_ms"].as_f64(),
                "#28b463",
            ),
        ],
        &[],
        0,
    );
    bar_panel(
        &mut s,
        500.0,
        "Commit throughput",
        "commits/s",
        &[
            (
                "1 member\nsync".into(),
                c["single_member"]["commits_per_s"].as_f64(),
                "#af7ac5",
            ),
            (
                format!("{} standalone\nparallel", c["parallel"]["committers"]),
                c["parallel"]["commits_per_s"].as_f64(),
                "#7d3c98",
            ),
        ],
        &[],
        0,
    );
    bar_panel(
        &mut s,
        960.0,
        "Commit latency",
        "ms",
        &[
            (
                "p50 1 member".into(),
                c["single_member"]["p50_ms"].as_f64(),
                "#f5b041",
            ),
            (
                "p99 1 member".into(),
                c["single_member"]["p99_ms"].as_f64(),
                "#dc7633",
            ),
            (
                "p99 parallel".into(),
                c["parallel"]["p99_ms"].as_f64(),
                "#a04000",
            ),
        ],
        &[],
        3,
    );
    s.push_str("</svg>\n");
    s
}
