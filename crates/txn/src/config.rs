//! The transaction coordinator's settings, with Kafka's names and defaults.

/// Transaction coordinator configuration (`transaction.*` broker configs).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`: how many shards the transactional ids
    /// are spread over.
    pub state_partitions: i32,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: i64,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    pub id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: i64,
    /// How long after a failed attempt markers or a completion record are tried again.
    pub retry_backoff_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            state_partitions: 50,
            max_timeout_ms: 900_000,
            abort_timed_out_interval_ms: 10_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            remove_expired_interval_ms: 3_600_000,
            retry_backoff_ms: 100,
        }
    }
}
