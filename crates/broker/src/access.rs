//! The broker's side of security decisions: the credentials SASL sessions check
//! (PLAIN's users file, SCRAM credentials from the metadata image) and, when an
//! authorizer is configured, whether a connection's principal may do an operation on
//! a resource, from the ACLs in the metadata image.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_auth::acl::{Authorizer, Operation, ResourceType};
use sluice_auth::plain;
use sluice_auth::scram::{ScramCredential, ScramMechanism};
use sluice_controller::MetadataImage;

use crate::cluster::Cluster;
use crate::error::BrokerError;
use crate::handlers::authorized_ops;
use crate::metrics::Metrics;
use crate::router::ConnectionInfo;
use crate::security::{SaslMechanism, SecurityConfig};
use crate::session::{Credentials, Outcome};

/// Credentials and authorization for every connection of the node.
#[derive(Debug)]
pub struct Access {
    mechanisms: Vec<SaslMechanism>,
    plain_users: BTreeMap<String, String>,
    max_reauth_ms: u64,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    /// `None`: no authorizer configured, every request is allowed (Kafka's default).
    authorizer: Option<Authorizer>,
}

impl Access {
    /// Reads PLAIN's users file, if one is configured (a missing or malformed file stops
    /// the start: a broker that silently accepts nobody is worse).
    pub fn new(
        config: &SecurityConfig,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let plain_users = match &config.plain_users_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| BrokerError::io(path, e))?;
                plain::parse_users(&text)
                    .map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))?
            }
            None => BTreeMap::new(),
        };
        Ok(Self {
            mechanisms: config.sasl_mechanisms.clone(),
            plain_users,
            max_reauth_ms: config.max_reauth_ms,
            cluster,
            metrics,
            authorizer: config.authorizer.clone(),
        })
    }

    /// The authorization view for one request of `conn`: the ACLs as of now.
    pub fn authz<'a>(&'a self, conn: &'a ConnectionInfo) -> Authz<'a> {
        Authz {
            checks: self.authorizer.as_ref().map(|authorizer| Checks {
                authorizer,
                image: self.cluster.image(),
                host: conn.peer_ip.to_string(),
            }),
            conn,
        }
    }
}

/// The name of the one cluster resource, as ACLs name it.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Answers "may this connection do that" for one request, against one image's ACLs.
#[derive(Debug)]
pub struct Authz<'a> {
    checks: Option<Checks<'a>>,
    conn: &'a ConnectionInfo,
}

#[derive(Debug)]
struct Checks<'a> {
    authorizer: &'a Authorizer,
    image: Arc<MetadataImage>,
    host: String,
}

impl Authz<'_> {
    /// Whether the principal may do `op` on the resource.
    pub fn allows(&self, op: Operation, resource: ResourceType, name: &str) -> bool {
        match &self.checks {
            None => true,
            Some(c) => c.authorizer.authorize(
                c.image.acls(),
                &self.conn.principal,
                &c.host,
                op,
                resource,
                name,
            ),
        }
    }

    pub fn allows_topic(&self, op: Operation, topic: &str) -> bool {
        self.allows(op, ResourceType::Topic, topic)
    }

    pub fn allows_group(&self, op: Operation, group: &str) -> bool {
        self.allows(op, ResourceType::Group, group)
    }

    pub fn allows_txn(&self, op: Operation, transactional_id: &str) -> bool {
        self.allows(op, ResourceType::TransactionalId, transactional_id)
    }

    pub fn allows_cluster(&self, op: Operation) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether the principal may do `op` on some resource of the type (Kafka's
    /// `authorizeByResourceType`: an idempotent producer needs IdempotentWrite on the
    /// cluster or Write on any topic).
    pub fn allows_any(&self, op: Operation, resource: ResourceType) -> bool {
        match &self.checks {
            None => true,
            Some(c) => c.authorizer.authorize_any(
                c.image.acls(),
                &self.conn.principal,
                &c.host,
                op,
                resource,
            ),
        }
    }

    /// Kafka's authorized-operations bitfield for the resource.
    pub fn operations(&self, resource: ResourceType, name: &str) -> i32 {
        match &self.checks {
            None => match resource {
                ResourceType::Topic => authorized_ops::TOPIC,
                ResourceType::Group => authorized_ops::GROUP,
                ResourceType::Cluster => authorized_ops::CLUSTER,
                _ => 0,
            },
            Some(c) => c.authorizer.authorized_operations(
                c.image.acls(),
                &self.conn.principal,
                &c.host,
                resource,
                name,
            ),
        }
    }
}

impl Credentials for Access {
    fn mechanisms(&self) -> &[SaslMechanism] {
        &self.mechanisms
    }

    fn plain_users(&self) -> &BTreeMap<String, String> {
        &self.plain_users
    }

    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.cluster.image().scram_credential(user, mechanism)
    }

    fn max_reauth_ms(&self) -> u64 {
        self.max_reauth_ms
    }

    fn outcome(&self, outcome: Outcome) {
        match outcome {
            Outcome::Authenticated => self.metrics.authentications.inc(),
            Outcome::Reauthenticated => self.metrics.reauthentications.inc(),
            Outcome::Failed => self.metrics.failed_authentications.inc(),
        };
    }
}
