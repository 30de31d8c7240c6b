//! A minimal async Kafka client over one TCP connection, plain or TLS: sends a request,
//! reads its response. Replica fetchers use it to call leaders' Fetch,
//! OffsetForLeaderEpoch and ListOffsets, the same APIs (and listener) any Kafka follower
//! uses; the broker's transaction-marker sender uses it for WriteTxnMarkers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use sluice_auth::scram::ScramMechanism;
use sluice_auth::scram_client::ScramClient;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Encode};
use sluice_protocol::error::ErrorCode;
use sluice_protocol::frame::{decode_response_header, encode_request};
use sluice_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::ReplicationError;

/// TLS for outgoing connections: the client configuration (trusted CAs, and the
/// certificate presented to listeners that ask for one). The server name checked is the
/// host of the address connected to.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
}

/// A SASL login done right after connecting (a broker's own identity on another
/// broker's SASL_PLAINTEXT or SASL_SSL inter-broker listener).
#[derive(Clone)]
pub struct SaslLogin {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, should the config be logged.
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How outgoing connections secure themselves: TLS and/or a SASL login.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<ClientTls>,
    pub sasl: Option<SaslLogin>,
}

/// The connection's byte stream. An enum rather than a boxed trait object: the read
/// loop of a multi-megabyte fetch polls it many times, and a match costs less than a
/// virtual call and keeps the plain path exactly what it was.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    // Boxed: the TLS session state is kilobytes, so the enum stays a TcpStream in size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The host part of `host:port` (`[v6]:port` for IPv6) as a TLS server name: an IP
/// address is checked against the certificate's IP SANs, a name against its DNS SANs.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, ReplicationError> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
        .map_err(|_| ReplicationError::ServerName(addr.to_string()))
}

/// One connection to a broker.
#[derive(Debug)]
pub struct KafkaConnection {
    addr: String,
    stream: Stream,
    next_correlation: i32,
    client_id: String,
    /// The largest response frame accepted (a peer cannot make us allocate more).
    max_frame: usize,
    /// Response buffer, reused once the previous response's `Bytes` are all dropped:
    /// a fresh multi-megabyte allocation per fetch would fault its pages in every time.
    buf: BytesMut,
}

impl KafkaConnection {
    /// Connects to `addr` (`host:port`), over TLS when `security` has it, and logs in
    /// with SASL when it has that; connecting, the handshake and the login each within
    /// `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: String,
        max_frame: usize,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<Self, ReplicationError> {
        // Checked before connecting: a bad name is a configuration error, not the peer's.
        let tls = match &security.tls {
            Some(t) => Some((TlsConnector::from(t.config.clone()), server_name(addr)?)),
            None => None,
        };
        let connecting = async {
            let tcp = TcpStream::connect(addr)
                .await
                .and_then(|s| s.set_nodelay(true).map(|()| s))
                .map_err(|source| ReplicationError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            match tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name, tcp)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(|source| ReplicationError::Tls {
                        addr: addr.to_string(),
                        source,
                    }),
            }
        };
        let stream = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ReplicationError::Timeout(addr.to_string()))??;
        let mut conn = Self {
            addr: addr.to_string(),
            stream,
            next_correlation: 1,
            client_id,
            max_frame,
            buf: BytesMut::new(),
        };
        if let Some(login) = &security.sasl {
            conn.login(login, timeout).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 then SaslAuthenticate rounds, as a Kafka client logs in.
    async fn login(
        &mut self,
        login: &SaslLogin,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let addr = self.addr.clone();
        let fail = |reason: String| ReplicationError::Sasl {
            addr: addr.clone(),
            reason,
        };
        let req = SaslHandshakeRequest {
            mechanism: login.mechanism.clone(),
        };
        let resp: SaslHandshakeResponse =
            self.call(ApiKey::SaslHandshake, 1, &req, timeout).await?;
        if resp.error_code != 0 {
            return Err(fail(format!(
                "handshake for {} answered {:?} (the listener offers {:?})",
                login.mechanism,
                ErrorCode::from_code(resp.error_code),
                resp.mechanisms
            )));
        }
        if login.mechanism == "PLAIN" {
            let token = format!("\0{}\0{}", login.username, login.password);
            self.authenticate(token.into_bytes(), timeout).await?;
            return Ok(());
        }
        let mechanism = ScramMechanism::from_name(&login.mechanism)
            .ok_or_else(|| fail(format!("unknown mechanism {}", login.mechanism)))?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let (client, first) =
            ScramClient::start(mechanism, &login.username, &login.password, &nonce);
        let server_first = self.authenticate(first, timeout).await?;
        let (check, last) = client
            .respond(&server_first)
            .map_err(|e| fail(e.to_string()))?;
        let server_final = self.authenticate(last, timeout).await?;
        check
            .verify(&server_final)
            .map_err(|e| fail(format!("the broker's SCRAM signature: {e}")))
    }

    /// One SaslAuthenticate round; the server's bytes.
    async fn authenticate(
        &mut self,
        token: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, ReplicationError> {
        let req = SaslAuthenticateRequest {
            auth_bytes: Bytes::from(token),
        };
        let resp: SaslAuthenticateResponse = self
            .call(ApiKey::SaslAuthenticate, 2, &req, timeout)
            .await?;
        if resp.error_code != 0 {
            return Err(ReplicationError::Sasl {
                addr: self.addr.clone(),
                reason: resp
                    .error_message
                    .unwrap_or_else(|| format!("error {}", resp.error_code)),
            });
        }
        Ok(resp.auth_bytes)
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
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
        // TLS may hold written records back until flushed (a no-op for plain TCP).
        self.stream.flush().await.map_err(|e| self.io(e))?;
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
        let (conn, _) = listener.accept().await.unwrap();
        answer_one(conn, answer, send).await;
    }

    async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
        mut conn: S,
        answer: impl FnOnce(i32) -> Bytes,
        send: impl FnOnce(usize) -> usize,
    ) {
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
        conn.shutdown().await.unwrap();
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
        let mut conn = KafkaConnection::connect(
            &addr,
            "t".into(),
            1 << 20,
            BOUND,
            &ClientSecurity::default(),
        )
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
        let mut conn = KafkaConnection::connect(
            &addr,
            "t".into(),
            1 << 20,
            BOUND,
            &ClientSecurity::default(),
        )
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

    /// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
    struct Pki {
        ca: rustls::pki_types::CertificateDer<'static>,
        server: Arc<rustls::ServerConfig>,
    }

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn pki() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let server = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key.into())
            .unwrap();
        Pki {
            ca: ca.der().clone(),
            server: Arc::new(server),
        }
    }

    fn secured(tls: ClientTls) -> ClientSecurity {
        ClientSecurity {
            tls: Some(tls),
            sasl: None,
        }
    }

    fn client_tls(ca: &rustls::pki_types::CertificateDer<'static>) -> ClientTls {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// Accepts one TLS connection and answers one request with a Fetch of `payload`.
    async fn serve_tls_once(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        payload: Bytes,
    ) {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
            return;
        };
        answer_one(tls, move |c| fetch_answer(c, &payload), |len| len).await;
    }

    #[tokio::test]
    async fn a_fetch_over_tls_is_read_whole() {
        let pki = pki();
        let tls = client_tls(&pki.ca);
        let payload = Bytes::from((0..300_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        // By IP address (checked against the IP SAN) and by name (the DNS SAN).
        for host in ["127.0.0.1", "localhost"] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(serve_tls_once(
                listener,
                pki.server.clone(),
                payload.clone(),
            ));
            let addr = format!("{host}:{port}");
            let mut conn =
                KafkaConnection::connect(&addr, "t".into(), 1 << 20, BOUND, &secured(tls.clone()))
                    .await
                    .unwrap();
            assert!(conn.is_tls());
            let resp: FetchResponse = conn
                .call(ApiKey::Fetch, 15, &FetchRequest::default(), BOUND)
                .await
                .unwrap();
            assert_eq!(
                resp.responses[0].partitions[0].records.as_ref(),
                Some(&payload),
                "{host}"
            );
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_server_certificate_from_another_ca_fails_the_connect() {
        let pki = pki();
        let stranger = client_tls(&self::pki().ca);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(serve_tls_once(listener, pki.server.clone(), Bytes::new()));
        let err = KafkaConnection::connect(&addr, "t".into(), 1 << 20, BOUND, &secured(stranger))
            .await
            .unwrap_err();
        assert!(matches!(err, ReplicationError::Tls { .. }), "{err:?}");
        assert!(!err.shows_peer_gone());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_plaintext_connection_does_not_use_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _server = tokio::spawn(async move { listener.accept().await });
        let conn = KafkaConnection::connect(
            &addr,
            "t".into(),
            1 << 20,
            BOUND,
            &ClientSecurity::default(),
        )
        .await
        .unwrap();
        assert!(!conn.is_tls());
    }

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let name = |a: &str| server_name(a).unwrap().to_str().into_owned();
        assert_eq!(name("broker-1.example:9093"), "broker-1.example");
        assert_eq!(
            name("sluice-0.sluice-headless:9092"),
            "sluice-0.sluice-headless"
        );
        let ip = |a: &str| match server_name(a).unwrap() {
            ServerName::IpAddress(ip) => IpAddr::from(ip),
            other => panic!("{a}: {other:?}"),
        };
        assert_eq!(ip("127.0.0.1:9092"), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(ip("[::1]:9092"), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(matches!(
            server_name("not a host!:9092"),
            Err(ReplicationError::ServerName(_))
        ));
    }
}
