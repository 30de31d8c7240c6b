//! AlterUserScramCredentials (key 51), v0 (KIP-554): sets or deletes users' SCRAM
//! credentials in the metadata log. The request carries SaltedPassword; only the
//! StoredKey and ServerKey derived from it are stored. Needs Alter on the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_auth::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use sluice_controller::{MetadataRecord, MetadataResponse};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use sluice_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topics::AdminError;

pub const VERSIONS: (i16, i16) = (0, 0);

/// Kafka's wire codes for SCRAM mechanisms (ScramMechanism.type()).
pub fn mechanism_from_code(code: i8) -> Option<ScramMechanism> {
    match code {
        1 => Some(ScramMechanism::Sha256),
        2 => Some(ScramMechanism::Sha512),
        _ => None,
    }
}

pub fn mechanism_code(m: ScramMechanism) -> i8 {
    match m {
        ScramMechanism::Sha256 => 1,
        ScramMechanism::Sha512 => 2,
    }
}

fn unacceptable(message: &str) -> AdminError {
    AdminError::new(ErrorCode::UnacceptableCredential, message)
}

fn mechanism(code: i8) -> Result<ScramMechanism, AdminError> {
    mechanism_from_code(code).ok_or_else(|| {
        AdminError::new(
            ErrorCode::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        )
    })
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    // One result per user, in the order users first appear.
    let mut order: Vec<String> = Vec::new();
    let mut outcome: BTreeMap<String, Result<Vec<MetadataRecord>, AdminError>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let allowed = broker.access.authz(conn).allows_cluster(Operation::Alter);
    let image = broker.cluster.image();
    let deletions = req
        .deletions
        .into_iter()
        .map(|d| (d.name, d.mechanism, None));
    let upsertions = req.upsertions.into_iter().map(|u| {
        (
            u.name,
            u.mechanism,
            Some((u.iterations, u.salt, u.salted_password)),
        )
    });
    for (user, code, upsert) in deletions.chain(upsertions) {
        if !outcome.contains_key(&user) {
            order.push(user.clone());
            outcome.insert(user.clone(), Ok(Vec::new()));
        }
        let checked = (|| -> Result<MetadataRecord, AdminError> {
            if !allowed {
                return Err(AdminError::new(ErrorCode::ClusterAuthorizationFailed, ""));
            }
            if user.is_empty() {
                return Err(unacceptable("Username must not be empty"));
            }
            let m = mechanism(code)?;
            if !seen.insert((user.clone(), code)) {
                return Err(AdminError::new(
                    ErrorCode::DuplicateResource,
                    "A user credential cannot be altered twice in the same request",
                ));
            }
            match upsert {
                None => {
                    if image.scram_credential(&user, m).is_none() {
                        return Err(AdminError::new(
                            ErrorCode::ResourceNotFound,
                            "Attempt to delete a user credential that does not exist",
                        ));
                    }
                    Ok(MetadataRecord::DeleteScramCredential {
                        user: user.clone(),
                        mechanism: m.name().to_string(),
                    })
                }
                Some((iterations, salt, salted_password)) => {
                    let iterations = u32::try_from(iterations).unwrap_or(0);
                    if iterations < MIN_ITERATIONS {
                        return Err(unacceptable("Too few iterations"));
                    }
                    if iterations > MAX_ITERATIONS {
                        return Err(unacceptable("Too many iterations"));
                    }
                    if salt.is_empty() {
                        return Err(unacceptable("Salt must not be empty"));
                    }
                    if salted_password.is_empty() {
                        return Err(unacceptable("Password must not be empty"));
                    }
                    let c = ScramCredential::from_salted_password(
                        m,
                        &salted_password,
                        &salt,
                        iterations,
                    );
                    Ok(MetadataRecord::UpsertScramCredential {
                        user: user.clone(),
                        mechanism: m.name().to_string(),
                        salt: c.salt,
                        iterations,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                    })
                }
            }
        })();
        if let Some(slot) = outcome.get_mut(&user) {
            match (slot.as_mut(), checked) {
                (Ok(records), Ok(r)) => records.push(r),
                (Ok(_), Err(e)) => *slot = Err(e),
                (Err(_), _) => {} // the user's first error stands
            }
        }
    }
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let result = match outcome.remove(&user) {
            Some(Ok(records)) => write_all(broker, records).await,
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        results.push(match result {
            Ok(()) => AlterUserScramCredentialsResult {
                user,
                ..Default::default()
            },
            Err(e) => AlterUserScramCredentialsResult {
                user,
                error_code: e.code.code(),
                error_message: (!e.message.is_empty()).then_some(e.message),
            },
        });
    }
    AlterUserScramCredentialsResponse {
        results,
        ..Default::default()
    }
}

async fn write_all(broker: &Arc<Broker>, records: Vec<MetadataRecord>) -> Result<(), AdminError> {
    for record in records {
        if let MetadataResponse::Rejected(reason) = broker.cluster.write(record).await? {
            return Err(AdminError::new(
                ErrorCode::ResourceNotFound,
                reason.to_string(),
            ));
        }
    }
    Ok(())
}
