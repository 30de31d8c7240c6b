//! The Kafka listener: accepts connections within `max.connections`, runs one
//! connection task each, and shuts down gracefully on a broadcast signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::connection;
use crate::error::BrokerError;
use crate::groups::GroupService;

/// A started node: its bound address and a handle to stop it.
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

/// Binds the listener, opens the data dir and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningServer, BrokerError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| BrokerError::Address(format!("{}: {e}", config.listen)))?;
    let local_addr = listener.local_addr()?;
    // Recovery reads and checks every log: off the async threads, and unlike
    // block_in_place this works on a current-thread runtime too.
    let port = local_addr.port();
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || Broker::open(config, port))
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
    info!(
        listen = %local_addr,
        advertised = %format!("{}:{}", broker.advertised_host, broker.advertised_port),
        data_dir = %broker.config.data_dir.display(),
        node_id = broker.config.node_id,
        cluster_id = %broker.cluster_id,
        "sluice listening"
    );
    let task = tokio::spawn(accept_loop(
        listener,
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

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: broadcast::Sender<()>,
    background: tokio::task::JoinHandle<()>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut stop = shutdown.subscribe();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: keep serving the connections we have.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    warn!(%peer, max = broker.config.max_connections, "connection refused: max.connections reached");
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let stop = shutdown.subscribe();
                let span = tracing::info_span!("conn", %peer);
                conns.spawn(async move {
                    if let Err(e) = connection::serve(broker, socket, stop).await {
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
    drop(listener);
    while conns.join_next().await.is_some() {}
    let _ = background.await;
    let b = broker.clone();
    let _ = tokio::task::spawn_blocking(move || b.close()).await;
    info!("sluice stopped");
}
