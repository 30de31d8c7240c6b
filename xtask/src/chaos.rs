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

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::util::{cargo, run as run_cmd};

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
    run_cmd(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    let out = root.join("target/chaos");
    std::fs::create_dir_all(&out)?;
    let mut args = args.to_vec();
    if !args.iter().any(|a| a == "--json") {
        args.push("--json".into());
        args.push(out.join("chaos.json").display().to_string());
    }
    let log = out.join("chaos-driver.log");
    eprintln!(
        "xtask chaos: driver log (progress and node logs): {}",
        log.display()
    );
    let bin = root.join("target/release");
    let mut child = Command::new(bin.join("chaos"))
        .args(&args)
        .env("SLUICE_BIN", bin.join("sluice"))
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the chaos driver")?;
    let stderr = child.stderr.take().context("driver stderr")?;
    let mut file = std::fs::File::create(&log).with_context(|| log.display().to_string())?;
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
    if !status.success() {
        // The driver's own exit code: 1 violations, 2 the run could not finish.
        eprintln!(
            "xtask chaos: the driver exited with {status}; see the lines above and {}",
            log.display()
        );
        std::process::exit(status.code().unwrap_or(2));
    }
    Ok(())
}
