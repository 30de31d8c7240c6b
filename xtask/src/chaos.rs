//! `cargo xtask chaos`: the chaos test of issue 5 (the driver is
//! `tests/src/bin/chaos.rs`): a 3-node cluster of real `sluice` processes, an idempotent
//! `acks=all` producer and an independent consumer, SIGKILLs of partition leaders and of
//! the controller leader, then a checker that proves no acknowledged write was lost,
//! duplicated or reordered, nothing appeared that was never sent, reads never diverged
//! and ListOffsets `latest` never went back; it prints the unavailability per kill.
//! `--transactions` makes the producer transactional (issue 6) and the checker prove
//! that read_committed readers never see an aborted record and lose no committed one.
//!
//! Arguments are passed through to the driver (see `chaos --help`); `--json` defaults to
//! `target/chaos/chaos.json`. The driver's stderr (its progress and every node's log)
//! goes to `target/chaos/chaos-driver.log`, with its own progress lines echoed here.
//!
//! `--docker` runs the same driver and checker against the compose cluster of
//! `deploy/docker-compose.yml` instead (issue 7): it builds the image, brings the
//! cluster up fresh with the short timeouts the process variant uses, waits until it is
//! healthy, and hands the driver the containers (`--docker-node`), whose faults are
//! `docker kill`/`docker start` and network partitions (`docker network disconnect` of
//! a node from the nodes' network while clients still reach it). Afterwards (also on
//! failure) the containers' logs go to `target/chaos/compose.log` and the cluster is
//! taken down with its volumes. Figures in `target/chaos/chaos-docker.json`, driver log
//! `target/chaos/chaos-docker-driver.log`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::compose::{Compose, BOOTSTRAP, SERVICES};
use crate::util::{cargo, output, run as run_cmd};

/// The broker session timeout of the compose cluster: the process variant's (its test
/// cluster's `TIMEOUTS` in tests/src/cluster.rs), so a cut-off or killed node is
/// fenced within seconds rather than the compose file's default 9 s.
const SESSION_TIMEOUT_MS: &str = "3000";
/// The replica lag bound when `--replica-lag-ms` is not given: the driver's default.
const REPLICA_LAG_MS: &str = "2000";
/// Bound on the fresh compose cluster becoming healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(90);

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    run_cmd(cargo(root).args([
        "build",
        "--release",
        "-p",
        "sluice-system-tests",
        "--bin",
        "chaos",
    ]))?;
    if args.iter().any(|a| a == "-h" || a == "--help") {
        run_cmd(Command::new(root.join("target/release/chaos")).arg("--help"))?;
        return Ok(());
    }
    let out = root.join("target/chaos");
    std::fs::create_dir_all(&out)?;
    if args.iter().any(|a| a == "--docker") {
        return run_docker(root, args);
    }
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    let mut args = args.to_vec();
    default_json(&mut args, &out.join("chaos.json"));
    let status = drive(root, &args, &out.join("chaos-driver.log"))?;
    check_driver(status, &out.join("chaos-driver.log"))
}

/// The docker variant (see the module docs).
fn run_docker(root: &Path, args: &[String]) -> Result<()> {
    let started = Instant::now();
    let out = root.join("target/chaos");
    crate::docker::build_image(root)?;
    // The driver takes --replica-lag-ms for its processes; here it becomes the
    // compose file's setting.
    let lag = args
        .iter()
        .position(|a| a == "--replica-lag-ms")
        .and_then(|i| args.get(i + 1))
        .map_or(REPLICA_LAG_MS, String::as_str);
    let compose = Compose::detect(root)?
        .with_env("SLUICE_REPLICA_LAG_TIME_MAX_MS", lag)
        .with_env("SLUICE_BROKER_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS);
    let log = out.join("chaos-docker-driver.log");
    let result = compose.up_fresh().and_then(|()| {
        let t = Instant::now();
        compose.wait_healthy(&SERVICES, HEALTHY_TIMEOUT)?;
        eprintln!(
            "xtask chaos: compose cluster healthy after {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut driver_args: Vec<String> =
            args.iter().filter(|a| *a != "--docker").cloned().collect();
        for (i, (service, addr)) in SERVICES.iter().zip(BOOTSTRAP.split(',')).enumerate() {
            let id = compose.container(service)?;
            // The name (`sluice_sluice-1_1`) reads better than the id in the driver's log.
            let name =
                output(Command::new("docker").args(["inspect", "--format", "{{.Name}}", &id]))?;
            driver_args.push("--docker-node".into());
            driver_args.push(format!(
                "{}={}@{addr}",
                i + 1,
                name.trim().trim_start_matches('/')
            ));
        }
        driver_args.push("--docker-network".into());
        driver_args.push(compose.network("internal"));
        default_json(&mut driver_args, &out.join("chaos-docker.json"));
        drive(root, &driver_args, &log)
    });
    let logs = out.join("compose.log");
    match compose.save_logs(&logs) {
        Ok(()) => eprintln!("xtask chaos: container logs in {}", logs.display()),
        Err(e) => eprintln!("xtask chaos: could not save the container logs: {e:#}"),
    }
    let down = compose.down();
    eprintln!(
        "xtask chaos: docker variant took {:.0} s, bring-up and tear-down included",
        started.elapsed().as_secs_f64()
    );
    check_driver(result?, &log)?;
    down
}

/// Adds `--json path` unless the arguments name a file already.
fn default_json(args: &mut Vec<String>, path: &Path) {
    if !args.iter().any(|a| a == "--json") {
        args.push("--json".into());
        args.push(path.display().to_string());
    }
}

/// Runs the driver with `args`: its stdout here, its stderr to `log` with its own
/// progress lines echoed.
fn drive(root: &Path, args: &[String], log: &Path) -> Result<ExitStatus> {
    eprintln!(
        "xtask chaos: driver log (progress and node logs): {}",
        log.display()
    );
    let bin = root.join("target/release");
    let mut child = Command::new(bin.join("chaos"))
        .args(args)
        .env("SLUICE_BIN", bin.join("sluice"))
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the chaos driver")?;
    let stderr = child.stderr.take().context("driver stderr")?;
    let mut file = std::fs::File::create(log).with_context(|| log.display().to_string())?;
    let copier = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if (line.starts_with("chaos:") && !line.contains("librdkafka"))
                || line.contains("panicked")
            {
                eprintln!("{line}");
            }
            let _ = writeln!(file, "{line}");
        }
    });
    let status = child.wait()?;
    let _ = copier.join();
    Ok(status)
}

/// Exits with the driver's own code if it failed: 1 violations, 2 the run could not
/// finish.
/// An error naming the driver's exit status (1: violations, 2: the run could not
/// finish) unless it succeeded. An error rather than an exit, so that `xtask ci` goes
/// on with its other steps.
fn check_driver(status: ExitStatus, log: &Path) -> Result<()> {
    if !status.success() {
        anyhow::bail!(
            "the chaos driver exited with {status} (1: violations, 2: the run could not finish); see the lines above and {}",
            log.display()
        );
    }
    Ok(())
}
