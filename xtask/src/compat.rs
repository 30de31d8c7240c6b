//! `cargo xtask compat [SUITE...]`: third-party clients against a real broker.
//!
//! Sets up everything it needs on a bare Debian machine: a Python venv at
//! `target/compat-venv` with the pinned clients of `tests/compat/requirements.txt`
//! (reused while it imports them and the pins are unchanged), `kcat` from apt, and for
//! the sarama suite Debian's Go toolchain and Sarama sources (`golang-go`,
//! `golang-github-shopify-sarama-dev`), with which it builds `tests/compat/go/` offline
//! (GOPATH mode against `/usr/share/gocode`) into `target/compat-go/sarama-compat`.
//! Then, for each suite (confluent-kafka, kafka-python, kcat, sarama, security), it starts a
//! fresh `target/release/sluice` on a free loopback port with an empty data dir and
//! group settings that keep rebalances quick, runs the suite's scripts from
//! `tests/compat/` against it (the client's basics, then its consumer-group
//! scenarios), and stops the broker. Scripts print `PASS name` / `FAIL name: reason`
//! per scenario; this command echoes them prefixed by suite, adds them up and fails if
//! any failed.
//!
//! The security suite's broker is locked down (TLS, SASL, ACLs; see `security_flags`)
//! with certificates from `gen-certs`, and its scripts get the other listeners and the
//! PKI directory in `SLUICE_SEC_*` variables.
//!
//! `cargo xtask compat kcat` (or any list of suite names) runs a subset. The data and
//! log of a failed suite stay in `target/compat/<suite>/` for a post-mortem, and the
//! log's tail is printed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{self, cargo, describe, have, output};

/// (suite name, scripts in tests/compat/ run in turn against one broker).
const SUITES: &[(&str, &[&str])] = &[
    (
        "confluent-kafka",
        &[
            "confluent_kafka_scenarios.py",
            "confluent_kafka_groups.py",
            "confluent_kafka_transactions.py",
        ],
    ),
    (
        "kafka-python",
        &[
            "kafka_python_scenarios.py",
            "kafka_python_groups.py",
            "kafka_python_transactions.py",
        ],
    ),
    ("kcat", &["kcat_scenarios.py", "kcat_groups.py"]),
    ("sarama", &["sarama_scenarios.py"]),
    ("security", &["security_scenarios.py"]),
];

/// The security suite's broker: SASL_SSL (first, the bootstrap) and SSL listeners
/// advertised as `localhost` (the name the test certificate carries), client
/// certificates requested, SCRAM with a bootstrapped super user, the ACL authorizer,
/// and sessions that expire every 3 s so the scenarios see re-authentication.
fn security_flags(pki: &Path) -> Vec<String> {
    let file = |name: &str| pki.join(name).display().to_string();
    let broker = "User:CN=sluice-broker,O=Sluice Test";
    [
        "--listeners",
        "SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
        "--advertised-listeners",
        "SASL_SSL://localhost:0,SSL://localhost:0",
        "--inter-broker-listener",
        "SSL",
        "--ssl-certificate-location",
        &file("server.pem"),
        "--ssl-key-location",
        &file("server-key.pem"),
        "--ssl-truststore-location",
        &file("ca.pem"),
        "--ssl-client-auth",
        "requested",
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-256,SCRAM-SHA-512",
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=admin-secret]",
        "--add-scram",
        "SCRAM-SHA-256=[name=admin,password=admin-secret]",
        "--authorizer",
        "standard",
        "--super-users",
        &format!("User:admin;{broker}"),
        "--connections-max-reauth-ms",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Broker flags of every suite: a group's first join completes at once (Kafka waits
/// 3 s for more members), consumers may use short sessions, and the coordinator logs
/// its rebalances (with the request's api key and version) for a failed suite's log.
const BROKER_FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "0",
    "--group-min-session-timeout-ms",
    "1000",
    "--log-level",
    "info,sluice_group=debug",
];

/// Debian packages of the sarama suite: the Go toolchain and Sarama's sources (with
/// its dependencies) under /usr/share/gocode.
const GO_PACKAGES: &[&str] = &["golang-go", "golang-github-shopify-sarama-dev"];
const GOPATH: &str = "/usr/share/gocode";
const SARAMA_PACKAGE: &str = "golang-github-shopify-sarama-dev";

/// Lines of the broker log shown when a suite fails.
const LOG_TAIL_LINES: usize = 60;

/// Python modules the scripts import; the venv counts as healthy when all load.
const IMPORT_CHECK: &str = "import confluent_kafka, kafka, snappy, lz4.frame, zstandard";

/// Upper bound on one script of a suite. Each scenario is also bounded (harness.py),
/// this only catches a script wedged outside a scenario.
const SCRIPT_TIMEOUT_SECS: u32 = 300;

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let started = Instant::now();
    for a in args {
        if !SUITES.iter().any(|(name, _)| name == a) {
            let names: Vec<_> = SUITES.iter().map(|(n, _)| *n).collect();
            bail!("unknown compat suite `{a}` (suites: {})", names.join(", "));
        }
    }
    let selected: Vec<_> = SUITES
        .iter()
        // The security suite is opt-in (`cargo xtask compat security`) until all of its
        // scenarios pass; see issue 8's notes.
        .filter(|(name, _)| {
            (args.is_empty() && *name != "security") || args.iter().any(|a| a == name)
        })
        .collect();

    let python = ensure_venv(root)?;
    ensure_apt(&["kcat"], || have("kcat"))?;
    let sarama = if selected.iter().any(|(name, _)| *name == "sarama") {
        ensure_apt(GO_PACKAGES, go_ready)?;
        Some(build_sarama(root)?)
    } else {
        None
    };
    let versions = output(Command::new(&python).args([
        "-c",
        "import confluent_kafka as ck; from importlib.metadata import version as v; \
         print(f'confluent-kafka {v(\"confluent-kafka\")} (librdkafka {ck.libversion()[0]}), \
         kafka-python {v(\"kafka-python\")}')",
    ]))?;
    let kcat_version = output(Command::new("kcat").arg("-V"))?;
    let kcat_version = kcat_version
        .lines()
        .find(|l| l.starts_with("Version"))
        .unwrap_or("?");
    eprintln!("compat: {}; kcat {}", versions.trim(), kcat_version.trim());
    if sarama.is_some() {
        let go = output(Command::new("go").arg("version"))?;
        let sarama_version =
            output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", SARAMA_PACKAGE]))?;
        eprintln!(
            "compat: Sarama {} (Debian {SARAMA_PACKAGE}), {}",
            sarama_version.trim(),
            go.trim()
        );
    }

    util::run(cargo(root).args(["build", "--release", "-p", "sluice-broker"]))?;
    if selected.iter().any(|(name, _)| *name == "security") {
        util::run(cargo(root).args([
            "build",
            "--release",
            "-p",
            "sluice-system-tests",
            "--bin",
            "gen-certs",
        ]))?;
    }
    let sluice = root.join("target/release/sluice");

    let (mut passed, mut failed) = (0, 0);
    for (suite, scripts) in selected {
        let work = root.join("target/compat").join(suite);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        let mut env: Vec<(String, String)> = Vec::new();
        let flags = if *suite == "security" {
            let pki = work.join("pki");
            util::run(Command::new(root.join("target/release/gen-certs")).arg(&pki))
                .context("generating the test PKI")?;
            env.push(("SLUICE_SEC_PKI".into(), pki.display().to_string()));
            security_flags(&pki)
        } else {
            Vec::new()
        };
        let mut broker = Broker::start(&sluice, &work, &flags)
            .with_context(|| format!("starting the broker for {suite}"))?;
        if *suite == "security" {
            let ports = listener_ports(&broker.line);
            let port = |name: &str| {
                ports
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| *p)
                    .with_context(|| format!("no {name} listener in: {}", broker.line))
            };
            let (sasl_ssl, ssl) = (port("SASL_SSL")?, port("SSL")?);
            // Clients bootstrap by the certificate's name; the IP is for the hostname check.
            broker.addr = format!("localhost:{sasl_ssl}");
            env.push(("SLUICE_SEC_SSL".into(), format!("localhost:{ssl}")));
            env.push((
                "SLUICE_SEC_BOOTSTRAP_IP".into(),
                format!("127.0.0.1:{sasl_ssl}"),
            ));
            let http = broker
                .line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("http="))
                .context("no http= in the listening line")?;
            env.push(("SLUICE_SEC_HTTP".into(), http.to_string()));
        }
        eprintln!(
            "compat: {suite}: broker at {} (log {})",
            broker.addr,
            broker.log.display()
        );
        let mut suite_failed = 0;
        for script in scripts.iter() {
            let (p, f) = run_script(
                &python,
                &root.join("tests/compat").join(script),
                &broker,
                suite,
                sarama.as_deref(),
                &env,
            )?;
            passed += p;
            suite_failed += f;
        }
        failed += suite_failed;
        drop(broker);
        if suite_failed == 0 {
            // Keep the data and log of a failed suite for a post-mortem; clean up otherwise.
            let _ = fs::remove_dir_all(&work);
        } else {
            print_log_tail(suite, &work.join("broker.log"));
        }
    }
    eprintln!("compat: took {:.0}s", started.elapsed().as_secs_f64());
    println!("compat: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} compatibility scenario(s) failed");
    }
    Ok(())
}

/// Returns the venv's python with the clients of `tests/compat/requirements.txt`.
fn ensure_venv(root: &Path) -> Result<PathBuf> {
    util::ensure_venv(&util::Venv {
        label: "compat",
        dir: root.join("target/compat-venv"),
        requirements: root.join("tests/compat/requirements.txt"),
        import_check: IMPORT_CHECK,
    })
}

/// Installs Debian packages with apt unless `present` says they are there already (we
/// run as root on the project's machines).
pub fn ensure_apt(packages: &[&str], present: fn() -> bool) -> Result<()> {
    if present() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !have("apt-get") {
        bail!("{list} not installed and apt-get is not available: install them by hand");
    }
    let install = || {
        util::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    // A fresh machine may have no package lists yet; only then is `apt-get update` needed.
    if install().is_err() {
        util::run(Command::new("apt-get").args(["update", "-q"]))?;
        install().with_context(|| format!("installing {list} with apt-get"))?;
    }
    if !present() {
        bail!("apt-get installed {list} but they are still not usable");
    }
    Ok(())
}

/// `go` runs and Debian's Sarama sources are in the GOPATH it builds against.
fn go_ready() -> bool {
    let go = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    go && Path::new(GOPATH)
        .join("src/github.com/Shopify/sarama")
        .is_dir()
}

/// Builds `tests/compat/go/` into `target/compat-go/sarama-compat` and returns its path.
/// GOPATH mode against Debian's packaged sources: no module download, no network;
/// the build cache lives under target/ too. Incremental, so a rebuild is quick.
fn build_sarama(root: &Path) -> Result<PathBuf> {
    let out_dir = root.join("target/compat-go");
    fs::create_dir_all(&out_dir)?;
    let bin = out_dir.join("sarama-compat");
    util::run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(root.join("tests/compat/go"))
            .env("GOPATH", GOPATH)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", out_dir.join("cache"))
            .env("CGO_ENABLED", "1")
            // DataDog/zstd (Sarama's zstd codec, cgo) calls a deprecated libzstd function.
            .env("CGO_CFLAGS", "-g -O2 -Wno-deprecated-declarations"),
    )
    .context("building the Sarama driver in tests/compat/go")?;
    Ok(bin)
}

/// A `sluice` process with its own data dir, killed when dropped (also on errors).
struct Broker {
    child: Child,
    addr: String,
    /// The `sluice listening` log line (every listener's address, the HTTP endpoint).
    line: String,
    log: PathBuf,
    data_dir: PathBuf,
}

impl Broker {
    fn start(bin: &Path, work: &Path, extra: &[String]) -> Result<Broker> {
        let log = work.join("broker.log");
        let out = fs::File::create(&log)?;
        // Port 0: the OS picks a free port, which the broker reports once it listens.
        let data_dir = work.join("data");
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(if extra.iter().any(|a| a == "--listeners") {
                &["--http-listen", "127.0.0.1:0"][..]
            } else {
                &["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"][..]
            })
            .args(BROKER_FLAGS)
            .args(extra)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut broker = Broker {
            child,
            addr: String::new(),
            line: String::new(),
            log,
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&broker.log).unwrap_or_default();
            if let Some(addr) = listen_addr(&text) {
                broker.addr = addr;
                broker.line = text
                    .lines()
                    .find(|l| l.contains("sluice listening"))
                    .unwrap_or_default()
                    .to_string();
                return Ok(broker);
            }
            if let Some(status) = broker.child.try_wait()? {
                bail!("broker exited with {status} before listening:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("broker did not log `sluice listening` within 20s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the broker's `sluice listening listen=HOST:PORT ...` log line.
fn listen_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("sluice listening"))?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))?;
    Some(addr.to_string())
}

/// (listener name, bound port) of each listener in the `sluice listening` line's
/// `listeners=NAME=HOST:PORT (advertised HOST:PORT), ...` field.
fn listener_ports(line: &str) -> Vec<(String, u16)> {
    let Some(rest) = line.split("listeners=").nth(1) else {
        return Vec::new();
    };
    let rest = rest.split(" data_dir=").next().unwrap_or(rest);
    rest.split(", ")
        .filter_map(|item| {
            let (name, addr) = item.split_once('=')?;
            let bound = addr.split_whitespace().next()?;
            let port = bound.rsplit_once(':')?.1.parse().ok()?;
            Some((name.to_string(), port))
        })
        .collect()
}

/// Prints the last lines of a failed suite's broker log (stdout and stderr).
fn print_log_tail(suite: &str, log: &Path) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    eprintln!(
        "compat: {suite} failed; last {} lines of {}:",
        tail.len(),
        log.display()
    );
    for line in tail {
        eprintln!("[{suite} broker] {line}");
    }
}

/// Runs one script of a suite, echoing its lines; returns (passed, failed) scenarios.
fn run_script(
    python: &Path,
    script: &Path,
    broker: &Broker,
    suite: &str,
    sarama: Option<&Path>,
    env: &[(String, String)],
) -> Result<(usize, usize)> {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", &SCRIPT_TIMEOUT_SECS.to_string()])
        .arg(python)
        .arg(script)
        .arg(&broker.addr)
        // Scripts read the stored batches to see which codec a client really used.
        .env("SLUICE_COMPAT_DATA_DIR", &broker.data_dir)
        .current_dir(script.parent().context("script has no directory")?)
        .stdout(Stdio::piped());
    if let Some(bin) = sarama {
        cmd.env("SLUICE_COMPAT_SARAMA", bin);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().context("no stdout pipe")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("[{suite}] {line}");
        if line.starts_with("PASS ") {
            passed += 1;
        } else if line.starts_with("FAIL ") {
            failed += 1;
        }
    }
    let status = child.wait()?;
    // A script that dies outside a scenario (import error, timeout) still counts.
    if !status.success() && failed == 0 {
        let name = script.file_name().unwrap_or_default().to_string_lossy();
        println!("[{suite}] FAIL {name}: script exited with {status} (124 = timed out)");
        failed += 1;
    }
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::{listen_addr, listener_ports};

    #[test]
    fn finds_listener_ports() {
        let line = "INFO sluice listening listen=127.0.0.1:1 advertised=localhost:1 listeners=SASL_SSL=127.0.0.1:41234 (advertised localhost:41234), SSL=127.0.0.1:41235 (advertised localhost:41235) data_dir=/x http=127.0.0.1:9 node_id=1";
        assert_eq!(
            listener_ports(line),
            vec![("SASL_SSL".to_string(), 41234), ("SSL".to_string(), 41235)]
        );
    }

    #[test]
    fn finds_listen_address() {
        let log = "2026-11-22T02:56:20Z  INFO sluice listening listen=127.0.0.1:39535 advertised=127.0.0.1:39535 node_id=1";
        assert_eq!(listen_addr(log).as_deref(), Some("127.0.0.1:39535"));
        assert_eq!(listen_addr("INFO starting"), None);
    }
}
