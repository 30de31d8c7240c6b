//! `cargo xtask bench controller`: metadata quorum figures on a 3-node cluster of real
//! `sluice` processes (the driver is `tests/src/bin/controller-bench.rs`): how long
//! after a kill -9 every survivor's Metadata shows the dead broker fenced and its
//! partitions led by live brokers, when the dead node is an ordinary broker and when it
//! is the controller leader, and the CreateTopics round trip sent to the controller
//! leader and to another node (forwarded).
//!
//! The driver's stderr (its progress and every node's log) goes to
//! `controller-driver.log` beside the results, so slow samples can be traced in the
//! brokers' own timestamps.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::bench::{bar_panel, code_state, loadavg, machine_info, publish, svg_start};
use crate::util::{cargo, output, run as run_cmd};

const USAGE: &str = "usage: cargo xtask bench controller [--quick] [--runs N] [--out DIR]";

/// Targets from the issue (max of each failover scenario).
const TARGET_KILL_BROKER_MS: f64 = 1000.0;
const TARGET_KILL_CONTROLLER_MS: f64 = 3000.0;
/// Kafka's defaults (broker.session.timeout.ms=9000) take about this long to fence.
const KAFKA_DEFAULT_FENCE_MS: f64 = 9000.0;

struct Opts {
    runs: usize,
    out: PathBuf,
}

fn parse(root: &Path, args: &[String]) -> Result<Opts> {
    let mut runs = None;
    let mut quick = false;
    let mut out = root.join("target/bench");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--runs" => {
                runs = Some(
                    it.next()
                        .context("--runs needs a value")?
                        .parse()
                        .context("--runs")?,
                )
            }
            "--out" => {
                out = std::env::current_dir()?.join(it.next().context("--out needs a value")?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other} ({USAGE})"),
        }
    }
    let runs: usize = runs.unwrap_or(if quick { 3 } else { 20 });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(Opts { runs, out })
}

/// Runs the driver: its stdout is the JSON document; its stderr goes to `log`, with
/// the driver's own progress lines echoed here.
fn driver(root: &Path, opts: &Opts, log: &Path) -> Result<Value> {
    let bin = root.join("target/release");
    let mut child = Command::new(bin.join("controller-bench"))
        .args(["--runs", &opts.runs.to_string()])
        .env("SLUICE_BIN", bin.join("sluice"))
        // Lifecycle events (stream loss, activation, fencing) with their timestamps.
        .env(
            "SLUICE_TEST_LOG",
            "info,openraft=off,sluice_controller::lifecycle=debug,sluice_controller::server=debug",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting controller-bench")?;
    let stderr = child.stderr.take().context("driver stderr")?;
    let mut file = std::fs::File::create(log).with_context(|| log.display().to_string())?;
    let copier = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("controller-bench") || line.contains("panicked") {
                eprintln!("{line}");
            }
            let _ = writeln!(file, "{line}");
        }
    });
    let mut text = String::new();
    child
        .stdout
        .take()
        .context("driver stdout")?
        .read_to_string(&mut text)?;
    let status = child.wait()?;
    let _ = copier.join();
    if !status.success() {
        bail!("controller-bench failed ({status}); see {}", log.display());
    }
    serde_json::from_str(&text).context("parsing the driver's JSON")
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let opts = parse(root, args)?;
    let started = Instant::now();
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-system-tests", "--bins"]))?;
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    let code = code_state(root);
    std::fs::create_dir_all(&opts.out)?;
    let log = opts.out.join("controller-driver.log");
    let load_before = loadavg();
    eprintln!(
        "xtask bench controller: 3 nodes, {} runs of each failover scenario (driver log: {})",
        opts.runs,
        log.display()
    );
    let result = driver(root, &opts, &log)?;
    let mut doc = json!({
        "date": output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).map(|s| s.trim().to_string()).unwrap_or_default(),
        "machine": machine_info(),
        "code": code,
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "kafka_default_fence_ms": KAFKA_DEFAULT_FENCE_MS,
    });
    if let (Some(d), Some(r)) = (doc.as_object_mut(), result.as_object()) {
        d.extend(r.clone());
    }
    doc["total_seconds"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    doc["driver_log"] = json!(log.display().to_string());
    let table = table(&doc);
    publish(&opts.out, "controller", &doc, &table, &svg(&doc))?;
    Ok(())
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.0} ms"))
}

fn ms1(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.1} ms"))
}

/// "max <= 1000 ms (met)" and the like.
fn target(s: &Value, limit: f64) -> String {
    let verdict = match s["meets_target"].as_bool() {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "no samples",
    };
    format!("max <= {limit:.0} ms ({verdict})")
}

fn failures(s: &Value) -> String {
    match s["failures"].as_u64() {
        Some(0) | None => String::new(),
        Some(n) => format!(", {n} failed"),
    }
}

fn table(doc: &Value) -> String {
    let sc = &doc["scenarios"];
    let (kb, kc) = (&sc["kill_broker"], &sc["kill_controller"]);
    let (cl, cf) = (&sc["create_topics_leader"], &sc["create_topics_forwarded"]);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| metadata quorum ({} nodes, {}) | median | p90 | max | samples | target |",
        doc["nodes"],
        doc["address"].as_str().unwrap_or("127.0.0.1")
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|");
    let row = |t: &mut String, what: &str, s: &Value, fmt: fn(&Value) -> String, tgt: String| {
        let _ = writeln!(
            t,
            "| {what} | {} | {} | {} | {}{} | {tgt} |",
            fmt(&s["median_ms"]),
            fmt(&s["p90_ms"]),
            fmt(&s["max_ms"]),
            s["count"],
            failures(s)
        );
    };
    row(
        &mut t,
        "kill -9 of a broker (not controller) -> fenced + new leaders on every survivor",
        kb,
        ms,
        target(kb, TARGET_KILL_BROKER_MS),
    );
    row(
        &mut t,
        "kill -9 of the controller leader's node -> same",
        kc,
        ms,
        target(kc, TARGET_KILL_CONTROLLER_MS),
    );
    row(
        &mut t,
        "CreateTopics round trip (12 partitions, RF 3), sent to the controller leader",
        cl,
        ms1,
        String::new(),
    );
    row(
        &mut t,
        "CreateTopics round trip, sent to another node (forwarded)",
        cf,
        ms1,
        String::new(),
    );
    let flags = doc["flags"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "\nKafka's defaults (broker.session.timeout.ms=9000) take about {:.0} s to fence a \
         broker. Flags: {flags}. Survivors polled every {} ms (largest gap seen {} ms); {} \
         failed round(s).",
        KAFKA_DEFAULT_FENCE_MS / 1000.0,
        doc["poll_interval_ms"],
        doc["max_poll_gap_ms"]
            .as_f64()
            .map_or_else(|| "?".into(), |g| format!("{g:.1}")),
        doc["total_failures"]
    );
    t
}

fn svg(doc: &Value) -> String {
    let sc = &doc["scenarios"];
    let mut s = String::new();
    let title = format!(
        "sluice metadata quorum, 3 nodes on 127.0.0.1, {} ({})",
        doc["date"].as_str().unwrap_or(""),
        doc["code"]["head"].as_str().unwrap_or("").trim()
    );
    svg_start(&mut s, 960, &title);
    let kb = &sc["kill_broker"];
    let kc = &sc["kill_controller"];
    bar_panel(
        &mut s,
        40.0,
        "kill -9 -> fenced + new leaders everywhere",
        "ms, median and max",
        &[
            ("broker\nmedian".into(), kb["median_ms"].as_f64(), "#2e86c1"),
            ("broker\nmax".into(), kb["max_ms"].as_f64(), "#1b4f72"),
            (
                "controller\nmedian".into(),
                kc["median_ms"].as_f64(),
                "#e59866",
            ),
            ("controller\nmax".into(), kc["max_ms"].as_f64(), "#a04000"),
        ],
        &[
            ("broker target 1000 ms".into(), TARGET_KILL_BROKER_MS),
            (
                "controller target 3000 ms".into(),
                TARGET_KILL_CONTROLLER_MS,
            ),
        ],
        0,
    );
    let cl = &sc["create_topics_leader"];
    let cf = &sc["create_topics_forwarded"];
    bar_panel(
        &mut s,
        500.0,
        "CreateTopics round trip",
        "ms, median and max",
        &[
            (
                "to leader\nmedian".into(),
                cl["median_ms"].as_f64(),
                "#28b463",
            ),
            ("to leader\nmax".into(), cl["max_ms"].as_f64(), "#186a3b"),
            (
                "forwarded\nmedian".into(),
                cf["median_ms"].as_f64(),
                "#af7ac5",
            ),
            ("forwarded\nmax".into(), cf["max_ms"].as_f64(), "#6c3483"),
        ],
        &[],
        1,
    );
    s.push_str("</svg>\n");
    s
}
