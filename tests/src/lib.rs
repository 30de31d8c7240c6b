//! Shared harness for system tests: starts real `sluice` processes on free 127.0.0.1
//! ports with throwaway data dirs, and a minimal raw Kafka client for sending exact
//! (even malformed) requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod compose;
pub mod kafka;
pub mod nodes;
pub mod raw;
pub mod recorder;
pub mod secure;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
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
            sigterm(&child);
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

/// Sends SIGTERM (a graceful stop) without waiting for the exit.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// Waits up to `limit` for `child` to exit; SIGKILLs it and returns `None` if it did not.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a process wrote (stdout and stderr, one entry a line), kept for assertions.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn text(&self) -> String {
        self.text_since(0)
    }

    /// The lines from line `first` on (see [`Log::len`]), joined.
    pub fn text_since(&self, first: usize) -> String {
        let lines = self.0.lock().unwrap();
        lines.get(first..).unwrap_or_default().join("\n")
    }

    /// How many lines were written so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

/// A started `sluice` process that has not necessarily reported listening yet.
pub struct Launched {
    pub child: Child,
    listening: mpsc::Receiver<String>,
    /// The threads reading its stdout and stderr; they end at the process's exit.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Launched {
    /// Waits (until `deadline`) for the "sluice listening" line and returns the process
    /// and the address of its first listener; kills it and panics if the line does not
    /// come (or the process exits first).
    pub fn wait_listening(self, deadline: Instant, who: &str) -> (Child, String) {
        let Launched {
            mut child,
            listening,
            ..
        } = self;
        let left = deadline.saturating_duration_since(Instant::now());
        match listening.recv_timeout(left) {
            Ok(addr) => (child, addr),
            Err(e) => {
                let status = child.try_wait();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{who} did not report its listening address in time ({e}; exit: {status:?})"
                );
            }
        }
    }

    /// Waits up to `limit` for the process to exit (SIGKILLing it if it does not), then
    /// until its output has all been read.
    pub fn wait_exit(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let status = wait_timeout(&mut self.child, limit);
        for r in self.readers {
            let _ = r.join();
        }
        status
    }
}

/// Starts `sluice` on `dir` with `extra` (plus `--listen listen` unless `extra` names
/// listeners). Its stdout and stderr are echoed with `prefix` (so failures show the
/// broker's log in the test output) and appended to `log`.
pub fn launch(dir: &Path, extra: &[String], listen: &str, prefix: &str, log: &Log) -> Launched {
    // With named listeners the test gives every address itself (`--listen` conflicts);
    // the first listener is the one `addr` reports.
    let listen_args: Vec<&str> = if extra.iter().any(|a| a == "--listeners") {
        Vec::new()
    } else {
        vec!["--listen", listen]
    };
    // Every node gets an HTTP endpoint on a free port (the default, 9644, would clash
    // between the nodes of one machine) unless the test picks one.
    let http_args: Vec<&str> = if extra.iter().any(|a| a == "--http-listen") {
        Vec::new()
    } else {
        vec!["--http-listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(sluice_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(&listen_args)
        .args(&http_args)
        .args(extra)
        .env(
            "SLUICE_LOG_LEVEL",
            std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info,openraft=off".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let (prefix_out, log_out) = (prefix.to_string(), log.clone());
    let out = std::thread::spawn(move || {
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
            eprintln!("{prefix_out} {line}");
            log_out.push(line);
        }
    });
    let (prefix_err, log_err) = (prefix.to_string(), log.clone());
    let err = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{prefix_err} {line}");
            log_err.push(line);
        }
    });
    Launched {
        child,
        listening: rx,
        readers: vec![out, err],
    }
}

/// Spawns sluice and waits for its "sluice listening" log line to learn the bound port.
fn spawn(dir: &Path, extra: &[String], listen: &str) -> (Child, String) {
    launch(dir, extra, listen, "[sluice]", &Log::default())
        .wait_listening(Instant::now() + Duration::from_secs(30), "sluice")
}
