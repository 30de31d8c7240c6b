//! `cargo xtask k8s-check`: the Kubernetes manifests of `deploy/k8s/`, checked without
//! a Kubernetes cluster.
//!
//! 1. A venv at `target/k8s-venv` with the pins of `tests/deploy/requirements.txt`
//!    (kubernetes-validate, which bundles Kubernetes' JSON schemas, and PyYAML), reused
//!    while the pins are unchanged.
//! 2. `tests/deploy/k8s_check.py`: strict, offline schema validation against Kubernetes
//!    [`KUBERNETES_VERSION`], then consistency checks against the binary (the image's
//!    `sluice --help`, the probe paths of `crates/broker/src/http.rs`) and between the
//!    resources. It also computes the environment the StatefulSet gives pod `sluice-1`
//!    in namespace `default` (downward API, then `$(VAR)` expansion in order, as the
//!    kubelet does) and the node id and voters that pod must end up with.
//! 3. The image runs with exactly that environment, host name `sluice-1` and the
//!    manifest's security context (user, fsGroup, read-only root, no capabilities, no
//!    privilege escalation), a tmpfs for the data volume and the HTTP port published on
//!    an ephemeral loopback port. Its `starting node` log line must show node 2 and the
//!    three voters; `/health/live` must answer 200, `/health/ready` 503 (no peer can be
//!    reached), `/metrics` the node's `sluice_node_info`; and the node must still be
//!    running (retrying its peers) when the checks end. The container is always removed.
//!
//! The image `sluice:latest` is built by `cargo xtask docker` if it is missing.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::docker;
use crate::util::{self, describe, output};

/// The Kubernetes version whose schemas the manifests must satisfy: the oldest minor
/// the Kubernetes project still supports (1.35, 1.36, 1.37 as of late 2026).
const KUBERNETES_VERSION: &str = "1.35.0";
/// Modules the check script imports; the venv counts as healthy when they load.
const IMPORT_CHECK: &str = "import kubernetes_validate, yaml, jsonschema";
/// Upper bound on every wait for the container.
const WAIT: Duration = Duration::from_secs(30);
/// The node must still run this long after it started: a node whose peers do not
/// resolve yet keeps retrying rather than exiting.
const MIN_UPTIME: Duration = Duration::from_secs(5);
/// One HTTP exchange with the node.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the container log shown when the run check fails.
const LOG_TAIL_LINES: usize = 40;

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("k8s-check: unexpected argument `{a}` (usage: cargo xtask k8s-check)");
    }
    let started = Instant::now();
    let python = util::ensure_venv(&util::Venv {
        label: "k8s",
        dir: root.join("target/k8s-venv"),
        requirements: root.join("tests/deploy/requirements.txt"),
        import_check: IMPORT_CHECK,
    })?;
    let work = root.join("target/k8s-check");
    fs::create_dir_all(&work)?;

    let image = docker::IMAGE;
    if !docker_ok(&["image", "inspect", image]) {
        eprintln!("k8s-check: image {image} not found, building it");
        docker::build_image(root)?;
    }
    let image_id = docker_out(&["image", "inspect", "--format", "{{.Id}}", image])?;
    let image_user = docker_out(&["image", "inspect", "--format", "{{.Config.User}}", image])?;
    let help = output(Command::new("docker").args(["run", "--rm", image, "--help"]))
        .context("running `sluice --help` in the image")?;
    let help_file = work.join("sluice-help.txt");
    fs::write(&help_file, &help)?;

    // Static checks; they also write the run spec of pod sluice-1.
    let pod_json = work.join("pod-sluice-1.json");
    let _ = fs::remove_file(&pod_json);
    let script = root.join("tests/deploy/k8s_check.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--manifests")
        .arg(root.join("deploy/k8s"))
        .arg("--help-text")
        .arg(&help_file)
        .arg("--http-rs")
        .arg(root.join("crates/broker/src/http.rs"))
        .args(["--kubernetes-version", KUBERNETES_VERSION])
        .args(["--image", image])
        .args(["--image-user", &image_user])
        .args(["--pod-ordinal", "1", "--namespace", "default"])
        .arg("--pod-json")
        .arg(&pod_json);
    eprintln!("xtask: $ {}", describe(&cmd));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    let report = String::from_utf8_lossy(&out.stdout);
    for line in report.lines() {
        println!("k8s-check: {line}");
    }
    let static_summary = report.lines().last().unwrap_or("no summary").to_string();
    if !out.status.success() {
        bail!("k8s-check: static checks failed ({static_summary})");
    }
    let spec: Value = serde_json::from_str(
        &fs::read_to_string(&pod_json).with_context(|| pod_json.display().to_string())?,
    )
    .context("parsing the pod run spec")?;
    let pod = PodSpec::from_json(&spec)?;

    let run_started = Instant::now();
    let results = run_pod(&pod, &image_id)?;
    for r in &results {
        println!("k8s-check: PASS run: {r}");
    }
    println!(
        "k8s-check: static: {static_summary}; run of pod {} ({} {}): {} passed in {:.1}s",
        pod.name,
        image,
        short_id(&image_id),
        results.len(),
        run_started.elapsed().as_secs_f64()
    );
    println!(
        "k8s-check: all checks passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What k8s_check.py derived from the StatefulSet for one pod.
struct PodSpec {
    name: String,
    hostname: String,
    env: Vec<(String, String)>,
    http_port: u16,
    data_dir: String,
    user: u32,
    group: u32,
    fs_group: u32,
    node_id: u64,
    voters: Vec<(u64, String)>,
    live_path: String,
    ready_path: String,
    metrics_path: String,
}

impl PodSpec {
    fn from_json(v: &Value) -> Result<PodSpec> {
        let s = |k: &str| -> Result<String> {
            v[k].as_str()
                .map(str::to_string)
                .with_context(|| format!("pod run spec: `{k}` is not a string"))
        };
        let n = |k: &str| -> Result<u64> {
            v[k].as_u64()
                .with_context(|| format!("pod run spec: `{k}` is not a number"))
        };
        let pair = |p: &Value, what: &str| -> Result<(Value, String)> {
            let second = p[1]
                .as_str()
                .with_context(|| format!("pod run spec: bad {what} entry {p}"))?;
            Ok((p[0].clone(), second.to_string()))
        };
        let list = |k: &str| -> Result<Vec<(Value, String)>> {
            v[k].as_array()
                .with_context(|| format!("pod run spec: `{k}` is not a list"))?
                .iter()
                .map(|p| pair(p, k))
                .collect()
        };
        let env = list("env")?
            .into_iter()
            .map(|(k, val)| {
                k.as_str()
                    .map(|k| (k.to_string(), val))
                    .context("pod run spec: env name is not a string")
            })
            .collect::<Result<_>>()?;
        let voters = list("expected_voters")?
            .into_iter()
            .map(|(id, addr)| {
                id.as_u64()
                    .map(|id| (id, addr))
                    .context("pod run spec: voter id is not a number")
            })
            .collect::<Result<_>>()?;
        Ok(PodSpec {
            name: s("pod")?,
            hostname: s("hostname")?,
            env,
            http_port: u16::try_from(n("http_port")?).context("http_port")?,
            data_dir: s("data_dir")?,
            user: u32::try_from(n("user")?).context("user")?,
            group: u32::try_from(n("group")?).context("group")?,
            fs_group: u32::try_from(n("fs_group")?).context("fs_group")?,
            node_id: n("expected_node_id")?,
            voters,
            live_path: s("live_path")?,
            ready_path: s("ready_path")?,
            metrics_path: s("metrics_path")?,
        })
    }
}

/// A container removed (with its anonymous volumes) when dropped, also on errors.
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let removed = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !removed && docker_ok(&["container", "inspect", &self.name]) {
            eprintln!(
                "k8s-check: could not remove container {} (docker rm -f {0})",
                self.name
            );
        }
    }
}

impl Container {
    fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s
            })
            .unwrap_or_default()
    }

    fn running(&self) -> bool {
        docker_out(&["inspect", "--format", "{{.State.Running}}", &self.name])
            .is_ok_and(|s| s == "true")
    }

    fn state(&self) -> String {
        docker_out(&[
            "inspect",
            "--format",
            "{{.State.Status}} (exit code {{.State.ExitCode}})",
            &self.name,
        ])
        .unwrap_or_else(|e| format!("unknown: {e:#}"))
    }
}

/// Runs the image as the pod would run and checks it; returns what passed.
fn run_pod(pod: &PodSpec, image_id: &str) -> Result<Vec<String>> {
    let name = format!("sluice-k8s-check-{}", std::process::id());
    let mut cmd = Command::new("docker");
    cmd.args(["run", "-d", "--name", &name, "--hostname", &pod.hostname])
        // securityContext: runAsUser/runAsGroup, fsGroup (a supplementary group),
        // readOnlyRootFilesystem, capabilities drop ALL, allowPrivilegeEscalation false.
        .args(["--user", &format!("{}:{}", pod.user, pod.group)])
        .args(["--group-add", &pod.fs_group.to_string()])
        .args(["--read-only", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"])
        // The volume claim: writable by the fsGroup, as Kubernetes makes it.
        .args([
            "--tmpfs",
            &format!(
                "{}:uid={},gid={},mode=0770",
                pod.data_dir, pod.user, pod.fs_group
            ),
        ])
        .args(["-p", &format!("127.0.0.1::{}", pod.http_port)]);
    for (k, v) in &pod.env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(image_id);
    // Guarded before it exists: `docker run` may create it and then fail to start it.
    let container = Container { name };
    let id = output(&mut cmd).context("starting the container")?;
    let started = Instant::now();
    eprintln!(
        "k8s-check: container {} ({}) runs pod {}'s environment",
        container.name,
        short_id(id.trim()),
        pod.name
    );
    let result = check_pod(pod, &container, started);
    if let Err(e) = &result {
        let logs = container.logs();
        let lines: Vec<&str> = logs.lines().collect();
        eprintln!(
            "k8s-check: FAIL run: {e:#}\nk8s-check: container {}; last {} log lines:",
            container.state(),
            LOG_TAIL_LINES.min(lines.len())
        );
        for l in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            eprintln!("  {l}");
        }
    }
    result
}

fn check_pod(pod: &PodSpec, c: &Container, started: Instant) -> Result<Vec<String>> {
    let mut passed = Vec::new();

    // The `starting node` line: node id and voters as the binary understood them.
    let line = wait_for(WAIT, "the `starting node` log line", || {
        let logs = c.logs();
        if let Some(l) = logs.lines().find(|l| l.contains("starting node")) {
            return Ok(Some(l.to_string()));
        }
        if !c.running() {
            bail!(
                "the container stopped before logging `starting node`: {}",
                c.state()
            );
        }
        Ok(None)
    })?;
    let node_id = field(&line, "node_id=")
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no node_id in: {line}"))?;
    if node_id != pod.node_id {
        bail!(
            "pod {} started as node {node_id}, want {}: {line}",
            pod.name,
            pod.node_id
        );
    }
    let voters = parse_voters(&line).with_context(|| format!("no voters map in: {line}"))?;
    if voters != pod.voters {
        bail!(
            "the node's voters are {voters:?}, want {:?}: {line}",
            pod.voters
        );
    }
    passed.push(format!(
        "log `starting node`: node_id={node_id}, voters {}",
        voters
            .iter()
            .map(|(i, a)| format!("{i}@{a}"))
            .collect::<Vec<_>>()
            .join(",")
    ));

    let port = docker_out(&["port", &c.name, &format!("{}/tcp", pod.http_port)])?;
    let addr: SocketAddr = port
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("docker port gave `{port}`"))?;

    let (status, _) = wait_for(
        WAIT,
        &format!("{} to answer", pod.live_path),
        || match http_get(addr, &pod.live_path) {
            Ok(r) => Ok(Some(r)),
            Err(_) if c.running() => Ok(None),
            Err(e) => bail!("{e:#}; container {}", c.state()),
        },
    )?;
    if status != 200 {
        bail!("{} answered {status}, want 200", pod.live_path);
    }
    passed.push(format!("{} -> 200", pod.live_path));

    let (status, body) = http_get(addr, &pod.ready_path)?;
    if status != 503 {
        bail!(
            "{} answered {status} ({}), want 503: the node cannot have reached its peers",
            pod.ready_path,
            body.trim()
        );
    }
    passed.push(format!("{} -> 503 ({})", pod.ready_path, body.trim()));

    let (status, body) = http_get(addr, &pod.metrics_path)?;
    let info = format!("sluice_node_info{{node_id=\"{}\"", pod.node_id);
    if status != 200 {
        bail!("{} answered {status}, want 200", pod.metrics_path);
    }
    let Some(info_line) = body.lines().find(|l| l.starts_with(&info)) else {
        bail!("{} has no `{info}`", pod.metrics_path);
    };
    passed.push(format!("{} -> 200, {info_line}", pod.metrics_path));

    if let Some(rest) = MIN_UPTIME.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    if !c.running() {
        bail!(
            "the node exited while its peers were unreachable: {}",
            c.state()
        );
    }
    let logs = c.logs();
    if !logs.contains("controller node started") {
        bail!("the log has no `controller node started` line");
    }
    passed.push(format!(
        "still running after {:.0}s with unresolvable peers (controller node started)",
        started.elapsed().as_secs_f64()
    ));
    Ok(passed)
}

/// Polls `probe` every 200 ms until it yields a value, for at most `limit`.
fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {}s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value after `key` in a tracing line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

/// `voters={1: "a:9093", 2: "b:9093"}` -> [(1, "a:9093"), (2, "b:9093")].
fn parse_voters(line: &str) -> Option<Vec<(u64, String)>> {
    let start = line.find("voters={")? + "voters={".len();
    let end = start + line[start..].find('}')?;
    line[start..end]
        .split(", ")
        .map(|entry| {
            let (id, addr) = entry.split_once(": ")?;
            Some((
                id.trim().parse().ok()?,
                addr.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// One HTTP/1.1 GET (the endpoint closes every connection): (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {path}: not an HTTP answer: {head}"))?;
    Ok((status, body.to_string()))
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker ARGS` with its trimmed stdout; stderr is part of the error.
fn docker_out(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("starting docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}
