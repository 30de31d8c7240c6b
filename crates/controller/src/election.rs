//! Leader election as records: the [`PartitionChange`]s the active controller proposes
//! when a broker is fenced (it leaves every ISR and loses its leaderships) or unfenced
//! (it leads the partitions left without a leader whose ISR still names it).

use crate::image::{IsrMember, MetadataImage, PartitionChange, PartitionImage, NO_LEADER};
use crate::types::MetadataRecord;

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
