//! JoinGroup and the join phase of a rebalance: new, known, pending and static
//! members, the initial delay, and completing a generation (as Kafka's classic
//! `GroupCoordinator` does).

use bytes::Bytes;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::join_group_response::JoinGroupResponseMember;
use sluice_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use tracing::debug;

use crate::coordinator::{ClientInfo, Coordinator, Effect, Lookup, Out, PendingWrite, Reply};
use crate::group::{Group, GroupState, InitialDelay, Member};
use crate::{records, ReplyId};

/// A JoinGroup error response.
pub(crate) fn join_error(reply: ReplyId, member_id: &str, code: ErrorCode) -> Effect {
    Effect::Reply(
        reply,
        Reply::Join(JoinGroupResponse {
            error_code: code.code(),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }),
    )
}

/// The JoinGroup response a member gets for the group's current generation; the
/// leader alone receives every member's metadata for the chosen protocol.
fn current_join_response(g: &Group, member_id: &str, with_members: bool) -> JoinGroupResponse {
    let protocol = g.protocol.clone().unwrap_or_default();
    let members = if with_members {
        g.members
            .values()
            .map(|m| JoinGroupResponseMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinGroupResponse {
        error_code: ErrorCode::None.code(),
        generation_id: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        ..Default::default()
    }
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Coordinator {
    /// JoinGroup: answered through `Effect::Reply(reply, Reply::Join(..))`, at once for
    /// errors and MEMBER_ID_REQUIRED, otherwise when the join phase completes.
    pub fn join_group(
        &mut self,
        now: i64,
        req: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
        reply: ReplyId,
    ) -> Vec<Effect> {
        let mut out = Out::new();
        tracing::trace!(group = %req.group_id, member = %req.member_id, version, "JoinGroup");
        if let Err(code) = self.validate_join(&req) {
            out.push(join_error(reply, &req.member_id, code));
            return out;
        }
        let exists = self.group(&req.group_id).is_some();
        if !exists {
            if !req.member_id.is_empty() {
                out.push(join_error(
                    reply,
                    &req.member_id,
                    ErrorCode::UnknownMemberId,
                ));
                return out;
            }
            if let Some(g) = self.group_entry(&req.group_id, now) {
                g.state_since = now;
            }
        }
        if req.member_id.is_empty() {
            self.join_new_member(now, req, version, client, reply, &mut out);
        } else {
            self.join_known_member(now, req, client, reply, &mut out);
        }
        out
    }

    fn validate_join(&self, req: &JoinGroupRequest) -> Result<(), ErrorCode> {
        if req.group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        if let Lookup::Error(code) = self.lookup(&req.group_id) {
            return Err(code);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(ErrorCode::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn join_new_member(
        &mut self,
        now: i64,
        req: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
        reply: ReplyId,
        out: &mut Out,
    ) {
        let protocols = protocols_of(&req);
        let max_size = self.config.max_size;
        let per_group = self.config.max_pending_members_per_group;
        let pending_full = self.pending_total >= self.config.max_pending_members_total;
        let Some(g) = self.group_mut(&req.group_id) else {
            out.push(join_error(reply, "", ErrorCode::CoordinatorNotAvailable));
            return;
        };
        if g.state == GroupState::Dead {
            out.push(join_error(reply, "", ErrorCode::CoordinatorNotAvailable));
            return;
        }
        let static_id = req
            .group_instance_id
            .as_ref()
            .and_then(|i| g.static_members.get(i).cloned());
        if static_id.is_none() && g.size() >= max_size {
            out.push(join_error(reply, "", ErrorCode::GroupMaxSizeReached));
            return;
        }
        if !g.supports(&req.protocol_type, &protocols, static_id.as_deref()) {
            out.push(join_error(reply, "", ErrorCode::InconsistentGroupProtocol));
            return;
        }
        if let Some(instance) = req.group_instance_id.clone() {
            let member_id = new_member_id(&instance);
            match static_id {
                Some(old) => {
                    self.rejoin_static_member(now, req, version, &old, member_id, reply, out)
                }
                None => self.add_member(now, &req, member_id, protocols, client, reply, out),
            }
            return;
        }
        let member_id = new_member_id(&client.client_id);
        if version >= 4 {
            // KIP-394: the member must come back with this id, which bounds the members
            // a client that loses its responses can create.
            if g.pending.len() >= per_group || pending_full {
                out.push(join_error(reply, "", ErrorCode::CoordinatorNotAvailable));
                return;
            }
            g.pending
                .insert(member_id.clone(), now + i64::from(req.session_timeout_ms));
            self.pending_total += 1;
            out.push(join_error(reply, &member_id, ErrorCode::MemberIdRequired));
            return;
        }
        self.add_member(now, &req, member_id, protocols, client, reply, out);
    }

    fn join_known_member(
        &mut self,
        now: i64,
        req: JoinGroupRequest,
        client: ClientInfo,
        reply: ReplyId,
        out: &mut Out,
    ) {
        let protocols = protocols_of(&req);
        let Some(g) = self.group_mut(&req.group_id) else {
            out.push(join_error(
                reply,
                &req.member_id,
                ErrorCode::UnknownMemberId,
            ));
            return;
        };
        if g.state == GroupState::Dead {
            out.push(join_error(
                reply,
                &req.member_id,
                ErrorCode::CoordinatorNotAvailable,
            ));
            return;
        }
        if g.pending.remove(&req.member_id).is_some() {
            self.pending_total = self.pending_total.saturating_sub(1);
            if !self
                .group(&req.group_id)
                .is_some_and(|g| g.supports(&req.protocol_type, &protocols, None))
            {
                out.push(join_error(
                    reply,
                    &req.member_id,
                    ErrorCode::InconsistentGroupProtocol,
                ));
                self.try_complete_join(&req.group_id, now, out);
                return;
            }
            let id = req.member_id.clone();
            self.add_member(now, &req, id, protocols, client, reply, out);
            return;
        }
        if let Some(instance) = &req.group_instance_id {
            if g.static_members
                .get(instance)
                .is_some_and(|m| *m != req.member_id)
            {
                out.push(join_error(
                    reply,
                    &req.member_id,
                    ErrorCode::FencedInstanceId,
                ));
                return;
            }
        }
        let Some(member) = g.members.get(&req.member_id) else {
            out.push(join_error(
                reply,
                &req.member_id,
                ErrorCode::UnknownMemberId,
            ));
            return;
        };
        if member.instance_id.is_some() && member.instance_id != req.group_instance_id {
            out.push(join_error(
                reply,
                &req.member_id,
                ErrorCode::FencedInstanceId,
            ));
            return;
        }
        if !g.supports(&req.protocol_type, &protocols, Some(&req.member_id)) {
            out.push(join_error(
                reply,
                &req.member_id,
                ErrorCode::InconsistentGroupProtocol,
            ));
            return;
        }
        let unchanged = member.same_protocols(&protocols);
        let is_leader = g.is_leader(&req.member_id);
        match g.state {
            GroupState::PreparingRebalance => {
                self.update_member(now, &req, protocols, reply, out);
                self.try_complete_join(&req.group_id, now, out);
            }
            GroupState::CompletingRebalance if unchanged => {
                // The member lost our JoinGroup response and asks again.
                let resp = current_join_response(g, &req.member_id, is_leader);
                out.push(Effect::Reply(reply, Reply::Join(resp)));
            }
            GroupState::Stable if unchanged && !is_leader => {
                // A follower rejoining with the same metadata changes nothing.
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat = now;
                }
                let resp = current_join_response(g, &req.member_id, false);
                out.push(Effect::Reply(reply, Reply::Join(resp)));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // New metadata, or the leader asking for a rebalance (its assignment
                // may depend on things the metadata does not show, like partition
                // counts).
                self.update_member(now, &req, protocols, reply, out);
                self.prepare_rebalance(&req.group_id, now, out);
                self.try_complete_join(&req.group_id, now, out);
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(join_error(
                    reply,
                    &req.member_id,
                    ErrorCode::UnknownMemberId,
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member(
        &mut self,
        now: i64,
        req: &JoinGroupRequest,
        member_id: String,
        protocols: Vec<(String, Bytes)>,
        client: ClientInfo,
        reply: ReplyId,
        out: &mut Out,
    ) {
        let Some(g) = self.group_mut(&req.group_id) else {
            out.push(join_error(
                reply,
                &member_id,
                ErrorCode::CoordinatorNotAvailable,
            ));
            return;
        };
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(member_id.clone());
        }
        g.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.group_instance_id.clone(),
                client_id: client.client_id,
                client_host: client.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                session_timeout_ms: req.session_timeout_ms,
                protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(reply),
                awaiting_sync: None,
                last_heartbeat: now,
                is_new: true,
            },
        );
        // As in Kafka, only the first rebalance of a group extends its initial delay
        // for members that keep arriving.
        if g.state == GroupState::PreparingRebalance && g.generation == 0 {
            g.new_member_added = true;
        }
        if g.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(&req.group_id, now, out);
        }
        self.try_complete_join(&req.group_id, now, out);
    }

    fn update_member(
        &mut self,
        now: i64,
        req: &JoinGroupRequest,
        protocols: Vec<(String, Bytes)>,
        reply: ReplyId,
        out: &mut Out,
    ) {
        let Some(m) = self
            .group_mut(&req.group_id)
            .and_then(|g| g.members.get_mut(&req.member_id))
        else {
            return;
        };
        if let Some(old) = m.awaiting_join.replace(reply) {
            // The same member joined again before its earlier join was answered (a
            // client retrying on another connection); the earlier one is superseded.
            out.push(join_error(
                old,
                &req.member_id,
                ErrorCode::RebalanceInProgress,
            ));
        }
        m.protocols = protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.last_heartbeat = now;
    }

    /// A static member came back with a new member id (a restarted process with the
    /// same `group.instance.id`). If nothing about the group changes it takes over the
    /// old member's place and assignment without a rebalance; the old id is fenced.
    #[allow(clippy::too_many_arguments)]
    fn rejoin_static_member(
        &mut self,
        now: i64,
        req: JoinGroupRequest,
        version: i16,
        old_id: &str,
        new_id: String,
        reply: ReplyId,
        out: &mut Out,
    ) {
        let protocols = protocols_of(&req);
        let Some(g) = self.group_mut(&req.group_id) else {
            return;
        };
        let Some(member) = g.members.get_mut(old_id) else {
            return;
        };
        if let Some(r) = member.awaiting_join.take() {
            out.push(join_error(r, old_id, ErrorCode::FencedInstanceId));
        }
        if let Some(r) = member.awaiting_sync.take() {
            out.push(crate::membership::sync_error(
                r,
                ErrorCode::FencedInstanceId,
            ));
        }
        member.protocols = protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.last_heartbeat = now;
        g.rename_member(old_id, &new_id);
        match g.state {
            GroupState::Stable => {
                // The generation stands if the members would still choose its protocol.
                let keeps_protocol = g.protocol.is_some() && g.select_protocol() == g.protocol;
                if keeps_protocol {
                    let is_leader = g.is_leader(&new_id);
                    // KIP-814: a static leader that rejoins learns the members but is
                    // told not to assign, since the assignment stands.
                    let mut resp = current_join_response(g, &new_id, is_leader && version >= 9);
                    resp.skip_assignment = is_leader && version >= 9;
                    match records::group_record(&req.group_id, &g.stored()) {
                        Ok(rec) => {
                            let p = self.partition_for(&req.group_id);
                            self.write(
                                p,
                                vec![rec],
                                PendingWrite::StaticRejoin {
                                    reply,
                                    response: resp,
                                    group: req.group_id.clone(),
                                    old_id: old_id.to_string(),
                                },
                                out,
                            );
                        }
                        Err(_) => {
                            out.push(join_error(reply, &new_id, ErrorCode::UnknownServerError))
                        }
                    }
                } else {
                    if let Some(m) = g.members.get_mut(&new_id) {
                        m.awaiting_join = Some(reply);
                    }
                    self.prepare_rebalance(&req.group_id, now, out);
                    self.try_complete_join(&req.group_id, now, out);
                }
            }
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(&new_id) {
                    m.awaiting_join = Some(reply);
                }
                if g.state == GroupState::CompletingRebalance {
                    self.prepare_rebalance(&req.group_id, now, out);
                }
                self.try_complete_join(&req.group_id, now, out);
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(join_error(reply, &new_id, ErrorCode::UnknownMemberId));
            }
        }
    }

    /// Starts a join phase. Members still waiting for an assignment learn that this
    /// generation is over (REBALANCE_IN_PROGRESS) and must rejoin.
    pub(crate) fn prepare_rebalance(&mut self, group_id: &str, now: i64, out: &mut Out) {
        let initial = i64::from(self.config.initial_rebalance_delay_ms);
        let Some(g) = self.group_mut(group_id) else {
            return;
        };
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(r) = m.awaiting_sync.take() {
                    out.push(crate::membership::sync_error(
                        r,
                        ErrorCode::RebalanceInProgress,
                    ));
                }
            }
        }
        g.pending_sync.clear();
        let timeout = g.rebalance_timeout_ms();
        if g.state == GroupState::Empty && initial > 0 {
            g.initial_delay = Some(InitialDelay {
                deadline: now + initial.min(timeout.max(1)),
                remaining_ms: (timeout - initial).max(0),
            });
            g.new_member_added = false;
        } else {
            g.initial_delay = None;
        }
        g.join_deadline = now + timeout;
        debug!(
            group = group_id,
            generation = g.generation,
            "preparing rebalance"
        );
        g.transition(GroupState::PreparingRebalance, now);
    }

    /// Completes the join phase if every member has rejoined and no pending member is
    /// still expected (and the initial delay, if any, has passed).
    pub(crate) fn try_complete_join(&mut self, group_id: &str, now: i64, out: &mut Out) {
        let Some(g) = self.group(group_id) else {
            return;
        };
        if g.state != GroupState::PreparingRebalance || g.initial_delay.is_some() {
            return;
        }
        let all_joined =
            g.members.values().all(|m| m.awaiting_join.is_some()) && g.pending.is_empty();
        if all_joined {
            self.complete_join(group_id, now, out);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, the generation
    /// advances, and every waiting JoinGroup is answered.
    pub(crate) fn complete_join(&mut self, group_id: &str, now: i64, out: &mut Out) {
        let Some(g) = self.group_mut(group_id) else {
            return;
        };
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            if let Some(m) = g.members.remove(id) {
                if let Some(instance) = &m.instance_id {
                    g.static_members.remove(instance);
                }
            }
        }
        let dropped_pending = g.pending.len();
        g.pending.clear();
        g.initial_delay = None;
        g.generation = g.generation.wrapping_add(1).max(1);
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        self.pending_total = self.pending_total.saturating_sub(dropped_pending);
        let Some(g) = self.group_mut(group_id) else {
            return;
        };
        if g.members.is_empty() {
            g.protocol = None;
            g.transition(GroupState::Empty, now);
            debug!(
                group = group_id,
                generation = g.generation,
                "group is empty"
            );
            self.store_group(group_id, out);
            return;
        }
        g.protocol = g.select_protocol();
        g.transition(GroupState::CompletingRebalance, now);
        g.sync_deadline = now + g.rebalance_timeout_ms();
        g.pending_sync = g.members.keys().cloned().collect();
        debug!(
            group = group_id,
            generation = g.generation,
            members = g.members.len(),
            protocol = g.protocol.as_deref().unwrap_or(""),
            "join phase complete"
        );
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let is_leader = g.is_leader(&id);
            let resp = current_join_response(g, &id, is_leader);
            if let Some(m) = g.members.get_mut(&id) {
                m.is_new = false;
                m.last_heartbeat = now;
                if let Some(r) = m.awaiting_join.take() {
                    out.push(Effect::Reply(r, Reply::Join(resp)));
                }
            }
        }
    }
}

fn protocols_of(req: &JoinGroupRequest) -> Vec<(String, Bytes)> {
    req.protocols
        .iter()
        .map(|p| (p.name.clone(), p.metadata.clone()))
        .collect()
}
