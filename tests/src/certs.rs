//! A throwaway PKI for TLS tests, written as PEM files: a CA, a broker certificate it
//! signs, client certificates on demand (subject `CN=<name>,O=Sluice Test`, so the Kafka
//! principal is `User:CN=<name>,O=Sluice Test`), and a second CA nobody trusts for
//! certificates that must be refused. The `gen-certs` binary writes the same set for
//! the Python suites and the compose file.
//!
//! Files in the directory: `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem`,
//! `other-ca.pem`, and per client `<name>.pem` / `<name>-key.pem` (from the other CA:
//! `untrusted-<name>.pem` / `untrusted-<name>-key.pem`). Keys are PKCS#8 ECDSA P-256.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The organization every subject of the test PKI carries.
pub const ORGANIZATION: &str = "Sluice Test";

/// The broker certificate's subject as a Kafka principal: what a broker is on a listener
/// that asks for client certificates (it presents `server.pem` on its own connections).
pub const BROKER_PRINCIPAL: &str = "User:CN=sluice-broker,O=Sluice Test";

/// DNS names of the broker certificate: loopback, the compose services and the
/// Kubernetes StatefulSet's pods behind its headless Service.
pub const DNS_SANS: &[&str] = &[
    "localhost",
    "sluice-1",
    "sluice-2",
    "sluice-3",
    "sluice-0.sluice-headless",
    "sluice-1.sluice-headless",
    "sluice-2.sluice-headless",
    "*.sluice-headless.default.svc.cluster.local",
];

/// The loopback addresses, for tests that connect to `127.0.0.1` / `[::1]` with the
/// host name checked.
pub const IP_SANS: &[&str] = &["127.0.0.1", "::1"];

/// The Kafka principal of a client certificate [`TestPki::client`] issues for `cn`.
pub fn client_principal(cn: &str) -> String {
    format!("User:CN={cn},O={ORGANIZATION}")
}

/// A test PKI written to `dir`.
#[derive(Debug)]
pub struct TestPki {
    pub dir: PathBuf,
    /// The trusted CA's certificate (the truststore of brokers and clients).
    pub ca_pem: PathBuf,
    pub ca_key_pem: PathBuf,
    /// The broker's certificate (subject `CN=sluice-broker,O=Sluice Test`), good for
    /// both server and client authentication.
    pub server_pem: PathBuf,
    pub server_key_pem: PathBuf,
    /// The untrusted CA's certificate: a client trusting only it refuses the broker.
    pub other_ca_pem: PathBuf,
    ca: Issuer<'static, KeyPair>,
    other_ca: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// Writes a PKI to `dir` (created if missing) whose broker certificate names
    /// [`DNS_SANS`] and [`IP_SANS`].
    pub fn generate(dir: &Path) -> Result<TestPki> {
        let sans: Vec<&str> = DNS_SANS.iter().chain(IP_SANS).copied().collect();
        Self::generate_with_sans(dir, &sans)
    }

    /// Writes a PKI to `dir` whose broker certificate names exactly `sans` (DNS names,
    /// or IP addresses, told apart by parsing).
    pub fn generate_with_sans(dir: &Path, sans: &[&str]) -> Result<TestPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca, ca_cert, ca_key) = new_ca("Sluice Test CA")?;
        let (other_ca, other_ca_cert, _) = new_ca("Sluice Untrusted CA")?;
        let file = |name: &str| dir.join(name);
        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_pem: file("ca.pem"),
            ca_key_pem: file("ca-key.pem"),
            server_pem: file("server.pem"),
            server_key_pem: file("server-key.pem"),
            other_ca_pem: file("other-ca.pem"),
            ca,
            other_ca,
        };
        write(&pki.ca_pem, &ca_cert)?;
        write(&pki.ca_key_pem, &ca_key)?;
        write(&pki.other_ca_pem, &other_ca_cert)?;
        let (cert, key) = issue(
            &pki.ca,
            "sluice-broker",
            sans,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        write(&pki.server_pem, &cert)?;
        write(&pki.server_key_pem, &key)?;
        Ok(pki)
    }

    /// Issues a client certificate with subject `CN=<cn>,O=Sluice Test` from the trusted
    /// CA and writes `<cn>.pem` and `<cn>-key.pem`; returns (certificate, key) paths.
    /// Panics if that fails (see [`TestPki::try_client`]).
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        self.try_client(cn)
            .unwrap_or_else(|e| panic!("issuing a client certificate for {cn}: {e:#}"))
    }

    /// As [`TestPki::client`], from the CA nobody trusts: `untrusted-<cn>.pem` and
    /// `untrusted-<cn>-key.pem`.
    pub fn other_ca_client(&self, cn: &str) -> (PathBuf, PathBuf) {
        self.try_other_ca_client(cn)
            .unwrap_or_else(|e| panic!("issuing an untrusted certificate for {cn}: {e:#}"))
    }

    pub fn try_client(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        self.write_client(&self.ca, cn, &file_stem(cn)?)
    }

    pub fn try_other_ca_client(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        self.write_client(&self.other_ca, cn, &format!("untrusted-{}", file_stem(cn)?))
    }

    fn write_client(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        cn: &str,
        stem: &str,
    ) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = issue(issuer, cn, &[], &[ExtendedKeyUsagePurpose::ClientAuth])?;
        let cert_path = self.dir.join(format!("{stem}.pem"));
        let key_path = self.dir.join(format!("{stem}-key.pem"));
        write(&cert_path, &cert)?;
        write(&key_path, &key)?;
        Ok((cert_path, key_path))
    }
}

/// The file name stem of a client: its CN, which must not clash with the PKI's own
/// files nor leave the directory.
fn file_stem(cn: &str) -> Result<String> {
    let ok = !cn.is_empty()
        && cn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !cn.starts_with('.');
    if !ok {
        bail!("client name {cn:?} is not a plain file name (letters, digits, -, _, .)");
    }
    let taken = ["ca", "ca-key", "server", "server-key", "other-ca"];
    if taken.contains(&cn) || cn.ends_with("-key") || cn.starts_with("untrusted-") {
        bail!("client name {cn:?} would clash with the PKI's own files");
    }
    Ok(cn.to_string())
}

fn write(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

fn subject(cn: &str) -> DistinguishedName {
    // Pushed in ASN.1 order (least specific first): the RFC 2253 form Kafka uses for
    // the principal reverses it to `CN=<cn>,O=Sluice Test`.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    dn
}

/// A self-signed CA: its issuer handle, certificate PEM and key PEM.
fn new_ca(cn: &str) -> Result<(Issuer<'static, KeyPair>, String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok((Issuer::new(params, key), cert.pem(), key_pem))
}

/// A leaf certificate for `cn` with `sans`, signed by `issuer`: (certificate, key) PEM.
fn issue(
    issuer: &Issuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName((*s).try_into()?)),
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    // OpenSSL's strict verification (Python 3.13's default context) wants the
    // authority key identifier on every certificate a CA issued.
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;
    use std::sync::Arc;

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    fn roots(path: &Path) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(cert(path)).unwrap();
        Arc::new(roots)
    }

    fn verify_server(pki: &TestPki, ca: &Path, name: &str) -> Result<(), rustls::Error> {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), ring())
            .build()
            .unwrap();
        verifier
            .verify_server_cert(
                &cert(&pki.server_pem),
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    fn verify_client(pki: &TestPki, cert_path: &Path) -> Result<(), rustls::Error> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(&pki.ca_pem), ring())
            .build()
            .unwrap();
        verifier
            .verify_client_cert(&cert(cert_path), &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn the_server_certificate_verifies_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "sluice-2",
            "sluice-0.sluice-headless",
        ] {
            verify_server(&pki, &pki.ca_pem, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify_server(&pki, &pki.ca_pem, "elsewhere.example").is_err());
        // Nobody trusting only the other CA accepts it.
        assert!(verify_server(&pki, &pki.other_ca_pem, "localhost").is_err());
        // The broker also presents it as a client certificate.
        verify_client(&pki, &pki.server_pem).unwrap();
        // Everything the directory promises is there and is PEM.
        for f in [&pki.ca_key_pem, &pki.server_key_pem] {
            assert!(std::fs::read_to_string(f)
                .unwrap()
                .contains("BEGIN PRIVATE KEY"));
        }
    }

    #[test]
    fn without_ip_sans_an_address_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate_with_sans(dir.path(), DNS_SANS).unwrap();
        verify_server(&pki, &pki.ca_pem, "localhost").unwrap();
        assert!(verify_server(&pki, &pki.ca_pem, "127.0.0.1").is_err());
    }

    #[test]
    fn client_certificates_verify_only_from_the_trusted_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        let (cert_path, key_path) = pki.client("writer");
        assert_eq!(cert_path, dir.path().join("writer.pem"));
        assert_eq!(key_path, dir.path().join("writer-key.pem"));
        verify_client(&pki, &cert_path).unwrap();
        let (untrusted, _) = pki.other_ca_client("writer");
        assert_eq!(untrusted, dir.path().join("untrusted-writer.pem"));
        assert!(verify_client(&pki, &untrusted).is_err());
        assert_eq!(client_principal("writer"), "User:CN=writer,O=Sluice Test");
    }

    #[test]
    fn client_names_that_would_clash_or_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path()).unwrap();
        for bad in ["ca", "server-key", "../x", "a/b", "", "untrusted-x", "x y"] {
            assert!(pki.try_client(bad).is_err(), "{bad:?}");
        }
        // The CA survived.
        verify_server(&pki, &pki.ca_pem, "localhost").unwrap();
    }
}
