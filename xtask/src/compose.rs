//! The three-node compose cluster of `deploy/docker-compose.yml` as xtask drives it:
//! which compose tool this machine has (the `docker compose` plugin, else Debian's
//! `docker-compose` 1.x), bringing the project up and down, and waiting for the
//! containers' healthchecks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{output, run};

/// The project name every xtask compose command uses, so containers are
/// `sluice[-_]sluice-N[-_]1` and volumes `sluice_sluice-N-data`.
pub const PROJECT: &str = "sluice";
/// The compose services, in node id order.
pub const SERVICES: [&str; 3] = ["sluice-1", "sluice-2", "sluice-3"];
/// The Kafka bootstrap list for clients on the host.
pub const BOOTSTRAP: &str = "localhost:19092,localhost:29092,localhost:39092";

/// A compose tool bound to the deploy file and the project name.
#[derive(Debug, Clone)]
pub struct Compose {
    /// `["docker", "compose"]` or `["docker-compose"]`.
    tool: Vec<String>,
    file: PathBuf,
    /// Override files layered over `file` (`-f` each, in order).
    overrides: Vec<PathBuf>,
    /// Extra environment for the compose command (its `${VAR:-default}` settings).
    env: Vec<(String, String)>,
}

impl Compose {
    /// Detects the tool: the plugin if `docker compose version` works, else
    /// `docker-compose`.
    pub fn detect(root: &Path) -> Result<Compose> {
        let works = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let tool: Vec<String> = if works(&["docker", "compose"]) {
            vec!["docker".into(), "compose".into()]
        } else if works(&["docker-compose"]) {
            vec!["docker-compose".into()]
        } else {
            bail!("neither `docker compose` nor `docker-compose` works on this machine");
        };
        eprintln!("xtask compose: using `{}`", tool.join(" "));
        Ok(Compose {
            tool,
            file: root.join("deploy/docker-compose.yml"),
            overrides: Vec::new(),
            env: Vec::new(),
        })
    }

    /// Sets a variable the compose file reads (`${NAME:-default}`).
    pub fn with_env(mut self, name: &str, value: &str) -> Compose {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Layers an override file over the deploy file.
    pub fn with_override(mut self, file: PathBuf) -> Compose {
        self.overrides.push(file);
        self
    }

    /// The compose command with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.tool[0]);
        c.args(&self.tool[1..])
            .arg("-p")
            .arg(PROJECT)
            .arg("-f")
            .arg(&self.file);
        for o in &self.overrides {
            c.arg("-f").arg(o);
        }
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts the cluster from scratch (volumes of an earlier run removed first).
    pub fn up_fresh(&self) -> Result<()> {
        self.down()?;
        run(&mut self.command(&["up", "-d"]))
    }

    /// Stops and removes the containers, networks and volumes.
    pub fn down(&self) -> Result<()> {
        run(&mut self.command(&["down", "-v", "--remove-orphans", "-t", "30"]))
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> Result<String> {
        let id = output(&mut self.command(&["ps", "-q", service]))?;
        let id = id.trim();
        if id.is_empty() {
            bail!("no container for service {service}");
        }
        Ok(id.to_string())
    }

    /// Waits until every service in `services` reports healthy (its `sluice
    /// healthcheck`: joined, unfenced, in sync).
    pub fn wait_healthy(&self, services: &[&str], limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut pending = Vec::new();
            for s in services {
                let status = self
                    .container(s)
                    .and_then(|id| health(&id))
                    .unwrap_or_else(|e| format!("unknown ({e})"));
                if status != "healthy" {
                    pending.push(format!("{s}: {status}"));
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = run(&mut self.command(&["logs", "--tail", "40"]));
                bail!("not healthy within {limit:?}: {}", pending.join(", "));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The Docker name of compose network `name` of the project (both compose tools
    /// name it `<project>_<name>`).
    pub fn network(&self, name: &str) -> String {
        format!("{PROJECT}_{name}")
    }

    /// Writes every container's whole log, timestamped (to line up with a driver's
    /// own timestamps), to `path`.
    pub fn save_logs(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
        run(self
            .command(&["logs", "--no-color", "--timestamps"])
            .stdout(file))
    }
}

/// A container's health status as Docker last saw it (`healthy`, `starting`, ...).
pub fn health(container: &str) -> Result<String> {
    let out = output(Command::new("docker").args([
        "inspect",
        "--format",
        "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
        container,
    ]))
    .with_context(|| format!("docker inspect {container}"))?;
    Ok(out.trim().to_string())
}

/// `cargo xtask compose up|down|smoke`.
pub fn run_compose(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") if args.get(1).is_some_and(|a| a == "--secure") => {
            crate::docker::build_image(root)?;
            let compose = crate::compose_secure::compose(root)?;
            compose.up_fresh()?;
            compose.wait_healthy(&SERVICES, Duration::from_secs(90))?;
            crate::compose_secure::describe(root);
            Ok(())
        }
        Some("smoke") if args.get(1).is_some_and(|a| a == "--secure") => {
            crate::compose_secure::smoke(root)
        }
        Some("up") => {
            crate::docker::build_image(root)?;
            let compose = Compose::detect(root)?;
            compose.up_fresh()?;
            compose.wait_healthy(&SERVICES, Duration::from_secs(90))?;
            eprintln!("xtask compose: three nodes healthy; bootstrap {BOOTSTRAP}");
            Ok(())
        }
        Some("down") => Compose::detect(root)?.down(),
        Some("smoke") => smoke(root),
        _ => bail!("usage: cargo xtask compose up|down|smoke [--secure]"),
    }
}

/// The compose smoke test: what the README tells a newcomer to do, checked. Brings
/// the cluster up from a freshly built image, produces and consumes from the host,
/// kills a container and carries on, restarts it and waits until it is back in sync,
/// checks that committed offsets held and that `/metrics` reports the consumer lag,
/// then takes the cluster down (also when a step failed).
pub fn smoke(root: &Path) -> Result<()> {
    let started = Instant::now();
    crate::docker::build_image(root)?;
    crate::util::run(crate::util::cargo(root).args([
        "build",
        "--release",
        "-p",
        "sluice-system-tests",
        "--bin",
        "compose-smoke",
    ]))?;
    let compose = Compose::detect(root)?;
    compose.up_fresh()?;
    let result = smoke_steps(root, &compose);
    if result.is_err() {
        let _ = run(&mut compose.command(&["logs", "--tail", "60"]));
    }
    let down = compose.down();
    result?;
    down?;
    eprintln!(
        "xtask compose smoke: passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn smoke_steps(root: &Path, compose: &Compose) -> Result<()> {
    let t = Instant::now();
    compose.wait_healthy(&SERVICES, Duration::from_secs(90))?;
    eprintln!(
        "xtask compose smoke: 3 nodes healthy after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let client = root.join("target/release/compose-smoke");
    let round = |run_name: &str, count: &str, group: &str, expect: &str| {
        run(Command::new(&client).args([
            "--bootstrap",
            BOOTSTRAP,
            "--topic",
            "smoke",
            "--run",
            run_name,
            "--count",
            count,
            "--group",
            group,
            "--expect",
            expect,
        ]))
    };
    round("a", "1000", "smoke-a", "1000")?;
    let victim = compose.container("sluice-2")?;
    run(Command::new("docker").args(["kill", &victim]))?;
    eprintln!("xtask compose smoke: killed sluice-2; the other two carry on");
    round("b", "1000", "smoke-b", "2000")?;
    run(Command::new("docker").args(["start", &victim]))?;
    let t = Instant::now();
    compose.wait_healthy(&SERVICES, Duration::from_secs(90))?;
    eprintln!(
        "xtask compose smoke: sluice-2 back and in sync after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Group smoke-a resumes from its committed offsets: only what came after.
    round("c", "100", "smoke-a", "1100")?;
    // smoke-b committed 2000 before run c's 100: its lag is 100, smoke-a's 0.
    check_lag(&[("smoke-a", 0, 2100), ("smoke-b", 100, 2000)])
}

/// Sums each group's `sluice_consumer_group_lag` and committed offsets over the three
/// nodes' `/metrics` (a group's coordinator alone reports it) and compares, retrying
/// for a few seconds while the followers' high watermarks catch up.
fn check_lag(want: &[(&str, i64, i64)]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut pages = Vec::new();
        for port in [19644, 29644, 39644] {
            pages.push(http_get("127.0.0.1", port, "/metrics")?);
        }
        let sum = |metric: &str, group: &str| -> i64 {
            let prefix = format!("{metric}{{group=\"{group}\"");
            pages
                .iter()
                .flat_map(|p| p.lines())
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
                .sum()
        };
        let got: Vec<(i64, i64)> = want
            .iter()
            .map(|(g, _, _)| {
                (
                    sum("sluice_consumer_group_lag", g),
                    sum("sluice_consumer_group_committed_offset", g),
                )
            })
            .collect();
        let ok = want
            .iter()
            .zip(&got)
            .all(|((_, lag, committed), (l, c))| l == lag && c == committed);
        if ok {
            eprintln!(
                "xtask compose smoke: /metrics lag and committed offsets as expected: {want:?}"
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("/metrics: want (group, lag, committed) {want:?}, got (lag, committed) {got:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One plain HTTP/1.1 GET; the body of a 200 answer.
pub fn http_get(host: &str, port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port))
        .with_context(|| format!("connecting to {host}:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {host}:{port}{path}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_string())
}
