//! One connection's authentication: who it is (its principal) and the SASL exchange
//! that establishes it, as Kafka's `SaslServerAuthenticator` runs it.
//!
//! On a SASL listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate is
//! served until authentication completes; any other request closes the connection, as
//! does a failed authentication (after its SASL_AUTHENTICATION_FAILED answer). A
//! SaslHandshake v0 client sends its SASL tokens as bare length-prefixed frames rather
//! than SaslAuthenticate requests (the pre-KIP-152 form kafka-python long used), so the
//! session says how the next frame is to be read.
//!
//! With `connections.max.reauth.ms` set, a session expires that long after it was
//! established (KIP-368): the client re-authenticates on the same connection with a new
//! handshake (the same mechanism and principal, or the connection closes), and a
//! request arriving after expiry closes the connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_auth::plain;
use sluice_auth::principal::Principal;
use sluice_auth::scram::{ClientFirst, ScramCredential, ScramMechanism, ScramServer};
use sluice_auth::AuthError;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Encode};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::frame::{decode_request_header, encode_response, ParsedHeader};
use sluice_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use tracing::{debug, info};

use crate::error::BrokerError;
use crate::security::{SaslMechanism, SecurityProtocol};

/// SaslHandshake versions served: v0 (raw tokens follow) and v1 (SaslAuthenticate).
pub const HANDSHAKE_VERSIONS: (i16, i16) = (0, 1);
/// SaslAuthenticate versions served (v1 adds the session lifetime, v2 is flexible).
pub const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);

/// What the session needs from the broker to check credentials.
pub trait Credentials {
    /// The enabled mechanisms, in the order the handshake lists them.
    fn mechanisms(&self) -> &[SaslMechanism];
    /// PLAIN's user table.
    fn plain_users(&self) -> &BTreeMap<String, String>;
    /// The stored SCRAM credential of `user` for `mechanism`.
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    fn max_reauth_ms(&self) -> u64;
    /// Told of each exchange's outcome, for metrics.
    fn outcome(&self, _outcome: Outcome) {}
}

/// How a SASL exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Authenticated,
    Reauthenticated,
    Failed,
}

/// What the connection does with a frame after the session has seen it.
#[derive(Debug)]
pub enum Step {
    /// A Kafka request for the router, from an authenticated connection (or
    /// ApiVersions, which is served before authentication too).
    Request(Bytes),
    /// Send this complete frame and go on reading.
    Reply(Bytes),
    /// Send this complete frame, then close the connection.
    ReplyAndClose(Bytes),
    /// Close the connection without an answer.
    Close(&'static str),
}

/// Where the SASL exchange stands.
#[derive(Debug)]
enum Exchange {
    Idle,
    /// A handshake chose `mechanism`; `raw`: tokens come as bare frames (v0 handshake).
    Handshaken {
        mechanism: SaslMechanism,
        raw: bool,
    },
    /// SCRAM sent its server-first message and waits for the client-final one.
    ScramFinal {
        server: Box<ScramServer>,
        mechanism: SaslMechanism,
        raw: bool,
    },
}

/// One connection's authentication state.
#[derive(Debug)]
pub struct Session {
    sasl: bool,
    principal: Principal,
    authenticated: bool,
    /// The mechanism of the completed authentication (re-authentication keeps it).
    mechanism: Option<SaslMechanism>,
    expires_at: Option<Instant>,
    exchange: Exchange,
}

impl Session {
    /// A new connection on a listener speaking `protocol`; `tls_principal` is the
    /// subject of a verified client certificate, if any.
    pub fn new(protocol: SecurityProtocol, tls_principal: Option<Principal>) -> Self {
        let sasl = protocol.uses_sasl();
        Self {
            sasl,
            // SASL_SSL takes its principal from SASL, never from the certificate.
            principal: match (sasl, tls_principal) {
                (false, Some(p)) => p,
                _ => Principal::anonymous(),
            },
            authenticated: !sasl,
            mechanism: None,
            expires_at: None,
            exchange: Exchange::Idle,
        }
    }

    /// Who the connection is (ANONYMOUS until a SASL exchange completes).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Whether the next frame is a bare SASL token rather than a Kafka request.
    fn raw(&self) -> bool {
        matches!(
            self.exchange,
            Exchange::Handshaken { raw: true, .. } | Exchange::ScramFinal { raw: true, .. }
        )
    }

    /// Takes one frame read from the connection.
    pub fn on_frame(
        &mut self,
        creds: &dyn Credentials,
        frame: Bytes,
        now: Instant,
    ) -> Result<Step, BrokerError> {
        if self.raw() {
            return Ok(self.raw_token(creds, &frame, now));
        }
        let mut body = frame.clone();
        let header = decode_request_header(&mut body)?;
        match ApiKey::from_i16(header.api_key) {
            Some(ApiKey::ApiVersions) => Ok(Step::Request(frame)),
            Some(ApiKey::SaslHandshake) => self.handshake(creds, &header, body),
            Some(ApiKey::SaslAuthenticate) => self.authenticate(creds, &header, body, now),
            _ if !self.authenticated => {
                debug!(
                    api = header.api_key,
                    "closing connection: request before SASL authentication"
                );
                Ok(Step::Close("request before authentication"))
            }
            _ if self.expires_at.is_some_and(|t| now >= t) => {
                info!(principal = %self.principal, "closing connection: SASL session expired");
                Ok(Step::Close("session expired"))
            }
            _ => Ok(Step::Request(frame)),
        }
    }

    fn handshake(
        &mut self,
        creds: &dyn Credentials,
        header: &ParsedHeader,
        mut body: Bytes,
    ) -> Result<Step, BrokerError> {
        let v = header.api_version;
        if !(HANDSHAKE_VERSIONS.0..=HANDSHAKE_VERSIONS.1).contains(&v) {
            return Err(unsupported(header));
        }
        let req = SaslHandshakeRequest::decode(&mut body, v)?;
        let mechanisms: Vec<String> = creds
            .mechanisms()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        let answer = |error: ErrorCode| -> Result<Bytes, BrokerError> {
            let resp = SaslHandshakeResponse {
                error_code: error.code(),
                mechanisms: mechanisms.clone(),
            };
            encode(ApiKey::SaslHandshake, header, &resp)
        };
        if !self.sasl {
            // Not a SASL listener: Kafka answers, and keeps the connection.
            return Ok(Step::Reply(answer(ErrorCode::IllegalSaslState)?));
        }
        if !matches!(self.exchange, Exchange::Idle) {
            return Ok(Step::ReplyAndClose(answer(ErrorCode::IllegalSaslState)?));
        }
        let chosen = creds
            .mechanisms()
            .iter()
            .copied()
            .find(|m| m.name() == req.mechanism);
        let Some(mechanism) = chosen else {
            debug!(mechanism = %req.mechanism, "SASL mechanism not enabled");
            return Ok(Step::ReplyAndClose(answer(
                ErrorCode::UnsupportedSaslMechanism,
            )?));
        };
        if self.authenticated {
            // Re-authentication (KIP-368) needs SaslAuthenticate and the same mechanism.
            if v == 0 || self.mechanism != Some(mechanism) {
                return Ok(Step::ReplyAndClose(answer(ErrorCode::IllegalSaslState)?));
            }
        }
        self.exchange = Exchange::Handshaken {
            mechanism,
            raw: v == 0,
        };
        Ok(Step::Reply(answer(ErrorCode::None)?))
    }

    fn authenticate(
        &mut self,
        creds: &dyn Credentials,
        header: &ParsedHeader,
        mut body: Bytes,
        now: Instant,
    ) -> Result<Step, BrokerError> {
        let v = header.api_version;
        if !(AUTHENTICATE_VERSIONS.0..=AUTHENTICATE_VERSIONS.1).contains(&v) {
            return Err(unsupported(header));
        }
        let req = SaslAuthenticateRequest::decode(&mut body, v)?;
        let fail = |error: ErrorCode, message: String| -> Result<Step, BrokerError> {
            let resp = SaslAuthenticateResponse {
                error_code: error.code(),
                error_message: Some(message),
                ..Default::default()
            };
            Ok(Step::ReplyAndClose(encode(
                ApiKey::SaslAuthenticate,
                header,
                &resp,
            )?))
        };
        if !self.sasl {
            let resp = SaslAuthenticateResponse {
                error_code: ErrorCode::IllegalSaslState.code(),
                error_message: Some("SaslAuthenticate on a listener without SASL".into()),
                ..Default::default()
            };
            return Ok(Step::Reply(encode(
                ApiKey::SaslAuthenticate,
                header,
                &resp,
            )?));
        }
        if matches!(self.exchange, Exchange::Idle) {
            return fail(
                ErrorCode::IllegalSaslState,
                "SaslAuthenticate before SaslHandshake".into(),
            );
        }
        match self.token(creds, &req.auth_bytes, now) {
            Ok((reply, done)) => {
                let resp = SaslAuthenticateResponse {
                    auth_bytes: Bytes::from(reply),
                    session_lifetime_ms: if done { self.lifetime_ms(creds) } else { 0 },
                    ..Default::default()
                };
                Ok(Step::Reply(encode(
                    ApiKey::SaslAuthenticate,
                    header,
                    &resp,
                )?))
            }
            Err(message) => fail(ErrorCode::SaslAuthenticationFailed, message),
        }
    }

    /// A bare token after a v0 handshake; the answer is a bare token too, and a failure
    /// just closes the connection (v0 has no way to say why).
    fn raw_token(&mut self, creds: &dyn Credentials, token: &[u8], now: Instant) -> Step {
        match self.token(creds, token, now) {
            Ok((reply, _)) => {
                let mut frame = BytesMut::with_capacity(4 + reply.len());
                frame.put_u32(u32::try_from(reply.len()).unwrap_or(u32::MAX));
                frame.extend_from_slice(&reply);
                Step::Reply(frame.freeze())
            }
            Err(_) => Step::Close("authentication failed"),
        }
    }

    /// Feeds one client token to the mechanism. `Ok((reply, done))`; `Err` carries the
    /// message for the client (Kafka's wording, which does not say which part failed).
    fn token(
        &mut self,
        creds: &dyn Credentials,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, bool), String> {
        let exchange = std::mem::replace(&mut self.exchange, Exchange::Idle);
        let result = match exchange {
            Exchange::Idle => Err((None, AuthError::Malformed("no handshake".into()))),
            Exchange::Handshaken {
                mechanism: SaslMechanism::Plain,
                ..
            } => plain::authenticate(token, creds.plain_users())
                .map(|user| (Vec::new(), Some((user, SaslMechanism::Plain))))
                .map_err(|e| (Some(SaslMechanism::Plain), e)),
            Exchange::Handshaken {
                mechanism: mechanism @ SaslMechanism::Scram(m),
                raw,
            } => scram_first(creds, m, token)
                .map(|(server, reply)| {
                    self.exchange = Exchange::ScramFinal {
                        server: Box::new(server),
                        mechanism,
                        raw,
                    };
                    (reply, None)
                })
                .map_err(|e| (Some(mechanism), e)),
            Exchange::ScramFinal {
                server, mechanism, ..
            } => server
                .finish(token)
                .map(|(user, reply)| (reply, Some((user, mechanism))))
                .map_err(|e| (Some(mechanism), e)),
        };
        match result {
            Ok((reply, None)) => Ok((reply, false)),
            Ok((reply, Some((user, mechanism)))) => {
                let principal = Principal::user(user);
                if self.authenticated && principal != self.principal {
                    creds.outcome(Outcome::Failed);
                    info!(was = %self.principal, now = %principal, "re-authentication changed the principal");
                    return Err("Cannot change principals during re-authentication".into());
                }
                debug!(%principal, mechanism = mechanism.name(), "SASL authentication succeeded");
                creds.outcome(if self.authenticated {
                    Outcome::Reauthenticated
                } else {
                    Outcome::Authenticated
                });
                self.principal = principal;
                self.authenticated = true;
                self.mechanism = Some(mechanism);
                self.expires_at = match creds.max_reauth_ms() {
                    0 => None,
                    ms => Some(now + Duration::from_millis(ms)),
                };
                Ok((reply, true))
            }
            Err((mechanism, e)) => {
                creds.outcome(Outcome::Failed);
                info!(error = %e, "SASL authentication failed");
                let name = mechanism.map_or("", SaslMechanism::name);
                Err(format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {name}"
                ))
            }
        }
    }

    fn lifetime_ms(&self, creds: &dyn Credentials) -> i64 {
        i64::try_from(creds.max_reauth_ms()).unwrap_or(i64::MAX)
    }
}

/// Answers a SCRAM client-first message with the server-first one.
fn scram_first(
    creds: &dyn Credentials,
    mechanism: ScramMechanism,
    token: &[u8],
) -> Result<(ScramServer, Vec<u8>), AuthError> {
    let first = ClientFirst::parse(token)?;
    let credential = creds
        .scram(&first.user, mechanism)
        .ok_or(AuthError::BadCredentials)?;
    ScramServer::start(first, credential, &server_nonce())
}

/// 32 random hex digits (a v4 UUID's 122 random bits), fresh per exchange.
fn server_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn unsupported(header: &ParsedHeader) -> BrokerError {
    BrokerError::UnsupportedApi {
        api_key: header.api_key,
        version: header.api_version,
    }
}

fn encode<M: Encode>(api: ApiKey, header: &ParsedHeader, body: &M) -> Result<Bytes, BrokerError> {
    let v = header.api_version;
    Ok(encode_response(
        header.correlation_id,
        api.response_header_version(v),
        body,
        v,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::frame::{decode_response_header, encode_request};

    struct Creds {
        mechanisms: Vec<SaslMechanism>,
        plain: BTreeMap<String, String>,
        scram: BTreeMap<String, ScramCredential>,
        reauth: u64,
    }

    impl Credentials for Creds {
        fn mechanisms(&self) -> &[SaslMechanism] {
            &self.mechanisms
        }
        fn plain_users(&self) -> &BTreeMap<String, String> {
            &self.plain
        }
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.scram.get(user).filter(|c| c.mechanism == m).cloned()
        }
        fn max_reauth_ms(&self) -> u64 {
            self.reauth
        }
    }

    fn creds() -> Creds {
        let cred =
            ScramCredential::derive(ScramMechanism::Sha512, "alice-secret", b"salt-salt", 4096)
                .unwrap();
        Creds {
            mechanisms: vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(ScramMechanism::Sha512),
            ],
            plain: BTreeMap::from([("bob".to_string(), "bob-secret".to_string())]),
            scram: BTreeMap::from([("alice".to_string(), cred)]),
            reauth: 0,
        }
    }

    fn request<M: Encode>(api: ApiKey, v: i16, body: &M) -> Bytes {
        let frame = encode_request(api, v, 7, Some("test"), body).unwrap();
        frame.slice(4..)
    }

    fn handshake(mechanism: &str, v: i16) -> Bytes {
        let req = SaslHandshakeRequest {
            mechanism: mechanism.into(),
        };
        request(ApiKey::SaslHandshake, v, &req)
    }

    fn authenticate(bytes: &[u8], v: i16) -> Bytes {
        let req = SaslAuthenticateRequest {
            auth_bytes: Bytes::copy_from_slice(bytes),
        };
        request(ApiKey::SaslAuthenticate, v, &req)
    }

    fn metadata() -> Bytes {
        let req = sluice_protocol::messages::MetadataRequest::default();
        request(ApiKey::Metadata, 9, &req)
    }

    fn decode_handshake(frame: &Bytes) -> SaslHandshakeResponse {
        let mut b = frame.slice(4..);
        decode_response_header(&mut b, 0).unwrap();
        SaslHandshakeResponse::decode(&mut b, 1).unwrap()
    }

    fn decode_auth(frame: &Bytes, v: i16) -> SaslAuthenticateResponse {
        let mut b = frame.slice(4..);
        let hv = ApiKey::SaslAuthenticate.response_header_version(v);
        decode_response_header(&mut b, hv).unwrap();
        SaslAuthenticateResponse::decode(&mut b, v).unwrap()
    }

    fn reply(step: Step) -> Bytes {
        match step {
            Step::Reply(b) => b,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn plain_then_requests_flow() {
        let c = creds();
        let now = Instant::now();
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        assert!(matches!(
            s.on_frame(&c, metadata(), now).unwrap(),
            Step::Close(_)
        ));
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        let r = decode_handshake(&reply(s.on_frame(&c, handshake("PLAIN", 1), now).unwrap()));
        assert_eq!(r.error_code, 0);
        assert_eq!(r.mechanisms, vec!["PLAIN", "SCRAM-SHA-512"]);
        let r = decode_auth(
            &reply(
                s.on_frame(&c, authenticate(b"\0bob\0bob-secret", 1), now)
                    .unwrap(),
            ),
            1,
        );
        assert_eq!(r.error_code, 0);
        assert_eq!(s.principal().to_string(), "User:bob");
        assert!(matches!(
            s.on_frame(&c, metadata(), now).unwrap(),
            Step::Request(_)
        ));
    }

    #[test]
    fn wrong_password_fails_and_closes() {
        let c = creds();
        let now = Instant::now();
        let mut s = Session::new(SecurityProtocol::SaslSsl, None);
        reply(s.on_frame(&c, handshake("PLAIN", 1), now).unwrap());
        let Step::ReplyAndClose(frame) = s
            .on_frame(&c, authenticate(b"\0bob\0nope", 2), now)
            .unwrap()
        else {
            panic!("expected the connection to close");
        };
        let r = decode_auth(&frame, 2);
        assert_eq!(r.error_code, ErrorCode::SaslAuthenticationFailed.code());
        assert!(r.error_message.unwrap().contains("PLAIN"));
        assert!(!s.is_authenticated());
    }

    #[test]
    fn unknown_mechanism_and_illegal_state() {
        let c = creds();
        let now = Instant::now();
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        let Step::ReplyAndClose(f) = s.on_frame(&c, handshake("GSSAPI", 1), now).unwrap() else {
            panic!("expected close");
        };
        assert_eq!(
            decode_handshake(&f).error_code,
            ErrorCode::UnsupportedSaslMechanism.code()
        );
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        assert!(matches!(
            s.on_frame(&c, authenticate(b"x", 1), now).unwrap(),
            Step::ReplyAndClose(_)
        ));
        // A PLAINTEXT listener answers a handshake with ILLEGAL_SASL_STATE and goes on.
        let mut s = Session::new(SecurityProtocol::Plaintext, None);
        let f = reply(s.on_frame(&c, handshake("PLAIN", 1), now).unwrap());
        assert_eq!(
            decode_handshake(&f).error_code,
            ErrorCode::IllegalSaslState.code()
        );
        assert!(matches!(
            s.on_frame(&c, metadata(), now).unwrap(),
            Step::Request(_)
        ));
    }

    #[test]
    fn raw_tokens_after_v0_handshake() {
        let c = creds();
        let now = Instant::now();
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        reply(s.on_frame(&c, handshake("PLAIN", 0), now).unwrap());
        let f = reply(
            s.on_frame(&c, Bytes::from_static(b"\0bob\0bob-secret"), now)
                .unwrap(),
        );
        assert_eq!(&f[..], &[0, 0, 0, 0]);
        assert!(s.is_authenticated());
        let mut s = Session::new(SecurityProtocol::SaslPlaintext, None);
        reply(s.on_frame(&c, handshake("PLAIN", 0), now).unwrap());
        assert!(matches!(
            s.on_frame(&c, Bytes::from_static(b"\0bob\0bad"), now)
                .unwrap(),
            Step::Close(_)
        ));
    }

    /// A SCRAM-SHA-512 exchange driven by a client that follows RFC 5802.
    fn scram_client(s: &mut Session, c: &Creds, password: &str, now: Instant) -> Step {
        use sluice_auth::scram_client::ScramClient;
        reply(s.on_frame(c, handshake("SCRAM-SHA-512", 1), now).unwrap());
        let (client, first) = ScramClient::start(ScramMechanism::Sha512, "alice", password, "cn1");
        let f = reply(s.on_frame(c, authenticate(&first, 1), now).unwrap());
        let server_first = decode_auth(&f, 1).auth_bytes;
        let (check, client_final) = client.respond(&server_first).unwrap();
        let step = s.on_frame(c, authenticate(&client_final, 1), now).unwrap();
        if let Step::Reply(f) = &step {
            check.verify(&decode_auth(f, 1).auth_bytes).unwrap();
        }
        step
    }

    #[test]
    fn scram_and_reauthentication() {
        let mut c = creds();
        c.reauth = 1000;
        let now = Instant::now();
        let mut s = Session::new(SecurityProtocol::SaslSsl, None);
        let f = reply(scram_client(&mut s, &c, "alice-secret", now));
        let r = decode_auth(&f, 1);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.session_lifetime_ms, 1000);
        assert!(String::from_utf8_lossy(&r.auth_bytes).starts_with("v="));
        assert_eq!(s.principal().to_string(), "User:alice");
        // Still valid before expiry; re-authenticating renews it.
        let later = now + Duration::from_millis(900);
        assert!(matches!(
            s.on_frame(&c, metadata(), later).unwrap(),
            Step::Request(_)
        ));
        reply(scram_client(&mut s, &c, "alice-secret", later));
        let after = now + Duration::from_millis(1500);
        assert!(matches!(
            s.on_frame(&c, metadata(), after).unwrap(),
            Step::Request(_)
        ));
        // Past the renewed expiry, a request closes the connection.
        assert!(matches!(
            s.on_frame(&c, metadata(), later + Duration::from_millis(1000))
                .unwrap(),
            Step::Close(_)
        ));
        let mut s = Session::new(SecurityProtocol::SaslSsl, None);
        assert!(matches!(
            scram_client(&mut s, &c, "wrong", now),
            Step::ReplyAndClose(_)
        ));
    }
}
