//! What changed for one broker between two images: the partitions it now leads or
//! follows and the replicas it should delete, as Kafka's `TopicsDelta.localChanges`
//! tells its ReplicaManager. The broker acts on these; this only computes them.

use std::collections::BTreeMap;

use crate::image::{MetadataImage, PartitionImage, TopicImage};

/// A partition named by topic ID as well as name, since a re-created topic keeps its name
/// but is a different partition whose old data must not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRef {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub partition: u32,
}

/// A partition the broker leads in the new image, new or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub partition: PartitionRef,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The leader needs the ISR to advance the high watermark.
    pub isr: Vec<i32>,
}

/// A partition the broker follows in the new image, new or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub partition: PartitionRef,
    /// The leader to fetch from, or [`crate::image::NO_LEADER`]: stop fetching.
    pub leader: i32,
    pub leader_epoch: i32,
}

/// One broker's share of a metadata change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDelta {
    pub lead: Vec<Lead>,
    pub follow: Vec<Follow>,
    /// Replicas it held and no longer holds: the topic or partition is gone (or the
    /// topic was re-created under a new ID), or it left the replica set.
    pub deleted: Vec<PartitionRef>,
}

impl BrokerDelta {
    pub fn is_empty(&self) -> bool {
        self.lead.is_empty() && self.follow.is_empty() && self.deleted.is_empty()
    }
}

/// What changed for `broker` from `before` to `after`. A partition is reported when it is
/// new to the broker or its state changed at all (leader, epochs, ISR, replicas), sorted
/// by topic name and partition; unchanged partitions are not.
pub fn broker_delta(before: &MetadataImage, after: &MetadataImage, broker: i32) -> BrokerDelta {
    let old_by_id: BTreeMap<[u8; 16], &TopicImage> = before.topics().map(|t| (t.id, t)).collect();
    let new_by_id: BTreeMap<[u8; 16], &TopicImage> = after.topics().map(|t| (t.id, t)).collect();
    let mut delta = BrokerDelta::default();

    for topic in after.topics() {
        let old_topic = old_by_id.get(&topic.id);
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.replicas.contains(&broker) {
                continue;
            }
            let old = old_topic.and_then(|t| t.partitions.get(index));
            if old.is_some_and(|old| old == p && old.replicas.contains(&broker)) {
                continue;
            }
            let partition = part_ref(topic, index);
            if p.leader == broker {
                delta.lead.push(Lead {
                    partition,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr: p.isr.clone(),
                });
            } else {
                delta.follow.push(Follow {
                    partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                });
            }
        }
    }

    for topic in before.topics() {
        let new_topic = new_by_id.get(&topic.id);
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.replicas.contains(&broker) {
                continue;
            }
            let still_held = new_topic
                .and_then(|t| t.partitions.get(index))
                .is_some_and(|p: &PartitionImage| p.replicas.contains(&broker));
            if !still_held {
                delta.deleted.push(part_ref(topic, index));
            }
        }
    }
    delta
}

fn part_ref(topic: &TopicImage, index: usize) -> PartitionRef {
    PartitionRef {
        topic: topic.name.clone(),
        topic_id: topic.id,
        partition: u32::try_from(index).unwrap_or(u32::MAX),
    }
}
