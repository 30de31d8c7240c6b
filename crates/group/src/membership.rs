//! SyncGroup, Heartbeat and LeaveGroup: the sync phase of a rebalance, liveness, and
//! members leaving (by request or by lapsed session).

use std::collections::HashMap;

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::leave_group_response::MemberResponse;
use sluice_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use tracing::debug;

use crate::coordinator::{Coordinator, Effect, Lookup, Out, PendingWrite, Reply};
use crate::group::{Group, GroupState};
use crate::{records, ReplyId};

pub(crate) fn sync_error(reply: ReplyId, code: ErrorCode) -> Effect {
    Effect::Reply(
        reply,
        Reply::Sync(SyncGroupResponse {
            error_code: code.code(),
            ..Default::default()
        }),
    )
}

fn sync_ok(g: &Group, assignment: Bytes) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: ErrorCode::None.code(),
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        assignment,
        ..Default::default()
    }
}

/// Checks a member's identity against the group: unknown member, fenced static
/// instance, stale generation.
fn check_member(
    g: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), ErrorCode> {
    if let Some(instance) = instance_id {
        match g.static_members.get(instance) {
            Some(m) if m != member_id => return Err(ErrorCode::FencedInstanceId),
            None if !g.members.contains_key(member_id) => return Err(ErrorCode::UnknownMemberId),
            _ => {}
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(ErrorCode::UnknownMemberId);
    }
    if generation != g.generation {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
}

impl Coordinator {
    /// SyncGroup: followers wait for the leader's assignment; the leader's assignment is
    /// stored before anyone gets it.
    pub fn sync_group(&mut self, now: i64, req: SyncGroupRequest, reply: ReplyId) -> Vec<Effect> {
        let mut out = Out::new();
        if let Lookup::Error(code) = self.lookup(&req.group_id) {
            out.push(sync_error(reply, code));
            return out;
        }
        let Some(g) = self.group_mut(&req.group_id) else {
            out.push(sync_error(reply, ErrorCode::UnknownMemberId));
            return out;
        };
        if g.state == GroupState::Dead {
            out.push(sync_error(reply, ErrorCode::CoordinatorNotAvailable));
            return out;
        }
        if let Err(code) = check_member(
            g,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            out.push(sync_error(reply, code));
            return out;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != g.protocol.as_ref());
        if type_mismatch || name_mismatch {
            out.push(sync_error(reply, ErrorCode::InconsistentGroupProtocol));
            return out;
        }
        match g.state {
            GroupState::Empty => out.push(sync_error(reply, ErrorCode::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                out.push(sync_error(reply, ErrorCode::RebalanceInProgress))
            }
            GroupState::Stable => {
                g.pending_sync.remove(&req.member_id);
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat = now;
                    let assignment = m.assignment.clone();
                    out.push(Effect::Reply(reply, Reply::Sync(sync_ok(g, assignment))));
                }
            }
            GroupState::CompletingRebalance => {
                g.pending_sync.remove(&req.member_id);
                let is_leader = g.is_leader(&req.member_id);
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat = now;
                    if let Some(old) = m.awaiting_sync.replace(reply) {
                        out.push(sync_error(old, ErrorCode::RebalanceInProgress));
                    }
                }
                if is_leader {
                    let mut assignments: HashMap<String, Bytes> = req
                        .assignments
                        .into_iter()
                        .filter(|a| g.members.contains_key(&a.member_id))
                        .map(|a| (a.member_id, a.assignment))
                        .collect();
                    for id in g.members.keys() {
                        assignments.entry(id.clone()).or_default();
                    }
                    let generation = g.generation;
                    let mut stored = g.stored();
                    for m in &mut stored.members {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    match records::group_record(&req.group_id, &stored) {
                        Ok(rec) => {
                            let p = self.partition_for(&req.group_id);
                            self.write(
                                p,
                                vec![rec],
                                PendingWrite::Assignment {
                                    group: req.group_id.clone(),
                                    generation,
                                    assignments,
                                },
                                &mut out,
                            );
                        }
                        Err(_) => {
                            self.assignment_stored(
                                &req.group_id,
                                generation,
                                assignments,
                                Err(ErrorCode::UnknownServerError),
                                now,
                                &mut out,
                            );
                        }
                    }
                }
            }
            GroupState::Dead => out.push(sync_error(reply, ErrorCode::CoordinatorNotAvailable)),
        }
        out
    }

    /// The leader's assignment was written (or not): hand it to every waiting member
    /// and go Stable, unless a new rebalance started meanwhile.
    pub(crate) fn assignment_stored(
        &mut self,
        group_id: &str,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        result: Result<(), ErrorCode>,
        now: i64,
        out: &mut Out,
    ) {
        let Some(g) = self.group_mut(group_id) else {
            return;
        };
        if g.state != GroupState::CompletingRebalance || g.generation != generation {
            return;
        }
        match result {
            Ok(()) => {
                for m in g.members.values_mut() {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                }
                g.transition(GroupState::Stable, now);
                debug!(group = group_id, generation, "group stable");
                let waiting: Vec<(ReplyId, Bytes)> = g
                    .members
                    .values_mut()
                    .filter_map(|m| m.awaiting_sync.take().map(|r| (r, m.assignment.clone())))
                    .collect();
                for (r, assignment) in waiting {
                    out.push(Effect::Reply(r, Reply::Sync(sync_ok(g, assignment))));
                }
            }
            Err(code) => {
                let code = crate::coordinator::commit_write_error(code);
                for m in g.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(r) = m.awaiting_sync.take() {
                        out.push(sync_error(r, code));
                    }
                }
                self.prepare_rebalance(group_id, now, out);
            }
        }
    }

    /// Heartbeat: keeps a member's session alive and tells it when to rejoin.
    pub fn heartbeat(&mut self, now: i64, req: HeartbeatRequest) -> HeartbeatResponse {
        let code = self.heartbeat_code(now, &req);
        HeartbeatResponse {
            error_code: code.code(),
            ..Default::default()
        }
    }

    fn heartbeat_code(&mut self, now: i64, req: &HeartbeatRequest) -> ErrorCode {
        tracing::trace!(group = %req.group_id, member = %req.member_id, "Heartbeat");
        match self.lookup(&req.group_id) {
            // Kafka lets heartbeats through while loading: the member is not at fault.
            Lookup::Error(ErrorCode::CoordinatorLoadInProgress) => return ErrorCode::None,
            Lookup::Error(code) => return code,
            Lookup::Here => {}
        }
        let Some(g) = self.group_mut(&req.group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        match g.state {
            GroupState::Dead => return ErrorCode::CoordinatorNotAvailable,
            GroupState::Empty => return ErrorCode::UnknownMemberId,
            _ => {}
        }
        if let Err(code) = check_member(
            g,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            return code;
        }
        if let Some(m) = g.members.get_mut(&req.member_id) {
            m.last_heartbeat = now;
        }
        match g.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// LeaveGroup: v0-2 name one member, v3+ a batch (by member id or instance id).
    pub fn leave_group(
        &mut self,
        now: i64,
        req: LeaveGroupRequest,
        version: i16,
    ) -> (LeaveGroupResponse, Vec<Effect>) {
        let mut out = Out::new();
        let mut resp = LeaveGroupResponse::default();
        if let Lookup::Error(code) = self.lookup(&req.group_id) {
            resp.error_code = code.code();
            return (resp, out);
        }
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .into_iter()
                .map(|m| (m.member_id, m.group_instance_id))
                .collect()
        } else {
            vec![(req.member_id, None)]
        };
        let Some(g) = self.group(&req.group_id) else {
            resp.error_code = ErrorCode::UnknownMemberId.code();
            if version >= 3 {
                resp.members = leaving
                    .into_iter()
                    .map(|(member_id, group_instance_id)| MemberResponse {
                        member_id,
                        group_instance_id,
                        error_code: ErrorCode::UnknownMemberId.code(),
                    })
                    .collect();
                // v3+: the group-level error is only for the request as a whole.
                resp.error_code = ErrorCode::None.code();
            }
            return (resp, out);
        };
        if g.state == GroupState::Dead {
            resp.error_code = ErrorCode::CoordinatorNotAvailable.code();
            return (resp, out);
        }
        let mut results = Vec::new();
        for (member_id, instance_id) in leaving {
            let code = self.leave_one(
                &req.group_id,
                &member_id,
                instance_id.as_deref(),
                now,
                &mut out,
            );
            results.push(MemberResponse {
                member_id,
                group_instance_id: instance_id,
                error_code: code.code(),
            });
        }
        if version >= 3 {
            resp.members = results;
        } else if let Some(r) = results.first() {
            resp.error_code = r.error_code;
        }
        (resp, out)
    }

    fn leave_one(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
        out: &mut Out,
    ) -> ErrorCode {
        let Some(g) = self.group_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        let target = match instance_id {
            Some(instance) => match g.static_members.get(instance) {
                // An empty member id with an instance id is an admin removing a static
                // member (kafka-consumer-groups --delete-members? RemoveMembersFromGroup).
                Some(m) if member_id.is_empty() || m == member_id => m.clone(),
                Some(_) => return ErrorCode::FencedInstanceId,
                None => return ErrorCode::UnknownMemberId,
            },
            None => member_id.to_string(),
        };
        if g.pending.remove(&target).is_some() {
            self.pending_total = self.pending_total.saturating_sub(1);
            self.try_complete_join(group_id, now, out);
            return ErrorCode::None;
        }
        if !g.members.contains_key(&target) {
            return ErrorCode::UnknownMemberId;
        }
        debug!(group = group_id, member = %target, "member left");
        self.remove_member(group_id, &target, now, out);
        ErrorCode::None
    }

    /// Removes a member (left, expired, or late to sync) and moves the group on: a
    /// stable group rebalances, a group in its join phase may now be complete.
    pub(crate) fn remove_member(
        &mut self,
        group_id: &str,
        member_id: &str,
        now: i64,
        out: &mut Out,
    ) {
        let Some(g) = self.group_mut(group_id) else {
            return;
        };
        let Some(m) = g.members.remove(member_id) else {
            return;
        };
        if let Some(r) = m.awaiting_join {
            out.push(crate::join::join_error(
                r,
                member_id,
                ErrorCode::UnknownMemberId,
            ));
        }
        if let Some(r) = m.awaiting_sync {
            out.push(sync_error(r, ErrorCode::UnknownMemberId));
        }
        if let Some(instance) = &m.instance_id {
            if g.static_members
                .get(instance)
                .is_some_and(|id| id == member_id)
            {
                g.static_members.remove(instance);
            }
        }
        g.pending_sync.remove(member_id);
        if g.is_leader(member_id) {
            g.leader = g.members.keys().next().cloned();
        }
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group_id, now, out);
                // With nobody left the join phase has nothing to wait for.
                self.try_complete_join(group_id, now, out);
            }
            GroupState::PreparingRebalance => self.try_complete_join(group_id, now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
