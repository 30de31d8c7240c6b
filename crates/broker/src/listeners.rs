//! Named Kafka listeners (`listeners`, `advertised.listeners`,
//! `inter.broker.listener.name`): parsing Kafka's `NAME://host:port,...` lists, and the
//! endpoint each listener advertises once bound.
//!
//! Clients get the endpoints of the listener their request came in on, so a client
//! outside a container network and a broker inside it each learn addresses they can
//! reach. Each listener speaks its own security protocol
//! (`listener.security.protocol.map`, see `security`).

use std::net::SocketAddr;

use crate::error::BrokerError;
use crate::security::SecurityProtocol;

/// One listener as configured: its name, the address it binds, and what it advertises
/// (`None`: the bound address, with the host name in place of a wildcard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: String,
    pub advertise: Option<String>,
}

/// The name of the single listener `--listen` / `--advertise` describe.
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// A bound listener and the endpoint it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bound: SocketAddr,
    pub host: String,
    pub port: i32,
    pub security: SecurityProtocol,
}

/// Parses `NAME://host:port[,NAME://host:port...]` (Kafka's list syntax; names are
/// case-insensitive in Kafka, kept upper-case here).
pub fn parse_list(s: &str) -> Result<Vec<(String, String)>, BrokerError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| BrokerError::Address(format!("{item}: expected NAME://host:port")))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BrokerError::Address(format!("{item}: bad listener name")));
        }
        split_host_port(addr)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(BrokerError::Address(format!(
                "listener {name} is named twice"
            )));
        }
        out.push((name, addr.to_string()));
    }
    if out.is_empty() {
        return Err(BrokerError::Address(format!("{s}: no listener")));
    }
    Ok(out)
}

/// Combines `listeners` and `advertised.listeners` as Kafka does: every advertised
/// name must be a listener; a listener not advertised advertises its bind address.
pub fn configure(
    listeners: &str,
    advertised: Option<&str>,
) -> Result<Vec<ListenerConfig>, BrokerError> {
    let binds = parse_list(listeners)?;
    let advertised = match advertised {
        Some(a) => parse_list(a)?,
        None => Vec::new(),
    };
    for (name, _) in &advertised {
        if !binds.iter().any(|(n, _)| n == name) {
            return Err(BrokerError::Address(format!(
                "advertised listener {name} is not among the listeners"
            )));
        }
    }
    let mut ports: Vec<&str> = Vec::new();
    for (_, bind) in &binds {
        let port = bind.rsplit_once(':').map_or("", |(_, p)| p);
        if port != "0" && ports.contains(&port) {
            return Err(BrokerError::Address(format!(
                "two listeners bind port {port}"
            )));
        }
        ports.push(port);
    }
    Ok(binds
        .into_iter()
        .map(|(name, bind)| {
            let advertise = advertised
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| a.clone());
            ListenerConfig {
                name,
                bind,
                advertise,
            }
        })
        .collect())
}

/// The endpoint a bound listener advertises. Kafka never advertises a wildcard: a
/// listener bound to 0.0.0.0 (as in a container) advertises the host name instead;
/// and port 0 means the port actually bound.
pub fn resolve(
    config: &ListenerConfig,
    bound: SocketAddr,
    hostname: Option<String>,
    security: SecurityProtocol,
) -> Result<Listener, BrokerError> {
    let (host, port) = split_host_port(config.advertise.as_deref().unwrap_or(&config.bind))?;
    let host = if host == "0.0.0.0" || host == "::" {
        hostname.unwrap_or(host)
    } else {
        host
    };
    let port = if port == 0 {
        i32::from(bound.port())
    } else {
        port
    };
    Ok(Listener {
        name: config.name.clone(),
        bound,
        host,
        port,
        security,
    })
}

/// Splits `host:port` (IPv6 as `[::1]:9092`).
pub fn split_host_port(s: &str) -> Result<(String, i32), BrokerError> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| BrokerError::Address(s.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| BrokerError::Address(s.to_string()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(BrokerError::Address(s.to_string()));
    }
    Ok((host, i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, bind: &str, adv: Option<&str>) -> ListenerConfig {
        ListenerConfig {
            name: name.into(),
            bind: bind.into(),
            advertise: adv.map(Into::into),
        }
    }

    #[test]
    fn kafka_style_lists() {
        assert_eq!(
            configure(
                "INTERNAL://0.0.0.0:9093, external://0.0.0.0:9092",
                Some("EXTERNAL://localhost:19092")
            )
            .unwrap(),
            vec![
                l("INTERNAL", "0.0.0.0:9093", None),
                l("EXTERNAL", "0.0.0.0:9092", Some("localhost:19092")),
            ]
        );
        for (listeners, advertised) in [
            ("", None),
            ("9092", None),
            ("A://h:1,A://h:2", None),
            ("A://h:1,B://h:1", None),
            ("A://h:1", Some("B://h:2")),
            ("A://:1", None),
            ("A://h:x", None),
            ("A B://h:1", None),
        ] {
            assert!(
                configure(listeners, advertised).is_err(),
                "{listeners} {advertised:?}"
            );
        }
        // Port 0 may repeat: each gets its own.
        assert!(configure("A://127.0.0.1:0,B://127.0.0.1:0", None).is_ok());
    }

    #[test]
    fn advertised_endpoints() {
        let bound: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let r = |c: ListenerConfig| {
            resolve(
                &c,
                bound,
                Some("node-1".into()),
                SecurityProtocol::Plaintext,
            )
            .unwrap()
        };
        assert_eq!(
            (
                r(l("A", "0.0.0.0:0", None)).host,
                r(l("A", "0.0.0.0:0", None)).port
            ),
            ("node-1".to_string(), 40000)
        );
        assert_eq!(
            r(l("A", "0.0.0.0:9092", Some("kafka.example:19092"))).port,
            19092
        );
        assert_eq!(r(l("A", "[::1]:9092", None)).host, "::1");
    }
}
