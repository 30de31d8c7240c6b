//! One classic consumer group: its state, generation, members and committed offsets,
//! plus the pure decisions Kafka's coordinator makes about it (which protocol the
//! members agree on, whether a joining member is compatible, who leads).

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;

use crate::records::{CommittedOffset, StoredGroup, StoredMember};
use crate::ReplyId;

/// Kafka's classic group states, named as DescribeGroups and ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A joined member.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Supported protocols (assignor names) with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup parked until the join phase completes.
    pub awaiting_join: Option<ReplyId>,
    /// A SyncGroup parked until the leader's assignment is stored.
    pub awaiting_sync: Option<ReplyId>,
    pub last_heartbeat: i64,
    /// Joined in the current join phase and not yet through a completed one.
    pub is_new: bool,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, other: &[(String, Bytes)]) -> bool {
        self.protocols == other
    }

    /// Whether the member's session has lapsed. A member waiting for a join or sync
    /// response is kept alive by that wait (its client cannot heartbeat meanwhile),
    /// except a new member, which may wait only `new_member_timeout_ms`.
    pub fn expired(&self, now: i64, new_member_timeout_ms: i64) -> bool {
        if self.awaiting_join.is_some() && self.is_new {
            return now >= self.last_heartbeat + new_member_timeout_ms;
        }
        if self.awaiting_join.is_some() || self.awaiting_sync.is_some() {
            return false;
        }
        now >= self.last_heartbeat + i64::from(self.session_timeout_ms)
    }
}

/// The initial-rebalance delay of a group that was empty.
#[derive(Debug, Clone, Copy)]
pub struct InitialDelay {
    pub deadline: i64,
    /// Rebalance-timeout budget still available for extensions.
    pub remaining_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_since: i64,
    /// `None` for groups only used for standalone commits.
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// Ordered so the choice of a new leader is deterministic.
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of static members.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED -> when they lapse.
    pub pending: HashMap<String, i64>,
    /// Members that got a JoinGroup response and still owe a SyncGroup.
    pub pending_sync: HashSet<String>,
    pub join_deadline: i64,
    pub sync_deadline: i64,
    pub initial_delay: Option<InitialDelay>,
    pub new_member_added: bool,
    /// Committed offsets, topic -> partition -> offset.
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// Offsets written by TxnOffsetCommit whose transaction is not decided yet, by
    /// producer id; its COMMIT marker makes them committed offsets, ABORT drops them.
    pub pending_txn: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
}

impl Group {
    pub fn new(id: String, now: i64) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            state_since: now,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            join_deadline: 0,
            sync_deadline: 0,
            initial_delay: None,
            new_member_added: false,
            offsets: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
        }
    }

    pub fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since = now;
    }

    /// Gives a member a new id (a static member replaced by its restarted process),
    /// keeping its place: assignment, leadership, instance id, pending sync.
    pub fn rename_member(&mut self, from: &str, to: &str) {
        let Some(mut m) = self.members.remove(from) else {
            return;
        };
        m.id = to.to_string();
        if let Some(instance) = &m.instance_id {
            self.static_members.insert(instance.clone(), to.to_string());
        }
        self.members.insert(to.to_string(), m);
        if self.is_leader(from) {
            self.leader = Some(to.to_string());
        }
        if self.pending_sync.remove(from) {
            self.pending_sync.insert(to.to_string());
        }
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Joined plus pending members, what `group.max.size` counts.
    pub fn size(&self) -> usize {
        self.members.len() + self.pending.len()
    }

    /// The largest rebalance timeout of the members: how long a join phase may last.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports (Kafka's `candidateProtocols`).
    fn candidates(&self) -> Vec<String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            for (name, _) in &m.protocols {
                *counts.entry(name.as_str()).or_default() += 1;
            }
        }
        let n = self.members.len();
        counts
            .into_iter()
            .filter(|&(_, c)| c == n)
            .map(|(p, _)| p.to_string())
            .collect()
    }

    /// Whether a member with these protocols may join (INCONSISTENT_GROUP_PROTOCOL if
    /// not): an empty group takes any non-empty list; otherwise the protocol type must
    /// match and at least one protocol must be supported by every current member.
    /// `replacing` is a member whose protocols the new ones replace.
    pub fn supports(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        replacing: Option<&str>,
    ) -> bool {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != replacing)
            .collect();
        if others.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The protocol for the next generation: among those all members support, the one
    /// most members name first (each member votes for its most preferred candidate);
    /// ties go to the leader's preference, so the choice is deterministic.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return None;
        }
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.iter().any(|c| c == n))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        let order: Vec<&str> = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        order
            .into_iter()
            .find(|p| votes.get(p).copied() == Some(best))
            .map(str::to_string)
    }

    /// Topics the members subscribe to, from their consumer-protocol metadata; `None`
    /// when that cannot be known (not a consumer group, or unreadable metadata).
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(crate::subscription::topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// The group metadata record for the current generation.
    pub fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a group from its metadata record (coordinator load): members come
    /// back Stable with a fresh session, so clients that kept running resume with
    /// their generation and no rebalance.
    pub fn restore(&mut self, stored: StoredGroup, now: i64) {
        self.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        self.generation = stored.generation;
        self.protocol = stored.protocol;
        self.leader = stored.leader;
        self.members.clear();
        self.static_members.clear();
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in stored.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                    is_new: false,
                },
            );
        }
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state = state;
        self.state_since = if stored.state_timestamp >= 0 {
            stored.state_timestamp
        } else {
            now
        };
    }
}
