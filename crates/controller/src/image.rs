//! The metadata image: the state machine every node builds by applying the committed
//! metadata records in log order. A plain struct with no I/O, so it is tested directly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{MetadataRecord, MetadataResponse};

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

/// A topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
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
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    #[error("broker {id}: epoch {got} is stale (registered epoch {current})")]
    StaleBrokerEpoch { id: i32, got: i64, current: i64 },
}

/// The committed cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    brokers: BTreeMap<i32, BrokerRegistration>,
    topics: BTreeMap<String, TopicImage>,
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

    /// Applies one committed record. The outcome depends only on the image and the
    /// record, so every node that applies the same log reaches the same image.
    pub fn apply(&mut self, record: &MetadataRecord) -> MetadataResponse {
        match self.try_apply(record) {
            Ok(()) => MetadataResponse::Applied,
            Err(reason) => MetadataResponse::Rejected(reason),
        }
    }

    fn try_apply(&mut self, record: &MetadataRecord) -> Result<(), RejectReason> {
        match record {
            MetadataRecord::Noop => Ok(()),
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
                Ok(())
            }
            MetadataRecord::UnfenceBroker { id, epoch } => self.set_fenced(*id, *epoch, false),
            MetadataRecord::FenceBroker { id, epoch } => self.set_fenced(*id, *epoch, true),
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
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        partitions: *partitions,
                        configs: configs.clone(),
                    },
                );
                Ok(())
            }
            MetadataRecord::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(()),
                None => Err(RejectReason::UnknownTopic(name.clone())),
            },
        }
    }

    fn set_fenced(&mut self, id: i32, epoch: i64, fenced: bool) -> Result<(), RejectReason> {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(RejectReason::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(RejectReason::StaleBrokerEpoch {
                id,
                got: epoch,
                current: broker.epoch,
            });
        }
        broker.fenced = fenced;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn create(name: &str, id: u8, partitions: u32) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            id: [id; 16],
            partitions,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        }
    }

    /// Applies `records` in order to an empty image and checks each outcome.
    fn check(records: &[(MetadataRecord, MetadataResponse)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (i, (record, expected)) in records.iter().enumerate() {
            assert_eq!(&image.apply(record), expected, "record {i}: {record:?}");
        }
        image
    }

    #[test]
    fn noop_changes_nothing() {
        let image = check(&[(MetadataRecord::Noop, MetadataResponse::Applied)]);
        assert_eq!(image, MetadataImage::default());
    }

    #[test]
    fn broker_registers_fenced_and_is_unfenced_by_its_epoch() {
        let image = check(&[
            (register(1, 10), MetadataResponse::Applied),
            (
                MetadataRecord::UnfenceBroker { id: 1, epoch: 9 },
                MetadataResponse::Rejected(RejectReason::StaleBrokerEpoch {
                    id: 1,
                    got: 9,
                    current: 10,
                }),
            ),
            (
                MetadataRecord::UnfenceBroker { id: 2, epoch: 1 },
                MetadataResponse::Rejected(RejectReason::UnknownBroker(2)),
            ),
        ]);
        let broker = image.broker(1).cloned();
        assert_eq!(broker.as_ref().map(|b| b.fenced), Some(true));
        assert_eq!(broker.and_then(|b| b.rack), Some("r1".into()));

        let image = check(&[
            (register(1, 10), MetadataResponse::Applied),
            (
                MetadataRecord::UnfenceBroker { id: 1, epoch: 10 },
                MetadataResponse::Applied,
            ),
        ]);
        assert_eq!(image.broker(1).map(|b| b.fenced), Some(false));
    }

    #[test]
    fn reregistration_needs_a_newer_epoch_and_fences_again() {
        let image = check(&[
            (register(1, 10), MetadataResponse::Applied),
            (
                MetadataRecord::UnfenceBroker { id: 1, epoch: 10 },
                MetadataResponse::Applied,
            ),
            (
                register(1, 10),
                MetadataResponse::Rejected(RejectReason::StaleBrokerEpoch {
                    id: 1,
                    got: 10,
                    current: 10,
                }),
            ),
            (register(1, 11), MetadataResponse::Applied),
            (
                MetadataRecord::FenceBroker { id: 1, epoch: 10 },
                MetadataResponse::Rejected(RejectReason::StaleBrokerEpoch {
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
        let image = check(&[
            (create("a", 1, 3), MetadataResponse::Applied),
            (
                create("a", 2, 5),
                MetadataResponse::Rejected(RejectReason::TopicAlreadyExists("a".into())),
            ),
            (
                create("b", 1, 5),
                MetadataResponse::Rejected(RejectReason::TopicIdInUse("a".into())),
            ),
            (create("c", 3, 1), MetadataResponse::Applied),
            (
                MetadataRecord::DeleteTopic { name: "c".into() },
                MetadataResponse::Applied,
            ),
            (
                MetadataRecord::DeleteTopic { name: "c".into() },
                MetadataResponse::Rejected(RejectReason::UnknownTopic("c".into())),
            ),
        ]);
        let names: Vec<_> = image.topics().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        let a = image.topic("a").cloned();
        assert_eq!(a.as_ref().map(|t| (t.id, t.partitions)), Some(([1; 16], 3)));
        assert_eq!(
            a.and_then(|t| t.configs.get("cleanup.policy").cloned()),
            Some("compact".into())
        );
    }

    #[test]
    fn recreated_topic_takes_its_new_id() {
        let image = check(&[
            (create("a", 1, 3), MetadataResponse::Applied),
            (
                MetadataRecord::DeleteTopic { name: "a".into() },
                MetadataResponse::Applied,
            ),
            (create("a", 2, 1), MetadataResponse::Applied),
        ]);
        assert_eq!(image.topic("a").map(|t| t.id), Some([2; 16]));
    }

    #[test]
    fn image_round_trips_through_json() {
        let image = check(&[
            (register(1, 10), MetadataResponse::Applied),
            (create("a", 1, 3), MetadataResponse::Applied),
        ]);
        let bytes = serde_json::to_vec(&image).unwrap();
        let back: MetadataImage = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, image);
    }
}
