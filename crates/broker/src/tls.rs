//! TLS for the broker, as Kafka's `ssl.*` settings describe it but from PEM files: the
//! server side of SSL listeners (with optional client-certificate authentication and the
//! certificate principal Kafka derives from it) and the client side of the broker's own
//! outgoing connections (replica fetchers, transaction markers).
//!
//! ## Certificate rotation
//!
//! Kafka users rotate certificates without restarting brokers, so the certificate and key
//! are not fixed when the listener starts: a [`ReloadingKey`] holds the current pair and,
//! when a handshake asks for it, looks at the two files' modification times and sizes at
//! most once per [`RELOAD_CHECK_INTERVAL`]. Checking on handshake rather than from a
//! background task means an idle broker does no work and there is no task to own or stop;
//! the price is two `stat` calls a second on the handshake path (the files are read only
//! when they changed). A changed pair that does not load (half written, or the key does
//! not match the certificate yet) keeps the previous pair and logs a warning; the next
//! change of either file tries again. New connections get the new certificate; open
//! ones keep theirs, as in Kafka.
//!
//! ## Principals
//!
//! A client that presented a certificate the CA verified is `User:<subject DN>`, the DN
//! written as Java's `X500Principal.getName()` writes it (RFC 2253), which is what Kafka's
//! default `ssl.principal.mapping.rules` yields: see [`subject_dn`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use sluice_auth::principal::Principal;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use x509_parser::asn1_rs::{Any, Class, ToDer};
use x509_parser::prelude::{FromDer, X509Name};
use x509_parser::x509::AttributeTypeAndValue;

use crate::error::BrokerError;

/// How often, at most, a handshake looks whether the certificate or key file changed.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Kafka's `ssl.client.auth`: whether an SSL listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for; every client is `User:ANONYMOUS` (Kafka's default).
    #[default]
    None,
    /// A certificate is asked for but may be withheld; one that is presented must verify.
    Requested,
    /// A client without a certificate that verifies is refused.
    Required,
}

impl FromStr for ClientAuth {
    type Err = BrokerError;

    /// Kafka's values, compared without regard to case as Kafka does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "requested" => Ok(Self::Requested),
            "required" => Ok(Self::Required),
            _ => Err(BrokerError::Tls(format!(
                "ssl.client.auth must be none, requested or required, not {s:?}"
            ))),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Required => "required",
        })
    }
}

/// Where the TLS material is, and whether clients must show certificates.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, the leaf first.
    pub certificate: PathBuf,
    /// PEM private key of the leaf: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// PEM CA certificate(s): trusted for client certificates on a listener and for the
    /// servers' certificates on outgoing connections.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The ring provider: the only one built in (aws-lc-rs needs cmake to build).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(path: &Path, what: impl fmt::Display) -> BrokerError {
    BrokerError::Tls(format!("{}: {what}", path.display()))
}

/// Every certificate of a PEM file, in file order.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let pem = std::fs::read(path).map_err(|e| BrokerError::io(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, e))?;
    if certs.is_empty() {
        return Err(tls_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The CA certificates of a PEM file as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, BrokerError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| tls_err(path, e))?;
    }
    Ok(roots)
}

/// The certificate chain and the private key, checked to belong together.
fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, BrokerError> {
    let chain = load_certs(cert)?;
    let pem = std::fs::read(key).map_err(|e| BrokerError::io(key, e))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| tls_err(key, e))?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| tls_err(cert, e))
}

/// What a file looked like when last checked: a rotation changes one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

#[derive(Debug)]
struct Check {
    next_at: Instant,
    /// The stamps of the pair last loaded or tried.
    seen: (Option<Stamp>, Option<Stamp>),
}

/// A certificate and key that follow their files (see the module docs). Serves as the
/// server's certificate on a listener and as the client certificate on outgoing
/// connections.
pub struct ReloadingKey {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<Check>,
    interval: Duration,
}

impl fmt::Debug for ReloadingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingKey")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingKey {
    fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
        interval: Duration,
    ) -> Result<Self, BrokerError> {
        // Stamped before reading, so a change during the read is seen at the next check.
        let seen = (stamp(cert), stamp(key));
        let loaded = load_certified_key(cert, key, &provider)?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
            check: Mutex::new(Check {
                next_at: Instant::now() + interval,
                seen,
            }),
            interval,
        })
    }

    /// The pair to use now, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.maybe_reload();
        self.current.read().clone()
    }

    fn maybe_reload(&self) {
        // A handshake never waits for another one's check: it uses the current pair.
        let Some(mut check) = self.check.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now < check.next_at {
            return;
        }
        check.next_at = now + self.interval;
        let stamps = (stamp(&self.cert_path), stamp(&self.key_path));
        // A file missing for a moment (replaced by delete and create) is looked at again
        // next time rather than reported.
        if stamps.0.is_none() || stamps.1.is_none() || stamps == check.seen {
            return;
        }
        check.seen = stamps;
        match load_certified_key(&self.cert_path, &self.key_path, &self.provider) {
            Ok(loaded) => {
                *self.current.write() = Arc::new(loaded);
                info!(
                    certificate = %self.cert_path.display(),
                    "reloaded the TLS certificate and key"
                );
            }
            Err(e) => warn!(
                certificate = %self.cert_path.display(),
                error = %e,
                "the TLS certificate or key changed but does not load; keeping the previous pair"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS side of an SSL listener.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    key: Arc<ReloadingKey>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    pub fn new(settings: &TlsSettings) -> Result<Self, BrokerError> {
        Self::build(settings, RELOAD_CHECK_INTERVAL)
    }

    fn build(settings: &TlsSettings, reload_interval: Duration) -> Result<Self, BrokerError> {
        let provider = provider();
        let key = Arc::new(ReloadingKey::load(
            &settings.certificate,
            &settings.key,
            provider.clone(),
            reload_interval,
        )?);
        let verifier = match (settings.client_auth, &settings.ca) {
            (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
            (ClientAuth::Requested, None) => {
                // Kafka would fall back to the JVM's default trust store; there is none
                // here, so no certificate could verify: say so and do not ask for one.
                warn!(
                    "ssl.client.auth=requested without a CA: client certificates are not asked for"
                );
                WebPkiClientVerifier::no_client_auth()
            }
            (ClientAuth::Required, None) => {
                return Err(BrokerError::Tls(
                    "ssl.client.auth=required needs the CA that signs client certificates".into(),
                ))
            }
            (auth, Some(ca)) => {
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(load_roots(ca)?),
                    provider.clone(),
                );
                let builder = if auth == ClientAuth::Requested {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder.build().map_err(|e| tls_err(ca, e))?
            }
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BrokerError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(key.clone());
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            key,
        })
    }

    /// The certificate and key served now (reloaded first if their files changed).
    pub fn current_key(&self) -> Arc<CertifiedKey> {
        self.key.current()
    }

    /// Runs the server handshake on `socket` within `timeout`. The principal is the
    /// client certificate's (`User:<subject DN>`) when the client presented one, which
    /// the verifier has then checked against the CA; `None` when it presented none.
    pub async fn accept(
        &self,
        socket: TcpStream,
        timeout: Duration,
    ) -> Result<
        (
            tokio_rustls::server::TlsStream<TcpStream>,
            Option<Principal>,
        ),
        BrokerError,
    > {
        let peer = socket
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let stream = tokio::time::timeout(timeout, self.acceptor.accept(socket))
            .await
            .map_err(|_| {
                BrokerError::Tls(format!("handshake with {peer} timed out after {timeout:?}"))
            })?
            .map_err(|e| BrokerError::Tls(format!("handshake with {peer}: {e}")))?;
        let principal = match stream.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => Some(Principal::user(subject_dn(leaf)?)),
            _ => None,
        };
        Ok((stream, principal))
    }
}

/// The client configuration of the broker's own connections to other brokers: trusts
/// `ca` (required) and presents the certificate and key (reloaded as on a listener), so
/// a broker has a certificate principal on an SSL listener that asks for one.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, BrokerError> {
    let ca = settings.ca.as_ref().ok_or_else(|| {
        BrokerError::Tls(
            "connecting to other brokers over TLS needs the CA that signed their certificates"
                .into(),
        )
    })?;
    let roots = load_roots(ca)?;
    let provider = provider();
    let key = Arc::new(ReloadingKey::load(
        &settings.certificate,
        &settings.key,
        provider.clone(),
        RELOAD_CHECK_INTERVAL,
    )?);
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(key);
    Ok(Arc::new(config))
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it, the
/// name Kafka's DEFAULT `ssl.principal.mapping.rules` gives a client: RFC 2253, the most
/// specific RDN first, e.g. `CN=alice,O=Acme,C=US`.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, BrokerError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| BrokerError::Tls(format!("client certificate does not parse: {e}")))?;
    Ok(rfc2253(cert.subject()))
}

/// The RFC 2253 string of a DER `Name` (a SEQUENCE of RDNs).
pub fn name_dn(name_der: &[u8]) -> Result<String, BrokerError> {
    let (_, name) = X509Name::from_der(name_der)
        .map_err(|e| BrokerError::Tls(format!("distinguished name does not parse: {e}")))?;
    Ok(rfc2253(&name))
}

/// Java's `X500Name.getRFC2253Name()`: RDNs in reverse of their encoded order joined by
/// `,`, the values of a multi-valued RDN joined by `+` in encoded order.
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| rdn.iter().map(ava).collect::<Vec<_>>().join("+"))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The keywords Java's `AVAKeyword` has for RFC 2253; any other attribute type is
/// written as its dotted OID.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// One `type=value` as Java's `AVA.toRFC2253String` writes it: a value of a known type
/// in a string encoding is escaped text; any other (an OID-named type such as
/// emailAddress, or a non-string encoding) is `#` and the lowercase hex of its DER.
fn ava(atv: &AttributeTypeAndValue<'_>) -> String {
    let oid = atv.attr_type().to_id_string();
    let value = atv.attr_value();
    match keyword(&oid).map(|k| (k, string_value(value))) {
        Some((k, Some(text))) => format!("{k}={}", escape(&text)),
        Some((k, None)) => format!("{k}=#{}", der_hex(value)),
        None => format!("{oid}=#{}", der_hex(value)),
    }
}

/// The text of a value in one of the string encodings Java treats as such (UTF8String,
/// PrintableString, TeletexString, IA5String, GeneralString as Latin-1, BMPString as
/// UTF-16BE); `None` for any other encoding.
fn string_value(value: &Any<'_>) -> Option<String> {
    if value.header.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let data = value.data;
    match value.header.tag().0 {
        12 => Some(String::from_utf8_lossy(data).into_owned()),
        19 | 20 | 22 | 27 => Some(data.iter().map(|&b| char::from(b)).collect()),
        30 => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| match c {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    // An odd trailing byte cannot be a character.
                    _ => 0xFFFD,
                })
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

fn der_hex(value: &Any<'_>) -> String {
    // Re-encoding what was just parsed from DER cannot fail in practice; an empty hex
    // string would still name the attribute.
    let der = value.to_der_vec().unwrap_or_default();
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// Java's escaping: `,=+<>#;"\` anywhere get a backslash, NUL becomes `\00`, and leading
/// and trailing spaces (and carriage returns) get a backslash each.
fn escape(text: &str) -> String {
    let mut escaped: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if ",=+<>#;\"\\".contains(c) {
            escaped.push('\\');
            escaped.push(c);
        } else if c == '\0' {
            escaped.extend(['\\', '0', '0']);
        } else {
            escaped.push(c);
        }
    }
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = escaped.iter().take_while(|c| blank(c)).count();
    let trail = escaped.len() - escaped.iter().rev().take_while(|c| blank(c)).count();
    let mut out = String::with_capacity(escaped.len() + 2);
    for (i, c) in escaped.into_iter().enumerate() {
        if i < lead || i >= trail {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SerialNumber,
    };
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;

    const BOUND: Duration = Duration::from_secs(5);

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf signed by `ca`: (certificate PEM, key PEM).
    fn leaf(ca: &Ca, dn: DistinguishedName, serial: u64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn cn(name: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    }

    /// Writes `pem` to `dir/name` and returns the path.
    fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    struct Fixture {
        dir: tempfile::TempDir,
        ca: Ca,
        settings: TlsSettings,
    }

    fn fixture(client_auth: ClientAuth) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("Test CA");
        let (cert, key) = leaf(&ca, cn("broker-1"), 1);
        let settings = TlsSettings {
            certificate: write(dir.path(), "server.pem", &cert),
            key: write(dir.path(), "server-key.pem", &key),
            ca: Some(write(dir.path(), "ca.pem", &ca.pem)),
            client_auth,
        };
        Fixture { dir, ca, settings }
    }

    /// Client settings: a certificate for `dn` from `issuer`, trusting the fixture's CA.
    fn client_settings(f: &Fixture, issuer: &Ca, dn: DistinguishedName, tag: &str) -> TlsSettings {
        let (cert, key) = leaf(issuer, dn, 100);
        TlsSettings {
            certificate: write(f.dir.path(), &format!("{tag}.pem"), &cert),
            key: write(f.dir.path(), &format!("{tag}-key.pem"), &key),
            ca: f.settings.ca.clone(),
            client_auth: ClientAuth::None,
        }
    }

    /// A client configuration that trusts the fixture's CA and has no certificate.
    fn anonymous_client(f: &Fixture) -> Arc<ClientConfig> {
        let roots = load_roots(f.settings.ca.as_ref().unwrap()).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Accepts one connection with `server` and connects to it with `client`; returns
    /// the server's outcome and the client's stream (or error). On success the server
    /// echoes one byte, so the client can tell the session really works.
    async fn handshake(
        server: &TlsServer,
        client: Arc<ClientConfig>,
    ) -> (
        Result<Option<Principal>, BrokerError>,
        std::io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server.clone();
        let accepted = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            match server.accept(socket, BOUND).await {
                Ok((mut stream, principal)) => {
                    let mut b = [0u8; 1];
                    if stream.read_exact(&mut b).await.is_ok() {
                        let _ = stream.write_all(&b).await;
                        let _ = stream.flush().await;
                    }
                    Ok(principal)
                }
                Err(e) => Err(e),
            }
        });
        let socket = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let connected = TlsConnector::from(client).connect(name, socket).await;
        let connected = match connected {
            Ok(mut s) => {
                // TLS 1.3 lets a client finish before the server has judged its
                // certificate: a refusal shows on the first exchange.
                let mut b = [0u8; 1];
                let echoed = async {
                    s.write_all(b"x").await?;
                    s.flush().await?;
                    s.read_exact(&mut b).await
                };
                match tokio::time::timeout(BOUND, echoed).await {
                    Ok(Ok(_)) if b == *b"x" => Ok(s),
                    Ok(Ok(_)) => Err(std::io::Error::other("wrong echo")),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::Error::other("echo timed out")),
                }
            }
            Err(e) => Err(e),
        };
        (accepted.await.unwrap(), connected)
    }

    fn peer_subject(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
        let certs = stream.get_ref().1.peer_certificates().unwrap();
        subject_dn(&certs[0]).unwrap()
    }

    #[test]
    fn client_auth_parses_kafka_values() {
        assert_eq!("none".parse::<ClientAuth>().unwrap(), ClientAuth::None);
        assert_eq!(
            "Requested".parse::<ClientAuth>().unwrap(),
            ClientAuth::Requested
        );
        assert_eq!(
            "REQUIRED".parse::<ClientAuth>().unwrap(),
            ClientAuth::Required
        );
        assert!("optional".parse::<ClientAuth>().is_err());
        assert_eq!(ClientAuth::Requested.to_string(), "requested");
    }

    #[tokio::test]
    async fn a_verified_client_certificate_is_the_principal() {
        let f = fixture(ClientAuth::Required);
        let server = TlsServer::new(&f.settings).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::CommonName, "alice");
        let client = client_config(&client_settings(&f, &f.ca, dn, "alice")).unwrap();
        let (principal, stream) = handshake(&server, client).await;
        let stream = stream.unwrap();
        assert_eq!(
            principal.unwrap().unwrap().to_string(),
            "User:CN=alice,O=Acme,C=US"
        );
        assert_eq!(peer_subject(&stream), "CN=broker-1");
    }

    #[tokio::test]
    async fn without_client_auth_no_principal_comes_from_tls() {
        let f = fixture(ClientAuth::None);
        let server = TlsServer::new(&f.settings).unwrap();
        // Even a client holding a certificate is not asked for it.
        let client = client_config(&client_settings(&f, &f.ca, cn("alice"), "alice")).unwrap();
        let (principal, stream) = handshake(&server, client).await;
        stream.unwrap();
        assert_eq!(principal.unwrap(), None);
    }

    #[tokio::test]
    async fn requested_client_auth_lets_a_client_without_a_certificate_in() {
        let f = fixture(ClientAuth::Requested);
        let server = TlsServer::new(&f.settings).unwrap();
        let (principal, stream) = handshake(&server, anonymous_client(&f)).await;
        stream.unwrap();
        assert_eq!(principal.unwrap(), None);
        let client = client_config(&client_settings(&f, &f.ca, cn("bob"), "bob")).unwrap();
        let (principal, stream) = handshake(&server, client).await;
        stream.unwrap();
        assert_eq!(principal.unwrap().unwrap().to_string(), "User:CN=bob");
    }

    #[tokio::test]
    async fn required_client_auth_refuses_a_client_without_a_certificate() {
        let f = fixture(ClientAuth::Required);
        let server = TlsServer::new(&f.settings).unwrap();
        let (principal, stream) = handshake(&server, anonymous_client(&f)).await;
        let err = principal.unwrap_err();
        assert!(matches!(err, BrokerError::Tls(_)), "{err:?}");
        assert!(stream.is_err(), "the client's session must not work");
    }

    #[tokio::test]
    async fn a_client_certificate_from_another_ca_is_refused() {
        for auth in [ClientAuth::Required, ClientAuth::Requested] {
            let f = fixture(auth);
            let server = TlsServer::new(&f.settings).unwrap();
            let rogue = ca("Rogue CA");
            let client =
                client_config(&client_settings(&f, &rogue, cn("mallory"), "mallory")).unwrap();
            let (principal, stream) = handshake(&server, client).await;
            assert!(principal.is_err(), "{auth}: accepted {principal:?}");
            assert!(
                stream.is_err(),
                "{auth}: the client's session must not work"
            );
        }
    }

    #[tokio::test]
    async fn a_client_refuses_a_server_its_ca_did_not_sign() {
        let f = fixture(ClientAuth::None);
        let server = TlsServer::new(&f.settings).unwrap();
        let other = fixture(ClientAuth::None);
        let (_, stream) = handshake(&server, anonymous_client(&other)).await;
        assert!(stream.is_err());
    }

    #[test]
    fn required_client_auth_without_a_ca_is_a_config_error() {
        let mut f = fixture(ClientAuth::Required);
        f.settings.ca = None;
        let err = TlsServer::new(&f.settings).unwrap_err();
        assert!(
            err.to_string().contains("ssl.client.auth=required"),
            "{err}"
        );
        // And the client side cannot verify servers without one.
        assert!(client_config(&f.settings).is_err());
    }

    #[test]
    fn unusable_files_are_config_errors() {
        let f = fixture(ClientAuth::None);
        let mut s = f.settings.clone();
        s.key = write(f.dir.path(), "garbage.pem", "not a key");
        assert!(matches!(TlsServer::new(&s), Err(BrokerError::Tls(_))));
        // A key that is valid but not the certificate's.
        let (_, other_key) = leaf(&f.ca, cn("other"), 9);
        s.key = write(f.dir.path(), "other-key.pem", &other_key);
        assert!(matches!(TlsServer::new(&s), Err(BrokerError::Tls(_))));
        s.key = f.dir.path().join("missing.pem");
        assert!(matches!(TlsServer::new(&s), Err(BrokerError::Io { .. })));
    }

    #[tokio::test]
    async fn a_rotated_certificate_is_served_to_new_connections() {
        let f = fixture(ClientAuth::None);
        let server = TlsServer::build(&f.settings, Duration::ZERO).unwrap();
        let (_, stream) = handshake(&server, anonymous_client(&f)).await;
        assert_eq!(peer_subject(&stream.unwrap()), "CN=broker-1");

        let (cert, key) = leaf(&f.ca, cn("broker-1-rotated"), 2);
        // Key first, then certificate, as a careless rotation might: in between the
        // pair does not match and the old one must go on being served.
        std::fs::write(&f.settings.key, &key).unwrap();
        let (_, stream) = handshake(&server, anonymous_client(&f)).await;
        assert_eq!(peer_subject(&stream.unwrap()), "CN=broker-1");
        std::fs::write(&f.settings.certificate, &cert).unwrap();
        let (_, stream) = handshake(&server, anonymous_client(&f)).await;
        let stream = stream.unwrap();
        assert_eq!(peer_subject(&stream), "CN=broker-1-rotated");
        let certs = stream.get_ref().1.peer_certificates().unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        assert_eq!(parsed.serial.to_string(), "2");

        // A broken file keeps the last good pair.
        std::fs::write(&f.settings.certificate, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let (_, stream) = handshake(&server, anonymous_client(&f)).await;
        assert_eq!(peer_subject(&stream.unwrap()), "CN=broker-1-rotated");
    }

    #[tokio::test]
    async fn within_the_check_interval_the_files_are_not_looked_at() {
        let f = fixture(ClientAuth::None);
        let server = TlsServer::build(&f.settings, Duration::from_secs(3600)).unwrap();
        let (cert, key) = leaf(&f.ca, cn("broker-1-rotated"), 2);
        std::fs::write(&f.settings.key, &key).unwrap();
        std::fs::write(&f.settings.certificate, &cert).unwrap();
        let (_, stream) = handshake(&server, anonymous_client(&f)).await;
        assert_eq!(peer_subject(&stream.unwrap()), "CN=broker-1");
    }

    // --- RFC 2253 formatting, on hand-built DER names (rcgen cannot build multi-valued
    // RDNs or repeat an attribute type).

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    /// DER of an OID given as dotted text.
    fn oid(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
        let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut bytes = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                bytes.push((rest & 0x7f) as u8 | 0x80);
                rest >>= 7;
            }
            bytes.reverse();
            body.extend(bytes);
        }
        tlv(0x06, &body)
    }

    fn atv(ty: &str, tag: u8, value: &[u8]) -> Vec<u8> {
        let mut content = oid(ty);
        content.extend(tlv(tag, value));
        tlv(0x30, &content)
    }

    /// A Name from RDNs in encoded order, each a list of (type OID, tag, value).
    fn name(rdns: &[&[(&str, u8, &[u8])]]) -> Vec<u8> {
        let mut seq = Vec::new();
        for rdn in rdns {
            let set: Vec<u8> = rdn
                .iter()
                .flat_map(|(ty, tag, v)| atv(ty, *tag, v))
                .collect();
            seq.extend(tlv(0x31, &set));
        }
        tlv(0x30, &seq)
    }

    const UTF8: u8 = 12;
    const PRINTABLE: u8 = 19;
    const IA5: u8 = 22;
    const BMP: u8 = 30;
    const CN: &str = "2.5.4.3";

    fn dn(rdns: &[&[(&str, u8, &[u8])]]) -> String {
        name_dn(&name(rdns)).unwrap()
    }

    #[test]
    fn rdns_are_written_most_specific_first_with_short_names() {
        assert_eq!(
            dn(&[
                &[("0.9.2342.19200300.100.1.25", IA5, b"com")],
                &[("0.9.2342.19200300.100.1.25", IA5, b"example")],
                &[("2.5.4.6", PRINTABLE, b"US")],
                &[("2.5.4.8", UTF8, b"CA")],
                &[("2.5.4.7", UTF8, b"Palo Alto")],
                &[("2.5.4.9", UTF8, b"1 Main St")],
                &[("2.5.4.10", UTF8, b"Acme")],
                &[("2.5.4.11", UTF8, b"Eng")],
                &[("2.5.4.11", UTF8, b"Kafka")],
                &[("0.9.2342.19200300.100.1.1", UTF8, b"jdoe")],
                &[(CN, UTF8, b"alice")],
            ]),
            "CN=alice,UID=jdoe,OU=Kafka,OU=Eng,O=Acme,STREET=1 Main St,L=Palo Alto,ST=CA,C=US,\
             DC=example,DC=com"
        );
    }

    #[test]
    fn a_multi_valued_rdn_is_joined_with_plus() {
        assert_eq!(
            dn(&[
                &[("2.5.4.10", UTF8, b"Acme")],
                &[
                    (CN, UTF8, b"alice"),
                    ("0.9.2342.19200300.100.1.1", UTF8, b"a1")
                ],
            ]),
            "CN=alice+UID=a1,O=Acme"
        );
    }

    #[test]
    fn special_characters_are_escaped_as_java_does() {
        let cases: &[(&[u8], &str)] = &[
            (b"Smith, John", r"CN=Smith\, John"),
            (b"a+b=c", r"CN=a\+b\=c"),
            (b"<x>;\"y\"", r#"CN=\<x\>\;\"y\""#),
            (b"back\\slash", r"CN=back\\slash"),
            (b"#1 fan", r"CN=\#1 fan"),
            (b"mid#hash", r"CN=mid\#hash"),
            (b" padded  ", r"CN=\ padded\ \ "),
            (b"   ", r"CN=\ \ \ "),
            (b"nul\0byte", r"CN=nul\00byte"),
            ("Zoë".as_bytes(), "CN=Zoë"),
        ];
        for (value, want) in cases {
            assert_eq!(dn(&[&[(CN, UTF8, value)]]), *want, "{value:?}");
        }
    }

    #[test]
    fn string_encodings_are_decoded_and_others_are_hex() {
        // BMPString is UTF-16BE.
        assert_eq!(dn(&[&[(CN, BMP, &[0, b'h', 0, b'i'])]]), "CN=hi");
        // Latin-1 in a TeletexString.
        assert_eq!(dn(&[&[(CN, 20, &[b'Z', 0xe9])]]), "CN=Zé");
        // An OCTET STRING value under a known type has no string form.
        assert_eq!(dn(&[&[(CN, 0x04, &[0xab, 0xcd])]]), "CN=#0402abcd");
        // emailAddress has no RFC 2253 keyword: dotted OID and the value's DER in hex.
        assert_eq!(
            dn(&[
                &[(CN, UTF8, b"alice")],
                &[("1.2.840.113549.1.9.1", IA5, b"a@b.c")]
            ]),
            "1.2.840.113549.1.9.1=#16056140622e63,CN=alice"
        );
    }

    #[test]
    fn a_certificate_subject_with_custom_types_formats_through_rcgen() {
        let ca = ca("Test CA");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
            DnValue::Ia5String("org".try_into().unwrap()),
        );
        dn.push(DnType::OrganizationalUnitName, "R&D; Kafka");
        dn.push(DnType::CommonName, "svc=bridge");
        let (pem, _) = leaf(&ca, dn, 5);
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(
            subject_dn(&der).unwrap(),
            r"CN=svc\=bridge,OU=R&D\; Kafka,DC=org"
        );
    }
}
