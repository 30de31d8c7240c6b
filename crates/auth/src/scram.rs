//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka serves them: the
//! server side of the exchange, without channel binding, as a sans-io state machine.
//! The caller looks credentials up and supplies the server's nonce (randomness), so
//! the exchange is deterministic and checked against the RFC's test vector.
//!
//! Kafka stores per user and mechanism the salt, iteration count, StoredKey and
//! ServerKey, never the password; [`ScramCredential::derive`] computes them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Kafka's bounds on the iteration count of a SCRAM credential.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM mechanism Kafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The SASL name, as in SaslHandshake and `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The length of this mechanism's hash, and so of its StoredKey and ServerKey.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: new_from_slice cannot fail for it.
        match self {
            ScramMechanism::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            ScramMechanism::Sha512 => <Hmac<Sha512> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps of a user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential from a password (as Kafka's ScramFormatter does).
    pub fn derive(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, AuthError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(AuthError::BadIterations(iterations));
        }
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations);
        Ok(Self::from_salted_password(
            mechanism, &salted, salt, iterations,
        ))
    }

    /// The credential from SaltedPassword (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Self {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }
}

/// The server between client-first and client-final.
#[derive(Debug)]
pub struct ScramServer {
    credential: ScramCredential,
    user: String,
    /// client-first-message-bare, server-first-message: the AuthMessage's first parts.
    client_first_bare: String,
    server_first: String,
    /// The combined nonce the client must echo.
    nonce: String,
}

/// The client-first message, parsed: the user it names, for the credential lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    bare: String,
    client_nonce: String,
}

impl ClientFirst {
    /// Parses `gs2-header client-first-message-bare`. Channel binding is refused (Kafka
    /// does not offer it); an authorization id must be the user itself; extensions
    /// (Kafka's `tokenauth` for delegation tokens) are refused.
    pub fn parse(message: &[u8]) -> Result<Self, AuthError> {
        let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
        let (gs2_flag, rest) = text.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
        match gs2_flag {
            "n" | "y" => {}
            _ => return Err(bad("channel binding is not supported")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
        let mut attrs = bare.split(',');
        let user = match attrs.next().and_then(|a| a.strip_prefix("n=")) {
            Some(u) => unescape_name(u)?,
            None => return Err(bad("no user name")),
        };
        let client_nonce = match attrs.next().and_then(|a| a.strip_prefix("r=")) {
            Some(n) if valid_nonce(n) => n.to_string(),
            _ => return Err(bad("no valid client nonce")),
        };
        if attrs.next().is_some() {
            return Err(bad("SCRAM extensions are not supported"));
        }
        if let Some(a) = authzid.strip_prefix("a=") {
            if unescape_name(a)? != user {
                return Err(AuthError::AuthzidMismatch);
            }
        } else if !authzid.is_empty() {
            return Err(bad("malformed authorization id"));
        }
        Ok(Self {
            user,
            bare: bare.to_string(),
            client_nonce,
        })
    }
}

impl ScramServer {
    /// Answers `first` with the server-first message, using `credential` (the user's,
    /// for this mechanism) and `server_nonce` (fresh random printable characters from
    /// the caller, no comma).
    pub fn start(
        first: ClientFirst,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), AuthError> {
        if !valid_nonce(server_nonce) {
            return Err(bad("server nonce has characters SCRAM does not allow"));
        }
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        Ok((
            Self {
                credential,
                user: first.user,
                client_first_bare: first.bare,
                server_first,
                nonce,
            },
            reply,
        ))
    }

    /// Checks the client-final message; on success returns the authenticated user and
    /// the server-final message (`v=` ServerSignature) to send.
    pub fn finish(self, message: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| bad("no client proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| bad("no channel binding attribute"))?;
        // Without channel binding the client sends base64 of its GS2 header: "n,," or
        // "y,," (or with its authorization id, which parse() checked).
        let header = B64
            .decode(binding)
            .map_err(|_| bad("bad channel binding"))?;
        if !(header.starts_with(b"n,") || header.starts_with(b"y,")) {
            return Err(bad("channel binding is not supported"));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| bad("no nonce"))?;
        // RFC 5802 wants the combined nonce echoed exactly. Kafka's server accepts any
        // nonce that ends with it, and librdkafka 2.0 (Debian's kcat) relies on that: it
        // sends its own nonce again in front. The proof still covers the message as
        // sent, so accepting the longer form gives nothing away.
        if !nonce.ends_with(&self.nonce) {
            return Err(AuthError::NonceMismatch);
        }
        let proof = B64.decode(proof).map_err(|_| bad("bad client proof"))?;
        let m = self.credential.mechanism;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(AuthError::BadCredentials);
        }
        // ClientKey = ClientProof XOR ClientSignature; it must hash to StoredKey.
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = m.hash(&client_key);
        if !bool::from(stored.ct_eq(&self.credential.stored_key)) {
            return Err(AuthError::BadCredentials);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        let reply = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((self.user, reply))
    }
}

/// The client's side of the proof (RFC 5802 section 3): ClientKey XOR
/// HMAC(StoredKey, AuthMessage). For the broker's own SCRAM logins and for tests.
pub fn client_proof(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
    auth_message: &[u8],
) -> Vec<u8> {
    let salted = mechanism.salted_password(password.as_bytes(), salt, iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    let stored_key = mechanism.hash(&client_key);
    let signature = mechanism.hmac(&stored_key, auth_message);
    client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect()
}

fn bad(why: &str) -> AuthError {
    AuthError::Malformed(why.to_string())
}

/// A nonce of printable ASCII without commas (RFC 5802's `printable`).
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A saslname: `=2C` is a comma, `=3D` an equals sign, and any other `=` is an error.
fn unescape_name(name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(bad("bad escape in a user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(bad("empty user name"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil", SCRAM-SHA-256, 4096
    /// iterations; every message of the exchange to the letter.
    #[test]
    fn accepts_librdkafka_2_0_repeated_client_nonce_as_kafka_does() {
        let m = ScramMechanism::Sha512;
        let cred = ScramCredential::derive(m, "pw", b"salt-salt", 4096).unwrap();
        let first = ClientFirst::parse(b"n,,n=admin,r=cnonce").unwrap();
        let (server, server_first) = ScramServer::start(first, cred.clone(), "snonce").unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        // librdkafka 2.0: `r=` + its own nonce + the server's whole `r=`.
        let without_proof = "c=biws,r=cnoncecnoncesnonce";
        let auth = format!("n=admin,r=cnonce,{server_first},{without_proof}");
        let proof = client_proof(m, "pw", b"salt-salt", 4096, auth.as_bytes());
        let last = format!("{without_proof},p={}", B64.encode(proof));
        assert_eq!(server.finish(last.as_bytes()).unwrap().0, "admin");
        // A nonce that does not end with the combined one is still refused.
        let first = ClientFirst::parse(b"n,,n=admin,r=cnonce").unwrap();
        let (server, _) = ScramServer::start(first, cred, "snonce").unwrap();
        assert_eq!(
            server.finish(b"c=biws,r=cnonceother,p=AAAA").unwrap_err(),
            AuthError::NonceMismatch
        );
    }

    #[test]
    fn rfc_7677_sha_256_test_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential =
            ScramCredential::derive(ScramMechanism::Sha256, "pencil", &salt, 4096).unwrap();
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let (server, server_first) =
            ScramServer::start(first, credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = server
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// The client side, for round trips: proof = ClientKey XOR HMAC(StoredKey, AuthMessage).
    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let i: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, i);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn sha_512_round_trip_and_a_wrong_password() {
        let m = ScramMechanism::Sha512;
        let credential = ScramCredential::derive(m, "s3cret", b"saltsalt", 8192).unwrap();
        assert_eq!(credential.stored_key.len(), 64);
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            let first = ClientFirst::parse(b"n,,n=al=3Dice=2C,r=abc").unwrap();
            assert_eq!(first.user, "al=ice,");
            let (server, sf) = ScramServer::start(first, credential.clone(), "xyz").unwrap();
            let sf = String::from_utf8(sf).unwrap();
            let cf = client_final(m, password, "n=al=3Dice=2C,r=abc", &sf);
            match server.finish(cf.as_bytes()) {
                Ok((user, v)) => {
                    assert!(ok, "wrong password accepted");
                    assert_eq!(user, "al=ice,");
                    assert!(v.starts_with(b"v="));
                }
                Err(e) => {
                    assert!(!ok, "right password refused: {e}");
                    assert_eq!(e, AuthError::BadCredentials);
                }
            }
        }
    }

    #[test]
    fn malformed_and_unsupported_messages_are_refused() {
        for msg in [
            &b"p=tls-unique,,n=u,r=x"[..],
            b"n,,r=x",
            b"n,,n=u",
            b"n,,n=u,r=a,b",
            b"n,,n=u,r=x,tokenauth=true",
            b"n,,n=bad=escape,r=x",
            b"n,a=other,n=u,r=x",
            b"\xff",
        ] {
            assert!(
                ClientFirst::parse(msg).is_err(),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
        assert!(ClientFirst::parse(b"n,a=u,n=u,r=x").is_ok());
        let c = ScramCredential::derive(ScramMechanism::Sha256, "p", b"s", 4096).unwrap();
        let first = ClientFirst::parse(b"n,,n=u,r=x").unwrap();
        let (server, _) = ScramServer::start(first, c, "y").unwrap();
        assert_eq!(
            server.finish(b"c=biws,r=xOTHER,p=AAAA").unwrap_err(),
            AuthError::NonceMismatch
        );
        assert!(ScramCredential::derive(ScramMechanism::Sha256, "p", b"s", 100).is_err());
    }
}
