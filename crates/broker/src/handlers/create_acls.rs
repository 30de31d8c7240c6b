//! CreateAcls (key 30), v0-3: adds ACL bindings to the metadata log. Needs Alter on
//! the cluster; each creation is checked (as Kafka's CreateAcls validation) and
//! answered on its own.

use std::sync::Arc;

use sluice_auth::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use sluice_controller::{MetadataRecord, MetadataResponse};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::create_acls_request::AclCreation;
use sluice_protocol::messages::create_acls_response::AclCreationResult;
use sluice_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 3);

fn binding(c: AclCreation, version: i16) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(c.resource_type),
        resource_name: c.resource_name,
        // v0 has no pattern type: every ACL was literal.
        pattern_type: if version == 0 {
            PatternType::Literal
        } else {
            PatternType::from_code(c.resource_pattern_type)
        },
        principal: c.principal,
        host: c.host,
        operation: Operation::from_code(c.operation),
        permission: Permission::from_code(c.permission_type),
    }
}

fn result(code: ErrorCode, message: Option<String>) -> AclCreationResult {
    AclCreationResult {
        error_code: code.code(),
        error_message: message,
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: CreateAclsRequest,
    version: i16,
) -> CreateAclsResponse {
    let n = req.creations.len();
    if !broker.access.authz(conn).allows_cluster(Operation::Alter) {
        let denied = || result(ErrorCode::ClusterAuthorizationFailed, None);
        return CreateAclsResponse {
            results: (0..n).map(|_| denied()).collect(),
            ..Default::default()
        };
    }
    let mut results = Vec::with_capacity(n);
    let mut valid = Vec::new();
    for c in req.creations {
        let b = binding(c, version);
        match b.validate() {
            Ok(()) => {
                results.push(None);
                valid.push(b);
            }
            Err(e) => results.push(Some(result(ErrorCode::InvalidRequest, Some(e.to_string())))),
        }
    }
    // The valid ones go in one record: all or none of them are committed.
    let written = if valid.is_empty() {
        Ok(())
    } else {
        match broker
            .cluster
            .write(MetadataRecord::CreateAcls { bindings: valid })
            .await
        {
            Ok(MetadataResponse::Rejected(reason)) => {
                Err((ErrorCode::InvalidRequest, reason.to_string()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err((e.code, e.message)),
        }
    };
    CreateAclsResponse {
        results: results
            .into_iter()
            .map(|r| match (r, &written) {
                (Some(r), _) => r,
                (None, Ok(())) => result(ErrorCode::None, None),
                (None, Err((code, message))) => result(*code, Some(message.clone())),
            })
            .collect(),
        ..Default::default()
    }
}
