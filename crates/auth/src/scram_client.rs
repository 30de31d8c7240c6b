//! The client side of SCRAM-SHA-256/512 (RFC 5802), for the broker's own logins to
//! other brokers' SASL listeners and for tests that drive the server with a client
//! that follows the RFC rather than our server's expectations.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::scram::{client_proof, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::AuthError;

/// A client exchange after its first message was sent.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
}

/// A client exchange after its final message: what the server must prove.
#[derive(Debug)]
pub struct ScramClientFinal {
    expected_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange for `user`; returns the client-first message to send.
    /// `nonce` is fresh printable randomness from the caller (no comma).
    pub fn start(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> (Self, Vec<u8>) {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let message = format!("n,,{client_first_bare}").into_bytes();
        (
            Self {
                mechanism,
                password: password.to_string(),
                client_first_bare,
                nonce: nonce.to_string(),
            },
            message,
        )
    }

    /// Answers the server-first message with the client-final one.
    pub fn respond(self, server_first: &[u8]) -> Result<(ScramClientFinal, Vec<u8>), AuthError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| AuthError::Malformed("server-first is not UTF-8".into()))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(AuthError::Malformed(
                "incomplete server-first message".into(),
            ));
        };
        // The server's nonce must extend ours; a server may not make us spend unbounded
        // work on PBKDF2 either.
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::NonceMismatch);
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(AuthError::BadIterations(iterations));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let m = self.mechanism;
        let proof = client_proof(
            m,
            &self.password,
            &salt,
            iterations,
            auth_message.as_bytes(),
        );
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let server_key = m.hmac(&salted, b"Server Key");
        let expected_signature = m.hmac(&server_key, auth_message.as_bytes());
        let message = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((ScramClientFinal { expected_signature }, message))
    }
}

impl ScramClientFinal {
    /// Checks the server-final message (`v=ServerSignature`): the server knew the key.
    pub fn verify(self, server_final: &[u8]) -> Result<(), AuthError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| AuthError::Malformed("server-final is not UTF-8".into()))?;
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| AuthError::Malformed(format!("server-final: {text}")))?;
        if bool::from(signature.ct_eq(&self.expected_signature)) {
            Ok(())
        } else {
            Err(AuthError::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::{ClientFirst, ScramCredential, ScramServer};

    #[test]
    fn round_trip_with_the_server() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let cred = ScramCredential::derive(m, "secret", b"NaCl-salt", 4096).unwrap();
            let (client, first) = ScramClient::start(m, "a,b=c", "secret", "clientnonce");
            let first = ClientFirst::parse(&first).unwrap();
            assert_eq!(first.user, "a,b=c");
            let (server, server_first) = ScramServer::start(first, cred.clone(), "srv").unwrap();
            let (check, client_final) = client.respond(&server_first).unwrap();
            let (user, server_final) = server.finish(&client_final).unwrap();
            assert_eq!(user, "a,b=c");
            check.verify(&server_final).unwrap();

            // A wrong password fails at the server.
            let (client, first) = ScramClient::start(m, "a,b=c", "secret", "n2");
            let first = ClientFirst::parse(&first).unwrap();
            let (server, server_first) = ScramServer::start(first, cred, "srv").unwrap();
            let bad = ScramClient {
                password: "nope".into(),
                ..client
            };
            let (_, client_final) = bad.respond(&server_first).unwrap();
            assert_eq!(
                server.finish(&client_final).unwrap_err(),
                AuthError::BadCredentials
            );
        }
    }

    #[test]
    fn refuses_a_server_that_does_not_extend_the_nonce() {
        let (client, _) = ScramClient::start(ScramMechanism::Sha256, "u", "pw", "abc");
        assert_eq!(
            client.respond(b"r=xyz,s=c2FsdA==,i=4096").unwrap_err(),
            AuthError::NonceMismatch
        );
        let (client, _) = ScramClient::start(ScramMechanism::Sha256, "u", "pw", "abc");
        assert!(client.respond(b"r=abcd,s=c2FsdA==,i=100000000").is_err());
    }
}
