//! IncrementalAlterConfigs (key 44), v0-1: SET, DELETE, APPEND and SUBTRACT applied to
//! a topic's current overrides (KIP-339). Authorized as AlterConfigs is
//! ([`check_resource`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sluice_protocol::error::ErrorCode;
use sluice_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use sluice_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use sluice_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{check_resource, result};
use crate::broker::Broker;
use crate::router::ConnectionInfo;
use crate::topic_config::{topic_config_def, BrokerLogDefaults, ConfigType};
use crate::topics::AdminError;

pub const VERSIONS: (i16, i16) = (0, 1);

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub fn handle(
    broker: &Arc<Broker>,
    conn: &ConnectionInfo,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let authz = broker.access.authz(conn);
    let mut seen = HashSet::new();
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let outcome = check_resource(&authz, r.resource_type, &mut seen, &r.resource_name)
                .and_then(|()| incremental(broker, &r.resource_name, r.configs, req.validate_only));
            let resp = result(r.resource_type, r.resource_name, outcome);
            AlterConfigsResourceResponse {
                error_code: resp.error_code,
                error_message: resp.error_message,
                resource_type: resp.resource_type,
                resource_name: resp.resource_name,
            }
        })
        .collect();
    IncrementalAlterConfigsResponse {
        responses,
        ..Default::default()
    }
}

fn incremental(
    broker: &Broker,
    name: &str,
    ops: Vec<AlterableConfig>,
    validate_only: bool,
) -> Result<(), AdminError> {
    let mut keys = HashSet::new();
    if let Some(dup) = ops.iter().find(|c| !keys.insert(c.name.clone())) {
        return Err(AdminError::new(
            ErrorCode::InvalidRequest,
            format!("Error due to duplicate config keys: {}", dup.name),
        ));
    }
    let defaults = broker.topics.defaults();
    broker.update_overrides(name, validate_only, |current| {
        apply_ops(defaults, current, ops)
    })
}

/// The overrides after applying `ops` (KIP-339) to `current`.
fn apply_ops(
    defaults: &BrokerLogDefaults,
    current: &BTreeMap<String, String>,
    ops: Vec<AlterableConfig>,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut overrides = current.clone();
    for c in ops {
        let def = topic_config_def(&c.name).ok_or_else(|| {
            AdminError::new(
                ErrorCode::InvalidConfig,
                format!("Unknown topic config name: {}", c.name),
            )
        })?;
        match c.config_operation {
            SET => {
                let v = c.value.ok_or_else(|| {
                    AdminError::new(
                        ErrorCode::InvalidRequest,
                        format!("Null value not supported for: {}", c.name),
                    )
                })?;
                overrides.insert(c.name, v);
            }
            DELETE => {
                overrides.remove(&c.name);
            }
            APPEND | SUBTRACT => {
                if def.kind != ConfigType::List {
                    return Err(AdminError::new(
                        ErrorCode::InvalidConfig,
                        format!(
                            "Config value append is not allowed for config key: {}",
                            c.name
                        ),
                    ));
                }
                let now = overrides
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_else(|| defaults.resolve(def, current).0.to_string());
                let mut items: Vec<String> = now
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let given: Vec<String> = c
                    .value
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if c.config_operation == APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                overrides.insert(c.name, items.join(","));
            }
            other => {
                return Err(AdminError::new(
                    ErrorCode::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(overrides)
}
