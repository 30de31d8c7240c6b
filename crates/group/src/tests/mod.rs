//! Coordinator tests: rebalances, commits and loading driven by plain calls, with the
//! time passed in and writes completed (or failed) by the harness.

mod admin;
mod offsets;
mod rebalance;
mod restore;
mod txn_offsets;

use std::collections::HashMap;

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use crate::{ClientInfo, Coordinator, Effect, GroupConfig, KeyValue, Reply, ReplyId};

/// Drives a coordinator that owns every offsets partition, completing writes at once
/// (unless `hold_writes`) and keeping every reply and every written record.
pub struct Harness {
    pub c: Coordinator,
    pub now: i64,
    next_reply: ReplyId,
    pub replies: HashMap<ReplyId, Reply>,
    /// (partition, records) in write order: the offsets topic as it would be.
    pub log: Vec<(i32, KeyValue)>,
    /// The transaction each record of `log` was written in, if any.
    pub log_txn: Vec<Option<crate::TxnProducer>>,
    pub hold_writes: bool,
    pub held: Vec<(crate::WriteId, i32, Vec<KeyValue>)>,
}

pub fn config() -> GroupConfig {
    GroupConfig {
        offsets_partitions: 4,
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

pub fn protocols(names: &[&str]) -> Vec<JoinGroupRequestProtocol> {
    names
        .iter()
        .map(|n| JoinGroupRequestProtocol {
            name: n.to_string(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

impl Harness {
    pub fn new(config: GroupConfig) -> Self {
        let mut c = Coordinator::new(config);
        for p in 0..c.config().offsets_partitions {
            c.begin_load(p);
            c.finish_load(p, 0);
        }
        Self {
            c,
            now: 1_000_000,
            next_reply: 1,
            replies: HashMap::new(),
            log: Vec::new(),
            log_txn: Vec::new(),
            hold_writes: false,
            held: Vec::new(),
        }
    }

    pub fn reply_id(&mut self) -> ReplyId {
        self.next_reply += 1;
        self.next_reply
    }

    pub fn run(&mut self, effects: Vec<Effect>) {
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                match e {
                    Effect::Reply(id, r) => {
                        assert!(
                            self.replies.insert(id, r).is_none(),
                            "reply {id} answered twice"
                        );
                    }
                    Effect::Write {
                        id,
                        partition,
                        records,
                        transaction,
                    } => {
                        if self.hold_writes {
                            self.held.push((id, partition, records));
                        } else {
                            self.log_txn.extend(records.iter().map(|_| transaction));
                            self.log.extend(records.into_iter().map(|r| (partition, r)));
                            next.extend(self.c.write_done(id, Ok(()), self.now));
                        }
                    }
                }
            }
            queue = next;
        }
    }

    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
        let e = self.c.tick(self.now);
        self.run(e);
    }

    pub fn join_req(group: &str, member: &str, names: &[&str]) -> JoinGroupRequest {
        JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: protocols(names),
            reason: None,
        }
    }

    /// Sends a JoinGroup; returns its reply id (the reply may come later).
    pub fn join(&mut self, req: JoinGroupRequest, version: i16) -> ReplyId {
        let id = self.reply_id();
        let client = ClientInfo {
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
        };
        let e = self.c.join_group(self.now, req, version, client, id);
        self.run(e);
        id
    }

    pub fn join_reply(&mut self, id: ReplyId) -> Option<JoinGroupResponse> {
        match self.replies.remove(&id) {
            Some(Reply::Join(r)) => Some(r),
            None => None,
            Some(other) => panic!("expected a join reply, got {other:?}"),
        }
    }

    /// A v4+ member's full entry: MEMBER_ID_REQUIRED, then the real join.
    pub fn join_new(&mut self, group: &str, names: &[&str]) -> (String, ReplyId) {
        let first = self.join(Self::join_req(group, "", names), 5);
        let r = self
            .join_reply(first)
            .expect("MEMBER_ID_REQUIRED is immediate");
        assert_eq!(r.error_code, ErrorCode::MemberIdRequired.code());
        let member = r.member_id;
        let id = self.join(Self::join_req(group, &member, names), 5);
        (member, id)
    }

    pub fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> ReplyId {
        let id = self.reply_id();
        let req = SyncGroupRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| SyncGroupRequestAssignment {
                    member_id: m.to_string(),
                    assignment: Bytes::from(a.to_string()),
                })
                .collect(),
        };
        let e = self.c.sync_group(self.now, req, id);
        self.run(e);
        id
    }

    pub fn sync_reply(&mut self, id: ReplyId) -> Option<SyncGroupResponse> {
        match self.replies.remove(&id) {
            Some(Reply::Sync(r)) => Some(r),
            None => None,
            Some(other) => panic!("expected a sync reply, got {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> i16 {
        self.c
            .heartbeat(
                self.now,
                HeartbeatRequest {
                    group_id: group.into(),
                    generation_id: generation,
                    member_id: member.into(),
                    group_instance_id: None,
                },
            )
            .error_code
    }

    pub fn state(&self, group: &str) -> Option<crate::GroupState> {
        self.c.group(group).map(|g| g.state)
    }

    /// Joins `n` members and completes a rebalance; returns (members, generation).
    pub fn stable_group(&mut self, group: &str, n: usize) -> (Vec<String>, i32) {
        // Every member first gets its id (MEMBER_ID_REQUIRED); pending members hold
        // the join phase open until all of them have joined.
        let members: Vec<String> = (0..n)
            .map(|_| {
                let id = self.join(Self::join_req(group, "", &["range"]), 5);
                self.join_reply(id).expect("immediate").member_id
            })
            .collect();
        let joins: Vec<ReplyId> = members
            .iter()
            .map(|m| self.join(Self::join_req(group, m, &["range"]), 5))
            .collect();
        let resps: Vec<JoinGroupResponse> = joins
            .iter()
            .map(|id| self.join_reply(*id).expect("join completed"))
            .collect();
        let generation = resps[0].generation_id;
        let leader = resps[0].leader.clone();
        let assignments: Vec<(String, String)> = members
            .iter()
            .map(|m| (m.clone(), format!("asg-{m}")))
            .collect();
        let refs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut syncs = Vec::new();
        for m in &members {
            let a = if *m == leader {
                refs.clone()
            } else {
                Vec::new()
            };
            syncs.push(self.sync(group, m, generation, &a));
        }
        for (m, id) in members.iter().zip(syncs) {
            let r = self.sync_reply(id).expect("sync answered");
            assert_eq!(r.error_code, 0);
            assert_eq!(r.assignment, Bytes::from(format!("asg-{m}")));
        }
        assert_eq!(self.state(group), Some(crate::GroupState::Stable));
        (members, generation)
    }
}
