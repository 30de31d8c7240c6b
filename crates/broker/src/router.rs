//! Dispatches one request frame to its API's handler by api key and version, and
//! encodes the response frame.
//!
//! Fetch responses are encoded as segments that share the record batches read from
//! storage instead of copying them into one buffer (the bulk of a consumer's bytes);
//! every other response is one contiguous frame.
//!
//! An api key we do not serve, or a version outside the range we advertise, closes the
//! connection, as Kafka does for requests it cannot parse; ApiVersions alone answers an
//! unknown version (with v0 and UNSUPPORTED_VERSION) so clients can negotiate.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Encode};
use sluice_protocol::frame::{
    decode_request_header, encode_response, encode_response_segments, ParsedHeader,
};
use tracing::{debug, Instrument};

use sluice_auth::principal::Principal;
use sluice_group::ClientInfo;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::handlers::produce::Appended;
use crate::handlers::{self, supported_versions};
use crate::session::Session;

/// A response completed later (an acks=all Produce waiting for the high watermark);
/// the writer awaits it in its place, so responses keep their order. `Err` closes the
/// connection.
pub type Deferred = Pin<Box<dyn Future<Output = Result<Option<Response>, BrokerError>> + Send>>;

/// An encoded response frame on its way to the connection's writer task.
pub enum Response {
    /// The whole frame in one buffer.
    Frame(Bytes),
    /// The frame as segments to be written back to back, the first starting with the
    /// size prefix; large record payloads are segments shared with storage reads.
    Segments(Vec<Bytes>),
    /// Not ready yet; the connection goes on reading requests meanwhile.
    Deferred(Deferred),
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Frame(b) => f.debug_tuple("Frame").field(&b.len()).finish(),
            Response::Segments(s) => f.debug_tuple("Segments").field(&s.len()).finish(),
            Response::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// Queue budget charged for a deferred response (a Produce answer is small).
const DEFERRED_LEN: usize = 1024;

impl Response {
    /// Bytes on the wire, size prefix included (an estimate for a deferred one).
    pub fn len(&self) -> usize {
        match self {
            Response::Frame(b) => b.len(),
            Response::Segments(s) => s.iter().map(Bytes::len).sum(),
            Response::Deferred(_) => DEFERRED_LEN,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a request's handler may need to know about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address as group members are described ("/127.0.0.1").
    pub client_host: String,
    /// The peer's address, as ACLs name hosts.
    pub peer_ip: IpAddr,
    /// Index of the listener (in `Broker::listeners`) the connection was accepted on:
    /// Metadata and FindCoordinator answer with that listener's endpoints.
    pub listener: usize,
    /// Who the connection authenticated as (`User:ANONYMOUS` on PLAINTEXT).
    pub principal: Arc<Principal>,
}

impl ConnectionInfo {
    /// Takes the session's principal after a SASL step (authentication or
    /// re-authentication) if it changed.
    pub fn update_principal(&mut self, session: &Session) {
        if *self.principal != *session.principal() {
            self.principal = Arc::new(session.principal().clone());
        }
    }
}

/// Handles one frame; `Ok(None)` means the request gets no response (Produce acks=0).
pub async fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    mut frame: Bytes,
) -> Result<Option<Response>, BrokerError> {
    let header = decode_request_header(&mut frame)?;
    let span = tracing::debug_span!(
        "request",
        api = header.api_key,
        v = header.api_version,
        corr = header.correlation_id,
        client = header.client_id.as_deref().unwrap_or("")
    );
    dispatch(broker, conn, header, frame).instrument(span).await
}

fn unsupported(header: &ParsedHeader) -> BrokerError {
    BrokerError::UnsupportedApi {
        api_key: header.api_key,
        version: header.api_version,
    }
}

/// Runs `f` on the blocking pool: admin handlers create, delete and fsync files (and
/// partitions by the thousand), which must not stall the async threads that every other
/// connection shares.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Metadata(format!("admin task failed: {e}")))
}

fn decode<M: Decode>(body: &mut Bytes, version: i16) -> Result<M, BrokerError> {
    Ok(M::decode(body, version)?)
}

fn respond<M: Encode>(
    api: ApiKey,
    header: &ParsedHeader,
    body: &M,
) -> Result<Option<Response>, BrokerError> {
    let v = header.api_version;
    Ok(Some(Response::Frame(encode_response(
        header.correlation_id,
        api.response_header_version(v),
        body,
        v,
    )?)))
}

async fn dispatch(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    header: ParsedHeader,
    mut body: Bytes,
) -> Result<Option<Response>, BrokerError> {
    let api = ApiKey::from_i16(header.api_key).ok_or_else(|| unsupported(&header))?;
    let v = header.api_version;
    if api == ApiKey::ApiVersions {
        return Ok(handlers::api_versions::handle(&header, &mut body)?.map(Response::Frame));
    }
    match supported_versions(api) {
        Some((min, max)) if (min..=max).contains(&v) => {}
        _ => {
            debug!(
                api = api.name(),
                version = v,
                "closing connection: api/version not served"
            );
            return Err(unsupported(&header));
        }
    }
    let b = broker;
    match api {
        ApiKey::Metadata => {
            let req = decode(&mut body, v)?;
            let (b, conn) = (b.clone(), conn.clone());
            let resp = blocking(move || handlers::metadata::handle(&b, &conn, req, v)).await?;
            respond(api, &header, &resp)
        }
        ApiKey::Produce => {
            match handlers::produce::append_all(b, conn, decode(&mut body, v)?, v)? {
                Appended::Ready(Some(resp)) => respond(api, &header, &resp),
                Appended::Ready(None) => Ok(None),
                Appended::Waiting(waiting) => {
                    let header = header.clone();
                    Ok(Some(Response::Deferred(Box::pin(async move {
                        let resp = waiting.complete().await;
                        respond(api, &header, &resp)
                    }))))
                }
            }
        }
        ApiKey::Fetch => {
            let resp = handlers::fetch::handle(b, conn, decode(&mut body, v)?, v).await;
            Ok(Some(Response::Segments(encode_response_segments(
                header.correlation_id,
                api.response_header_version(v),
                &resp,
                v,
            )?)))
        }
        ApiKey::ListOffsets => respond(
            api,
            &header,
            &handlers::list_offsets::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::CreateTopics => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::create_topics::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::DeleteTopics => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::delete_topics::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::CreatePartitions => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::create_partitions::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::DescribeConfigs => respond(
            api,
            &header,
            &handlers::describe_configs::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::AlterConfigs => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::alter_configs::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::IncrementalAlterConfigs => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::incremental_alter_configs::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::DescribeCluster => respond(
            api,
            &header,
            &handlers::describe_cluster::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::DeleteRecords => respond(api, &header, &{
            let (b, conn, req) = (b.clone(), conn.clone(), decode(&mut body, v)?);
            blocking(move || handlers::delete_records::handle(&b, &conn, req, v)).await?
        }),
        ApiKey::OffsetForLeaderEpoch => respond(
            api,
            &header,
            &handlers::offset_for_leader_epoch::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::FindCoordinator => respond(
            api,
            &header,
            // The first lookup of a group creates __consumer_offsets: files, so off
            // the async threads.
            &{
                let (b, req, conn) = (b.clone(), decode(&mut body, v)?, conn.clone());
                blocking(move || handlers::find_coordinator::handle(&b, &conn, req, v)).await?
            },
        ),
        ApiKey::JoinGroup => {
            let client = ClientInfo {
                client_id: header.client_id.clone().unwrap_or_default(),
                client_host: conn.client_host.clone(),
            };
            let req = decode(&mut body, v)?;
            let resp = handlers::join_group::handle(b, conn, req, v, client).await;
            respond(api, &header, &resp)
        }
        ApiKey::SyncGroup => {
            let resp = handlers::sync_group::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::Heartbeat => respond(
            api,
            &header,
            &handlers::heartbeat::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::LeaveGroup => respond(
            api,
            &header,
            &handlers::leave_group::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::OffsetCommit => {
            let resp = handlers::offset_commit::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::OffsetFetch => respond(
            api,
            &header,
            &handlers::offset_fetch::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::OffsetDelete => {
            let resp = handlers::offset_delete::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeGroups => respond(
            api,
            &header,
            &handlers::describe_groups::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::ListGroups => respond(
            api,
            &header,
            &handlers::list_groups::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::DeleteGroups => {
            let resp = handlers::delete_groups::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::InitProducerId => {
            let req = decode(&mut body, v)?;
            let resp = handlers::init_producer_id::handle(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::AddPartitionsToTxn => {
            let req = decode(&mut body, v)?;
            let resp = handlers::add_partitions_to_txn::handle(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::AddOffsetsToTxn => {
            let req = decode(&mut body, v)?;
            let resp = handlers::add_offsets_to_txn::handle(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeProducers => respond(
            api,
            &header,
            &handlers::describe_producers::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::DescribeTransactions => respond(
            api,
            &header,
            &handlers::describe_transactions::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::ListTransactions => respond(
            api,
            &header,
            &handlers::list_transactions::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::TxnOffsetCommit => {
            let req = decode(&mut body, v)?;
            let resp = handlers::txn_offset_commit::handle(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::EndTxn => {
            let resp = handlers::end_txn::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::WriteTxnMarkers => {
            let req = decode(&mut body, v)?;
            let resp = handlers::write_txn_markers::handle_request(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeQuorum => respond(
            api,
            &header,
            &handlers::describe_quorum::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::DescribeLogDirs => respond(
            api,
            &header,
            &handlers::describe_log_dirs::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::ElectLeaders => {
            let resp = handlers::elect_leaders::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeTopicPartitions => respond(
            api,
            &header,
            &handlers::describe_topic_partitions::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::CreateAcls => {
            let resp = handlers::create_acls::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeAcls => respond(
            api,
            &header,
            &handlers::describe_acls::handle(b, conn, decode(&mut body, v)?, v),
        ),
        ApiKey::DeleteAcls => {
            let resp = handlers::delete_acls::handle(b, conn, decode(&mut body, v)?, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::AlterUserScramCredentials => {
            let req = decode(&mut body, v)?;
            let resp = handlers::alter_user_scram_credentials::handle(b, conn, req, v).await;
            respond(api, &header, &resp)
        }
        ApiKey::DescribeUserScramCredentials => respond(
            api,
            &header,
            &handlers::describe_user_scram_credentials::handle(b, conn, decode(&mut body, v)?, v),
        ),
        _ => Err(unsupported(&header)),
    }
}
