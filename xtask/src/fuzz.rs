//! `cargo xtask fuzz [SECONDS]`: builds the cargo-fuzz targets in `fuzz/` and runs each
//! for a few seconds (CI's budget), installing cargo-fuzz from crates.io if missing.
//!
//! The stable toolchain runs libFuzzer with `RUSTC_BOOTSTRAP=1`. No sanitizer: our
//! crates forbid `unsafe`, so AddressSanitizer would mostly re-check the standard
//! library while doubling the build; panics, aborts, timeouts and excess memory are
//! what the targets look for.

use std::path::Path;

use anyhow::{Context, Result};

use crate::util::{self, cargo};

const TARGETS: &[&str] = &["frame_request", "record_batch"];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().context("fuzz: SECONDS must be a number")?,
        None => 20,
    };
    let have_fuzz = cargo(root)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        util::run(cargo(root).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in TARGETS {
        let max_time = format!("-max_total_time={seconds}");
        util::run(cargo(root).env("RUSTC_BOOTSTRAP", "1").args([
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            target,
            "--",
            &max_time,
            "-rss_limit_mb=1024",
            "-timeout=10",
        ]))?;
    }
    Ok(())
}
