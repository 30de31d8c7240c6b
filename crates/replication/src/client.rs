//! A minimal async Kafka client over one TCP connection: sends a request, reads its
//! response. Replica fetchers use it to call leaders' Fetch, OffsetForLeaderEpoch and
//! ListOffsets, the same APIs (and listener) any Kafka follower uses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Encode};
use sluice_protocol::frame::{decode_response_header, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ReplicationError;

/// One connection to a broker.
#[derive(Debug)]
pub struct KafkaConnection {
    addr: String,
    stream: TcpStream,
    next_correlation: i32,
    client_id: String,
    /// The largest response frame accepted (a peer cannot make us allocate more).
    max_frame: usize,
    /// Response buffer, reused once the previous response's `Bytes` are all dropped:
    /// a fresh multi-megabyte allocation per fetch would fault its pages in every time.
    buf: BytesMut,
}

impl KafkaConnection {
    pub async fn connect(
        addr: &str,
        client_id: String,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Self, ReplicationError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ReplicationError::Timeout(addr.to_string()))?
            .map_err(|source| ReplicationError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream
            .set_nodelay(true)
            .map_err(|source| ReplicationError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self {
            addr: addr.to_string(),
            stream,
            next_correlation: 1,
            client_id,
            max_frame,
            buf: BytesMut::new(),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` as `api` at `version` and decodes the answer, within `timeout`. After
    /// an error the connection's state is unknown: drop it.
    pub async fn call<Req: Encode, Resp: Decode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ReplicationError> {
        let addr = self.addr.clone();
        tokio::time::timeout(timeout, self.call_inner(api, version, req))
            .await
            .map_err(|_| ReplicationError::Timeout(addr))?
    }

    async fn call_inner<Req: Encode, Resp: Decode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, ReplicationError> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode_request(api, version, correlation, Some(&self.client_id), req)?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| self.io(e))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .await
            .map_err(|e| self.io(e))?;
        let len = usize::try_from(i32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if len > self.max_frame {
            return Err(ReplicationError::FrameTooLarge(len));
        }
        // `reserve` takes the old allocation back when nothing else holds it.
        self.buf.clear();
        self.buf.reserve(len);
        self.buf.resize(len, 0);
        if let Err(e) = self.stream.read_exact(&mut self.buf).await {
            return Err(self.io(e));
        }
        let mut body: Bytes = self.buf.split().freeze();
        let got = decode_response_header(&mut body, api.response_header_version(version))?;
        if got != correlation {
            return Err(ReplicationError::Correlation {
                expected: correlation,
                got,
            });
        }
        Ok(Resp::decode(&mut body, version)?)
    }

    fn io(&self, source: std::io::Error) -> ReplicationError {
        ReplicationError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}
