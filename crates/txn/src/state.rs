//! One transactional id's state, as Kafka's `TransactionMetadata` keeps it, and the
//! states a transaction moves through.
//!
//! ```text
//! Empty --AddPartitions--> Ongoing --EndTxn--> PrepareCommit --markers--> CompleteCommit
//!                                  \--EndTxn/timeout/fence--> PrepareAbort --markers--> CompleteAbort
//! Complete*/Empty --AddPartitions--> Ongoing;  any resting state --InitProducerId--> Empty (epoch + 1)
//! ```
//!
//! Every transition is written to `__transaction_state` before it takes effect; the
//! record holds the whole state, so the latest record of an id is all a new coordinator
//! needs.

use std::collections::BTreeSet;

/// Kafka's `TransactionState`, with the ids its log records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn id(self) -> i8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
            Self::CompleteCommit => 4,
            Self::CompleteAbort => 5,
            Self::Dead => 6,
            Self::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name ListTransactions and DescribeTransactions report (Kafka's `stateName`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// No transaction in progress: a new one may start, the producer may be re-initialised.
    pub fn is_resting(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::CompleteCommit | Self::CompleteAbort
        )
    }

    /// Decided, with markers still to be written.
    pub fn is_prepared(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }
}

/// A topic partition taking part in a transaction.
pub type TopicPartition = (String, i32);

/// `partitions` as (topic, partition indexes), one entry per run of the same topic (the
/// shape of every transaction request and record; sorted input gives one per topic).
pub fn by_topic<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match out.last_mut() {
            Some((t, ps)) if t == topic => ps.push(*partition),
            _ => out.push((topic.clone(), vec![*partition])),
        }
    }
    out
}

/// The state of one transactional id (the value of its latest log record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The producer id before the last epoch exhaustion (-1: none).
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a retried InitProducerId (KIP-360) is
    /// recognised (-1: none). Not stored in the log, as in Kafka.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction began (-1: none).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TxnMeta {
    /// A transactional id seen for the first time, with its new producer id.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        Self {
            producer_id,
            previous_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        }
    }

    /// The epoch cannot be bumped again: the next InitProducerId needs a new producer id
    /// (Kafka's `isProducerEpochExhausted`).
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= i16::MAX - 1
    }
}
