//! The Kafka listener: accepts connections within `max.connections`, runs one
//! connection task each, and shuts down gracefully on a broadcast signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::cluster::{bootstrap, Cluster};
use crate::config::BrokerConfig;
use crate::conn_limits::ConnectionLimits;
use crate::connection;
use crate::error::BrokerError;
use crate::groups::GroupService;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::replicas::ReplicaService;
use crate::scram_bootstrap;
use crate::security::{protocol_of, SecurityProtocol};
use crate::session::Session;
use crate::tls::TlsServer;
use crate::topic_store::load_or_init_identity;
use crate::txns::TxnService;

/// The controller's store, inside the data dir (not named like a partition directory).
pub const CONTROLLER_DIR: &str = "controller";

/// A started node: its (first listener's) bound address and a handle to stop it.
#[derive(Debug)]
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub broker: Arc<Broker>,
    shutdown: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
    http: Option<HttpEndpoint>,
}

/// The running HTTP endpoint; its task ends when this is dropped, so a start that fails
/// half-way leaves nothing serving.
#[derive(Debug)]
struct HttpEndpoint {
    addr: SocketAddr,
    state: Arc<HttpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_http(
    config: &BrokerConfig,
    metrics: &Arc<Metrics>,
) -> Result<Option<HttpEndpoint>, BrokerError> {
    let Some(addr) = &config.http_listen else {
        return Ok(None);
    };
    let listener = http::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(HttpState::new(config.node_id, metrics.clone()));
    let task = http::spawn(listener, state.clone());
    Ok(Some(HttpEndpoint { addr, state, task }))
}

impl RunningServer {
    /// Controlled shutdown first (the controller moves this broker's leaderships away
    /// while clients can still ask it where they went), then stops accepting, ends every
    /// connection, waits for their tasks, flushes and closes every log so the next start
    /// needs no recovery scan, and stops the controller node.
    pub async fn shutdown(self) {
        if let Some(http) = &self.http {
            http.state.set_stopping();
        }
        self.broker.cluster.leave().await;
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        self.sync.abort();
        let _ = self.sync.await;
        self.broker.cluster.shutdown().await;
    }
}

/// Binds every listener, opens the data dir, joins the metadata quorum and starts
/// serving once the controller has unfenced this broker.
pub async fn start(config: BrokerConfig) -> Result<RunningServer, BrokerError> {
    info!(
        node_id = config.node_id,
        voters = ?config.cluster.voters,
        listeners = ?config.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect::<Vec<_>>(),
        http = config.http_listen.as_deref().unwrap_or("off"),
        data_dir = %config.data_dir.display(),
        "starting node"
    );
    let metrics = Arc::new(Metrics::new());
    // First, so that liveness answers while the node waits for its quorum.
    let http = start_http(&config, &metrics).await?;
    let tls = tls_server(&config)?;
    let mut bound = Vec::new();
    for l in &config.listeners {
        let socket = TcpListener::bind(&l.bind)
            .await
            .map_err(|e| BrokerError::Address(format!("{} ({}): {e}", l.bind, l.name)))?;
        bound.push(socket);
    }
    let addrs = bound
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()?;
    let local_addr = *addrs
        .first()
        .ok_or_else(|| BrokerError::Address("no listener configured".into()))?;
    let data_dir = config.data_dir.clone();
    let node_id = config.node_id;
    let expected = bootstrap::expected_cluster_id(&config.cluster);
    let bootstrap_scram = config.security.bootstrap_scram.clone();
    let cluster_id = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir).map_err(|e| BrokerError::io(&data_dir, e))?;
        if !bootstrap_scram.is_empty() {
            scram_bootstrap::add(&data_dir, &bootstrap_scram)?;
        }
        load_or_init_identity(&data_dir, node_id, expected.as_deref())
    })
    .await
    .map_err(|e| BrokerError::Metadata(format!("startup task failed: {e}")))??;
    let own_voter_addr = u64::try_from(node_id)
        .ok()
        .and_then(|id| config.cluster.voters.get(&id).cloned());
    // A single node's quorum talks to nobody: any free port will do.
    let rpc_bind = config
        .cluster
        .rpc_listen
        .clone()
        .or(own_voter_addr)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let rpc_listener = TcpListener::bind(&rpc_bind)
        .await
        .map_err(|e| BrokerError::Address(format!("{rpc_bind} (controller RPC): {e}")))?;
    let cluster = Arc::new(
        Cluster::start_with_tls(
            node_id,
            &config.cluster,
            config.security.tls.as_ref(),
            &config.data_dir.join(CONTROLLER_DIR),
            rpc_listener,
        )
        .await?,
    );
    let rack = config.rack.clone();
    let broker = Arc::new(Broker::open(
        config,
        cluster_id,
        &addrs,
        cluster.clone(),
        metrics,
    )?);
    if let Some(http) = &http {
        http.state.set_broker(broker.clone());
    }
    cluster.register(broker.advertised_endpoints(), rack);
    // Logs are recovered as the first image is followed (on the blocking pool).
    let sync = cluster.spawn_sync(broker.clone());
    cluster.wait_unfenced().await;
    cluster
        .migrate_legacy_topics(&broker.config.data_dir)
        .await?;
    scram_bootstrap::apply(&cluster, &broker.config.data_dir).await?;
    // Only now is the image known to hold every topic that existed before this start
    // (the controller unfences a broker once it has caught up): directories of topics
    // deleted meanwhile, or of an interrupted delete, can go. Before this point a
    // directory missing from the image may just not have been replayed yet.
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.topics.remove_strays(b.config.node_id))
        .await
        .map_err(|e| BrokerError::Metadata(format!("startup task failed: {e}")))?;
    let (shutdown, _) = broadcast::channel(1);
    let background = {
        let logs = broker.spawn_background(shutdown.subscribe());
        let groups = GroupService::spawn_ticker(broker.clone(), shutdown.subscribe());
        let txns = TxnService::spawn_ticker(broker.clone(), shutdown.subscribe());
        let replicas = ReplicaService::spawn(broker.clone(), shutdown.subscribe());
        tokio::spawn(async move {
            let _ = logs.await;
            let _ = groups.await;
            let _ = txns.await;
            let _ = replicas.await;
        })
    };
    let described: Vec<String> = broker
        .listeners
        .iter()
        .map(|l| format!("{}={} (advertised {}:{})", l.name, l.bound, l.host, l.port))
        .collect();
    let (host, port) = broker.endpoint(0);
    info!(
        listen = %local_addr,
        advertised = %format!("{host}:{port}"),
        listeners = %described.join(", "),
        data_dir = %broker.config.data_dir.display(),
        http = %http.as_ref().map_or_else(|| "off".to_string(), |h| h.addr.to_string()),
        node_id = broker.config.node_id,
        cluster_id = %broker.cluster_id,
        "sluice listening"
    );
    // One accept task per listener hands sockets, tagged with the listener's index, to
    // the loop that owns the connection limit and the connection tasks.
    let (accepted_tx, accepted_rx) = mpsc::channel(64);
    let mut acceptors = Vec::new();
    for (index, listener) in bound.into_iter().enumerate() {
        acceptors.push(tokio::spawn(accept(listener, index, accepted_tx.clone())));
    }
    drop(accepted_tx);
    let task = tokio::spawn(connection_loop(
        accepted_rx,
        acceptors,
        tls,
        broker.clone(),
        shutdown.clone(),
        background,
    ));
    Ok(RunningServer {
        local_addr,
        http,
        broker,
        shutdown,
        task,
        sync,
    })
}

/// Accepts connections on one listener until its channel closes.
async fn accept(
    listener: TcpListener,
    index: usize,
    out: mpsc::Sender<(TcpStream, SocketAddr, usize)>,
) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                if out.send((socket, peer, index)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection_loop(
    mut accepted: mpsc::Receiver<(TcpStream, SocketAddr, usize)>,
    acceptors: Vec<tokio::task::JoinHandle<()>>,
    tls: Option<Arc<TlsServer>>,
    broker: Arc<Broker>,
    shutdown: broadcast::Sender<()>,
    background: tokio::task::JoinHandle<()>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let c = &broker.config;
    let per_listener = broker
        .listeners
        .iter()
        .map(|l| c.listener_max_connections.get(&l.name).copied())
        .collect();
    let limits = Arc::new(ConnectionLimits::new(
        c.max_connections_per_ip,
        c.max_connections_per_ip_overrides.clone(),
        per_listener,
    ));
    let mut stop = shutdown.subscribe();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            Some((socket, peer, listener)) = accepted.recv() => {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    warn!(%peer, max = broker.config.max_connections, "connection refused: max.connections reached");
                    drop(socket);
                    continue;
                };
                let slot = match limits.admit(peer.ip(), listener) {
                    Ok(slot) => slot,
                    Err(refused) => {
                        debug!(%peer, ?refused, "connection refused: a connection limit is reached");
                        drop(socket);
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let stop = shutdown.subscribe();
                let name = broker.listeners.get(listener).map(|l| l.name.clone()).unwrap_or_default();
                let span = tracing::info_span!("conn", %peer, listener = %name);
                let tls = tls.clone();
                conns.spawn(async move {
                    let metrics = broker.metrics.clone();
                    metrics.connections.inc();
                    if let Err(e) = serve_accepted(broker, socket, peer, listener, tls, stop).await {
                        debug!(error = %e, "connection closed with error");
                    }
                    metrics.connections.dec();
                    drop((permit, slot));
                }.instrument(span));
            }
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.recv() => break,
        }
    }
    for a in acceptors {
        a.abort();
    }
    while conns.join_next().await.is_some() {}
    let _ = background.await;
    let b = broker.clone();
    let _ = tokio::task::spawn_blocking(move || b.close()).await;
    info!("sluice stopped");
}

/// The listeners' TLS, if any listener speaks SSL or SASL_SSL (which then needs the
/// `ssl.*` settings).
fn tls_server(config: &BrokerConfig) -> Result<Option<Arc<TlsServer>>, BrokerError> {
    let mut needed = None;
    for l in &config.listeners {
        if protocol_of(&l.name, &config.security.protocol_map)?.uses_tls() {
            needed = Some(l.name.clone());
        }
    }
    let Some(listener) = needed else {
        return Ok(None);
    };
    let settings = config.security.tls.as_ref().ok_or_else(|| {
        BrokerError::Config(format!(
            "listener {listener} uses TLS: a certificate and key are needed (--ssl-certificate-location, --ssl-key-location)"
        ))
    })?;
    Ok(Some(Arc::new(TlsServer::new(settings)?)))
}

/// Runs one accepted connection: the TLS handshake first on an SSL or SASL_SSL
/// listener (within the authentication timeout), then the Kafka protocol.
async fn serve_accepted(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    listener: usize,
    tls: Option<Arc<TlsServer>>,
    mut stop: broadcast::Receiver<()>,
) -> Result<(), BrokerError> {
    let protocol = broker
        .listeners
        .get(listener)
        .map_or(SecurityProtocol::Plaintext, |l| l.security);
    if !protocol.uses_tls() {
        let session = Session::new(protocol, None);
        return connection::serve(broker, socket.into_split(), peer, listener, session, stop).await;
    }
    let tls = tls.ok_or_else(|| BrokerError::Config("TLS listener without TLS settings".into()))?;
    let timeout = Duration::from_millis(broker.config.security.authentication_timeout_ms);
    let (stream, principal) = tokio::select! {
        r = tls.accept(socket, timeout) => r?,
        _ = stop.recv() => return Ok(()),
    };
    let session = Session::new(protocol, principal);
    connection::serve(
        broker,
        tokio::io::split(stream),
        peer,
        listener,
        session,
        stop,
    )
    .await
}
