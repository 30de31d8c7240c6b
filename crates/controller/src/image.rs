//! The metadata image: the state machine every node builds by applying the committed
//! metadata records in log order. A plain struct with no I/O, so it is tested directly.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sluice_auth::acl::AclSet;
use sluice_auth::scram::{ScramCredential, ScramMechanism};

use crate::security::{SecurityImage, StoredScramCredential};
use crate::types::{MetadataRecord, MetadataResponse};

/// The leader id of a partition that has none (Kafka's `-1`): it is offline.
pub const NO_LEADER: i32 = -1;

/// Producer ids handed to a broker per allocation (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// One named listener of a broker, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name, e.g. `INTERNAL` or `EXTERNAL`.
    pub listener: String,
    pub host: String,
    pub port: u16,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    pub epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// A fenced broker may not lead a partition nor join an ISR.
    pub fenced: bool,
}

/// Where one partition's replicas live, as a creation record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Broker ids, preferred leader first.
    pub replicas: Vec<i32>,
}

/// One partition's leadership state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas. Never empty: as in Kafka (without ELR), fencing the last
    /// member leaves it in the ISR with no leader, so it can lead again cleanly.
    pub isr: Vec<i32>,
    /// The leader's broker id, or [`NO_LEADER`].
    pub leader: i32,
    /// Grows by one whenever the leader changes; fences requests to a former leader.
    pub leader_epoch: i32,
    /// Grows by one on every change to this partition; a change computed from an older
    /// state is rejected (Kafka's INVALID_UPDATE_VERSION).
    pub partition_epoch: i32,
}

/// A topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: [u8; 16],
    /// Indexed by partition id.
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// An ISR member named with the registration epoch the proposer saw, so a broker that
/// re-registered since (and may have lost data) is refused (Kafka's KIP-903).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrMember {
    pub id: i32,
    pub epoch: i64,
}

/// A new leader and ISR for one partition, as the [`MetadataRecord::PartitionChange`]
/// record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic: String,
    /// Guards against the topic having been deleted and re-created under the same name.
    pub topic_id: [u8; 16],
    pub partition: u32,
    /// The partition epoch the change was computed from; it must still be current.
    pub partition_epoch: i32,
    /// The new leader, or [`NO_LEADER`].
    pub leader: i32,
    /// The new ISR, in replica order.
    pub isr: Vec<IsrMember>,
}

/// A block of producer ids `[first_producer_id, first_producer_id + size)` owned by one
/// broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub broker_id: i32,
    pub first_producer_id: i64,
    pub size: i64,
}

/// Why a committed record left the image unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RejectReason {
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("topic ID already in use by topic {0}")]
    TopicIdInUse(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {0} now has another topic ID")]
    TopicIdMismatch(String),
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    #[error("broker {id}: epoch {got} is stale (registered epoch {current})")]
    StaleBrokerEpoch { id: i32, got: i64, current: i64 },
    #[error("a topic needs at least one partition")]
    NoPartitions,
    #[error("partition {partition}: invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { partition: u32, reason: String },
    #[error("partition {partition}: every replica is fenced")]
    NoLiveReplica { partition: u32 },
    #[error("topic {topic} has {actual} partitions, the record expected {expected}")]
    PartitionCountChanged {
        topic: String,
        expected: u32,
        actual: u32,
    },
    #[error("partition {topic}-{partition}: epoch {got} is stale (current {current})")]
    StalePartitionEpoch {
        topic: String,
        partition: u32,
        got: i32,
        current: i32,
    },
    #[error("partition {topic}-{partition}: invalid change: {reason}")]
    InvalidPartitionChange {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error("broker {0} is fenced: it may not lead nor join an ISR")]
    IneligibleReplica(i32),
    #[error("broker {leader} is not in the ISR of {topic}-{partition}: unclean election is off")]
    UncleanElection {
        topic: String,
        partition: u32,
        leader: i32,
    },
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    #[error("invalid ACL {0}")]
    InvalidAcl(String),
    #[error("unsupported SCRAM mechanism {0}")]
    UnsupportedScramMechanism(String),
    #[error("unacceptable SCRAM credential for user {user:?}: {reason}")]
    UnacceptableScramCredential { user: String, reason: String },
    #[error("user {user:?} has no {mechanism} credential")]
    UnknownScramCredential { user: String, mechanism: String },
}

/// The committed cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    brokers: BTreeMap<i32, BrokerRegistration>,
    topics: BTreeMap<String, TopicImage>,
    /// The first producer id no broker has been given yet.
    next_producer_id: i64,
    /// The latest block each broker was given.
    producer_id_blocks: BTreeMap<i32, ProducerIdBlock>,
    /// ACLs and SCRAM credentials; absent from snapshots taken before they existed.
    #[serde(default)]
    security: SecurityImage,
}

impl MetadataImage {
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionImage> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
    }

    /// The first producer id not yet handed to any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The latest producer-id block `broker_id` was given.
    pub fn producer_id_block(&self, broker_id: i32) -> Option<&ProducerIdBlock> {
        self.producer_id_blocks.get(&broker_id)
    }

    /// The cluster's ACLs.
    pub fn acls(&self) -> &AclSet {
        self.security.acls()
    }

    /// `user`'s SCRAM credential for `mechanism`.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.security.scram_credential(user, mechanism)
    }

    /// Every user with a SCRAM credential, in name order, with its mechanisms and their
    /// iteration counts.
    pub fn scram_users(&self) -> impl Iterator<Item = (&str, Vec<(ScramMechanism, u32)>)> {
        self.security.scram_users()
    }

    /// Whether `id` is registered and unfenced: only such a broker may become leader or
    /// join an ISR.
    pub fn is_eligible(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Applies one committed record. The outcome depends only on the image and the
    /// record, so every node that applies the same log reaches the same image.
    pub fn apply(&mut self, record: &MetadataRecord) -> MetadataResponse {
        match self.try_apply(record) {
            Ok(response) => response,
            Err(reason) => MetadataResponse::Rejected(reason),
        }
    }

    fn try_apply(&mut self, record: &MetadataRecord) -> Result<MetadataResponse, RejectReason> {
        match record {
            MetadataRecord::Noop => {}
            MetadataRecord::RegisterBroker {
                id,
                epoch,
                endpoints,
                rack,
            } => {
                if let Some(current) = self.brokers.get(id) {
                    if *epoch <= current.epoch {
                        return Err(RejectReason::StaleBrokerEpoch {
                            id: *id,
                            got: *epoch,
                            current: current.epoch,
                        });
                    }
                }
                self.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        epoch: *epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
            }
            MetadataRecord::UnfenceBroker { id, epoch } => self.set_fenced(*id, *epoch, false)?,
            MetadataRecord::FenceBroker { id, epoch } => self.set_fenced(*id, *epoch, true)?,
            MetadataRecord::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(RejectReason::TopicAlreadyExists(name.clone()));
                }
                if let Some(other) = self.topics.values().find(|t| t.id == *id) {
                    return Err(RejectReason::TopicIdInUse(other.name.clone()));
                }
                let partitions = self.new_partitions(0, partitions)?;
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions,
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::DeleteTopic { name, topic_id } => {
                if let Some(id) = topic_id {
                    self.topic_by_id(name, id)?;
                }
                // The topic's partitions live inside it, so they go with it.
                if self.topics.remove(name).is_none() {
                    return Err(RejectReason::UnknownTopic(name.clone()));
                }
            }
            MetadataRecord::CreatePartitions {
                topic,
                topic_id,
                first_partition,
                partitions,
            } => {
                let actual = self.topic_by_id(topic, topic_id)?.partitions.len();
                let actual = u32::try_from(actual).unwrap_or(u32::MAX);
                if actual != *first_partition {
                    return Err(RejectReason::PartitionCountChanged {
                        topic: topic.clone(),
                        expected: *first_partition,
                        actual,
                    });
                }
                let added = self.new_partitions(*first_partition, partitions)?;
                if let Some(t) = self.topics.get_mut(topic) {
                    t.partitions.extend(added);
                }
            }
            MetadataRecord::AlterTopicConfigs { topic, changes } => {
                let t = self
                    .topics
                    .get_mut(topic)
                    .ok_or_else(|| RejectReason::UnknownTopic(topic.clone()))?;
                for (name, value) in changes {
                    match value {
                        Some(value) => t.configs.insert(name.clone(), value.clone()),
                        None => t.configs.remove(name),
                    };
                }
            }
            MetadataRecord::PartitionChange(change) => self.change_partition(change)?,
            MetadataRecord::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => return self.allocate_producer_ids(*broker_id, *broker_epoch),
            MetadataRecord::CreateAcls { bindings } => self.security.create_acls(bindings)?,
            MetadataRecord::RemoveAcls { bindings } => self.security.remove_acls(bindings),
            MetadataRecord::UpsertScramCredential {
                user,
                mechanism,
                salt,
                iterations,
                stored_key,
                server_key,
            } => self.security.upsert_scram(
                user,
                mechanism,
                StoredScramCredential {
                    salt: salt.clone(),
                    iterations: *iterations,
                    stored_key: stored_key.clone(),
                    server_key: server_key.clone(),
                },
            )?,
            MetadataRecord::DeleteScramCredential { user, mechanism } => {
                self.security.delete_scram(user, mechanism)?
            }
        }
        Ok(MetadataResponse::Applied)
    }

    fn set_fenced(&mut self, id: i32, epoch: i64, fenced: bool) -> Result<(), RejectReason> {
        let broker = self.registered(id, epoch)?;
        let broker = self
            .brokers
            .get_mut(&broker)
            .ok_or(RejectReason::UnknownBroker(id))?;
        broker.fenced = fenced;
        Ok(())
    }

    /// Checks that `id` is registered with exactly `epoch`, and returns `id`.
    fn registered(&self, id: i32, epoch: i64) -> Result<i32, RejectReason> {
        let broker = self
            .brokers
            .get(&id)
            .ok_or(RejectReason::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(RejectReason::StaleBrokerEpoch {
                id,
                got: epoch,
                current: broker.epoch,
            });
        }
        Ok(id)
    }

    /// The topic named `name`, if it still has the ID the record was computed for.
    fn topic_by_id(&self, name: &str, id: &[u8; 16]) -> Result<&TopicImage, RejectReason> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| RejectReason::UnknownTopic(name.to_string()))?;
        if topic.id != *id {
            return Err(RejectReason::TopicIdMismatch(name.to_string()));
        }
        Ok(topic)
    }

    /// Validates a creation record's assignments and builds the partitions, numbered
    /// from `first`. The ISR is computed here, from the fencing state at this point of
    /// the log, rather than carried in the record: a broker fenced between proposal and
    /// commit then cannot enter an ISR.
    fn new_partitions(
        &self,
        first: u32,
        assignments: &[PartitionAssignment],
    ) -> Result<Vec<PartitionImage>, RejectReason> {
        if assignments.is_empty() {
            return Err(RejectReason::NoPartitions);
        }
        let mut partitions = Vec::with_capacity(assignments.len());
        for (i, assignment) in assignments.iter().enumerate() {
            let partition = first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            let invalid = |reason: &str| RejectReason::InvalidReplicaAssignment {
                partition,
                reason: reason.to_string(),
            };
            let replicas = &assignment.replicas;
            if replicas.is_empty() {
                return Err(invalid("no replicas"));
            }
            if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
                return Err(invalid("a broker appears twice"));
            }
            if let Some(unknown) = replicas.iter().find(|id| !self.brokers.contains_key(id)) {
                return Err(invalid(&format!("broker {unknown} is not registered")));
            }
            // Kafka refuses to create a partition none of whose replicas is active
            // (KIP-841), rather than create it offline.
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|id| self.is_eligible(*id))
                .collect();
            let leader = *isr
                .first()
                .ok_or(RejectReason::NoLiveReplica { partition })?;
            partitions.push(PartitionImage {
                replicas: replicas.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(partitions)
    }

    /// Checks a [`PartitionChange`] against the image and applies it. This is where the
    /// safety rules are enforced, whoever proposed the change: no fenced or stale broker
    /// becomes leader or joins the ISR, and no leader comes from outside the ISR.
    fn change_partition(&mut self, change: &PartitionChange) -> Result<(), RejectReason> {
        let topic = self.topic_by_id(&change.topic, &change.topic_id)?;
        let current = topic
            .partitions
            .get(change.partition as usize)
            .ok_or_else(|| RejectReason::UnknownPartition {
                topic: change.topic.clone(),
                partition: change.partition,
            })?;
        if change.partition_epoch != current.partition_epoch {
            return Err(RejectReason::StalePartitionEpoch {
                topic: change.topic.clone(),
                partition: change.partition,
                got: change.partition_epoch,
                current: current.partition_epoch,
            });
        }
        let invalid = |reason: String| RejectReason::InvalidPartitionChange {
            topic: change.topic.clone(),
            partition: change.partition,
            reason,
        };
        let isr: Vec<i32> = change.isr.iter().map(|m| m.id).collect();
        if isr.is_empty() {
            return Err(invalid("empty ISR".into()));
        }
        if isr.iter().collect::<BTreeSet<_>>().len() != isr.len() {
            return Err(invalid("a broker appears twice in the ISR".into()));
        }
        if let Some(outsider) = isr.iter().find(|id| !current.replicas.contains(id)) {
            return Err(invalid(format!("broker {outsider} is not a replica")));
        }
        if change.leader != NO_LEADER && !isr.contains(&change.leader) {
            return Err(invalid(format!(
                "leader {} is not in the new ISR",
                change.leader
            )));
        }
        // Unclean election is off: a new leader must already be in sync.
        if change.leader != NO_LEADER
            && change.leader != current.leader
            && !current.isr.contains(&change.leader)
        {
            return Err(RejectReason::UncleanElection {
                topic: change.topic.clone(),
                partition: change.partition,
                leader: change.leader,
            });
        }
        for member in &change.isr {
            self.registered(member.id, member.epoch)?;
            // A member that stays may be fenced (the last ISR member is kept when its
            // broker is fenced); one that joins, or leads, may not.
            let joins = !current.isr.contains(&member.id);
            if (joins || member.id == change.leader) && !self.is_eligible(member.id) {
                return Err(RejectReason::IneligibleReplica(member.id));
            }
        }
        let leader_epoch = if change.leader != current.leader {
            current.leader_epoch.saturating_add(1)
        } else {
            current.leader_epoch
        };
        let partition_epoch = current.partition_epoch.saturating_add(1);
        let p = self
            .topics
            .get_mut(&change.topic)
            .and_then(|t| t.partitions.get_mut(change.partition as usize))
            .ok_or_else(|| RejectReason::UnknownTopic(change.topic.clone()))?;
        p.isr = isr;
        p.leader = change.leader;
        p.leader_epoch = leader_epoch;
        p.partition_epoch = partition_epoch;
        Ok(())
    }

    /// Hands the next block to `broker_id`. The block is taken from the image here, not
    /// from the record, so every node computes the same block and none is given twice.
    fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<MetadataResponse, RejectReason> {
        self.registered(broker_id, broker_epoch)?;
        let first = self.next_producer_id;
        let next = first
            .checked_add(PRODUCER_ID_BLOCK_SIZE)
            .ok_or(RejectReason::ProducerIdsExhausted)?;
        let block = ProducerIdBlock {
            broker_id,
            first_producer_id: first,
            size: PRODUCER_ID_BLOCK_SIZE,
        };
        self.next_producer_id = next;
        self.producer_id_blocks.insert(broker_id, block.clone());
        Ok(MetadataResponse::ProducerIds(block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{broker_delta, Follow, Lead, PartitionRef};

    fn register(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            id,
            epoch,
            endpoints: vec![BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: Some("r1".into()),
        }
    }

    fn unfence(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::UnfenceBroker { id, epoch }
    }

    fn fence(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::FenceBroker { id, epoch }
    }

    fn assign(replicas: &[&[i32]]) -> Vec<PartitionAssignment> {
        replicas
            .iter()
            .map(|r| PartitionAssignment {
                replicas: r.to_vec(),
            })
            .collect()
    }

    fn create_with(name: &str, id: u8, replicas: &[&[i32]]) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            id: [id; 16],
            partitions: assign(replicas),
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        }
    }

    /// A topic with `partitions` single-replica partitions on broker 1.
    fn create(name: &str, id: u8, partitions: usize) -> MetadataRecord {
        create_with(name, id, &vec![&[1][..]; partitions])
    }

    fn member(id: i32, epoch: i64) -> IsrMember {
        IsrMember { id, epoch }
    }

    fn change(partition_epoch: i32, leader: i32, isr: &[(i32, i64)]) -> MetadataRecord {
        MetadataRecord::PartitionChange(PartitionChange {
            topic: "t".into(),
            topic_id: [7; 16],
            partition: 0,
            partition_epoch,
            leader,
            isr: isr.iter().map(|(id, epoch)| member(*id, *epoch)).collect(),
        })
    }

    fn applied() -> MetadataResponse {
        MetadataResponse::Applied
    }

    fn rejected(reason: RejectReason) -> MetadataResponse {
        MetadataResponse::Rejected(reason)
    }

    /// Applies `records` in order to `image` and checks each outcome.
    fn check_on(image: &mut MetadataImage, records: &[(MetadataRecord, MetadataResponse)]) {
        for (i, (record, expected)) in records.iter().enumerate() {
            assert_eq!(&image.apply(record), expected, "record {i}: {record:?}");
        }
    }

    /// Applies `records` in order to an empty image and checks each outcome.
    fn check(records: &[(MetadataRecord, MetadataResponse)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        check_on(&mut image, records);
        image
    }

    /// Brokers 1..=n registered at epoch 1 and unfenced.
    fn live_brokers(n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=n {
            check_on(
                &mut image,
                &[(register(id, 1), applied()), (unfence(id, 1), applied())],
            );
        }
        image
    }

    /// Leader, ISR, leader epoch and partition epoch of a partition.
    type State = (i32, Vec<i32>, i32, i32);
    /// Records with the response each must get.
    type Steps = Vec<(MetadataRecord, MetadataResponse)>;
    /// Replicas, brokers fenced first, and the expected leader and ISR.
    type FenceCase<'a> = (&'a [i32], &'a [i32], (i32, Vec<i32>));

    /// The [`State`] of `t`-0.
    fn state(image: &MetadataImage) -> Option<State> {
        image
            .partition("t", 0)
            .map(|p| (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch))
    }

    #[test]
    fn noop_changes_nothing() {
        let image = check(&[(MetadataRecord::Noop, applied())]);
        assert_eq!(image, MetadataImage::default());
    }

    #[test]
    fn broker_registers_fenced_and_is_unfenced_by_its_epoch() {
        let image = check(&[
            (register(1, 10), applied()),
            (
                unfence(1, 9),
                rejected(RejectReason::StaleBrokerEpoch {
                    id: 1,
                    got: 9,
                    current: 10,
                }),
            ),
            (unfence(2, 1), rejected(RejectReason::UnknownBroker(2))),
        ]);
        let broker = image.broker(1).cloned();
        assert_eq!(broker.as_ref().map(|b| b.fenced), Some(true));
        assert_eq!(broker.and_then(|b| b.rack), Some("r1".into()));

        let image = check(&[(register(1, 10), applied()), (unfence(1, 10), applied())]);
        assert_eq!(image.broker(1).map(|b| b.fenced), Some(false));
    }

    #[test]
    fn reregistration_needs_a_newer_epoch_and_fences_again() {
        let image = check(&[
            (register(1, 10), applied()),
            (unfence(1, 10), applied()),
            (
                register(1, 10),
                rejected(RejectReason::StaleBrokerEpoch {
                    id: 1,
                    got: 10,
                    current: 10,
                }),
            ),
            (register(1, 11), applied()),
            (
                fence(1, 10),
                rejected(RejectReason::StaleBrokerEpoch {
                    id: 1,
                    got: 10,
                    current: 11,
                }),
            ),
        ]);
        let broker = image.broker(1);
        assert_eq!(broker.map(|b| (b.epoch, b.fenced)), Some((11, true)));
        assert_eq!(image.brokers().count(), 1);
    }

    #[test]
    fn topics_are_created_once_and_deleted() {
        let mut image = live_brokers(1);
        check_on(
            &mut image,
            &[
                (create("a", 1, 3), applied()),
                (
                    create("a", 2, 5),
                    rejected(RejectReason::TopicAlreadyExists("a".into())),
                ),
                (
                    create("b", 1, 5),
                    rejected(RejectReason::TopicIdInUse("a".into())),
                ),
                (create("c", 3, 1), applied()),
                (
                    MetadataRecord::DeleteTopic {
                        name: "c".into(),
                        topic_id: None,
                    },
                    applied(),
                ),
                (
                    MetadataRecord::DeleteTopic {
                        name: "c".into(),
                        topic_id: None,
                    },
                    rejected(RejectReason::UnknownTopic("c".into())),
                ),
            ],
        );
        let names: Vec<_> = image.topics().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        let a = image.topic("a").cloned();
        assert_eq!(
            a.as_ref().map(|t| (t.id, t.partitions.len())),
            Some(([1; 16], 3))
        );
        assert_eq!(
            a.and_then(|t| t.configs.get("cleanup.policy").cloned()),
            Some("compact".into())
        );
        assert!(image.partition("c", 0).is_none());
    }

    #[test]
    fn recreated_topic_takes_its_new_id() {
        let mut image = live_brokers(1);
        check_on(
            &mut image,
            &[
                (create("a", 1, 3), applied()),
                (
                    MetadataRecord::DeleteTopic {
                        name: "a".into(),
                        topic_id: None,
                    },
                    applied(),
                ),
                (create("a", 2, 1), applied()),
            ],
        );
        assert_eq!(image.topic("a").map(|t| t.id), Some([2; 16]));
        assert_eq!(image.topic("a").map(|t| t.partitions.len()), Some(1));
    }

    #[test]
    fn created_partitions_take_unfenced_replicas_as_isr() {
        let mut image = live_brokers(3);
        check_on(
            &mut image,
            &[
                (register(4, 1), applied()),
                (fence(2, 1), applied()),
                (
                    create_with("t", 7, &[&[2, 3, 1], &[1, 2, 4], &[3]]),
                    applied(),
                ),
            ],
        );
        let got: Vec<_> = image
            .topic("t")
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        let want = [
            (vec![2, 3, 1], vec![3, 1], 3),
            (vec![1, 2, 4], vec![1], 1),
            (vec![3], vec![3], 3),
        ];
        assert_eq!(got.len(), want.len());
        for (p, (replicas, isr, leader)) in got.iter().zip(want) {
            assert_eq!(
                (
                    &p.replicas,
                    &p.isr,
                    p.leader,
                    p.leader_epoch,
                    p.partition_epoch
                ),
                (&replicas, &isr, leader, 0, 0)
            );
        }
    }

    #[test]
    fn bad_assignments_are_rejected() {
        let invalid = |partition: u32, reason: &str| {
            rejected(RejectReason::InvalidReplicaAssignment {
                partition,
                reason: reason.into(),
            })
        };
        let mut image = live_brokers(2);
        check_on(
            &mut image,
            &[
                (register(3, 1), applied()),
                (
                    create_with("t", 1, &[]),
                    rejected(RejectReason::NoPartitions),
                ),
                (create_with("t", 1, &[&[1], &[]]), invalid(1, "no replicas")),
                (
                    create_with("t", 1, &[&[1, 2, 1]]),
                    invalid(0, "a broker appears twice"),
                ),
                (
                    create_with("t", 1, &[&[1, 9]]),
                    invalid(0, "broker 9 is not registered"),
                ),
                // Kafka refuses a partition whose replicas are all fenced.
                (
                    create_with("t", 1, &[&[1], &[3]]),
                    rejected(RejectReason::NoLiveReplica { partition: 1 }),
                ),
            ],
        );
        assert_eq!(image.topics().count(), 0);
    }

    #[test]
    fn create_partitions_appends_from_the_current_count() {
        let add = |first_partition: u32, topic_id: u8, replicas: &[&[i32]]| {
            MetadataRecord::CreatePartitions {
                topic: "t".into(),
                topic_id: [topic_id; 16],
                first_partition,
                partitions: assign(replicas),
            }
        };
        let mut image = live_brokers(2);
        check_on(
            &mut image,
            &[
                (create_with("t", 7, &[&[1, 2]]), applied()),
                (add(1, 7, &[&[2, 1], &[1, 2]]), applied()),
                // Computed from the old count: adding again would double the partitions.
                (
                    add(1, 7, &[&[2, 1]]),
                    rejected(RejectReason::PartitionCountChanged {
                        topic: "t".into(),
                        expected: 1,
                        actual: 3,
                    }),
                ),
                (
                    add(3, 8, &[&[1]]),
                    rejected(RejectReason::TopicIdMismatch("t".into())),
                ),
                (add(3, 7, &[]), rejected(RejectReason::NoPartitions)),
                (
                    MetadataRecord::CreatePartitions {
                        topic: "u".into(),
                        topic_id: [7; 16],
                        first_partition: 0,
                        partitions: assign(&[&[1]]),
                    },
                    rejected(RejectReason::UnknownTopic("u".into())),
                ),
            ],
        );
        let leaders: Vec<i32> = image
            .topic("t")
            .map(|t| t.partitions.iter().map(|p| p.leader).collect())
            .unwrap_or_default();
        assert_eq!(leaders, [1, 2, 1]);
    }

    #[test]
    fn topic_configs_are_set_and_removed() {
        let alter =
            |topic: &str, changes: &[(&str, Option<&str>)]| MetadataRecord::AlterTopicConfigs {
                topic: topic.into(),
                changes: changes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                    .collect(),
            };
        let mut image = live_brokers(1);
        check_on(
            &mut image,
            &[
                (create("t", 7, 1), applied()),
                (
                    alter(
                        "t",
                        &[("retention.ms", Some("1000")), ("cleanup.policy", None)],
                    ),
                    applied(),
                ),
                (alter("t", &[("retention.ms", Some("2000"))]), applied()),
                (
                    alter("u", &[("retention.ms", Some("1"))]),
                    rejected(RejectReason::UnknownTopic("u".into())),
                ),
            ],
        );
        let configs = image.topic("t").map(|t| t.configs.clone());
        assert_eq!(
            configs,
            Some(BTreeMap::from([("retention.ms".into(), "2000".into())]))
        );
    }

    #[test]
    fn partition_changes_are_checked_and_bump_epochs() {
        // t-0 on 1, 2, 3; all unfenced; ISR [1, 2, 3], leader 1.
        let setup = || {
            let mut image = live_brokers(4);
            check_on(
                &mut image,
                &[(create_with("t", 7, &[&[1, 2, 3]]), applied())],
            );
            image
        };
        let invalid = |reason: &str| {
            rejected(RejectReason::InvalidPartitionChange {
                topic: "t".into(),
                partition: 0,
                reason: reason.into(),
            })
        };
        // (records after setup, expected (leader, isr, leader epoch, partition epoch))
        let cases: Vec<(Steps, State)> = vec![
            // The ISR shrinks: partition epoch only.
            (
                vec![(change(0, 1, &[(1, 1), (2, 1)]), applied())],
                (1, vec![1, 2], 0, 1),
            ),
            // The leader moves within the ISR: both epochs.
            (
                vec![(change(0, 2, &[(1, 1), (2, 1), (3, 1)]), applied())],
                (2, vec![1, 2, 3], 1, 1),
            ),
            // Two changes computed from the same state: the second is stale.
            (
                vec![
                    (change(0, 1, &[(1, 1), (2, 1)]), applied()),
                    (
                        change(0, 1, &[(1, 1), (3, 1)]),
                        rejected(RejectReason::StalePartitionEpoch {
                            topic: "t".into(),
                            partition: 0,
                            got: 0,
                            current: 1,
                        }),
                    ),
                ],
                (1, vec![1, 2], 0, 1),
            ),
            // A fenced broker may not rejoin the ISR, nor lead.
            (
                vec![
                    (change(0, 1, &[(1, 1), (2, 1)]), applied()),
                    (fence(3, 1), applied()),
                    (
                        change(1, 1, &[(1, 1), (2, 1), (3, 1)]),
                        rejected(RejectReason::IneligibleReplica(3)),
                    ),
                    (fence(2, 1), applied()),
                    (
                        change(1, 2, &[(1, 1), (2, 1)]),
                        rejected(RejectReason::IneligibleReplica(2)),
                    ),
                ],
                (1, vec![1, 2], 0, 1),
            ),
            // A broker that re-registered since the proposer looked is stale.
            (
                vec![
                    (change(0, 1, &[(1, 1), (2, 1)]), applied()),
                    (register(3, 2), applied()),
                    (unfence(3, 2), applied()),
                    (
                        change(1, 1, &[(1, 1), (2, 1), (3, 1)]),
                        rejected(RejectReason::StaleBrokerEpoch {
                            id: 3,
                            got: 1,
                            current: 2,
                        }),
                    ),
                    (change(1, 1, &[(1, 1), (2, 1), (3, 2)]), applied()),
                ],
                (1, vec![1, 2, 3], 0, 2),
            ),
            // Unclean election is off: a replica outside the ISR may not lead.
            (
                vec![
                    (change(0, 1, &[(1, 1), (2, 1)]), applied()),
                    (
                        change(1, 3, &[(1, 1), (3, 1)]),
                        rejected(RejectReason::UncleanElection {
                            topic: "t".into(),
                            partition: 0,
                            leader: 3,
                        }),
                    ),
                ],
                (1, vec![1, 2], 0, 1),
            ),
            // Malformed changes.
            (
                vec![
                    (change(0, NO_LEADER, &[]), invalid("empty ISR")),
                    (
                        change(0, 1, &[(1, 1), (1, 1)]),
                        invalid("a broker appears twice in the ISR"),
                    ),
                    (
                        change(0, 1, &[(1, 1), (4, 1)]),
                        invalid("broker 4 is not a replica"),
                    ),
                    (
                        change(0, 3, &[(1, 1), (2, 1)]),
                        invalid("leader 3 is not in the new ISR"),
                    ),
                    (
                        change(0, 1, &[(1, 1), (9, 1)]),
                        invalid("broker 9 is not a replica"),
                    ),
                    (
                        MetadataRecord::PartitionChange(PartitionChange {
                            topic: "t".into(),
                            topic_id: [7; 16],
                            partition: 1,
                            partition_epoch: 0,
                            leader: 1,
                            isr: vec![member(1, 1)],
                        }),
                        rejected(RejectReason::UnknownPartition {
                            topic: "t".into(),
                            partition: 1,
                        }),
                    ),
                    (
                        MetadataRecord::PartitionChange(PartitionChange {
                            topic: "t".into(),
                            topic_id: [8; 16],
                            partition: 0,
                            partition_epoch: 0,
                            leader: 1,
                            isr: vec![member(1, 1)],
                        }),
                        rejected(RejectReason::TopicIdMismatch("t".into())),
                    ),
                ],
                (1, vec![1, 2, 3], 0, 0),
            ),
        ];
        for (i, (records, expected)) in cases.into_iter().enumerate() {
            let mut image = setup();
            check_on(&mut image, &records);
            assert_eq!(state(&image), Some(expected), "case {i}");
        }
    }

    #[test]
    fn fencing_moves_leadership_to_the_next_unfenced_isr_member() {
        // (replicas, fenced before broker 1 is, expected (leader, isr) after broker 1 is)
        let cases: &[FenceCase] = &[
            // Broker 1 led: the next ISR member in replica order takes over.
            (&[1, 2, 3], &[], (2, vec![2, 3])),
            // A fenced follower is skipped.
            (&[1, 2, 3], &[2], (3, vec![3])),
            // Broker 1 only followed: the leader stays, the ISR shrinks.
            (&[2, 1, 3], &[], (2, vec![2, 3])),
            // The last ISR member is kept, without a leader (no unclean election).
            (&[1, 2], &[2], (NO_LEADER, vec![1])),
            (&[1], &[], (NO_LEADER, vec![1])),
        ];
        for (replicas, fenced_first, (leader, isr)) in cases {
            let mut image = live_brokers(3);
            check_on(&mut image, &[(create_with("t", 7, &[replicas]), applied())]);
            for id in *fenced_first {
                check_on(&mut image, &[(fence(*id, 1), applied())]);
                for record in image.changes_for_fenced_broker(*id) {
                    check_on(&mut image, &[(record, applied())]);
                }
            }
            let before = state(&image);
            check_on(&mut image, &[(fence(1, 1), applied())]);
            let records = image.changes_for_fenced_broker(1);
            assert_eq!(records.len(), 1, "{replicas:?}: {records:?}");
            for record in records {
                check_on(&mut image, &[(record, applied())]);
            }
            let after = state(&image);
            let (old_leader, _, old_leader_epoch, old_partition_epoch) =
                before.unwrap_or((0, Vec::new(), 0, 0));
            let leader_epoch = old_leader_epoch + i32::from(old_leader != *leader);
            assert_eq!(
                after,
                Some((*leader, isr.clone(), leader_epoch, old_partition_epoch + 1)),
                "{replicas:?} fenced first {fenced_first:?}"
            );
            // Fencing again changes nothing more.
            assert_eq!(image.changes_for_fenced_broker(1), Vec::new());
        }
    }

    #[test]
    fn fencing_touches_only_partitions_with_the_broker_in_the_isr() {
        let mut image = live_brokers(3);
        check_on(
            &mut image,
            &[(create_with("t", 7, &[&[1, 2], &[2, 3], &[3, 1]]), applied())],
        );
        let records = image.changes_for_fenced_broker(1);
        let partitions: Vec<u32> = records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::PartitionChange(c) => Some(c.partition),
                _ => None,
            })
            .collect();
        assert_eq!(partitions, [0, 2]);
    }

    #[test]
    fn an_unfenced_last_isr_member_leads_again() {
        let mut image = live_brokers(2);
        check_on(&mut image, &[(create_with("t", 7, &[&[1, 2]]), applied())]);
        for id in [2, 1] {
            check_on(&mut image, &[(fence(id, 1), applied())]);
            for record in image.changes_for_fenced_broker(id) {
                check_on(&mut image, &[(record, applied())]);
            }
        }
        assert_eq!(state(&image), Some((NO_LEADER, vec![1], 1, 2)));
        // Broker 2 was not in sync: unfencing it elects nobody.
        check_on(&mut image, &[(unfence(2, 1), applied())]);
        assert_eq!(image.changes_for_unfenced_broker(2), Vec::new());
        // Fenced brokers are never elected.
        assert_eq!(image.changes_for_unfenced_broker(1), Vec::new());
        check_on(&mut image, &[(unfence(1, 1), applied())]);
        for record in image.changes_for_unfenced_broker(1) {
            check_on(&mut image, &[(record, applied())]);
        }
        assert_eq!(state(&image), Some((1, vec![1], 2, 3)));
    }

    #[test]
    fn producer_id_blocks_are_handed_out_in_order() {
        let allocate = |broker_id, broker_epoch| MetadataRecord::AllocateProducerIds {
            broker_id,
            broker_epoch,
        };
        let block = |broker_id, first_producer_id| {
            MetadataResponse::ProducerIds(ProducerIdBlock {
                broker_id,
                first_producer_id,
                size: PRODUCER_ID_BLOCK_SIZE,
            })
        };
        let mut image = live_brokers(2);
        check_on(
            &mut image,
            &[
                (allocate(1, 1), block(1, 0)),
                (allocate(2, 1), block(2, 1000)),
                (allocate(1, 1), block(1, 2000)),
                (allocate(3, 1), rejected(RejectReason::UnknownBroker(3))),
                (
                    allocate(2, 0),
                    rejected(RejectReason::StaleBrokerEpoch {
                        id: 2,
                        got: 0,
                        current: 1,
                    }),
                ),
            ],
        );
        assert_eq!(image.next_producer_id(), 3000);
        assert_eq!(
            image.producer_id_block(1).map(|b| b.first_producer_id),
            Some(2000)
        );
        assert_eq!(
            image.producer_id_block(2).map(|b| b.first_producer_id),
            Some(1000)
        );
    }

    #[test]
    fn deltas_tell_a_broker_what_it_leads_follows_and_deletes() {
        let tp = |topic: &str, id: u8, partition: u32| PartitionRef {
            topic: topic.into(),
            topic_id: [id; 16],
            partition,
        };
        let mut image = live_brokers(3);
        let empty = image.clone();
        check_on(
            &mut image,
            &[
                (create_with("t", 7, &[&[1, 2], &[2, 1], &[3, 2]]), applied()),
                (create_with("u", 9, &[&[1]]), applied()),
            ],
        );
        let created = image.clone();
        let delta = broker_delta(&empty, &created, 1);
        assert_eq!(
            delta.lead,
            [
                Lead {
                    partition: tp("t", 7, 0),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: vec![1, 2],
                },
                Lead {
                    partition: tp("u", 9, 0),
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: vec![1],
                },
            ]
        );
        assert_eq!(
            delta.follow,
            [Follow {
                partition: tp("t", 7, 1),
                leader: 2,
                leader_epoch: 0,
            }]
        );
        assert!(delta.deleted.is_empty());
        assert!(broker_delta(&created, &created, 1).is_empty());

        // Broker 2 is fenced: 1 now leads t-1; t-0 (still led by 1) changed its ISR.
        check_on(&mut image, &[(fence(2, 1), applied())]);
        for record in image.changes_for_fenced_broker(2) {
            check_on(&mut image, &[(record, applied())]);
        }
        let delta = broker_delta(&created, &image, 1);
        let led: Vec<_> = delta
            .lead
            .iter()
            .map(|l| (l.partition.partition, l.leader_epoch))
            .collect();
        assert_eq!(led, [(0, 0), (1, 1)]);
        assert!(delta.follow.is_empty());
        let delta3 = broker_delta(&created, &image, 3);
        assert_eq!(delta3.lead.len(), 1, "t-2's ISR shrank");
        // Broker 2, fenced, is still a replica of all three: it learns it now follows
        // t-1 (leader 1, new epoch) as well as t-0 and t-2, whose ISR changed.
        let delta2 = broker_delta(&created, &image, 2);
        let followed: Vec<_> = delta2
            .follow
            .iter()
            .map(|f| (f.partition.partition, f.leader, f.leader_epoch))
            .collect();
        assert_eq!(followed, [(0, 1, 0), (1, 1, 1), (2, 3, 0)]);

        // Deleting u and re-creating t under a new ID: the old replicas go, the new ones
        // are reported under the new ID.
        let before = image.clone();
        check_on(
            &mut image,
            &[
                (
                    MetadataRecord::DeleteTopic {
                        name: "u".into(),
                        topic_id: None,
                    },
                    applied(),
                ),
                (
                    MetadataRecord::DeleteTopic {
                        name: "t".into(),
                        topic_id: None,
                    },
                    applied(),
                ),
                (create_with("t", 8, &[&[3, 1]]), applied()),
            ],
        );
        let delta = broker_delta(&before, &image, 1);
        assert_eq!(delta.deleted, [tp("t", 7, 0), tp("t", 7, 1), tp("u", 9, 0)]);
        assert_eq!(
            delta.follow,
            [Follow {
                partition: tp("t", 8, 0),
                leader: 3,
                leader_epoch: 0,
            }]
        );
        assert!(delta.lead.is_empty());
    }

    #[test]
    fn records_and_image_round_trip_through_json() {
        let mut image = live_brokers(2);
        let records = [
            create_with("t", 7, &[&[1, 2]]),
            MetadataRecord::AlterTopicConfigs {
                topic: "t".into(),
                changes: BTreeMap::from([("a".into(), Some("b".into())), ("c".into(), None)]),
            },
            change(0, 2, &[(1, 1), (2, 1)]),
            MetadataRecord::CreatePartitions {
                topic: "t".into(),
                topic_id: [7; 16],
                first_partition: 1,
                partitions: assign(&[&[2, 1]]),
            },
            MetadataRecord::AllocateProducerIds {
                broker_id: 1,
                broker_epoch: 1,
            },
        ];
        for record in &records {
            let bytes = serde_json::to_vec(record).unwrap();
            let back: MetadataRecord = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(&back, record);
            let response = image.apply(&back);
            assert!(
                !matches!(response, MetadataResponse::Rejected(_)),
                "{response:?}"
            );
        }
        assert_eq!(image.topic("t").map(|t| t.partitions.len()), Some(2));
        let bytes = serde_json::to_vec(&image).unwrap();
        let back: MetadataImage = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, image);
    }
}
