//! Flags of listener security (Kafka's `listener.security.protocol.map`, `ssl.*`,
//! `sasl.*`, `connections.max.reauth.ms`), each also read from `SLUICE_<NAME>`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Args;
use sluice_auth::acl::Authorizer;
use sluice_auth::principal::Principal;
use sluice_broker::scram_bootstrap;
use sluice_broker::security::{self, SecurityProtocol};
use sluice_broker::tls::{ClientAuth, TlsSettings};
use sluice_broker::BrokerConfig;
use sluice_replication::client::SaslLogin;

#[derive(Debug, Args)]
pub struct SecurityFlags {
    /// `listener.security.protocol.map`: `NAME:PROTOCOL,...` with PLAINTEXT, SSL,
    /// SASL_PLAINTEXT or SASL_SSL. A listener named after a protocol speaks it without
    /// an entry.
    #[arg(long, env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// The listeners' certificate chain, PEM, leaf first (Kafka: a PEM keystore's
    /// `ssl.keystore.certificate.chain`). Replaced files are picked up without restart.
    #[arg(long, env = "SLUICE_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<PathBuf>,
    /// The certificate's private key, PEM (Kafka: `ssl.keystore.key`).
    #[arg(
        long,
        env = "SLUICE_SSL_KEY_LOCATION",
        requires = "ssl_certificate_location"
    )]
    pub ssl_key_location: Option<PathBuf>,
    /// CA certificates, PEM, that client certificates must chain to (Kafka:
    /// `ssl.truststore.certificates`); also what this broker trusts when it connects to
    /// other brokers over TLS.
    #[arg(long, env = "SLUICE_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,
    /// `ssl.client.auth`: none, requested or required. With a verified client
    /// certificate, an SSL connection's principal is `User:<certificate subject>`.
    #[arg(long, env = "SLUICE_SSL_CLIENT_AUTH", default_value = "none")]
    pub ssl_client_auth: String,
    /// `sasl.enabled.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    #[arg(
        long,
        env = "SLUICE_SASL_ENABLED_MECHANISMS",
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_enabled_mechanisms: String,
    /// PLAIN's users, one `user:password` per line (development only: the passwords
    /// are in clear; use SCRAM in production).
    #[arg(long, env = "SLUICE_SASL_PLAIN_USERS_FILE")]
    pub sasl_plain_users_file: Option<PathBuf>,
    /// `connections.max.reauth.ms`: a SASL session's lifetime (KIP-368); clients
    /// re-authenticate before it ends, and a connection that has not is closed. 0: never.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,
    /// How long a new connection has for its TLS handshake and SASL authentication.
    #[arg(
        long,
        env = "SLUICE_AUTHENTICATION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub authentication_timeout_ms: u64,
    /// The first SCRAM users, as Kafka's `kafka-storage format --add-scram`:
    /// `SCRAM-SHA-512=[name=admin,password=admin-secret]` (repeatable; `;` between
    /// several in the environment variable). Written to the metadata at start unless
    /// the user already has a credential for that mechanism.
    #[arg(long, env = "SLUICE_ADD_SCRAM", value_delimiter = ';')]
    pub add_scram: Vec<String>,
    /// `sasl.mechanism.inter.broker.protocol`: how this broker logs in to the others
    /// when the inter-broker listener speaks SASL.
    #[arg(
        long,
        env = "SLUICE_INTER_BROKER_SASL_MECHANISM",
        default_value = "SCRAM-SHA-512"
    )]
    pub inter_broker_sasl_mechanism: String,
    /// The broker's own SASL user on the inter-broker listener (give it ClusterAction,
    /// e.g. as a super user).
    #[arg(
        long,
        env = "SLUICE_INTER_BROKER_SASL_USERNAME",
        requires = "inter_broker_sasl_password"
    )]
    pub inter_broker_sasl_username: Option<String>,
    /// Its password (prefer the environment variable to the command line).
    #[arg(
        long,
        env = "SLUICE_INTER_BROKER_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub inter_broker_sasl_password: Option<String>,
    /// `authorizer.class.name`: `standard` enforces ACLs on every request; `none`
    /// (the default, as in Kafka) allows everything.
    #[arg(long, env = "SLUICE_AUTHORIZER", default_value = "none")]
    pub authorizer: String,
    /// `super.users`: principals that bypass ACLs, `User:admin;User:CN=broker,O=Acme`.
    #[arg(long, env = "SLUICE_SUPER_USERS")]
    pub super_users: Option<String>,
    /// `allow.everyone.if.no.acl.found`: a resource without any ACL is open to all.
    #[arg(long, env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: bool,
}

impl SecurityFlags {
    pub fn apply(self, c: &mut BrokerConfig) -> anyhow::Result<()> {
        let s = &mut c.security;
        if let Some(map) = &self.listener_security_protocol_map {
            s.protocol_map = security::parse_protocol_map(map)?;
        }
        let mut uses_sasl = false;
        for l in &c.listeners {
            let protocol: SecurityProtocol = security::protocol_of(&l.name, &s.protocol_map)?;
            uses_sasl |= protocol.uses_sasl();
        }
        let client_auth: ClientAuth = self
            .ssl_client_auth
            .parse()
            .map_err(|e| anyhow::anyhow!("--ssl-client-auth: {e}"))?;
        s.tls = match (self.ssl_certificate_location, self.ssl_key_location) {
            (Some(certificate), Some(key)) => Some(TlsSettings {
                certificate,
                key,
                ca: self.ssl_truststore_location,
                client_auth,
            }),
            (None, None) => None,
            _ => anyhow::bail!("--ssl-certificate-location and --ssl-key-location go together"),
        };
        s.sasl_mechanisms = security::parse_mechanisms(&self.sasl_enabled_mechanisms)?;
        anyhow::ensure!(
            !uses_sasl || !s.sasl_mechanisms.is_empty(),
            "a SASL listener needs at least one of --sasl-enabled-mechanisms"
        );
        s.plain_users_file = self.sasl_plain_users_file;
        s.max_reauth_ms = self.connections_max_reauth_ms;
        s.authentication_timeout_ms = self.authentication_timeout_ms.max(1);
        let mechanism: security::SaslMechanism = self.inter_broker_sasl_mechanism.parse()?;
        s.inter_broker_sasl = match (
            self.inter_broker_sasl_username,
            self.inter_broker_sasl_password,
        ) {
            (Some(username), Some(password)) => Some(SaslLogin {
                mechanism: mechanism.name().to_string(),
                username,
                password,
            }),
            _ => None,
        };
        s.bootstrap_scram = self
            .add_scram
            .iter()
            .filter(|spec| !spec.trim().is_empty())
            .map(|spec| scram_bootstrap::parse_spec(spec))
            .collect::<Result<_, _>>()?;
        s.authorizer = match self.authorizer.as_str() {
            "none" => None,
            "standard" => {
                let mut super_users = BTreeSet::new();
                for p in self.super_users.iter().flat_map(|s| s.split(';')) {
                    let p = p.trim();
                    if p.is_empty() {
                        continue;
                    }
                    anyhow::ensure!(
                        Principal::parse(p).is_some(),
                        "--super-users: {p} is not a principal (User:name)"
                    );
                    super_users.insert(p.to_string());
                }
                Some(Authorizer {
                    super_users,
                    allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
                })
            }
            other => anyhow::bail!("--authorizer {other}: expected standard or none"),
        };
        Ok(())
    }
}
