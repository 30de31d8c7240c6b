//! Whether a broker whose heartbeat stream broke is gone: connection attempts to each
//! of its advertised endpoints. The lifecycle fences a broker whose every endpoint
//! refuses a connection without waiting out the loss grace.
//!
//! Attempts repeat until the grace would have ended anyway: a killed process's
//! connections can close before its listening socket does, and a connection the kernel
//! accepts into a dying listener's backlog proves nothing.
//!
//! Only a refusal counts: it means the host answered and nothing listens on the port,
//! which for a registered broker is a dead (or not yet restarted) process. A timeout, an
//! unreachable host or a name that does not resolve proves nothing (a network partition,
//! an endpoint only clients can reach), so those leave the grace to decide. Requiring
//! every endpoint to refuse keeps an advertised address that is unreachable from here
//! (a host-mapped port, say) from fencing a live broker.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::image::BrokerEndpoint;

/// Pause between rounds of attempts.
const RETRY: Duration = Duration::from_millis(20);

/// Whether, within `within`, a round of attempts finds every endpoint refusing. Stops
/// early (false) once `still_lost` says the question is moot: the broker heartbeat
/// again, so a live broker is not connected to every 20 ms for the rest of the grace.
pub async fn gone(
    endpoints: &[BrokerEndpoint],
    within: Duration,
    still_lost: impl Fn() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || !still_lost() {
            return false;
        }
        if all_refused(endpoints, left).await {
            return true;
        }
        tokio::time::sleep(RETRY.min(left)).await;
    }
}

/// Whether every endpoint refused a connection within `timeout` (false for none).
async fn all_refused(endpoints: &[BrokerEndpoint], timeout: Duration) -> bool {
    if endpoints.is_empty() {
        return false;
    }
    for e in endpoints {
        let attempt = tokio::time::timeout(timeout, TcpStream::connect((e.host.as_str(), e.port)));
        match attempt.await {
            Ok(Err(err)) if err.kind() == ErrorKind::ConnectionRefused => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(port: u16) -> BrokerEndpoint {
        BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// A port that was free a moment ago (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_listening_one_is_not() {
        let t = Duration::from_millis(500);
        let listening = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listening.local_addr().expect("addr").port();
        let closed = closed_port();
        assert!(all_refused(&[endpoint(closed)], t).await);
        assert!(!all_refused(&[endpoint(open)], t).await);
        assert!(!all_refused(&[endpoint(closed), endpoint(open)], t).await);
        assert!(!all_refused(&[], t).await);
    }

    #[tokio::test]
    async fn a_listener_that_closes_while_probed_is_found_gone_and_an_open_one_is_not() {
        let listening = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let e = endpoint(listening.local_addr().expect("addr").port());
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            drop(listening);
        });
        assert!(gone(std::slice::from_ref(&e), Duration::from_secs(2), || true).await);
        closer.await.expect("closer");
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let e = endpoint(open.local_addr().expect("addr").port());
        let started = std::time::Instant::now();
        assert!(
            !gone(std::slice::from_ref(&e), Duration::from_millis(150), || {
                true
            })
            .await
        );
        assert!(started.elapsed() >= Duration::from_millis(150));

        // Once the loss is moot (the broker heartbeat again), probing stops at once.
        let started = std::time::Instant::now();
        assert!(!gone(&[e], Duration::from_secs(5), || false).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_unresolvable_host_proves_nothing() {
        let e = BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            host: "no-such-host.invalid".into(),
            port: 9092,
        };
        assert!(!all_refused(&[e], Duration::from_millis(500)).await);
    }
}
