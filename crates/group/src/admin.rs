//! DescribeGroups, ListGroups and DeleteGroups: what operators see and remove.

use std::collections::BTreeMap;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::delete_groups_response::DeletableGroupResult;
use sluice_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use sluice_protocol::messages::list_groups_response::ListedGroup;
use sluice_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};

use crate::coordinator::{
    Coordinator, DeleteBatch, Effect, Lookup, Out, PendingWrite, Reply, ShardState,
};
use crate::group::GroupState;
use crate::records;
use crate::ReplyId;

/// The only group type this coordinator runs (KIP-848 calls the new one "consumer").
const GROUP_TYPE: &str = "classic";

impl Coordinator {
    /// DescribeGroups. Member metadata and assignments are shown for a Stable group
    /// only (in other states they are in flux), as Kafka does; an unknown group is
    /// reported Dead with no error. `authorized_operations` is what the caller computed
    /// (INT32_MIN when the client did not ask).
    pub fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        authorized_operations: i32,
    ) -> DescribeGroupsResponse {
        let groups = req
            .groups
            .into_iter()
            .map(|group_id| {
                let mut d = DescribedGroup {
                    group_id,
                    authorized_operations,
                    ..Default::default()
                };
                if let Lookup::Error(code) = self.lookup(&d.group_id) {
                    d.error_code = code.code();
                    return d;
                }
                let Some(g) = self.group(&d.group_id) else {
                    d.group_state = GroupState::Dead.name().to_string();
                    return d;
                };
                let stable = g.state == GroupState::Stable;
                let protocol = g.protocol.clone().unwrap_or_default();
                d.group_state = g.state.name().to_string();
                d.protocol_type = g.protocol_type.clone().unwrap_or_default();
                d.protocol_data = if stable {
                    protocol.clone()
                } else {
                    String::new()
                };
                d.members = g
                    .members
                    .values()
                    .map(|m| DescribedGroupMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        member_metadata: if stable {
                            m.metadata(&protocol)
                        } else {
                            Default::default()
                        },
                        member_assignment: if stable {
                            m.assignment.clone()
                        } else {
                            Default::default()
                        },
                    })
                    .collect();
                d
            })
            .collect();
        DescribeGroupsResponse {
            groups,
            ..Default::default()
        }
    }

    /// ListGroups, with the state (v4+) and type (v5+) filters, case-insensitive as in
    /// Kafka.
    pub fn list_groups(&self, req: ListGroupsRequest) -> ListGroupsResponse {
        let mut resp = ListGroupsResponse::default();
        if self.shards.values().any(|s| s.state == ShardState::Loading) {
            resp.error_code = ErrorCode::CoordinatorLoadInProgress.code();
        }
        let type_ok = req.types_filter.is_empty()
            || req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
        if !type_ok {
            return resp;
        }
        let mut listed: BTreeMap<&str, ListedGroup> = BTreeMap::new();
        for shard in self
            .shards
            .values()
            .filter(|s| s.state == ShardState::Active)
        {
            for g in shard.groups.values() {
                let state = g.state.name();
                if !req.states_filter.is_empty()
                    && !req
                        .states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(state))
                {
                    continue;
                }
                listed.insert(
                    &g.id,
                    ListedGroup {
                        group_id: g.id.clone(),
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        group_state: state.to_string(),
                        group_type: GROUP_TYPE.to_string(),
                    },
                );
            }
        }
        resp.groups = listed.into_values().collect();
        resp
    }

    /// DeleteGroups: only groups without members; their offsets and metadata are
    /// tombstoned. Answered once every write is done (`Reply::DeleteGroups`).
    pub fn delete_groups(&mut self, req: DeleteGroupsRequest, reply: ReplyId) -> Vec<Effect> {
        let mut out = Out::new();
        let mut results = Vec::new();
        // Tombstones per offsets partition, with the groups they delete.
        let mut writes: BTreeMap<i32, (Vec<records::KeyValue>, Vec<String>)> = BTreeMap::new();
        for group_id in req.groups_names {
            let code = self.delete_one(&group_id, &mut writes);
            results.push(DeletableGroupResult {
                group_id,
                error_code: code.code(),
            });
        }
        let response = DeleteGroupsResponse {
            results,
            ..Default::default()
        };
        if writes.is_empty() {
            out.push(Effect::Reply(reply, Reply::DeleteGroups(response)));
            return out;
        }
        let batch = self.new_delete_batch(DeleteBatch {
            reply,
            remaining: writes.len(),
            response,
        });
        for (partition, (recs, groups)) in writes {
            self.write(
                partition,
                recs,
                PendingWrite::DeleteGroups { batch, groups },
                &mut out,
            );
        }
        out
    }

    fn delete_one(
        &mut self,
        group_id: &str,
        writes: &mut BTreeMap<i32, (Vec<records::KeyValue>, Vec<String>)>,
    ) -> ErrorCode {
        if let Lookup::Error(code) = self.lookup(group_id) {
            return code;
        }
        let partition = self.partition_for(group_id);
        let Some(g) = self.group(group_id) else {
            return ErrorCode::GroupIdNotFound;
        };
        match g.state {
            GroupState::Dead => return ErrorCode::GroupIdNotFound,
            GroupState::Empty if g.pending.is_empty() => {}
            _ => return ErrorCode::NonEmptyGroup,
        }
        let mut recs = Vec::new();
        for (topic, parts) in &g.offsets {
            for p in parts.keys() {
                match records::offset_tombstone(group_id, topic, *p) {
                    Ok(r) => recs.push(r),
                    Err(_) => return ErrorCode::UnknownServerError,
                }
            }
        }
        match records::group_tombstone(group_id) {
            Ok(r) => recs.push(r),
            Err(_) => return ErrorCode::UnknownServerError,
        }
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.groups.remove(group_id);
        }
        let entry = writes.entry(partition).or_default();
        entry.0.extend(recs);
        entry.1.push(group_id.to_string());
        ErrorCode::None
    }
}
