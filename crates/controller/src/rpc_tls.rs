//! Mutual TLS for the controller RPC port (Raft, broker lifecycle and forwarded metadata
//! writes), as Kafka secures `controller.listener.names` with SSL: every node presents a
//! certificate from the cluster's CA both when it serves and when it calls, and refuses a
//! peer without one, so only holders of such a certificate can vote, replicate, register
//! a broker or write metadata.
//!
//! A client checks the server's certificate against the host part of the peer's
//! `host:port` RPC address (as in `--voters`), so the certificates must name the voters'
//! hosts (a DNS name, or an IP address SAN for an address given as an IP). One certificate
//! serves as both server and client identity, so it must allow client authentication
//! (no extended key usage, or both `serverAuth` and `clientAuth`).
//!
//! The PEM material is read once, when the node starts; rotating it takes a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// Bound of a server-side TLS handshake, so a peer that connects and stalls does not keep
/// a handshake task alive for as long as it likes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's TLS identity on the controller RPC port and the CA its peers must come from.
#[derive(Clone)]
pub struct RpcTls {
    /// PEM certificate chain, the leaf first.
    pub certificate_pem: Vec<u8>,
    /// PEM private key of the leaf.
    pub key_pem: Vec<u8>,
    /// PEM CA certificate(s): trusted for both peers' server and client certificates.
    pub ca_pem: Vec<u8>,
}

/// Why the controller RPC TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RpcTlsError {
    #[error("reading the controller RPC TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("controller RPC TLS {what} {}: no PEM {expected} in the file", path.display())]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    /// tonic's own error says only "transport error": the detail is its source chain,
    /// kept here as text.
    #[error("controller RPC TLS ({side} side): {detail}")]
    Invalid { side: &'static str, detail: String },
}

impl RpcTlsError {
    fn invalid(side: &'static str, error: &tonic::transport::Error) -> Self {
        Self::Invalid {
            side,
            detail: error_chain(error),
        }
    }
}

/// An error and its sources, joined by ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

// The key stays out of logs: only the sizes are shown.
impl fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcTls")
            .field("certificate_pem_bytes", &self.certificate_pem.len())
            .field("key_pem_bytes", &self.key_pem.len())
            .field("ca_pem_bytes", &self.ca_pem.len())
            .finish()
    }
}

impl RpcTls {
    /// TLS material given as PEM bytes. Nothing is checked here: see [`RpcTls::validate`].
    pub fn from_pem(
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
        ca_pem: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            certificate_pem: certificate_pem.into(),
            key_pem: key_pem.into(),
            ca_pem: ca_pem.into(),
        }
    }

    /// Reads the certificate chain, key and CA from PEM files and checks that they load,
    /// so a wrong file is reported at start, naming it, rather than as failing RPCs.
    pub fn load(certificate: &Path, key: &Path, ca: &Path) -> Result<Self, RpcTlsError> {
        let tls = Self {
            certificate_pem: read_pem(certificate, "certificate", "CERTIFICATE")?,
            key_pem: read_pem(key, "key", "PRIVATE KEY")?,
            ca_pem: read_pem(ca, "CA", "CERTIFICATE")?,
        };
        tls.validate()?;
        Ok(tls)
    }

    /// Builds both sides once, so material that does not parse (or a key that does not
    /// match its certificate) fails here rather than on the first connection.
    pub fn validate(&self) -> Result<(), RpcTlsError> {
        Server::builder()
            .tls_config(self.server_config())
            .map_err(|e| RpcTlsError::invalid("server", &e))?;
        Endpoint::from_static("https://localhost")
            .tls_config(self.client_config("localhost"))
            .map_err(|e| RpcTlsError::invalid("client", &e))?;
        Ok(())
    }

    /// The server side: this node's identity, and a client certificate from the CA
    /// required of every caller (tonic makes it mandatory once a client CA is set and
    /// `client_auth_optional` is left off).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side towards a peer whose certificate must name `domain` (the host of
    /// its RPC address, see [`host_of`]): the CA as the only trust root, and this node's
    /// identity as client certificate.
    pub fn client_config(&self, domain: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .domain_name(domain)
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.certificate_pem, &self.key_pem)
    }
}

fn read_pem(
    path: &Path,
    what: &'static str,
    expected: &'static str,
) -> Result<Vec<u8>, RpcTlsError> {
    let pem = std::fs::read(path).map_err(|source| RpcTlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    // The parsers skip what they do not recognise, so an empty or DER file would
    // otherwise surface as a vaguer error (or none, for a CA file).
    let marker = format!("-----BEGIN {expected}");
    let found = pem.windows(marker.len()).any(|w| w == marker.as_bytes())
        // Keys also come as "RSA PRIVATE KEY" / "EC PRIVATE KEY".
        || (expected == "PRIVATE KEY"
            && pem.windows(expected.len()).any(|w| w == expected.as_bytes()));
    if !found {
        return Err(RpcTlsError::NoPem {
            what,
            path: path.to_path_buf(),
            expected,
        });
    }
    Ok(pem)
}

/// The host part of a `host:port` RPC address, without an IPv6 address's brackets: the
/// name a peer's certificate must carry.
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        // A bare IPv6 address without a port has colons but no brackets: keep it whole.
        Some((host, port))
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && {
                !host.contains(':') || host.starts_with('[')
            } =>
        {
            host
        }
        _ => addr,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The tonic endpoint of a controller RPC address: `http://` without TLS (as before TLS
/// existed), `https://` with this node's client TLS towards the address's host otherwise.
pub fn endpoint(addr: &str, tls: Option<&RpcTls>) -> Result<Endpoint, tonic::transport::Error> {
    match tls {
        None => Endpoint::from_shared(format!("http://{addr}")),
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(tls.client_config(host_of(addr))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA and a leaf it signed for `localhost`: (certificate, key, CA) PEMs.
    fn material() -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), ca_pem)
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("sluice-1:9093"), "sluice-1");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("[fe80::1]"), "fe80::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn endpoint_scheme_follows_tls() {
        let (cert, key, ca) = material();
        let tls = RpcTls::from_pem(cert, key, ca);
        let plain = endpoint("127.0.0.1:9093", None).unwrap();
        assert_eq!(plain.uri().scheme_str(), Some("http"));
        let secure = endpoint("sluice-1:9093", Some(&tls)).unwrap();
        assert_eq!(secure.uri().scheme_str(), Some("https"));
        assert_eq!(secure.uri().host(), Some("sluice-1"));
        assert!(endpoint("not a uri", Some(&tls)).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let tls = RpcTls::from_pem("cert", "secret-key-material", "ca");
        let shown = format!("{tls:?}");
        assert!(!shown.contains("secret-key-material"), "{shown}");
        assert!(shown.contains("key_pem_bytes: 19"), "{shown}");
    }

    #[test]
    fn load_reads_valid_files_and_names_a_bad_one() {
        let (cert, key, ca) = material();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (cert_path, key_path, ca_path) = (
            write("c.pem", &cert),
            write("k.pem", &key),
            write("ca.pem", &ca),
        );
        let loaded = RpcTls::load(&cert_path, &key_path, &ca_path).unwrap();
        assert_eq!(loaded.ca_pem, ca.as_bytes());

        let empty = write("empty.pem", "");
        match RpcTls::load(&cert_path, &key_path, &empty) {
            Err(RpcTlsError::NoPem { what, path, .. }) => {
                assert_eq!(what, "CA");
                assert_eq!(path, empty);
            }
            other => panic!("expected NoPem, got {other:?}"),
        }
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            RpcTls::load(&missing, &key_path, &ca_path),
            Err(RpcTlsError::Read {
                what: "certificate",
                ..
            })
        ));
    }

    #[test]
    fn validate_refuses_a_key_of_another_certificate() {
        let (cert, _, ca) = material();
        let (_, other_key, _) = material();
        assert!(RpcTls::from_pem(cert.clone(), other_key, ca.clone())
            .validate()
            .is_err());
        let (_, key, _) = material();
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        assert!(RpcTls::from_pem(garbage, key, ca).validate().is_err());
    }
}
