//! The secured compose variant (`deploy/docker-compose.secure.yml` over the base file):
//! `cargo xtask compose up --secure` and `compose smoke --secure`. A test PKI from
//! `gen-certs` goes to `target/compose-pki` (mounted read-only into the containers),
//! the admin's password is fixed for the smoke test, and kcat (Debian's librdkafka
//! build, installed as the compat step does) is the client on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::compose::{http_get, Compose, BOOTSTRAP, SERVICES};
use crate::util::{cargo, have, output, run};

/// The admin password the secured cluster is brought up with by xtask.
pub const ADMIN_PASSWORD: &str = "admin-secret";
const TOPIC: &str = "secure-smoke";
const RECORDS: usize = 500;

/// Writes a fresh test PKI to `target/compose-pki`, readable by the containers' user.
fn pki(root: &Path) -> Result<PathBuf> {
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "sluice-system-tests",
        "--bin",
        "gen-certs",
    ]))?;
    let dir = root.join("target/compose-pki");
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new(root.join("target/release/gen-certs")).arg(&dir))?;
    // The image runs as an unprivileged user that does not own these files; they
    // are a throwaway test PKI, so making the keys world-readable is acceptable.
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&dir))?;
    Ok(dir)
}

/// The compose tool over the base file and the secure override, with the PKI made.
pub fn compose(root: &Path) -> Result<Compose> {
    let pki = pki(root)?;
    Ok(Compose::detect(root)?
        .with_override(root.join("deploy/docker-compose.secure.yml"))
        .with_env("SLUICE_PKI_DIR", &pki.display().to_string())
        .with_env("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD))
}

/// How to connect, printed after `compose up --secure`.
pub fn describe(root: &Path) {
    let ca = root.join("target/compose-pki/ca.pem");
    eprintln!(
        "xtask compose: three secured nodes healthy; bootstrap {BOOTSTRAP} with \
         security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 sasl.username=admin \
         sasl.password={ADMIN_PASSWORD} ssl.ca.location={}",
        ca.display()
    );
}

/// kcat's settings for `user`/`password` over SASL_SSL.
fn kcat_args(root: &Path, password: &str) -> Vec<String> {
    let ca = root.join("target/compose-pki/ca.pem");
    [
        "-b".to_string(),
        BOOTSTRAP.to_string(),
        "-X".into(),
        "security.protocol=SASL_SSL".into(),
        "-X".into(),
        "sasl.mechanisms=SCRAM-SHA-512".into(),
        "-X".into(),
        "sasl.username=admin".into(),
        "-X".into(),
        format!("sasl.password={password}"),
        "-X".into(),
        format!("ssl.ca.location={}", ca.display()),
    ]
    .into()
}

/// The secured smoke test: the cluster comes up healthy (brokers replicate and the
/// quorum runs over mutual TLS), the admin produces and consumes over SASL_SSL with
/// SCRAM-SHA-512, the topic's replicas all stay in sync, and a wrong password or a
/// plaintext client gets nothing.
pub fn smoke(root: &Path) -> Result<()> {
    let started = Instant::now();
    crate::docker::build_image(root)?;
    crate::compat::ensure_apt(&["kcat"], || have("kcat"))?;
    let compose = compose(root)?;
    compose.up_fresh()?;
    let result = steps(root, &compose);
    if result.is_err() {
        let _ = run(&mut compose.command(&["logs", "--tail", "60"]));
    }
    let down = compose.down();
    result?;
    down?;
    eprintln!(
        "xtask compose smoke --secure: passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn steps(root: &Path, compose: &Compose) -> Result<()> {
    compose.wait_healthy(&SERVICES, Duration::from_secs(90))?;
    eprintln!("xtask compose smoke --secure: 3 nodes healthy (inter-broker SSL, controller mTLS)");
    let args = kcat_args(root, ADMIN_PASSWORD);
    let lines: String = (0..RECORDS).map(|i| format!("secure-{i}\n")).collect();
    let mut produce = Command::new("kcat");
    produce
        .args(&args)
        .args(["-q", "-P", "-t", TOPIC, "-X", "acks=all"]);
    crate::util::run_with_stdin(&mut produce, lines.as_bytes())
        .context("kcat produce over SASL_SSL")?;
    let consumed = output(Command::new("kcat").args(&args).args([
        "-q",
        "-C",
        "-t",
        TOPIC,
        "-o",
        "beginning",
        "-e",
    ]))?;
    let got = consumed
        .lines()
        .filter(|l| l.starts_with("secure-"))
        .count();
    if got != RECORDS {
        bail!("consumed {got} of {RECORDS} records over SASL_SSL");
    }
    eprintln!("xtask compose smoke --secure: {RECORDS} records produced (acks=all) and consumed over SASL_SSL");
    // Every replica of the topic caught up over the SSL inter-broker listener.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut under = 0i64;
        for port in [19644, 29644, 39644] {
            let page = http_get("127.0.0.1", port, "/metrics")?;
            under += page
                .lines()
                .filter(|l| l.starts_with("sluice_under_replicated_partitions "))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
                .sum::<i64>();
        }
        if under == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{under} partitions still under-replicated");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // A wrong password and a plaintext client are both turned away.
    let bad = kcat_args(root, "wrong-password");
    let refused = |args: &[String]| {
        Command::new("timeout")
            .arg("20")
            .arg("kcat")
            .args(args)
            .args(["-L", "-m", "5"])
            .output()
            .map(|o| !o.status.success())
    };
    if !refused(&bad)? {
        bail!("kcat -L with a wrong password succeeded");
    }
    let plain = ["-b".to_string(), BOOTSTRAP.to_string()];
    if !refused(&plain)? {
        bail!("a PLAINTEXT client listed the secured cluster's metadata");
    }
    eprintln!("xtask compose smoke --secure: wrong password and plaintext clients refused");
    Ok(())
}
