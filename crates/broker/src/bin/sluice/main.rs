//! The `sluice` binary: parses flags (each also read from `SLUICE_*`), installs logging,
//! runs one node until SIGINT/SIGTERM, then shuts it down cleanly; or, as
//! `sluice healthcheck`, asks a running node's health endpoint; or, as
//! `sluice add-scram`, stores the first SCRAM users in a data dir.

mod cli;
mod cluster_flags;
mod group_flags;
mod healthcheck;
mod replication_flags;
mod security_flags;
mod txn_flags;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level).context("bad --log-level")?;
    // Colour only on a terminal, so logs piped to files and tests stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
    if let Some(cli::Command::Healthcheck { live, timeout_ms }) = &cli.command {
        let timeout = std::time::Duration::from_millis((*timeout_ms).max(1));
        if let Err(e) = healthcheck::check(&cli.http_listen, *live, timeout) {
            tracing::warn!("unhealthy: {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    if let Some(cli::Command::AddScram { credentials }) = &cli.command {
        let creds = credentials
            .iter()
            .map(|spec| sluice_broker::scram_bootstrap::parse_spec(spec))
            .collect::<Result<Vec<_>, _>>()?;
        sluice_broker::scram_bootstrap::add(&cli.data_dir, &creds)?;
        for c in &creds {
            tracing::info!(user = %c.user, mechanism = %c.mechanism, data_dir = %cli.data_dir.display(), "added SCRAM credential");
        }
        return Ok(());
    }
    let config = cli.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: sluice_broker::BrokerConfig) -> anyhow::Result<()> {
    // Handlers first: in a container the node is PID 1, which ignores a SIGTERM it has
    // no handler for, and a node still waiting for its quorum must stop when asked.
    let mut stop = Box::pin(wait_for_signal()?);
    let server = tokio::select! {
        server = sluice_broker::start(config) => server?,
        r = &mut stop => {
            r?;
            tracing::info!("stopping before the node finished starting");
            return Ok(());
        }
    };
    stop.await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Installs the SIGTERM handler now; the future ends at SIGTERM or SIGINT.
fn wait_for_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
