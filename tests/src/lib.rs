//! Shared harness for system tests: starts real `sluice` processes on free 127.0.0.1
//! ports with throwaway data dirs, and a minimal raw Kafka client for sending exact
//! (even malformed) requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod kafka;
pub mod raw;
pub mod recorder;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `sluice` binary built in the same profile as this test.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/sluice
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("sluice");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --release -p sluice-broker`, which `cargo xtask ci` does)",
        bin.display()
    );
    bin
}

/// A running broker process. Killed (SIGKILL) on drop if still running.
pub struct Sluice {
    pub child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Sluice {
    /// Starts a node with a fresh temporary data dir.
    pub fn start(extra: &[&str]) -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Sluice::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a node on an existing data dir (restart tests).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Sluice {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(dir, &extra, "127.0.0.1:0");
        Sluice {
            child: Some(child),
            addr,
            data_dir: dir.to_path_buf(),
            extra,
            _tmp: None,
        }
    }

    /// Stops with SIGTERM and waits for a clean exit (asserting exit status 0).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let status = wait_timeout(&mut child, Duration::from_secs(20));
            assert!(
                status.is_some_and(|s| s.success()),
                "sluice did not exit cleanly on SIGTERM: {status:?}"
            );
        }
    }

    /// SIGKILL: no flush, no checkpoints, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data dir and the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        let (child, addr) = spawn(&self.data_dir, &self.extra, &self.addr);
        self.child = Some(child);
        self.addr = addr;
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `done` every 20 ms until it holds, panicking with `what` once `timeout` passed.
/// Returns how long it took.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns sluice and waits for its "sluice listening" log line to learn the bound port.
fn spawn(dir: &Path, extra: &[String], listen: &str) -> (Child, String) {
    // With named listeners the test gives every address itself (`--listen` conflicts);
    // the first listener is the one `addr` reports.
    let listen_args: Vec<&str> = if extra.iter().any(|a| a == "--listeners") {
        Vec::new()
    } else {
        vec!["--listen", listen]
    };
    let mut child = Command::new(sluice_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(&listen_args)
        .args(extra)
        .env(
            "SLUICE_LOG_LEVEL",
            std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sluice");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(t) = tx.as_ref() {
                if line.contains("sluice listening") {
                    if let Some(addr) = line
                        .split("listen=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                    {
                        let _ = t.send(addr.to_string());
                        tx = None;
                    }
                }
            }
            // Keep echoing so failures show the broker's log in the test output.
            eprintln!("[sluice] {line}");
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!("sluice did not report its listening address within 30 s");
        }
    }
}
