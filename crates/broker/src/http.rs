//! The HTTP endpoint (`--http-listen`): `/health/live`, `/health/ready` (see
//! `health.rs`) and `/metrics` in the Prometheus text format (see `metrics.rs`), for
//! container healthchecks, Kubernetes probes and Prometheus.
//!
//! It starts before the node joins the metadata quorum, so liveness holds while the
//! node waits for its peers. Plain HTTP/1.1 without keep-alive: every exchange is one
//! short request. A peer cannot hold more than `MAX_CONNECTIONS` connections, nor one
//! for longer than `CONNECTION_DEADLINE`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::metrics::{self, Metrics};

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 32;
/// The whole exchange, request and response, must fit in this.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
const HEADER_DEADLINE: Duration = Duration::from_secs(5);

pub const LIVE_PATH: &str = "/health/live";
pub const READY_PATH: &str = "/health/ready";
pub const METRICS_PATH: &str = "/metrics";

/// What the endpoint answers from; the broker is filled in once it is opened.
#[derive(Debug)]
pub struct HttpState {
    node_id: i32,
    pub metrics: Arc<Metrics>,
    broker: OnceLock<Arc<Broker>>,
    stopping: AtomicBool,
}

impl HttpState {
    pub fn new(node_id: i32, metrics: Arc<Metrics>) -> Self {
        Self {
            node_id,
            metrics,
            broker: OnceLock::new(),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// From the start of a shutdown on the node is no longer ready.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        match self.broker.get() {
            None => Err("starting: joining the metadata quorum".into()),
            Some(b) => crate::health::readiness(b),
        }
    }
}

/// Binds the endpoint's address.
pub async fn bind(addr: &str) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Address(format!("{addr} (HTTP): {e}")))
}

/// Serves the endpoint on `listener` until the task is aborted.
pub fn spawn(listener: TcpListener, state: Arc<HttpState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                debug!(%peer, "HTTP connection refused: too many open");
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                serve_connection(socket, peer, state).await;
                drop(permit);
            });
        }
    })
}

async fn serve_connection(socket: tokio::net::TcpStream, peer: SocketAddr, state: Arc<HttpState>) {
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(answer(&state, &req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_DEADLINE)
        .serve_connection(TokioIo::new(socket), service);
    match tokio::time::timeout(CONNECTION_DEADLINE, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection failed"),
        Err(_) => debug!(%peer, "HTTP connection timed out"),
    }
}

fn answer(state: &HttpState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        LIVE_PATH => text(StatusCode::OK, "live\n".into()),
        READY_PATH => match state.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        METRICS_PATH => {
            let body = state
                .metrics
                .render(state.node_id, state.broker.get().map(Arc::as_ref));
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            format!("try {LIVE_PATH}, {READY_PATH} or {METRICS_PATH}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
