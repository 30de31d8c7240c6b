//! Leader election as records: the [`PartitionChange`]s the active controller proposes
//! when a broker is fenced (it leaves every ISR and loses its leaderships) or unfenced
//! (it leads the partitions left without a leader whose ISR still names it), and the
//! preferred-leader elections of ElectLeaders and `auto.leader.rebalance.enable`
//! (leadership back to each partition's first replica).

use std::collections::BTreeMap;

use crate::image::{IsrMember, MetadataImage, PartitionChange, PartitionImage, NO_LEADER};
use crate::types::MetadataRecord;

/// What a preferred-leader election of one partition comes to (Kafka's ElectLeaders
/// with `election_type` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreferredElection {
    /// This change makes the preferred replica leader.
    Elect(MetadataRecord),
    /// The preferred replica already leads (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is not in the ISR, or is fenced or unregistered
    /// (PREFERRED_LEADER_NOT_AVAILABLE).
    NotAvailable,
    /// No such topic or partition (UNKNOWN_TOPIC_OR_PARTITION).
    UnknownPartition,
}

/// One broker's share of preferred leaderships: Kafka's leader imbalance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderImbalance {
    /// Partitions whose preferred (first) replica is this broker.
    pub preferred: usize,
    /// Of those, the ones it does not lead.
    pub not_leading: usize,
}

impl LeaderImbalance {
    /// Whether `not_leading / preferred` exceeds `percentage` percent (Kafka's
    /// `leader.imbalance.per.broker.percentage` rule).
    pub fn exceeds(&self, percentage: u32) -> bool {
        self.preferred > 0
            && (self.not_leading as u128) * 100 > u128::from(percentage) * self.preferred as u128
    }
}

impl MetadataImage {
    /// The changes that take `broker` out of every ISR and move its leaderships to the
    /// first other ISR member (in replica order, as Kafka's election walks) that is
    /// registered and unfenced. With none, the partition is left without a leader
    /// (unclean election is off). As in Kafka, the last ISR member is never removed, so
    /// that it can lead again without losing data when it comes back.
    ///
    /// Works on the image before or after the [`MetadataRecord::FenceBroker`] itself is
    /// applied: `broker` is treated as fenced either way.
    pub fn changes_for_fenced_broker(&self, broker: i32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for topic in self.topics() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if !p.isr.contains(&broker) {
                    continue;
                }
                let mut isr: Vec<i32> = p.isr.iter().copied().filter(|id| *id != broker).collect();
                if isr.is_empty() {
                    isr.push(broker);
                }
                let leader = if p.leader == broker || !self.is_eligible(p.leader) {
                    self.elect(p, &isr, broker)
                } else {
                    p.leader
                };
                if leader == p.leader && isr == p.isr {
                    continue;
                }
                records.push(self.change(&topic.name, topic.id, index, p, leader, &isr));
            }
        }
        records
    }

    /// The changes that make `broker` (once unfenced) leader of each partition that has
    /// no leader but still counts it in the ISR: the partitions whose last in-sync
    /// replica it was. Empty if `broker` is not eligible.
    pub fn changes_for_unfenced_broker(&self, broker: i32) -> Vec<MetadataRecord> {
        if !self.is_eligible(broker) {
            return Vec::new();
        }
        let mut records = Vec::new();
        for topic in self.topics() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.leader == NO_LEADER && p.isr.contains(&broker) {
                    let isr = p.isr.clone();
                    records.push(self.change(&topic.name, topic.id, index, p, broker, &isr));
                }
            }
        }
        records
    }

    /// The preferred-leader election of one partition: a change making its first replica
    /// leader (same ISR, computed from the partition epoch the image holds) if that
    /// replica is in the ISR, registered and unfenced and does not lead already.
    pub fn preferred_election(&self, topic: &str, partition: u32) -> PreferredElection {
        let Some(t) = self.topic(topic) else {
            return PreferredElection::UnknownPartition;
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return PreferredElection::UnknownPartition;
        };
        self.preferred_election_of(&t.name, t.id, partition as usize, p)
    }

    fn preferred_election_of(
        &self,
        topic: &str,
        topic_id: [u8; 16],
        index: usize,
        p: &PartitionImage,
    ) -> PreferredElection {
        let Some(&preferred) = p.replicas.first() else {
            return PreferredElection::NotAvailable;
        };
        if p.leader == preferred {
            return PreferredElection::NotNeeded;
        }
        if !p.isr.contains(&preferred) || !self.is_eligible(preferred) {
            return PreferredElection::NotAvailable;
        }
        PreferredElection::Elect(self.change(topic, topic_id, index, p, preferred, &p.isr))
    }

    /// The changes that give each partition (or each of `only`, by topic and partition)
    /// back to its preferred replica where that replica may lead and does not already.
    /// Partitions that need no election, cannot have one, or do not exist are skipped.
    pub fn changes_for_preferred_leaders(
        &self,
        only: Option<&[(String, u32)]>,
    ) -> Vec<MetadataRecord> {
        let elect = |e: PreferredElection| match e {
            PreferredElection::Elect(record) => Some(record),
            _ => None,
        };
        match only {
            Some(list) => list
                .iter()
                .filter_map(|(topic, partition)| elect(self.preferred_election(topic, *partition)))
                .collect(),
            None => self
                .topics()
                .flat_map(|t| {
                    t.partitions.iter().enumerate().filter_map(|(index, p)| {
                        elect(self.preferred_election_of(&t.name, t.id, index, p))
                    })
                })
                .collect(),
        }
    }

    /// Each broker's leader imbalance, for the brokers that are the preferred replica of
    /// at least one partition.
    pub fn leader_imbalance(&self) -> BTreeMap<i32, LeaderImbalance> {
        let mut out: BTreeMap<i32, LeaderImbalance> = BTreeMap::new();
        for p in self.topics().flat_map(|t| t.partitions.iter()) {
            if let Some(&preferred) = p.replicas.first() {
                let entry = out.entry(preferred).or_default();
                entry.preferred += 1;
                if p.leader != preferred {
                    entry.not_leading += 1;
                }
            }
        }
        out
    }

    /// The periodic rebalance of `auto.leader.rebalance.enable`: for every broker whose
    /// imbalance exceeds `percentage` percent, the preferred-leader elections of the
    /// partitions it should lead (those it may lead now: in the ISR and unfenced).
    pub fn changes_for_leader_rebalance(&self, percentage: u32) -> Vec<MetadataRecord> {
        let imbalanced: Vec<i32> = self
            .leader_imbalance()
            .into_iter()
            .filter(|(_, imbalance)| imbalance.exceeds(percentage))
            .map(|(broker, _)| broker)
            .collect();
        if imbalanced.is_empty() {
            return Vec::new();
        }
        let mut records = Vec::new();
        for t in self.topics() {
            for (index, p) in t.partitions.iter().enumerate() {
                if !p.replicas.first().is_some_and(|b| imbalanced.contains(b)) {
                    continue;
                }
                if let PreferredElection::Elect(record) =
                    self.preferred_election_of(&t.name, t.id, index, p)
                {
                    records.push(record);
                }
            }
        }
        records
    }

    /// The first replica that is in `isr`, is not `excluded` and is eligible.
    fn elect(&self, p: &PartitionImage, isr: &[i32], excluded: i32) -> i32 {
        p.replicas
            .iter()
            .copied()
            .find(|id| *id != excluded && isr.contains(id) && self.is_eligible(*id))
            .unwrap_or(NO_LEADER)
    }

    fn change(
        &self,
        topic: &str,
        topic_id: [u8; 16],
        index: usize,
        p: &PartitionImage,
        leader: i32,
        isr: &[i32],
    ) -> MetadataRecord {
        MetadataRecord::PartitionChange(PartitionChange {
            topic: topic.to_string(),
            topic_id,
            partition: u32::try_from(index).unwrap_or(u32::MAX),
            partition_epoch: p.partition_epoch,
            leader,
            isr: isr
                .iter()
                .map(|id| IsrMember {
                    id: *id,
                    // Every ISR member is registered (brokers are never removed); -1
                    // would only make the change be rejected, never applied wrongly.
                    epoch: self.broker(*id).map_or(-1, |b| b.epoch),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::{BrokerEndpoint, PartitionAssignment};
    use crate::types::MetadataResponse;

    fn apply(image: &mut MetadataImage, record: &MetadataRecord) {
        let response = image.apply(record);
        assert!(
            !matches!(response, MetadataResponse::Rejected(_)),
            "{record:?}: {response:?}"
        );
    }

    /// Brokers 1..=n registered at epoch 1 and unfenced, and topic `t` with these
    /// replica lists.
    fn image_with(n: i32, replicas: &[&[i32]]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=n {
            apply(
                &mut image,
                &MetadataRecord::RegisterBroker {
                    id,
                    epoch: 1,
                    endpoints: vec![BrokerEndpoint {
                        listener: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9092,
                    }],
                    rack: None,
                },
            );
            apply(&mut image, &MetadataRecord::UnfenceBroker { id, epoch: 1 });
        }
        apply(
            &mut image,
            &MetadataRecord::CreateTopic {
                name: "t".into(),
                id: [7; 16],
                partitions: replicas
                    .iter()
                    .map(|r| PartitionAssignment {
                        replicas: r.to_vec(),
                    })
                    .collect(),
                configs: BTreeMap::new(),
            },
        );
        image
    }

    fn fence(image: &mut MetadataImage, id: i32) {
        apply(image, &MetadataRecord::FenceBroker { id, epoch: 1 });
        for record in image.changes_for_fenced_broker(id) {
            apply(image, &record);
        }
    }

    fn unfence(image: &mut MetadataImage, id: i32) {
        apply(image, &MetadataRecord::UnfenceBroker { id, epoch: 1 });
        for record in image.changes_for_unfenced_broker(id) {
            apply(image, &record);
        }
    }

    /// Puts `id` back in the ISR of partition `partition` of `t` (what the leader's
    /// replication does for a caught-up follower), keeping the leader.
    fn rejoin_isr(image: &mut MetadataImage, partition: u32, id: i32) {
        let p = image.partition("t", partition).cloned().expect("partition");
        let mut isr = p.isr.clone();
        isr.push(id);
        let isr: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        let record = image.change("t", [7; 16], partition as usize, &p, p.leader, &isr);
        apply(image, &record);
    }

    fn leaders(image: &MetadataImage) -> Vec<i32> {
        image
            .topic("t")
            .map(|t| t.partitions.iter().map(|p| p.leader).collect())
            .unwrap_or_default()
    }

    #[test]
    fn preferred_election_per_partition() {
        let mut image = image_with(3, &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        assert_eq!(leaders(&image), [1, 2, 3]);
        assert_eq!(
            image.preferred_election("t", 0),
            PreferredElection::NotNeeded
        );
        assert_eq!(
            image.preferred_election("t", 3),
            PreferredElection::UnknownPartition
        );
        assert_eq!(
            image.preferred_election("u", 0),
            PreferredElection::UnknownPartition
        );
        assert_eq!(image.changes_for_preferred_leaders(None), Vec::new());

        // Broker 1 fenced: t-0 moves to 2; 1 is out of every ISR.
        fence(&mut image, 1);
        assert_eq!(leaders(&image), [2, 2, 3]);
        assert_eq!(
            image.preferred_election("t", 0),
            PreferredElection::NotAvailable
        );
        // Unfenced but not yet back in the ISR: still not available.
        unfence(&mut image, 1);
        assert_eq!(
            image.preferred_election("t", 0),
            PreferredElection::NotAvailable
        );
        assert_eq!(image.changes_for_preferred_leaders(None), Vec::new());

        // Back in the ISR: the election gives t-0 back to 1, keeping the ISR.
        rejoin_isr(&mut image, 0, 1);
        let before = image.partition("t", 0).cloned().expect("t-0");
        let PreferredElection::Elect(record) = image.preferred_election("t", 0) else {
            panic!("expected an election");
        };
        let MetadataRecord::PartitionChange(change) = &record else {
            panic!("expected a partition change: {record:?}");
        };
        assert_eq!(change.leader, 1);
        assert_eq!(change.partition, 0);
        assert_eq!(change.partition_epoch, before.partition_epoch);
        assert_eq!(
            change.isr.iter().map(|m| m.id).collect::<Vec<_>>(),
            before.isr
        );
        assert_eq!(
            image.changes_for_preferred_leaders(Some(&[("t".into(), 1), ("t".into(), 9)])),
            Vec::new()
        );
        assert_eq!(
            image.changes_for_preferred_leaders(Some(&[("t".into(), 0)])),
            vec![record.clone()]
        );
        assert_eq!(
            image.changes_for_preferred_leaders(None),
            vec![record.clone()]
        );
        apply(&mut image, &record);
        assert_eq!(leaders(&image), [1, 2, 3]);
        let after = image.partition("t", 0).cloned().expect("t-0");
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert_eq!(after.isr, before.isr);
        assert_eq!(
            image.preferred_election("t", 0),
            PreferredElection::NotNeeded
        );
    }

    #[test]
    fn a_fenced_preferred_replica_still_in_the_isr_is_not_available() {
        // Single-replica ISR kept on fencing: the preferred replica stays in the ISR.
        let mut image = image_with(2, &[&[1, 2]]);
        fence(&mut image, 2);
        fence(&mut image, 1);
        assert_eq!(leaders(&image), [NO_LEADER]);
        assert_eq!(
            image.preferred_election("t", 0),
            PreferredElection::NotAvailable
        );
    }

    #[test]
    fn imbalance_rule_follows_the_percentage() {
        let cases: &[(LeaderImbalance, u32, bool)] = &[
            (
                LeaderImbalance {
                    preferred: 0,
                    not_leading: 0,
                },
                0,
                false,
            ),
            (
                LeaderImbalance {
                    preferred: 10,
                    not_leading: 0,
                },
                0,
                false,
            ),
            (
                LeaderImbalance {
                    preferred: 10,
                    not_leading: 1,
                },
                0,
                true,
            ),
            (
                LeaderImbalance {
                    preferred: 10,
                    not_leading: 1,
                },
                10,
                false,
            ),
            (
                LeaderImbalance {
                    preferred: 10,
                    not_leading: 2,
                },
                10,
                true,
            ),
            (
                LeaderImbalance {
                    preferred: 1,
                    not_leading: 1,
                },
                10,
                true,
            ),
            (
                LeaderImbalance {
                    preferred: 1,
                    not_leading: 1,
                },
                100,
                false,
            ),
        ];
        for (imbalance, percentage, exceeds) in cases {
            assert_eq!(
                imbalance.exceeds(*percentage),
                *exceeds,
                "{imbalance:?} at {percentage}%"
            );
        }
    }

    #[test]
    fn rebalance_moves_only_the_partitions_of_imbalanced_brokers() {
        // Broker 1 prefers t-0..t-9, broker 2 t-10..t-19.
        let mut replicas: Vec<&[i32]> = vec![&[1, 2]; 10];
        replicas.extend(vec![&[2, 1][..]; 10]);
        let mut image = image_with(2, &replicas);
        fence(&mut image, 1);
        unfence(&mut image, 1);
        // Broker 1 leads nothing; back in the ISR of one partition only.
        rejoin_isr(&mut image, 0, 1);
        let imbalance = image.leader_imbalance();
        assert_eq!(
            imbalance.get(&1),
            Some(&LeaderImbalance {
                preferred: 10,
                not_leading: 10
            })
        );
        assert_eq!(
            imbalance.get(&2),
            Some(&LeaderImbalance {
                preferred: 10,
                not_leading: 0
            })
        );
        let changes = image.changes_for_leader_rebalance(10);
        assert_eq!(changes.len(), 1, "{changes:?}");
        for record in &changes {
            apply(&mut image, record);
        }
        assert_eq!(image.partition("t", 0).map(|p| p.leader), Some(1));
        // 9 of 10 still elsewhere; more rejoin, and two more move at once.
        rejoin_isr(&mut image, 1, 1);
        rejoin_isr(&mut image, 2, 1);
        assert_eq!(image.changes_for_leader_rebalance(10).len(), 2);
        // At 90% allowed, 9/10 does not exceed it: nothing moves.
        assert_eq!(image.changes_for_leader_rebalance(90), Vec::new());
        // Balanced brokers: nothing to do.
        for p in 1..10 {
            rejoin_isr(&mut image, p, 1);
        }
        for record in image.changes_for_leader_rebalance(10) {
            apply(&mut image, &record);
        }
        assert_eq!(image.changes_for_leader_rebalance(0), Vec::new());
        assert!(image
            .leader_imbalance()
            .values()
            .all(|i| i.not_leading == 0));
    }
}
