//! Flags of the transaction coordinator (`transaction.*`, `transactional.id.*` broker
//! properties), each also read from `SLUICE_<NAME>`. Tests shorten the timeouts with them.

use clap::Args;
use sluice_broker::BrokerConfig;

#[derive(Debug, Args)]
pub struct TxnFlags {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`
    /// (fixed once the topic exists).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_LOG_NUM_PARTITIONS",
        default_value_t = 50
    )]
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.segment.bytes`.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_LOG_SEGMENT_BYTES",
        default_value_t = 104_857_600
    )]
    pub transaction_state_log_segment_bytes: i64,
    /// `transaction.state.log.min.isr` (capped at the topic's replication factor).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_LOG_MIN_ISR",
        default_value_t = 2
    )]
    pub transaction_state_log_min_isr: i64,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may
    /// ask for (INVALID_TRANSACTION_TIMEOUT above it).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often open
    /// transactions are checked against their timeout.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    #[arg(
        long,
        env = "SLUICE_TRANSACTIONAL_ID_EXPIRATION_MS",
        default_value_t = 604_800_000
    )]
    pub transactional_id_expiration_ms: i64,
}

impl TxnFlags {
    pub fn apply(self, c: &mut BrokerConfig) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.transaction_state_log_num_partitions),
            "--transaction-state-log-num-partitions must be between 1 and 10000"
        );
        // Created with this as its segment.bytes, whose minimum (KIP-1030) is 1 MiB.
        anyhow::ensure!(
            (1_048_576..=i64::from(i32::MAX)).contains(&self.transaction_state_log_segment_bytes),
            "--transaction-state-log-segment-bytes must be between 1048576 and 2147483647"
        );
        anyhow::ensure!(
            self.transaction_state_log_min_isr >= 1,
            "--transaction-state-log-min-isr must be at least 1"
        );
        anyhow::ensure!(
            self.transaction_max_timeout_ms >= 1
                && self.transaction_abort_timed_out_transaction_cleanup_interval_ms >= 1
                && self.transactional_id_expiration_ms >= 1,
            "transaction timeouts and intervals must be positive"
        );
        let t = &mut c.txns;
        t.state_partitions = self.transaction_state_log_num_partitions;
        t.max_timeout_ms = self.transaction_max_timeout_ms;
        t.abort_timed_out_interval_ms =
            self.transaction_abort_timed_out_transaction_cleanup_interval_ms;
        t.id_expiration_ms = self.transactional_id_expiration_ms;
        c.txn_state_segment_bytes = self.transaction_state_log_segment_bytes;
        c.txn_state_min_isr = self.transaction_state_log_min_isr;
        Ok(())
    }
}
