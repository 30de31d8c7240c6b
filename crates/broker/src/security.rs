//! The broker's security settings as Kafka names them: each listener's security
//! protocol (`listener.security.protocol.map`), the SASL mechanisms it offers
//! (`sasl.enabled.mechanisms`), PLAIN's users file, session lifetime
//! (`connections.max.reauth.ms`, KIP-368) and the authorizer (`super.users`,
//! `allow.everyone.if.no.acl.found`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sluice_auth::acl::Authorizer;
use sluice_auth::scram::ScramMechanism;
use sluice_replication::client::SaslLogin;

use crate::error::BrokerError;
use crate::scram_bootstrap::BootstrapCredential;
use crate::tls::TlsSettings;

/// Kafka's four security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecurityProtocol {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(BrokerError::Config(format!(
                "unknown security protocol {other}"
            ))),
        }
    }
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`), names upper-cased.
pub fn parse_protocol_map(s: &str) -> Result<BTreeMap<String, SecurityProtocol>, BrokerError> {
    let mut map = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, protocol) = item.split_once(':').ok_or_else(|| {
            BrokerError::Config(format!("{item}: expected LISTENER_NAME:SECURITY_PROTOCOL"))
        })?;
        map.insert(name.trim().to_ascii_uppercase(), protocol.parse()?);
    }
    Ok(map)
}

/// The protocol of listener `name`: from the map, or, as Kafka's default map says, the
/// protocol the name itself spells (a listener named SASL_SSL speaks SASL_SSL). With no
/// map at all, any other name speaks PLAINTEXT, as every listener did before security
/// existed (so `INTERNAL`/`EXTERNAL` setups keep working); once a map is given, a
/// listener it leaves out is an error, as in Kafka.
pub fn protocol_of(
    name: &str,
    map: &BTreeMap<String, SecurityProtocol>,
) -> Result<SecurityProtocol, BrokerError> {
    match map.get(name) {
        Some(p) => Ok(*p),
        None => name.parse().or_else(|_| {
            if map.is_empty() {
                Ok(SecurityProtocol::Plaintext)
            } else {
                Err(BrokerError::Config(format!(
                    "listener {name} has no entry in the listener security protocol map"
                )))
            }
        }),
    }
}

/// One SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "PLAIN" {
            return Ok(SaslMechanism::Plain);
        }
        ScramMechanism::from_name(s)
            .map(SaslMechanism::Scram)
            .ok_or_else(|| {
                BrokerError::Config(format!(
                    "SASL mechanism {s} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                ))
            })
    }
}

/// Parses `sasl.enabled.mechanisms` (comma-separated, duplicates dropped).
pub fn parse_mechanisms(s: &str) -> Result<Vec<SaslMechanism>, BrokerError> {
    let mut out = Vec::new();
    for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let m: SaslMechanism = m.parse()?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Everything about who may connect and what they may do.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `listener.security.protocol.map` entries given explicitly.
    pub protocol_map: BTreeMap<String, SecurityProtocol>,
    /// The listeners' TLS settings (`ssl.*`); required if any listener uses TLS.
    pub tls: Option<TlsSettings>,
    /// `sasl.enabled.mechanisms`, in the order SaslHandshake lists them.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// PLAIN's users (`user:password` lines), for development.
    pub plain_users_file: Option<PathBuf>,
    /// `connections.max.reauth.ms`: 0 means sessions never expire.
    pub max_reauth_ms: u64,
    /// How long a client may take for its TLS handshake and SASL exchange.
    pub authentication_timeout_ms: u64,
    /// The ACL authorizer (`authorizer.class.name` set), with `super.users` and
    /// `allow.everyone.if.no.acl.found`; `None` allows every request, as Kafka does
    /// without an authorizer.
    pub authorizer: Option<Authorizer>,
    /// The broker's own SASL login on other brokers' inter-broker listener, when that
    /// listener speaks SASL (Kafka: `sasl.mechanism.inter.broker.protocol` + JAAS).
    pub inter_broker_sasl: Option<SaslLogin>,
    /// `--add-scram` credentials, added to the data dir's bootstrap file at start.
    pub bootstrap_scram: Vec<BootstrapCredential>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            protocol_map: BTreeMap::new(),
            tls: None,
            sasl_mechanisms: vec![
                SaslMechanism::Scram(ScramMechanism::Sha256),
                SaslMechanism::Scram(ScramMechanism::Sha512),
            ],
            plain_users_file: None,
            max_reauth_ms: 0,
            authentication_timeout_ms: 10_000,
            authorizer: None,
            inter_broker_sasl: None,
            bootstrap_scram: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_map_and_defaults() {
        let map = parse_protocol_map("internal:ssl, EXTERNAL:SASL_SSL").unwrap();
        assert_eq!(
            protocol_of("INTERNAL", &map).unwrap(),
            SecurityProtocol::Ssl
        );
        assert_eq!(
            protocol_of("EXTERNAL", &map).unwrap(),
            SecurityProtocol::SaslSsl
        );
        // Kafka's default map: the standard names map to themselves.
        assert_eq!(
            protocol_of("SASL_PLAINTEXT", &map).unwrap(),
            SecurityProtocol::SaslPlaintext
        );
        assert!(protocol_of("CLIENTS", &map).is_err());
        // Without a map, custom names speak PLAINTEXT.
        assert_eq!(
            protocol_of("INTERNAL", &BTreeMap::new()).unwrap(),
            SecurityProtocol::Plaintext
        );
        assert!(parse_protocol_map("A:TLS").is_err());
        assert!(parse_protocol_map("A").is_err());
    }

    #[test]
    fn mechanisms() {
        let m = parse_mechanisms("SCRAM-SHA-512,PLAIN,SCRAM-SHA-512").unwrap();
        assert_eq!(
            m,
            vec![
                SaslMechanism::Scram(ScramMechanism::Sha512),
                SaslMechanism::Plain
            ]
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
    }
}
