//! OffsetFetch (key 9), v0-9: committed offsets and leader epochs of one group (v0-7)
//! or several (v8+).

use std::sync::Arc;

use sluice_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use crate::broker::Broker;

pub const VERSIONS: (i16, i16) = (0, 9);

pub fn handle(broker: &Arc<Broker>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    broker.groups.read(|c| c.offset_fetch(req, version))
}
