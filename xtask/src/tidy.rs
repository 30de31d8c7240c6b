//! `cargo xtask tidy`: mechanical checks of DESIGN section 1's dependency rules and of
//! the code conventions that can be checked without judgment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::util::{cargo, output};

/// Crates that mean async runtime, network or RPC.
const RUNTIME_OR_NET: &[&str] = &[
    "tokio",
    "mio",
    "async-std",
    "futures",
    "futures-util",
    "hyper",
    "tonic",
    "socket2",
    "tower",
];
/// Crates only binaries may use.
const BINARY_ONLY: &[&str] = &["anyhow", "clap", "tracing-subscriber"];

pub fn run(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    check_dependencies(root, &mut problems)?;
    check_sources(root, &mut problems)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        bail!("tidy found {} problem(s)", problems.len());
    }
    eprintln!("tidy: dependency rules and source conventions hold");
    Ok(())
}

/// Normal (non-dev, non-build) dependencies of each workspace package.
fn workspace_deps(root: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text = output(cargo(root).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .or_else(|_| output(cargo(root).args(["metadata", "--format-version", "1", "--no-deps"])))?;
    let meta: Value = serde_json::from_str(&text).context("parsing cargo metadata")?;
    let mut out = BTreeMap::new();
    for pkg in meta["packages"].as_array().context("packages")? {
        let name = pkg["name"].as_str().unwrap_or_default().to_string();
        let deps = pkg["dependencies"]
            .as_array()
            .context("dependencies")?
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect();
        out.insert(name, deps);
    }
    Ok(out)
}

fn check_dependencies(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let deps = workspace_deps(root)?;
    let has = |pkg: &str, dep: &str| deps.get(pkg).is_some_and(|d| d.iter().any(|x| x == dep));
    for forbidden in RUNTIME_OR_NET.iter().chain(BINARY_ONLY) {
        if has("sluice-protocol", forbidden) {
            problems.push(format!(
                "sluice-protocol must do no I/O and use no runtime, but depends on {forbidden}"
            ));
        }
    }
    for forbidden in RUNTIME_OR_NET
        .iter()
        .chain(BINARY_ONLY)
        .chain(&["openraft", "sled", "prost"])
    {
        if has("sluice-storage", forbidden) {
            problems.push(format!("sluice-storage must know nothing of network, Raft or binaries, but depends on {forbidden}"));
        }
    }
    // The group and transaction coordinators and the SASL mechanisms are sans-io state
    // machines: time and randomness come in as arguments, records and messages go out
    // as values, and the broker does the I/O.
    for coordinator in ["sluice-group", "sluice-txn", "sluice-auth"] {
        for forbidden in RUNTIME_OR_NET
            .iter()
            .chain(BINARY_ONLY)
            .chain(&["sluice-storage"])
        {
            if has(coordinator, forbidden) {
                problems.push(format!(
                    "{coordinator} must stay sans-io, but depends on {forbidden}"
                ));
            }
        }
    }
    // The cluster crates may use tokio and tonic, but they are libraries: the binary
    // installs the tracing subscriber, parses flags and reports with anyhow.
    for lib in ["sluice-controller", "sluice-replication"] {
        for forbidden in BINARY_ONLY {
            if has(lib, forbidden) {
                problems.push(format!("{lib} is a library, but depends on {forbidden}"));
            }
        }
    }
    for lib in [
        "sluice-protocol",
        "sluice-storage",
        "sluice-group",
        "sluice-txn",
        "sluice-auth",
        "sluice-controller",
        "sluice-replication",
    ] {
        for upward in ["sluice-broker", "sluice-controller", "sluice-replication"] {
            if lib == upward {
                continue;
            }
            let allowed = lib == "sluice-replication" && upward == "sluice-controller";
            if has(lib, upward) && !allowed {
                problems.push(format!("{lib} must not depend on {upward}"));
            }
        }
    }
    if has("sluice-replication", "sluice-controller")
        || has("sluice-controller", "sluice-replication")
    {
        problems
            .push("sluice-controller and sluice-replication must not depend on each other".into());
    }
    for (pkg, list) in &deps {
        if pkg != "sluice-broker" && list.iter().any(|d| d == "sluice-broker") && pkg != "xtask" {
            problems.push(format!("{pkg} depends on sluice-broker; nothing may"));
        }
    }
    Ok(())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn check_sources(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let mut files = Vec::new();
    for dir in ["crates", "tests/src", "xtask/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    for f in &files {
        let rel = f.strip_prefix(root).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).with_context(|| rel.clone())?;
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        if !first.starts_with("//!") {
            problems.push(format!(
                "{rel}: a module opens with a `//!` line saying what it is for"
            ));
        }
        let in_lib_src =
            rel.starts_with("crates/") && rel.contains("/src/") && !rel.contains("/src/bin/");
        if in_lib_src {
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if code.contains("println!(") || code.contains("eprintln!(") {
                    problems.push(format!(
                        "{rel}:{}: println! outside binaries; use tracing",
                        n + 1
                    ));
                }
                for b in ["anyhow::", "clap::", "tracing_subscriber::"] {
                    if code.contains(b) {
                        problems.push(format!("{rel}:{}: {b} belongs to binaries only", n + 1));
                    }
                }
            }
        }
    }
    Ok(())
}
