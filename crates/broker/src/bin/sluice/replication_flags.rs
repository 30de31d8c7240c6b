//! Flags of replica fetching and ISR upkeep (Kafka's `replica.*`), each also read from
//! `SLUICE_<NAME>`. Cluster tests shorten the lag time with them.

use clap::Args;
use sluice_broker::BrokerConfig;

#[derive(Debug, Args)]
pub struct ReplicationFlags {
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long is
    /// removed from the ISR.
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for new data.
    #[arg(long, env = "SLUICE_REPLICA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.backoff.ms`: a follower's pause after a fetch error (Kafka: 1000).
    #[arg(long, env = "SLUICE_REPLICA_FETCH_BACKOFF_MS", default_value_t = 100)]
    pub replica_fetch_backoff_ms: u64,
    /// `replica.fetch.max.bytes`: bytes per partition per follower fetch.
    #[arg(long, env = "SLUICE_REPLICA_FETCH_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: bytes per follower fetch.
    #[arg(
        long,
        env = "SLUICE_REPLICA_FETCH_RESPONSE_MAX_BYTES",
        default_value_t = 10 * 1024 * 1024
    )]
    pub replica_fetch_response_max_bytes: i32,
}

impl ReplicationFlags {
    pub fn apply(self, c: &mut BrokerConfig) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.replica_fetch_wait_max_ms < self.replica_lag_time_max_ms,
            "--replica-fetch-wait-max-ms must be below --replica-lag-time-max-ms"
        );
        anyhow::ensure!(
            self.replica_fetch_max_bytes > 0 && self.replica_fetch_response_max_bytes > 0,
            "replica fetch sizes must be positive"
        );
        let r = &mut c.replication;
        r.lag_time_max_ms = self.replica_lag_time_max_ms;
        r.fetch_wait_max_ms = self.replica_fetch_wait_max_ms;
        r.fetch_backoff_ms = self.replica_fetch_backoff_ms;
        r.fetch_max_bytes = self.replica_fetch_max_bytes;
        r.fetch_response_max_bytes = self.replica_fetch_response_max_bytes;
        Ok(())
    }
}
