//! Authentication for Sluice's listeners: Kafka's SASL mechanisms as sans-io server
//! state machines (`plain`: PLAIN, RFC 4616; `scram`: SCRAM-SHA-256/512, RFC 5802 and
//! RFC 7677). The broker feeds them the client's SaslAuthenticate bytes and sends back
//! what they answer; credentials and randomness come from the caller. `acl` is Kafka's
//! ACL model and its authorizer's decision over a set of ACLs.

pub mod acl;
pub mod plain;
pub mod principal;
pub mod scram;
pub mod scram_client;

/// Why an authentication failed. Clients are told only that it failed (Kafka's
/// SASL_AUTHENTICATION_FAILED); the detail is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    #[error("the authorization id is not the authenticated user")]
    AuthzidMismatch,
    #[error("the nonce does not continue this exchange")]
    NonceMismatch,
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("iteration count {0} is outside 4096..=16384")]
    BadIterations(u32),
}
