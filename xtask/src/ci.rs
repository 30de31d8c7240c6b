//! `cargo xtask ci`: everything CI runs, in one command (the README's test command).
//!
//! Order: cheap static checks first, then fuzzing, the client compatibility
//! scenarios (Python clients, kcat, Sarama), a short chaos schedule (`xtask chaos`), the
//! container image with the compose smoke test, the Kubernetes manifest checks and a
//! short chaos run against the compose cluster, and the workspace tests (nextest) last.
//! Every step runs even when an earlier one failed, so one CI run reports everything;
//! the closing line is a plain `N passed, M failed` over test cases plus steps.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::util::{cargo, run};

struct Outcome {
    name: &'static str,
    ok: bool,
    secs: f64,
}

pub fn run_ci(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut outcomes = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| {
        let start = Instant::now();
        eprintln!("\nxtask ci: == {name} ==");
        let r = f();
        if let Err(e) = &r {
            eprintln!("xtask ci: {name} FAILED: {e:#}");
        }
        outcomes.push(Outcome {
            name,
            ok: r.is_ok(),
            secs: start.elapsed().as_secs_f64(),
        });
    };
    step("fmt", &mut || {
        run(cargo(root).args(["fmt", "--all", "--", "--check"]))
    });
    step("codegen up to date", &mut || {
        crate::codegen::run(root, &["--check".to_string()])
    });
    step("tidy", &mut || crate::tidy::run(root));
    step("clippy", &mut || {
        run(cargo(root).args([
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    step("build", &mut || {
        run(cargo(root).args(["build", "--release", "--workspace", "--bins"]))
    });
    if !quick {
        step("fuzz", &mut || crate::fuzz::run(root, &[]));
        step("compat", &mut || crate::compat::run(root, &[]));
        // A short chaos schedule: six kills, at least one of the controller leader;
        // then three with a transactional producer.
        step("chaos", &mut || {
            let args: Vec<String> = ["--nodes", "3", "--kills", "6", "--seed", "20261122"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            crate::chaos::run(root, &args)?;
            // And with transactions (issue 6): no aborted record read, none committed lost.
            let json = root.join("target/chaos/chaos-transactions.json");
            let mut args: Vec<String> = [
                "--nodes",
                "3",
                "--kills",
                "3",
                "--seed",
                "20261123",
                "--transactions",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.push(json.display().to_string());
            crate::chaos::run(root, &args)
        });
        // Issue 7: the image (from the release binary built above), the README's
        // compose walkthrough, the Kubernetes manifests, and chaos in containers.
        step("compose smoke", &mut || crate::compose::smoke(root));
        step("k8s manifests", &mut || crate::k8s::run(root, &[]));
        // Kills and network partitions of partition leaders and of the controller
        // leader, in containers (this seed's schedule covers each).
        step("chaos docker", &mut || {
            let args: Vec<String> = [
                "--docker",
                "--kills",
                "6",
                "--seed",
                "7",
                "--controller-percent",
                "50",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            crate::chaos::run(root, &args)
        });
    }
    let mut tests = (0usize, 0usize);
    step("tests", &mut || {
        let (passed, failed) = nextest(root)?;
        tests = (passed, failed);
        if failed > 0 {
            bail!("{failed} test(s) failed");
        }
        Ok(())
    });
    eprintln!("\nxtask ci: summary");
    for o in &outcomes {
        eprintln!(
            "  {:<20} {:>4}  {:>6.1}s",
            o.name,
            if o.ok { "ok" } else { "FAIL" },
            o.secs
        );
    }
    let steps_failed = outcomes.iter().filter(|o| !o.ok).count();
    let steps_passed = outcomes.len() - steps_failed;
    // The closing line CI reads: test cases plus the non-test steps.
    println!(
        "{} passed, {} failed",
        tests.0 + steps_passed,
        tests.1 + steps_failed
    );
    if steps_failed > 0 {
        bail!("{steps_failed} ci step(s) failed");
    }
    Ok(())
}

/// Runs the workspace tests with nextest (cargo test if nextest is missing) in the
/// release profile, returning (passed, failed) as the runner counted them.
fn nextest(root: &Path) -> Result<(usize, usize)> {
    let use_nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = cargo(root);
    if use_nextest {
        cmd.args([
            "nextest",
            "run",
            "--release",
            "--workspace",
            "--no-fail-fast",
            "--profile",
            "ci",
        ]);
    } else {
        cmd.args(["test", "--release", "--workspace", "--no-fail-fast"]);
    }
    let out = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stdout}{stderr}");
    let (passed, failed) = count_results(&format!("{stdout}\n{stderr}"));
    if !out.status.success() && failed == 0 {
        bail!("test runner failed before running tests ({})", out.status);
    }
    Ok((passed, failed))
}

/// Sums "N passed" / "N failed" over the runner's summary lines: nextest prints one
/// `Summary ... N tests run: N passed, ...` line, cargo test one `test result:` per binary.
/// Under nextest only its `Summary` counts, because the output it replays for a failed
/// test holds that test binary's own `test result:` line.
fn count_results(text: &str) -> (usize, usize) {
    let grab = |line: &str, word: &str| -> usize {
        line.split([',', ';', ':'])
            .map(str::trim)
            .find_map(|p| {
                p.strip_suffix(word)
                    .and_then(|n| n.trim().rsplit(' ').next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    let nextest = text.lines().any(|l| l.trim().starts_with("Summary"));
    let summary = if nextest { "Summary" } else { "test result:" };
    let mut passed = 0;
    let mut failed = 0;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with(summary) {
            passed += grab(l, "passed");
            failed += grab(l, "failed");
        }
    }
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::count_results;

    #[test]
    fn counts_nextest_and_cargo_test_summaries() {
        let nextest = "     Summary [  12.345s] 120 tests run: 118 passed, 2 failed, 1 skipped";
        assert_eq!(count_results(nextest), (118, 2));
        let cargo = "test result: ok. 5 passed; 0 failed; 0 ignored\ntest result: FAILED. 3 passed; 1 failed;";
        assert_eq!(count_results(cargo), (8, 1));
        // A failed test's replayed output, then nextest's summary: the test counts once.
        let replayed = "    test result: FAILED. 0 passed; 1 failed; 0 ignored\n\
            \x20    Summary [  96.789s] 424 tests run: 423 passed, 1 failed, 2 skipped";
        assert_eq!(count_results(replayed), (423, 1));
    }
}
