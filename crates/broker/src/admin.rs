//! Admin changes to topics, as the handlers of CreateTopics, DeleteTopics,
//! CreatePartitions, AlterConfigs and IncrementalAlterConfigs (and auto-creation) ask for
//! them: checked against this node's view of the metadata (first brought up to what the
//! quorum has committed, see `Cluster::catch_up_blocking`), turned into a metadata record
//! (with replica placement for new partitions), written through the active controller
//! and answered once this node's topic table shows the result.
//!
//! Each record is safe to retry: a topic is created with an ID chosen here, so a retry
//! that finds "its" topic already there succeeds; partitions are added from a stated
//! count; deletes name the topic ID.
//!
//! These functions block (they wait for the quorum): call them on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_controller::{
    place, placement::seed_for_topic, MetadataImage, MetadataRecord, MetadataResponse,
    PartitionAssignment, PlacementError, RejectReason,
};
use sluice_protocol::codec::Uuid;
use sluice_protocol::error::ErrorCode;
use tracing::info;

use crate::broker::Broker;
use crate::topics::{AdminError, Topic};

/// A topic to create, as a request describes it.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Explicit replicas per partition (partition 0 first), instead of placement.
    pub assignment: Option<Vec<Vec<i32>>>,
    pub overrides: BTreeMap<String, String>,
}

impl Broker {
    /// Creates a topic (or, with `validate_only`, checks that it could be created).
    pub fn create_topic(
        &self,
        spec: NewTopic,
        validate_only: bool,
    ) -> Result<Arc<Topic>, AdminError> {
        let config = self
            .topics
            .check_new(&spec.name, spec.partitions, &spec.overrides)?;
        let assign = |image: &MetadataImage| match &spec.assignment {
            Some(assignment) => check_assignment(image, assignment, 0),
            None => placed(
                image,
                &spec.name,
                0,
                spec.partitions,
                spec.replication_factor,
            ),
        };
        if validate_only {
            assign(&self.cluster.image())?;
            return Ok(Arc::new(Topic {
                name: spec.name,
                id: Uuid::ZERO,
                overrides: spec.overrides,
                config,
                partitions: Vec::new(),
                traffic: Arc::default(),
            }));
        }
        let id = Uuid(*uuid::Uuid::new_v4().as_bytes());
        let response = self.write_assigned(spec.assignment.is_none(), |image| {
            Ok(MetadataRecord::CreateTopic {
                name: spec.name.clone(),
                id: id.0,
                partitions: assign(image)?,
                configs: spec.overrides.clone(),
            })
        })?;
        let ours = |t: &Topic| t.id == id;
        match response {
            MetadataResponse::Applied => {}
            // A retry of our own write that had committed: done.
            MetadataResponse::Rejected(RejectReason::TopicAlreadyExists(_))
                if self.topics.get(&spec.name).is_some_and(|t| ours(&t)) => {}
            other => return Err(refused(other)),
        }
        info!(topic = %spec.name, %id, "created topic");
        self.topics.existing(&spec.name)
    }

    /// Deletes a topic; returns its ID.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, AdminError> {
        self.cluster.catch_up_blocking()?;
        let topic = self.topics.existing(name)?;
        let record = MetadataRecord::DeleteTopic {
            name: name.to_string(),
            topic_id: Some(topic.id.0),
        };
        match self.cluster.write_blocking(record)? {
            MetadataResponse::Applied => Ok(topic.id),
            // Our own retried delete, or someone else's: the topic is gone either way.
            MetadataResponse::Rejected(RejectReason::UnknownTopic(_)) => Ok(topic.id),
            other => Err(refused(other)),
        }
    }

    /// Raises the partition count of a topic to `total`, placing the new partitions
    /// (or following `assignment`, one entry per new partition).
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        self.cluster.catch_up_blocking()?;
        let topic = self.topics.check_add_partitions(name, total)?;
        let current = topic.partition_count();
        let first = u32::try_from(current).unwrap_or(0);
        let assign = |image: &MetadataImage| match &assignment {
            Some(a) => {
                if i32::try_from(a.len()).ok() != Some(total - current) {
                    return Err(AdminError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Increasing the number of partitions by {} but {} assignments provided.",
                            total - current,
                            a.len()
                        ),
                    ));
                }
                check_assignment(image, a, first)
            }
            None => {
                let rf = topic.state(0).map_or(1, |p| p.replicas.len());
                let rf = i16::try_from(rf).unwrap_or(i16::MAX);
                placed(image, name, first, total - current, rf)
            }
        };
        if validate_only {
            return assign(&self.cluster.image()).map(|_| ());
        }
        let response = self.write_assigned(assignment.is_none(), |image| {
            Ok(MetadataRecord::CreatePartitions {
                topic: name.to_string(),
                topic_id: topic.id.0,
                first_partition: first,
                partitions: assign(image)?,
            })
        })?;
        match response {
            MetadataResponse::Applied => Ok(()),
            MetadataResponse::Rejected(RejectReason::PartitionCountChanged { actual, .. })
                if i64::from(actual) == i64::from(total) =>
            {
                // Our own retried write (or an identical one) got there first.
                Ok(())
            }
            other => Err(refused(other)),
        }
    }

    /// Changes a topic's config overrides: `change` maps the current overrides to the
    /// new set; everything is validated before the change is written, and only the keys
    /// that differ are written, so concurrent changes to other keys are kept.
    pub fn update_overrides(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
    ) -> Result<(), AdminError> {
        self.cluster.catch_up_blocking()?;
        let topic = self.topics.existing(name)?;
        let overrides = change(&topic.overrides)?;
        self.topics.validated_config(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v) in &overrides {
            if topic.overrides.get(k) != Some(v) {
                changes.insert(k.clone(), Some(v.clone()));
            }
        }
        for k in topic.overrides.keys() {
            if !overrides.contains_key(k) {
                changes.insert(k.clone(), None);
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let record = MetadataRecord::AlterTopicConfigs {
            topic: name.to_string(),
            changes,
        };
        match self.cluster.write_blocking(record)? {
            MetadataResponse::Applied => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// Writes the record `make` builds from the current image. With `placed` (the
    /// replicas were chosen by placement, not named by the request), a refusal because
    /// every replica of a partition is fenced means a broker was fenced between reading
    /// the image and the write (the controller fences a crashed broker within
    /// milliseconds of its heartbeat stream breaking): place again on the image the
    /// refusal left here, which holds that fence, as Kafka's controller would have
    /// placed on the brokers live at the time. Bounded, since each retry follows a
    /// fence.
    fn write_assigned(
        &self,
        placed: bool,
        make: impl Fn(&MetadataImage) -> Result<MetadataRecord, AdminError>,
    ) -> Result<MetadataResponse, AdminError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let response = self.cluster.write_blocking(make(&self.cluster.image())?)?;
            match response {
                MetadataResponse::Rejected(RejectReason::NoLiveReplica { .. })
                    if placed && attempt < ATTEMPTS =>
                {
                    info!(
                        attempt,
                        "a placed broker was fenced before the write: placing again"
                    );
                    attempt += 1;
                }
                other => return Ok(other),
            }
        }
    }
}

/// Places `count` new partitions from `first` on the live brokers.
fn placed(
    image: &MetadataImage,
    name: &str,
    first: u32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<PartitionAssignment>, AdminError> {
    if replication_factor <= 0 {
        return Err(AdminError::new(
            ErrorCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ));
    }
    let count = u32::try_from(count).map_err(|_| {
        AdminError::new(
            ErrorCode::InvalidPartitions,
            "Number of partitions was set to an invalid non-positive value.",
        )
    })?;
    let rf = u16::try_from(replication_factor).unwrap_or(u16::MAX);
    place(&image.live_brokers(), first, count, rf, seed_for_topic(name)).map_err(|e| match e {
        PlacementError::InvalidPartitions => AdminError::new(
            ErrorCode::InvalidPartitions,
            "Number of partitions was set to an invalid non-positive value.",
        ),
        PlacementError::InvalidReplicationFactor { requested, available } => AdminError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("Unable to replicate the partition {requested} time(s): The target replication factor of {requested} cannot be reached because only {available} broker(s) are registered."),
        ),
    })
}

/// Checks a manual replica assignment (Kafka's rules: registered brokers, no duplicates,
/// the same replication factor everywhere).
fn check_assignment(
    image: &MetadataImage,
    assignment: &[Vec<i32>],
    first: u32,
) -> Result<Vec<PartitionAssignment>, AdminError> {
    let bad = |msg: String| AdminError::new(ErrorCode::InvalidReplicaAssignment, msg);
    let rf = assignment.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(assignment.len());
    for (i, replicas) in assignment.iter().enumerate() {
        let partition = u64::from(first) + i as u64;
        if replicas.is_empty() {
            return Err(bad(format!("Partition {partition} has no replicas.")));
        }
        if replicas.len() != rf {
            return Err(bad(
                "All partitions should have the same number of replicas.".into(),
            ));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(bad(format!(
                "Duplicate brokers in the replica assignment of partition {partition}."
            )));
        }
        if let Some(unknown) = replicas.iter().find(|b| image.broker(**b).is_none()) {
            return Err(bad(format!("The replica assignment of partition {partition} names broker {unknown}, which is not registered.")));
        }
        out.push(PartitionAssignment {
            replicas: replicas.clone(),
        });
    }
    Ok(out)
}

/// The Kafka error for a record the metadata refused.
fn refused(response: MetadataResponse) -> AdminError {
    let MetadataResponse::Rejected(reason) = response else {
        return AdminError::new(
            ErrorCode::UnknownServerError,
            format!("unexpected metadata answer {response:?}"),
        );
    };
    let code = match &reason {
        RejectReason::TopicAlreadyExists(_) | RejectReason::TopicIdInUse(_) => {
            ErrorCode::TopicAlreadyExists
        }
        RejectReason::UnknownTopic(_) | RejectReason::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        RejectReason::TopicIdMismatch(_) => ErrorCode::UnknownTopicId,
        RejectReason::NoPartitions | RejectReason::PartitionCountChanged { .. } => {
            ErrorCode::InvalidPartitions
        }
        RejectReason::InvalidReplicaAssignment { .. }
        | RejectReason::UnknownBroker(_)
        | RejectReason::NoLiveReplica { .. } => ErrorCode::InvalidReplicaAssignment,
        _ => ErrorCode::UnknownServerError,
    };
    AdminError::new(code, reason.to_string())
}
