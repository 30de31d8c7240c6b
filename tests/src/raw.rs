//! A deliberately simple blocking Kafka client over one TCP connection, for tests that
//! must send exact requests (every API version, malformed frames) and read raw answers.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::{Decode, Encode};
use sluice_protocol::frame::encode_request;

pub struct RawClient {
    pub stream: TcpStream,
    next_correlation: i32,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        RawClient::try_connect(addr, Duration::from_secs(20)).expect("connect")
    }

    /// Connects without panicking, with `timeout` for the connect and each later read
    /// (for tests that talk to nodes which may be down or failing over).
    pub fn try_connect(addr: &str, timeout: Duration) -> std::io::Result<RawClient> {
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            next_correlation: 1,
        })
    }

    /// Connects from source address `source` (e.g. 127.0.0.2: another client host, as
    /// the broker sees it).
    pub fn connect_from(addr: &str, source: std::net::IpAddr) -> std::io::Result<RawClient> {
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(target),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&std::net::SocketAddr::new(source, 0).into())?;
        socket.connect_timeout(&target.into(), Duration::from_secs(20))?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            next_correlation: 1,
        })
    }

    /// Sends `req` as `api` at `version` and decodes the response (checking the
    /// correlation id and that the whole body was consumed).
    pub fn call<Req: Encode, Resp: Decode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let corr = self.send(api, version, req);
        self.recv(api, version, corr)
    }

    /// [`RawClient::call`] that reports a failed write or read (a node that died, a read
    /// timeout) as an error instead of panicking; a malformed answer still panics.
    pub fn try_call<Req: Encode, Resp: Decode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<Resp> {
        let corr = self.try_send(api, version, req)?;
        let body = self.try_read_frame()?;
        Ok(self.decode_response(body, api, version, corr))
    }

    /// Reads and decodes the response to a request sent earlier with [`RawClient::send`]
    /// (responses come back in request order), checking its correlation id.
    pub fn recv<Resp: Decode>(&mut self, api: ApiKey, version: i16, corr: i32) -> Resp {
        let body = self.read_frame().expect("response frame");
        self.decode_response(body, api, version, corr)
    }

    fn decode_response<Resp: Decode>(
        &self,
        mut body: Bytes,
        api: ApiKey,
        version: i16,
        corr: i32,
    ) -> Resp {
        let header_version = api.response_header_version(version);
        let got = i32::from_be_bytes(body[..4].try_into().unwrap());
        assert_eq!(got, corr, "correlation id");
        bytes::Buf::advance(&mut body, 4);
        if header_version >= 1 {
            // Response header v1: an empty tagged-field section (one zero byte).
            assert_eq!(body[0], 0, "response header tagged fields");
            bytes::Buf::advance(&mut body, 1);
        }
        let resp = Resp::decode(&mut body, version).expect("decode response");
        assert!(
            body.is_empty(),
            "{} trailing bytes after {:?} v{version} response",
            body.len(),
            api
        );
        resp
    }

    /// Sends without reading an answer; returns the correlation id.
    pub fn send<Req: Encode>(&mut self, api: ApiKey, version: i16, req: &Req) -> i32 {
        self.try_send(api, version, req).expect("write")
    }

    fn try_send<Req: Encode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<i32> {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        let frame =
            encode_request(api, version, corr, Some("sluice-tests"), req).expect("encode request");
        self.stream.write_all(&frame)?;
        Ok(corr)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame (without its length prefix); `None` when the broker
    /// closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        self.try_read_frame().ok()
    }

    fn try_read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let n = i32::from_be_bytes(len) as usize;
        let mut buf = BytesMut::zeroed(n);
        self.stream.read_exact(&mut buf)?;
        Ok(buf.freeze())
    }

    /// SASL PLAIN over SaslHandshake v1 + SaslAuthenticate v2; the error code of the
    /// step that failed (0 when authenticated).
    pub fn sasl_plain(&mut self, user: &str, password: &str) -> i16 {
        let code = self.sasl_handshake("PLAIN");
        if code != 0 {
            return code;
        }
        let token = format!("\0{user}\0{password}");
        self.sasl_authenticate(token.as_bytes()).0
    }

    /// SASL SCRAM (`SCRAM-SHA-256` or `SCRAM-SHA-512`) as RFC 5802 has the client do
    /// it, checking the server's signature; the error code of the step that failed.
    pub fn sasl_scram(&mut self, mechanism: &str, user: &str, password: &str) -> i16 {
        use sluice_auth::scram::ScramMechanism;
        use sluice_auth::scram_client::ScramClient;
        let m = ScramMechanism::from_name(mechanism).expect("a SCRAM mechanism");
        let code = self.sasl_handshake(mechanism);
        if code != 0 {
            return code;
        }
        let (client, first) = ScramClient::start(m, user, password, "sluice-tests-nonce");
        let (code, server_first) = self.sasl_authenticate(&first);
        if code != 0 {
            return code;
        }
        let (check, last) = client.respond(&server_first).expect("server-first");
        let (code, server_final) = self.sasl_authenticate(&last);
        if code == 0 {
            check.verify(&server_final).expect("server signature");
        }
        code
    }

    /// SaslHandshake v1 for `mechanism`; its error code.
    pub fn sasl_handshake(&mut self, mechanism: &str) -> i16 {
        use sluice_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
        let req = SaslHandshakeRequest {
            mechanism: mechanism.to_string(),
        };
        let resp: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &req);
        resp.error_code
    }

    /// One SaslAuthenticate v2 round: the error code and the server's bytes.
    pub fn sasl_authenticate(&mut self, token: &[u8]) -> (i16, Bytes) {
        use sluice_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
        let req = SaslAuthenticateRequest {
            auth_bytes: Bytes::copy_from_slice(token),
        };
        let resp: SaslAuthenticateResponse = self.call(ApiKey::SaslAuthenticate, 2, &req);
        (resp.error_code, resp.auth_bytes)
    }

    /// True when the broker has closed this connection (EOF or reset) within the timeout.
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            // A read timeout means the connection is still open.
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// One node's connection for tools that talk to nodes which may be down: opened on
/// first use, dropped after any error (a malformed answer included) and opened again
/// on the next call.
pub struct LazyClient {
    addr: String,
    timeout: Duration,
    client: Option<RawClient>,
}

impl LazyClient {
    pub fn new(addr: &str, timeout: Duration) -> LazyClient {
        LazyClient {
            addr: addr.to_string(),
            timeout,
            client: None,
        }
    }

    pub fn call<Req: Encode, Resp: Decode>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<Resp> {
        if self.client.is_none() {
            self.client = Some(RawClient::try_connect(&self.addr, self.timeout)?);
        }
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no client"))?;
        // A malformed answer panics in the raw client; count it as an I/O error.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client.try_call(api, version, req)
        }))
        .unwrap_or_else(|_| Err(std::io::Error::other("malformed response")));
        if r.is_err() {
            self.client = None;
        }
        r
    }

    /// The node's Metadata (all topics, v12) as a comparable view.
    pub fn view(&mut self) -> std::io::Result<crate::cluster::View> {
        let req = sluice_protocol::messages::MetadataRequest {
            topics: None,
            allow_auto_topic_creation: false,
            include_cluster_authorized_operations: false,
            include_topic_authorized_operations: false,
        };
        let m: sluice_protocol::messages::MetadataResponse =
            self.call(ApiKey::Metadata, 12, &req)?;
        Ok(crate::cluster::View::of(&m))
    }
}
