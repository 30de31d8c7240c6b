//! The Sluice broker: Kafka listeners, request handlers and the node's topic state.
//!
//! `server` accepts connections, `connection` frames requests, `router` dispatches them
//! to one module per API under `handlers`, which act on `topics` (the topic table) and
//! each `partition`'s log from `sluice-storage`; `groups` runs the group coordinator of
//! `sluice-group` over the `__consumer_offsets` topic.

pub mod access;
pub mod admin;
pub mod broker;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod conn_limits;
pub mod connection;
pub mod coordinator_host;
pub mod error;
pub mod groups;
pub mod handlers;
pub mod health;
pub mod http;
pub mod internal_topic;
pub mod listeners;
pub mod markers;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod replicas;
pub mod router;
pub mod scram_bootstrap;
pub mod security;
pub mod server;
pub mod session;
pub mod tls;
pub mod topic_config;
pub mod topic_store;
pub mod topics;
pub mod txns;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::{start, RunningServer};
