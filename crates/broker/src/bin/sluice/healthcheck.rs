//! `sluice healthcheck`: one HTTP GET of the node's own health endpoint, for container
//! healthchecks in an image without a shell or curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

/// Asks `/health/ready` (or `/health/live`) of the endpoint bound at `http_listen`:
/// `Ok(())` on 200, else the status line and body as the error.
pub fn check(http_listen: &str, live: bool, timeout: Duration) -> anyhow::Result<()> {
    if http_listen == "off" {
        bail!("the HTTP endpoint is off (--http-listen off)");
    }
    let addr = local_target(http_listen)?;
    let path = if live {
        sluice_broker::http::LIVE_PATH
    } else {
        sluice_broker::http::READY_PATH
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    // The endpoint closes the connection after one answer; at most a few KiB are read.
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        bail!("{path}: {status}: {body}")
    }
}

/// The address to ask: the bound one, with an unspecified host (0.0.0.0, [::]) taken
/// as this host's loopback.
fn local_target(http_listen: &str) -> anyhow::Result<SocketAddr> {
    let mut addr = http_listen
        .to_socket_addrs()
        .with_context(|| format!("--http-listen {http_listen}"))?
        .next()
        .with_context(|| format!("--http-listen {http_listen} names no address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_hosts_become_loopback() {
        assert_eq!(
            local_target("0.0.0.0:9644").unwrap(),
            "127.0.0.1:9644".parse().unwrap()
        );
        assert_eq!(local_target("[::]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(
            local_target("127.0.0.2:80").unwrap(),
            "127.0.0.2:80".parse().unwrap()
        );
    }
}
