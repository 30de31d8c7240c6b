//! DescribeUserScramCredentials (key 50), v0 (KIP-554): which SCRAM mechanisms each
//! user has a credential for, with its iteration count (never the keys). Needs
//! Describe on the cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use sluice_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::alter_user_scram_credentials::mechanism_code;
use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    if !broker
        .access
        .authz(conn)
        .allows_cluster(Operation::Describe)
    {
        return DescribeUserScramCredentialsResponse {
            error_code: ErrorCode::ClusterAuthorizationFailed.code(),
            error_message: Some("Cluster authorization failed.".into()),
            ..Default::default()
        };
    }
    let image = broker.cluster.image();
    let info = |mechanisms: Vec<(sluice_auth::scram::ScramMechanism, u32)>| {
        mechanisms
            .into_iter()
            .map(|(m, iterations)| CredentialInfo {
                mechanism: mechanism_code(m),
                iterations: i32::try_from(iterations).unwrap_or(i32::MAX),
            })
            .collect::<Vec<_>>()
    };
    // Null or empty: every user with a credential.
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => image
            .scram_users()
            .map(|(user, mechanisms)| DescribeUserScramCredentialsResult {
                user: user.to_string(),
                credential_infos: info(mechanisms),
                ..Default::default()
            })
            .collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let duplicated: BTreeSet<String> = users
                .iter()
                .filter(|u| !seen.insert(u.name.clone()))
                .map(|u| u.name.clone())
                .collect();
            let mut done = BTreeSet::new();
            users
                .into_iter()
                .filter(|u| done.insert(u.name.clone()))
                .map(|u| {
                    if duplicated.contains(&u.name) {
                        return DescribeUserScramCredentialsResult {
                            user: u.name,
                            error_code: ErrorCode::DuplicateResource.code(),
                            error_message: Some(
                                "Cannot describe SCRAM credentials for the same user twice in a single request".into(),
                            ),
                            ..Default::default()
                        };
                    }
                    match image.scram_users().find(|(name, _)| *name == u.name) {
                        Some((_, mechanisms)) => DescribeUserScramCredentialsResult {
                            user: u.name,
                            credential_infos: info(mechanisms),
                            ..Default::default()
                        },
                        None => DescribeUserScramCredentialsResult {
                            user: u.name,
                            error_code: ErrorCode::ResourceNotFound.code(),
                            error_message: Some(
                                "Attempt to describe a user credential that does not exist".into(),
                            ),
                            ..Default::default()
                        },
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse {
        results,
        ..Default::default()
    }
}
