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
        // `reserve` takes the old allocation back when nothing else holds it. The body
        // is read into the spare capacity, not into zeroed memory: zeroing a fetch of a
        // megabyte first costs about as much as receiving it.
        self.buf.clear();
        self.buf.reserve(len);
        let mut body = (&mut self.stream).take(len as u64);
        let mut failed = None;
        while self.buf.len() < len {
            match body.read_buf(&mut self.buf).await {
                Ok(0) => {
                    failed = Some(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::frame::encode_response;
    use sluice_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use sluice_protocol::messages::{FetchRequest, FetchResponse};
    use tokio::net::TcpListener;

    const BOUND: Duration = Duration::from_secs(5);

    /// A Fetch answer whose records are `payload`, as a leader would frame it.
    fn fetch_answer(correlation: i32, payload: &Bytes) -> Bytes {
        let body = FetchResponse {
            responses: vec![FetchableTopicResponse {
                partitions: vec![PartitionData {
                    records: Some(payload.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let header = ApiKey::Fetch.response_header_version(15);
        encode_response(correlation, header, &body, 15).unwrap()
    }

    /// Reads one request frame and answers with the first `send` bytes of the frame
    /// `answer` builds for its correlation id, in 10 KiB pieces, then closes.
    async fn serve_once(
        listener: TcpListener,
        answer: impl FnOnce(i32) -> Bytes,
        send: impl FnOnce(usize) -> usize,
    ) {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).await.unwrap();
        let mut request = vec![0u8; i32::from_be_bytes(len) as usize];
        conn.read_exact(&mut request).await.unwrap();
        // Request header v1+: api key, api version, then the correlation id.
        let correlation = i32::from_be_bytes(request[4..8].try_into().unwrap());
        let frame = answer(correlation);
        let end = send(frame.len());
        for piece in frame[..end].chunks(10 * 1024) {
            conn.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_response_arriving_in_pieces_is_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let payload = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let expected = payload.clone();
        let server = tokio::spawn(serve_once(
            listener,
            move |c| fetch_answer(c, &payload),
            |len| len,
        ));
        let mut conn = KafkaConnection::connect(&addr, "t".into(), 1 << 20, BOUND)
            .await
            .unwrap();
        let resp: FetchResponse = conn
            .call(ApiKey::Fetch, 15, &FetchRequest::default(), BOUND)
            .await
            .unwrap();
        assert_eq!(
            resp.responses[0].partitions[0].records.as_ref(),
            Some(&expected)
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_response_cut_short_is_an_error_showing_the_peer_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let payload = Bytes::from(vec![7u8; 100_000]);
        let server = tokio::spawn(serve_once(
            listener,
            move |c| fetch_answer(c, &payload),
            |len| len / 2,
        ));
        let mut conn = KafkaConnection::connect(&addr, "t".into(), 1 << 20, BOUND)
            .await
            .unwrap();
        let err = conn
            .call::<_, FetchResponse>(ApiKey::Fetch, 15, &FetchRequest::default(), BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReplicationError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
        assert!(err.shows_peer_gone());
        server.await.unwrap();
    }
}
