//! `null-sink`: the smallest server a Kafka producer will talk to, used by
//! `cargo xtask bench --null-sink` to measure how fast one producer client can go on
//! this machine when the server costs (almost) nothing.
//!
//! It shares nothing with the broker's request path: its own accept loop, its own
//! frame cutting, its own dispatch. It uses `sluice_protocol` only as a codec (the
//! request header, the Metadata and Produce request bodies, and the three responses).
//! It answers exactly three APIs:
//!
//! - ApiVersions with the same version ranges the broker advertises for ApiVersions,
//!   Metadata and Produce (so librdkafka picks the same request versions as against
//!   the broker);
//! - Metadata: one broker (itself), every requested topic with one partition led by it;
//! - Produce: success for every partition, base offsets counting up per partition;
//!   the records are dropped unread.
//!
//! Anything else closes the connection (the producer does not need it). It prints
//! `null-sink listening listen=HOST:PORT` once bound, and exits on SIGTERM/SIGINT.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI tool: reports on stdio.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Uuid};
use sluice_protocol::frame::{decode_request_header, encode_response};
use sluice_protocol::messages::api_versions_response::ApiVersion;
use sluice_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use sluice_protocol::messages::{
    ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The version ranges the broker advertises for the APIs served here (see
/// `crates/broker/src/handlers/`); kept equal so the client picks the same versions.
/// Produce is advertised from v0 as the broker (and Kafka 4.0, KAFKA-18659) does;
/// clients send the highest common version, v3+ in practice.
const API_VERSIONS: (i16, i16) = (0, 4);
const METADATA: (i16, i16) = (0, 12);
const PRODUCE: (i16, i16) = (0, 11);

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;
/// Requests larger than Kafka's default `socket.request.max.bytes` are refused.
const MAX_FRAME: usize = 100 * 1024 * 1024;
const NODE_ID: i32 = 1;

/// Next base offset per (topic, partition), shared by all connections.
type Offsets = Arc<Mutex<HashMap<(String, i32), i64>>>;

fn main() -> Result<()> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().context("--listen needs HOST:PORT")?,
            other => bail!("unknown argument {other}; usage: null-sink [--listen HOST:PORT]"),
        }
    }
    // One thread is plenty: the sink does no work per byte, and every core it does
    // not use is left to the producer being measured.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(&listen))
}

async fn serve(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!("null-sink listening listen={addr}");
    std::io::stdout().flush()?;
    let offsets: Offsets = Arc::default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let offsets = offsets.clone();
                let host = addr.ip().to_string();
                let port = i32::from(addr.port());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &host, port, &offsets).await {
                        eprintln!("null-sink: connection closed: {e:#}");
                    }
                });
            }
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn connection(mut stream: TcpStream, host: &str, port: i32, offsets: &Offsets) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4 << 20);
    loop {
        // Cut every complete frame already buffered.
        while buf.len() >= 4 {
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let size = usize::try_from(size).context("negative frame size")?;
            if size > MAX_FRAME {
                bail!("frame of {size} bytes is too large");
            }
            if buf.len() < 4 + size {
                // Room for the rest of this frame at once, so a 1 MB produce request
                // is read in a few large reads rather than many small ones.
                buf.reserve(4 + size - buf.len());
                break;
            }
            buf.advance(4);
            let frame = buf.split_to(size).freeze();
            if let Some(response) = answer(frame, host, port, offsets)? {
                stream.write_all(&response).await?;
            }
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(1 << 20);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// The response frame for one request frame (`None` for acks=0 produce).
fn answer(mut frame: Bytes, host: &str, port: i32, offsets: &Offsets) -> Result<Option<Bytes>> {
    let header = decode_request_header(&mut frame)?;
    let version = header.api_version;
    let corr = header.correlation_id;
    let Some(api) = header.api() else {
        bail!("unknown api key {}", header.api_key);
    };
    let response = match api {
        ApiKey::ApiVersions => {
            let in_range = (API_VERSIONS.0..=API_VERSIONS.1).contains(&version);
            // Kafka answers an unknown ApiVersions version with v0 and
            // UNSUPPORTED_VERSION, listing the versions so the client can retry.
            let v = if in_range { version } else { 0 };
            let body = ApiVersionsResponse {
                error_code: if in_range { 0 } else { UNSUPPORTED_VERSION },
                api_keys: [
                    (ApiKey::Produce, PRODUCE),
                    (ApiKey::Metadata, METADATA),
                    (ApiKey::ApiVersions, API_VERSIONS),
                ]
                .iter()
                .map(|(k, (min, max))| ApiVersion {
                    api_key: *k as i16,
                    min_version: *min,
                    max_version: *max,
                })
                .collect(),
                ..Default::default()
            };
            encode_response(corr, 0, &body, v)?
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut frame, version)?;
            let names: Vec<String> = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .collect();
            let body = MetadataResponse {
                brokers: vec![MetadataResponseBroker {
                    node_id: NODE_ID,
                    host: host.to_string(),
                    port,
                    rack: None,
                }],
                cluster_id: Some("null-sink".into()),
                controller_id: NODE_ID,
                topics: names
                    .into_iter()
                    .map(|name| MetadataResponseTopic {
                        topic_id: topic_id(&name),
                        name: Some(name),
                        partitions: vec![MetadataResponsePartition {
                            error_code: 0,
                            partition_index: 0,
                            leader_id: NODE_ID,
                            leader_epoch: 0,
                            replica_nodes: vec![NODE_ID],
                            isr_nodes: vec![NODE_ID],
                            offline_replicas: vec![],
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            encode_response(corr, api.response_header_version(version), &body, version)?
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut frame, version)?;
            if req.acks == 0 {
                return Ok(None);
            }
            let mut next = offsets
                .lock()
                .map_err(|_| anyhow::anyhow!("offsets lock poisoned"))?;
            let responses = req
                .topic_data
                .into_iter()
                .map(|t| {
                    let partition_responses = t
                        .partition_data
                        .iter()
                        .map(|p| {
                            let slot = next.entry((t.name.clone(), p.index)).or_insert(0);
                            let base_offset = *slot;
                            *slot += record_count(p.records.as_deref().unwrap_or_default());
                            PartitionProduceResponse {
                                index: p.index,
                                error_code: 0,
                                base_offset,
                                log_append_time_ms: -1,
                                log_start_offset: 0,
                                ..Default::default()
                            }
                        })
                        .collect();
                    TopicProduceResponse {
                        name: t.name,
                        partition_responses,
                    }
                })
                .collect();
            let body = ProduceResponse {
                responses,
                ..Default::default()
            };
            encode_response(corr, api.response_header_version(version), &body, version)?
        }
        other => bail!("null-sink does not serve {other:?}"),
    };
    Ok(Some(response))
}

/// Records in a run of v2 record batches, read from each 61-byte batch header
/// (batch length at byte 8, record count at byte 57); stops at a torn tail.
fn record_count(mut records: &[u8]) -> i64 {
    let mut n = 0i64;
    while records.len() >= 61 {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let count = i32::from_be_bytes([records[57], records[58], records[59], records[60]]);
        n += i64::from(count.max(0));
        let total = 12 + usize::try_from(len).unwrap_or(0);
        if total < 61 || total > records.len() {
            break;
        }
        records = &records[total..];
    }
    n
}

/// A stable non-zero topic id per name (Metadata v10+ carries one).
fn topic_id(name: &str) -> Uuid {
    let mut id = [0u8; 16];
    for (i, b) in name.bytes().enumerate() {
        id[i % 16] = id[i % 16].wrapping_mul(31).wrapping_add(b);
    }
    id[0] |= 1;
    Uuid(id)
}
