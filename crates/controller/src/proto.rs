//! The edge between the generated protobuf types and openraft's own: every conversion
//! of an RPC payload happens here. A payload is an openraft request or reply as JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

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
