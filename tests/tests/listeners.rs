//! Named listeners (`--listeners`, `--advertised-listeners`, `--inter-broker-listener`):
//! each request is answered with the endpoints of the listener it came in on, so a
//! client outside a container network and a broker inside it both get addresses they
//! can reach; bad listener flags stop the node with a clear error.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_protocol::api::ApiKey;
use sluice_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse,
};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::{sluice_bin, wire, Sluice};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (host, port) of the one broker in Metadata, DescribeCluster and FindCoordinator.
fn endpoints(c: &mut RawClient) -> [(String, i32); 3] {
    let m = wire::metadata(c, 12, None, false);
    let d: DescribeClusterResponse = c.call(
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default(),
    );
    let f: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest {
            key: "g".into(),
            key_type: 0,
            coordinator_keys: Vec::new(),
        },
    );
    assert_eq!((m.brokers.len(), d.brokers.len(), f.error_code), (1, 1, 0));
    [
        (m.brokers[0].host.clone(), m.brokers[0].port),
        (d.brokers[0].host.clone(), d.brokers[0].port),
        (f.host, f.port),
    ]
}

#[test]
fn each_listener_advertises_its_own_endpoint() {
    let external = free_port();
    let node = Sluice::start(&[
        "--listeners",
        &format!("INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:{external}"),
        "--advertised-listeners",
        "INTERNAL://sluice-1.internal:9093",
        "--inter-broker-listener",
        "internal",
    ]);
    // `addr` is the first listener: INTERNAL, which advertises its container name.
    let mut internal = RawClient::connect(&node.addr);
    let want = ("sluice-1.internal".to_string(), 9093);
    assert_eq!(endpoints(&mut internal), [want.clone(), want.clone(), want]);
    // EXTERNAL advertises what it is bound to.
    let mut outside = RawClient::connect(&format!("127.0.0.1:{external}"));
    let want = ("127.0.0.1".to_string(), i32::from(external));
    assert_eq!(endpoints(&mut outside), [want.clone(), want.clone(), want]);
}

/// Runs `sluice` with `args` and expects it to refuse to start, naming `hint`.
fn refuses(args: &[&str], hint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(sluice_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http-listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(hint), "{args:?}: {text}");
}

#[test]
fn bad_listener_flags_are_refused() {
    refuses(
        &[
            "--listeners",
            "A://127.0.0.1:0",
            "--advertised-listeners",
            "B://h:1",
        ],
        "not among the listeners",
    );
    refuses(
        &["--listeners", "A://127.0.0.1:7000,B://127.0.0.1:7000"],
        "two listeners bind port 7000",
    );
    refuses(
        &["--listeners", "127.0.0.1:9092"],
        "expected NAME://host:port",
    );
    refuses(
        &[
            "--listeners",
            "A://127.0.0.1:0",
            "--inter-broker-listener",
            "C",
        ],
        "not among the listeners",
    );
    refuses(
        &["--listeners", "A://127.0.0.1:0", "--listen", "127.0.0.1:0"],
        "cannot be used with",
    );
}
