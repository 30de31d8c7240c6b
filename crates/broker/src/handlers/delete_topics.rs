//! DeleteTopics (key 20), v0-6: by name, and from v6 by topic ID.
//!
//! Authorization, as Kafka's: Delete on the topic (by name, or by the name its ID
//! resolves to), else TOPIC_AUTHORIZATION_FAILED, checked before anything that would
//! reveal whether a named topic exists. A topic named by ID is answered without its name
//! to a principal that may not Describe it either.

use std::sync::Arc;

use sluice_auth::acl::Operation;
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_topics_response::DeletableTopicResult;
use sluice_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use crate::access::Authz;
use crate::broker::Broker;
use crate::router::ConnectionInfo;

pub const VERSIONS: (i16, i16) = (0, 6);

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let authz = broker.access.authz(conn);
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::ZERO))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| delete_one(broker, &authz, name, id))
        .collect();
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}

fn delete_one(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    name: Option<String>,
    id: Uuid,
) -> DeletableTopicResult {
    let fail = |name: Option<String>, id: Uuid, code: ErrorCode, msg: &str| DeletableTopicResult {
        name,
        topic_id: id,
        error_code: code.code(),
        error_message: Some(msg.to_string()),
    };
    let resolved = match (&name, id == Uuid::ZERO) {
        (Some(_), false) => {
            return fail(
                name,
                id,
                ErrorCode::InvalidRequest,
                "Topic name and topic ID cannot both be specified.",
            )
        }
        (Some(n), true) => n.clone(),
        (None, false) => match broker.topics.get_by_id(&id) {
            Some(t) => t.name.clone(),
            None => {
                return fail(
                    None,
                    id,
                    ErrorCode::UnknownTopicId,
                    "This server does not host this topic ID.",
                )
            }
        },
        (None, true) => {
            return fail(
                None,
                id,
                ErrorCode::InvalidRequest,
                "Neither topic name nor topic ID was specified.",
            )
        }
    };
    if !authz.allows_topic(Operation::Delete, &resolved) {
        let by_id = name.is_none();
        let shown =
            (!by_id || authz.allows_topic(Operation::Describe, &resolved)).then_some(resolved);
        return fail(
            shown,
            id,
            ErrorCode::TopicAuthorizationFailed,
            "Authorization failed.",
        );
    }
    // The coordinators' own topics hold every group's (and transaction's) state:
    // deleting them would orphan it, so they are refused as a Kafka admin tool refuses.
    if broker
        .topics
        .get(&resolved)
        .is_some_and(|t| t.is_internal())
    {
        return fail(
            Some(resolved),
            id,
            ErrorCode::InvalidRequest,
            "Internal topics (__consumer_offsets, __transaction_state) cannot be deleted.",
        );
    }
    match broker.delete_topic(&resolved) {
        Ok(deleted_id) => DeletableTopicResult {
            name: Some(resolved),
            topic_id: deleted_id,
            error_code: ErrorCode::None.code(),
            error_message: None,
        },
        Err(e) => fail(Some(resolved), id, e.code, &e.message),
    }
}
