//! The Kafka listener: accepts connections within `max.connections`, runs one
//! connection task each, and shuts down gracefully on a broadcast signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::connection;
use crate::error::BrokerError;
use crate::groups::GroupService;

/// A started node: its (first listener's) bound address and a handle to stop it.
#[derive(Debug)]
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub broker: Arc<Broker>,
    shutdown: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, ends every connection, waits for their tasks, then flushes and
    /// closes every log so the next start needs no recovery scan.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

/// Binds every listener, opens the data dir and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningServer, BrokerError> {
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
    // Recovery reads and checks every log: off the async threads, and unlike
    // block_in_place this works on a current-thread runtime too.
    let open_addrs = addrs.clone();
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || Broker::open(config, &open_addrs))
            .await
            .map_err(|e| BrokerError::Metadata(format!("startup task failed: {e}")))??,
    );
    let (shutdown, _) = broadcast::channel(1);
    let background = {
        let logs = broker.spawn_background(shutdown.subscribe());
        let groups = GroupService::spawn_ticker(broker.clone(), shutdown.subscribe());
        tokio::spawn(async move {
            let _ = logs.await;
            let _ = groups.await;
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
        broker.clone(),
        shutdown.clone(),
        background,
    ));
    Ok(RunningServer {
        local_addr,
        broker,
        shutdown,
        task,
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
    broker: Arc<Broker>,
    shutdown: broadcast::Sender<()>,
    background: tokio::task::JoinHandle<()>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
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
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let stop = shutdown.subscribe();
                let name = broker.listeners.get(listener).map(|l| l.name.clone()).unwrap_or_default();
                let span = tracing::info_span!("conn", %peer, listener = %name);
                conns.spawn(async move {
                    if let Err(e) = connection::serve(broker, socket, listener, stop).await {
                        debug!(error = %e, "connection closed with error");
                    }
                    drop(permit);
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
