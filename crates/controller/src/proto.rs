//! The edge between the generated protobuf types and the domain's: every conversion of
//! an RPC message happens here. A Raft payload is an openraft request or reply as JSON;
//! a lifecycle message is checked and turned into [`crate::lifecycle`]'s types.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use crate::heartbeat::{Heartbeat, SessionError};
use crate::image::BrokerEndpoint;
use crate::lifecycle::{HeartbeatReply, LeaderHint, LifecycleError, RegisterBroker};

/// Code generated from `proto/controller.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("sluice.controller.v1");
}

/// Wraps an openraft request for the wire.
pub fn encode_request<T: Serialize>(value: &T) -> Result<pb::RaftRequest, serde_json::Error> {
    Ok(pb::RaftRequest {
        payload: serde_json::to_vec(value)?,
    })
}

/// Unwraps a request; a malformed payload is the caller's fault (`INVALID_ARGUMENT`).
pub fn decode_request<T: DeserializeOwned>(request: &pb::RaftRequest) -> Result<T, Status> {
    serde_json::from_slice(&request.payload)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft RPC payload: {e}")))
}

/// Wraps an openraft reply (a `Result` of the response or the Raft error) for the wire.
pub fn encode_reply<T: Serialize>(value: &T) -> Result<pb::RaftReply, Status> {
    serde_json::to_vec(value)
        .map(|payload| pb::RaftReply { payload })
        .map_err(|e| Status::internal(format!("encoding Raft RPC reply: {e}")))
}

/// Unwraps a reply.
pub fn decode_reply<T: DeserializeOwned>(reply: &pb::RaftReply) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&reply.payload)
}

/// A registration request, checked. Bad input is `INVALID_ARGUMENT`.
pub fn register_from_pb(request: pb::RegisterBrokerRequest) -> Result<RegisterBroker, Status> {
    let broker = broker_id(request.broker_id)?;
    let incarnation: [u8; 16] = request.incarnation_id.as_slice().try_into().map_err(|_| {
        Status::invalid_argument(format!(
            "incarnation_id must be a 16-byte UUID, got {} bytes",
            request.incarnation_id.len()
        ))
    })?;
    if request.listeners.is_empty() {
        return Err(Status::invalid_argument(
            "a broker needs at least one listener",
        ));
    }
    let endpoints = request
        .listeners
        .into_iter()
        .map(|l| {
            let port = u16::try_from(l.port)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| {
                    Status::invalid_argument(format!("listener {}: bad port {}", l.name, l.port))
                })?;
            if l.name.is_empty() || l.host.is_empty() {
                return Err(Status::invalid_argument(
                    "a listener needs a name and a host",
                ));
            }
            Ok(BrokerEndpoint {
                listener: l.name,
                host: l.host,
                port,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(RegisterBroker {
        broker,
        incarnation,
        endpoints,
        rack: request.rack.filter(|rack| !rack.is_empty()),
    })
}

/// A heartbeat request, checked.
pub fn heartbeat_from_pb(request: &pb::BrokerHeartbeatRequest) -> Result<Heartbeat, Status> {
    Ok(Heartbeat {
        broker: broker_id(request.broker_id)?,
        epoch: request.broker_epoch,
        metadata_offset: request.current_metadata_offset,
        want_fence: request.want_fence,
        want_shutdown: request.want_shutdown,
    })
}

fn broker_id(id: i32) -> Result<i32, Status> {
    if id < 0 {
        return Err(Status::invalid_argument(format!("bad broker id {id}")));
    }
    Ok(id)
}

/// The answer to a registration.
pub fn register_to_pb(
    result: Result<i64, LifecycleError>,
) -> Result<pb::RegisterBrokerResponse, Status> {
    match result {
        Ok(broker_epoch) => Ok(pb::RegisterBrokerResponse {
            broker_epoch,
            ..Default::default()
        }),
        Err(e) => {
            let (error, leader) = refusal(e)?;
            Ok(pb::RegisterBrokerResponse {
                error: error.0 as i32,
                error_message: error.1,
                leader,
                broker_epoch: -1,
            })
        }
    }
}

/// The answer to a heartbeat.
pub fn heartbeat_to_pb(
    result: Result<HeartbeatReply, LifecycleError>,
) -> Result<pb::BrokerHeartbeatResponse, Status> {
    match result {
        Ok(reply) => Ok(pb::BrokerHeartbeatResponse {
            is_caught_up: reply.caught_up,
            is_fenced: reply.fenced,
            should_shut_down: reply.should_shut_down,
            ..Default::default()
        }),
        Err(e) => {
            let (error, leader) = refusal(e)?;
            Ok(pb::BrokerHeartbeatResponse {
                error: error.0 as i32,
                error_message: error.1,
                leader,
                // A refused heartbeat renews nothing: the broker must assume the worst.
                is_fenced: true,
                ..Default::default()
            })
        }
    }
}

type Refusal = ((pb::LifecycleError, String), Option<pb::ControllerLeader>);

/// A lifecycle error as a response field, or as a gRPC status when the broker can only
/// retry later (`UNAVAILABLE`).
fn refusal(e: LifecycleError) -> Result<Refusal, Status> {
    let message = e.to_string();
    let code = match e {
        LifecycleError::NotController(hint) => {
            return Ok((
                (pb::LifecycleError::NotController, message),
                Some(leader_to_pb(hint)),
            ))
        }
        LifecycleError::Session(SessionError::UnknownBroker(_)) => {
            pb::LifecycleError::BrokerIdNotRegistered
        }
        LifecycleError::Session(SessionError::StaleBrokerEpoch { .. }) => {
            pb::LifecycleError::StaleBrokerEpoch
        }
        LifecycleError::Session(SessionError::DuplicateRegistration(_)) => {
            pb::LifecycleError::DuplicateBrokerRegistration
        }
        LifecycleError::Rejected(_) | LifecycleError::Unavailable(_) => {
            return Err(Status::unavailable(message))
        }
    };
    Ok(((code, message), None))
}

/// The active controller as a node knows it, for a response.
pub fn leader_to_pb(hint: LeaderHint) -> pb::ControllerLeader {
    pb::ControllerLeader {
        leader_id: hint.id.and_then(|id| i64::try_from(id).ok()).unwrap_or(-1),
        rpc_addr: hint.rpc_addr.unwrap_or_default(),
    }
}
