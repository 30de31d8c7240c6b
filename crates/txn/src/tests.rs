//! The coordinator's rules through plain calls: each test drives it the way the broker
//! does, completing writes and marker jobs (or failing them) and checking the answers,
//! the records written and the state left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_protocol::error::ErrorCode;

use crate::{Effect, Init, KeyValue, MarkerJob, Reply, TxnConfig, TxnCoordinator, TxnState};

const ID: &str = "tx-1";

/// A coordinator leading every shard, and what it asked for.
struct H {
    c: TxnCoordinator,
    /// Every record written, in order, with its partition.
    log: Vec<(i32, KeyValue)>,
    replies: Vec<(u64, Reply)>,
    jobs: Vec<MarkerJob>,
    next_reply: u64,
    /// Writes are completed at once when set; otherwise they queue here.
    auto: bool,
    queued: Vec<u64>,
    next_pid: i64,
}

impl H {
    fn new() -> Self {
        let config = TxnConfig {
            state_partitions: 4,
            ..Default::default()
        };
        let mut c = TxnCoordinator::new(config);
        for p in 0..4 {
            c.begin_load(p, 7);
            c.finish_load(p, 0);
        }
        H {
            c,
            log: Vec::new(),
            replies: Vec::new(),
            jobs: Vec::new(),
            next_reply: 1,
            auto: true,
            queued: Vec::new(),
            next_pid: 1000,
        }
    }

    fn run(&mut self, effects: Vec<Effect>, now: i64) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                match e {
                    Effect::Reply(id, r) => self.replies.push((id, r)),
                    Effect::Markers(job) => self.jobs.push(job),
                    Effect::Write {
                        id,
                        partition,
                        record,
                    } => {
                        self.log.push((partition, record));
                        if self.auto {
                            next.extend(self.c.write_done(id, Ok(()), now));
                        } else {
                            self.queued.push(id);
                        }
                    }
                }
            }
            queue = next;
        }
    }

    fn reply_to(&mut self, id: u64) -> Reply {
        let at = self
            .replies
            .iter()
            .position(|(r, _)| *r == id)
            .unwrap_or_else(|| panic!("no reply to {id}: {:?}", self.replies));
        self.replies.remove(at).1
    }

    fn init(&mut self, id: &str, now: i64) -> Reply {
        self.init_with(id, 60_000, None, now)
    }

    fn init_with(
        &mut self,
        id: &str,
        timeout: i32,
        expected: Option<(i64, i16)>,
        now: i64,
    ) -> Reply {
        let reply = self.next_reply;
        self.next_reply += 1;
        let effects = match self
            .c
            .init_producer_id(id, timeout, expected, None, now, reply)
        {
            Init::Effects(e) => e,
            Init::NeedProducerId => {
                self.next_pid += 1;
                match self.c.init_producer_id(
                    id,
                    timeout,
                    expected,
                    Some(self.next_pid),
                    now,
                    reply,
                ) {
                    Init::Effects(e) => e,
                    Init::NeedProducerId => panic!("asked twice for a producer id"),
                }
            }
        };
        self.run(effects, now);
        self.reply_to(reply)
    }

    fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[(&str, i32)], now: i64) -> Reply {
        let reply = self.next_reply;
        self.next_reply += 1;
        let parts: Vec<(String, i32)> = parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let effects = self.c.add_partitions(id, pid, epoch, &parts, now, reply);
        self.run(effects, now);
        self.reply_to(reply)
    }

    fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool, now: i64) -> Reply {
        let reply = self.next_reply;
        self.next_reply += 1;
        let effects = self.c.end_txn(id, pid, epoch, commit, now, reply);
        self.run(effects, now);
        self.reply_to(reply)
    }

    /// Completes the oldest marker job successfully.
    fn markers_ok(&mut self, now: i64) -> MarkerJob {
        let job = self.jobs.remove(0);
        let effects = self.c.markers_done(job.id, Ok(()), now);
        self.run(effects, now);
        job
    }

    fn state(&mut self, id: &str) -> TxnState {
        self.c.describe(id).unwrap().state
    }
}

fn producer(r: Reply) -> (i64, i16) {
    match r {
        Reply::ProducerId {
            error: ErrorCode::None,
            producer_id,
            producer_epoch,
        } => (producer_id, producer_epoch),
        other => panic!("expected a producer id, got {other:?}"),
    }
}

const OK: Reply = Reply::Done(ErrorCode::None);

fn done(code: ErrorCode) -> Reply {
    Reply::Done(code)
}

#[test]
fn a_committed_transaction_goes_through_every_state() {
    let mut h = H::new();
    let (pid, epoch) = producer(h.init(ID, 0));
    assert_eq!(epoch, 0);
    assert_eq!(h.state(ID), TxnState::Empty);
    assert_eq!(h.add(ID, pid, epoch, &[("a", 0), ("b", 1)], 10), OK);
    assert_eq!(h.state(ID), TxnState::Ongoing);
    // Adding what is already in: answered without a write.
    let written = h.log.len();
    assert_eq!(h.add(ID, pid, epoch, &[("a", 0)], 11), OK);
    assert_eq!(h.log.len(), written);
    assert_eq!(h.add(ID, pid, epoch, &[("a", 1)], 12), OK);

    assert_eq!(h.end(ID, pid, epoch, true, 20), OK);
    assert_eq!(h.state(ID), TxnState::PrepareCommit);
    assert_eq!(h.jobs.len(), 1);
    let job = &h.jobs[0];
    assert!(job.commit);
    assert_eq!(
        (job.producer_id, job.producer_epoch, job.coordinator_epoch),
        (pid, 0, 7)
    );
    assert_eq!(
        job.partitions,
        vec![
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("b".to_string(), 1)
        ]
    );
    // A retry while the markers are out.
    assert_eq!(
        h.end(ID, pid, epoch, true, 21),
        done(ErrorCode::ConcurrentTransactions)
    );
    h.markers_ok(30);
    let meta = h.c.describe(ID).unwrap();
    assert_eq!(meta.state, TxnState::CompleteCommit);
    assert!(meta.partitions.is_empty());
    // Retries after completion.
    assert_eq!(h.end(ID, pid, epoch, true, 40), OK);
    assert_eq!(
        h.end(ID, pid, epoch, false, 40),
        done(ErrorCode::InvalidTxnState)
    );
    // The next transaction of the same producer.
    assert_eq!(h.add(ID, pid, epoch, &[("a", 0)], 50), OK);
    assert_eq!(h.end(ID, pid, epoch, false, 60), OK);
    assert!(!h.jobs[0].commit);
    h.markers_ok(61);
    assert_eq!(h.state(ID), TxnState::CompleteAbort);
    // Empty, Ongoing, PrepareCommit, CompleteCommit, Ongoing, PrepareAbort, CompleteAbort
    // (plus the second add of the first transaction).
    assert_eq!(h.log.len(), 8);
}

#[test]
fn requests_get_kafkas_errors() {
    let mut h = H::new();
    assert_eq!(
        h.init_with(ID, 900_001, None, 0),
        Reply::ProducerId {
            error: ErrorCode::InvalidTransactionTimeout,
            producer_id: -1,
            producer_epoch: -1
        }
    );
    assert_eq!(
        h.add("nobody", 1, 0, &[("a", 0)], 0),
        done(ErrorCode::InvalidProducerIdMapping)
    );
    let (pid, epoch) = producer(h.init(ID, 0));
    assert_eq!(
        h.end(ID, pid, epoch, true, 1),
        done(ErrorCode::InvalidTxnState)
    );
    assert_eq!(
        h.add(ID, pid + 1, epoch, &[("a", 0)], 1),
        done(ErrorCode::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add(ID, pid, epoch + 1, &[("a", 0)], 1),
        done(ErrorCode::ProducerFenced)
    );
    // A write of the id fails: the client is told, nothing changed.
    h.auto = false;
    let r = h.next_reply;
    h.next_reply += 1;
    let effects = h.c.add_partitions(ID, pid, epoch, &[("a".into(), 0)], 2, r);
    h.run(effects, 2);
    let w = h.queued.remove(0);
    let effects = h.c.write_done(w, Err(ErrorCode::NotEnoughReplicas), 3);
    h.run(effects, 3);
    assert_eq!(h.reply_to(r), done(ErrorCode::CoordinatorNotAvailable));
    assert_eq!(h.state(ID), TxnState::Empty);
    // EndTxn while a write is in flight.
    let r = h.next_reply;
    h.next_reply += 1;
    let effects = h.c.add_partitions(ID, pid, epoch, &[("a".into(), 0)], 3, r);
    h.run(effects, 3);
    assert_eq!(
        h.end(ID, pid, epoch, true, 3),
        done(ErrorCode::ConcurrentTransactions)
    );
    let w = h.queued.remove(0);
    let effects = h.c.write_done(w, Ok(()), 3);
    h.run(effects, 3);
    assert_eq!(h.reply_to(r), OK);

    // Shards this coordinator does not serve, or is still loading.
    let p = h.c.partition_for(ID);
    let effects = h.c.unload(p);
    h.run(effects, 4);
    h.auto = true;
    assert_eq!(
        h.add(ID, pid, epoch, &[("a", 0)], 4),
        done(ErrorCode::NotCoordinator)
    );
    h.c.begin_load(p, 8);
    assert_eq!(
        h.add(ID, pid, epoch, &[("a", 0)], 4),
        done(ErrorCode::CoordinatorLoadInProgress)
    );
}

#[test]
fn unloading_answers_requests_waiting_on_writes() {
    let mut h = H::new();
    h.auto = false;
    let r = h.next_reply;
    h.next_reply += 1;
    let effects = match h.c.init_producer_id(ID, 1_000, None, Some(5), 0, r) {
        Init::Effects(e) => e,
        Init::NeedProducerId => panic!("had one"),
    };
    h.run(effects, 0);
    let p = h.c.partition_for(ID);
    let effects = h.c.unload(p);
    h.run(effects, 1);
    assert_eq!(
        h.reply_to(r),
        Reply::ProducerId {
            error: ErrorCode::NotCoordinator,
            producer_id: -1,
            producer_epoch: -1
        }
    );
    // The late completion is ignored.
    let w = h.queued.remove(0);
    assert!(h.c.write_done(w, Ok(()), 2).is_empty());
}

#[test]
fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    let mut h = H::new();
    let (pid, e0) = producer(h.init(ID, 0));
    assert_eq!(h.add(ID, pid, e0, &[("a", 0)], 1), OK);
    // The new instance's first try aborts the open transaction under epoch 1.
    assert_eq!(
        h.init(ID, 2),
        Reply::ProducerId {
            error: ErrorCode::ConcurrentTransactions,
            producer_id: -1,
            producer_epoch: -1
        }
    );
    assert_eq!(h.state(ID), TxnState::PrepareAbort);
    let job = h.markers_ok(3);
    assert!(!job.commit);
    assert_eq!(
        job.producer_epoch, 1,
        "the abort markers carry the fencing epoch"
    );
    assert_eq!(h.state(ID), TxnState::CompleteAbort);
    // Its retry gets the next epoch; the old producer is fenced.
    assert_eq!(producer(h.init(ID, 4)), (pid, 2));
    assert_eq!(h.end(ID, pid, e0, true, 5), done(ErrorCode::ProducerFenced));
    assert_eq!(
        h.add(ID, pid, e0, &[("a", 0)], 5),
        done(ErrorCode::ProducerFenced)
    );
}

#[test]
fn kip_360_expected_epochs() {
    let mut h = H::new();
    let (pid, e0) = producer(h.init(ID, 0));
    // A producer re-initialising with what it has: bumped.
    assert_eq!(
        producer(h.init_with(ID, 60_000, Some((pid, e0)), 1)),
        (pid, 1)
    );
    // Its retry of that call (the answer was lost) gets the same answer.
    assert_eq!(
        producer(h.init_with(ID, 60_000, Some((pid, e0)), 2)),
        (pid, 1)
    );
    // Anything else is fenced.
    assert_eq!(
        h.init_with(ID, 60_000, Some((pid, 7)), 3),
        Reply::ProducerId {
            error: ErrorCode::ProducerFenced,
            producer_id: -1,
            producer_epoch: -1
        }
    );
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut h = H::new();
    let (pid, _) = producer(h.init(ID, 0));
    // Replay a record with the epoch at its limit into a fresh shard.
    let p = h.c.partition_for(ID);
    let mut meta = h.c.describe(ID).unwrap();
    meta.producer_epoch = i16::MAX - 1;
    let kv = crate::records::record(ID, &meta).unwrap();
    h.c.begin_load(p, 9);
    h.c.load_record(p, &kv.key, kv.value.as_ref()).unwrap();
    h.c.finish_load(p, 1);
    let (new_pid, epoch) = producer(h.init(ID, 2));
    assert_ne!(new_pid, pid);
    assert_eq!(epoch, 0);
    assert_eq!(h.c.describe(ID).unwrap().previous_producer_id, pid);
}

#[test]
fn transactions_past_their_timeout_are_aborted_under_a_new_epoch() {
    let mut h = H::new();
    let (pid, epoch) = producer(h.init_with(ID, 1_000, None, 0));
    assert_eq!(h.add(ID, pid, epoch, &[("a", 0)], 100), OK);
    let effects = h.c.tick(500);
    h.run(effects, 500);
    assert_eq!(h.state(ID), TxnState::Ongoing, "not yet timed out");
    // The next check comes a cleanup interval after the last one.
    let effects = h.c.tick(10_499);
    h.run(effects, 10_499);
    assert_eq!(h.state(ID), TxnState::Ongoing);
    let effects = h.c.tick(10_500);
    h.run(effects, 10_500);
    assert_eq!(h.state(ID), TxnState::PrepareAbort);
    let job = h.markers_ok(10_002);
    assert_eq!(job.producer_epoch, epoch + 1);
    assert_eq!(h.state(ID), TxnState::CompleteAbort);
    assert_eq!(
        h.end(ID, pid, epoch, true, 10_003),
        done(ErrorCode::ProducerFenced)
    );
    // KIP-360: the producer re-initialises with what it had and resumes at the new epoch.
    assert_eq!(
        producer(h.init_with(ID, 1_000, Some((pid, epoch)), 10_004)),
        (pid, epoch + 1)
    );
}

#[test]
fn failed_markers_and_completions_are_retried() {
    let mut h = H::new();
    let (pid, epoch) = producer(h.init(ID, 0));
    h.add(ID, pid, epoch, &[("a", 0)], 1);
    h.end(ID, pid, epoch, true, 2);
    let job = h.jobs.remove(0);
    assert!(h.c.job_active(job.id));
    let effects =
        h.c.markers_done(job.id, Err(ErrorCode::NotLeaderOrFollower), 3);
    assert!(effects.is_empty());
    let effects = h.c.tick(50);
    assert!(effects.is_empty(), "within the backoff");
    let effects = h.c.tick(200);
    h.run(effects, 200);
    assert_eq!(h.jobs.len(), 1, "markers sent again");
    // Markers done, but the completion record fails: only it is retried.
    h.auto = false;
    let job = h.jobs.remove(0);
    let effects = h.c.markers_done(job.id, Ok(()), 201);
    h.run(effects, 201);
    let w = h.queued.remove(0);
    let effects = h.c.write_done(w, Err(ErrorCode::RequestTimedOut), 202);
    h.run(effects, 202);
    h.auto = true;
    let effects = h.c.tick(400);
    h.run(effects, 400);
    assert!(h.jobs.is_empty(), "no second marker job");
    assert_eq!(h.state(ID), TxnState::CompleteCommit);
}

#[test]
fn a_new_coordinator_resumes_from_the_log() {
    let mut h = H::new();
    let (pid, epoch) = producer(h.init(ID, 0));
    h.add(ID, pid, epoch, &[("a", 0), ("b", 2)], 1);
    h.end(ID, pid, epoch, false, 2);
    let before = h.c.describe(ID).unwrap();
    // Another broker takes the partition over and replays it.
    let p = h.c.partition_for(ID);
    let mut other = TxnCoordinator::new(TxnConfig {
        state_partitions: 4,
        ..Default::default()
    });
    other.begin_load(p, 8);
    for (partition, kv) in &h.log {
        assert_eq!(*partition, p);
        other.load_record(p, &kv.key, kv.value.as_ref()).unwrap();
    }
    let effects = other.finish_load(p, 3);
    let mut after = other.describe(ID).unwrap();
    after.last_producer_epoch = before.last_producer_epoch;
    assert_eq!(after, before);
    match effects.as_slice() {
        [Effect::Markers(job)] => {
            assert!(!job.commit);
            assert_eq!(job.coordinator_epoch, 8);
            assert_eq!(job.partitions.len(), 2);
        }
        other => panic!("expected the abort's markers again, got {other:?}"),
    }
}

#[test]
fn idle_transactional_ids_expire() {
    let mut h = H::new();
    h.init(ID, 0);
    h.init("busy", 0);
    let (pid, epoch) = producer(h.init("busy", 0));
    h.add("busy", pid, epoch, &[("a", 0)], 0);
    let week = 7 * 24 * 3_600_000;
    let effects = h.c.tick(week + 1);
    h.run(effects, week + 1);
    assert_eq!(h.c.describe(ID), Err(ErrorCode::TransactionalIdNotFound));
    let key = crate::records::key(ID).unwrap();
    assert!(
        h.log
            .iter()
            .any(|(_, kv)| kv.key == key && kv.value.is_none()),
        "a tombstone"
    );
    // The one with an open transaction was aborted for its timeout, not forgotten.
    assert!(h.c.describe("busy").is_ok());
    let (listed, loading) =
        h.c.list(&Default::default(), &Default::default(), -1, week + 1);
    assert!(!loading);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].transactional_id, "busy");
}

#[test]
fn the_next_transactions_first_add_waits_for_the_previous_to_complete() {
    let mut h = H::new();
    let (pid, epoch) = producer(h.init(ID, 0));
    h.add(ID, pid, epoch, &[("a", 0)], 1);
    h.end(ID, pid, epoch, true, 2);
    // The producer starts its next transaction while the markers are out: parked, not
    // told to retry.
    let r = h.next_reply;
    h.next_reply += 1;
    let effects = h.c.add_partitions(ID, pid, epoch, &[("b".into(), 0)], 3, r);
    h.run(effects, 3);
    assert!(h.replies.is_empty(), "parked: {:?}", h.replies);
    // Another producer epoch is not parked.
    assert_eq!(
        h.add(ID, pid, epoch + 1, &[("b", 0)], 3),
        done(ErrorCode::ProducerFenced)
    );
    h.markers_ok(4);
    assert_eq!(h.reply_to(r), OK);
    let meta = h.c.describe(ID).unwrap();
    assert_eq!(meta.state, TxnState::Ongoing);
    assert_eq!(
        meta.partitions.into_iter().collect::<Vec<_>>(),
        vec![("b".to_string(), 0)]
    );

    // Markers that do not complete: the parked request gives up after PARK_MAX_MS.
    h.end(ID, pid, epoch, true, 10);
    let r = h.next_reply;
    h.next_reply += 1;
    let effects =
        h.c.add_partitions(ID, pid, epoch, &[("c".into(), 0)], 11, r);
    h.run(effects, 11);
    let effects = h.c.tick(11 + crate::PARK_MAX_MS - 1);
    h.run(effects, 11);
    assert!(h.replies.iter().all(|(id, _)| *id != r));
    let effects = h.c.tick(11 + crate::PARK_MAX_MS);
    h.run(effects, 11);
    assert_eq!(h.reply_to(r), done(ErrorCode::ConcurrentTransactions));
    // And a shard given up answers its parked requests.
    let r = h.next_reply;
    h.next_reply += 1;
    let effects =
        h.c.add_partitions(ID, pid, epoch, &[("c".into(), 0)], 12, r);
    h.run(effects, 12);
    let p = h.c.partition_for(ID);
    let effects = h.c.unload(p);
    h.run(effects, 13);
    assert_eq!(h.reply_to(r), done(ErrorCode::NotCoordinator));
}
