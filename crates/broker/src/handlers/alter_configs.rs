//! AlterConfigs (key 33), v0-2: replaces a topic's whole set of overrides (the legacy,
//! non-incremental semantics). Resource checks shared with IncrementalAlterConfigs.
//!
//! Authorization (both APIs), as Kafka's: a topic needs AlterConfigs on it (else
//! TOPIC_AUTHORIZATION_FAILED, whether or not it exists), the broker AlterConfigs on the
//! cluster (else CLUSTER_AUTHORIZATION_FAILED).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use sluice_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use crate::access::Authz;
use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topics::AdminError;

pub const VERSIONS: (i16, i16) = (0, 2);

/// What both AlterConfigs APIs answer for a duplicate, a resource the principal may not
/// alter, or a resource type they cannot change.
pub fn check_resource(
    authz: &Authz<'_>,
    resource_type: i8,
    seen: &mut HashSet<(i8, String)>,
    name: &str,
) -> Result<(), AdminError> {
    if !seen.insert((resource_type, name.to_string())) {
        return Err(AdminError::new(
            ErrorCode::InvalidRequest,
            format!("Duplicate resource {name} in request"),
        ));
    }
    let denied = match resource_type {
        RESOURCE_TOPIC if !authz.allows_topic(Operation::AlterConfigs, name) => {
            Some(ErrorCode::TopicAuthorizationFailed)
        }
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER
            if !authz.allows_cluster(Operation::AlterConfigs) =>
        {
            Some(ErrorCode::ClusterAuthorizationFailed)
        }
        _ => None,
    };
    if let Some(code) = denied {
        return Err(AdminError::new(code, "Authorization failed."));
    }
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err(AdminError::new(
            ErrorCode::InvalidRequest,
            "Dynamic broker configs are not supported yet; set them by flag",
        )),
        other => Err(AdminError::new(
            ErrorCode::InvalidRequest,
            format!("Unsupported resource type {other}"),
        )),
    }
}

pub fn result(
    resource_type: i8,
    resource_name: String,
    outcome: Result<(), AdminError>,
) -> AlterConfigsResourceResponse {
    match outcome {
        Ok(()) => AlterConfigsResourceResponse {
            error_code: ErrorCode::None.code(),
            error_message: None,
            resource_type,
            resource_name,
        },
        Err(e) => AlterConfigsResourceResponse {
            error_code: e.code.code(),
            error_message: Some(e.message),
            resource_type,
            resource_name,
        },
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let authz = broker.access.authz(conn);
    let mut seen = HashSet::new();
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let outcome = check_resource(&authz, r.resource_type, &mut seen, &r.resource_name)
                .and_then(|()| {
                    let mut overrides = BTreeMap::new();
                    for c in r.configs {
                        // A null value in the legacy API means "no override".
                        if let Some(v) = c.value {
                            if overrides.insert(c.name.clone(), v).is_some() {
                                return Err(AdminError::new(
                                    ErrorCode::InvalidRequest,
                                    format!("Duplicate config key {}", c.name),
                                ));
                            }
                        }
                    }
                    broker.update_overrides(&r.resource_name, req.validate_only, |_| Ok(overrides))
                });
            result(r.resource_type, r.resource_name, outcome)
        })
        .collect();
    AlterConfigsResponse {
        responses,
        ..Default::default()
    }
}
