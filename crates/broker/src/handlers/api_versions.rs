//! ApiVersions (key 18), v0-4: what this broker serves. An unknown version is answered
//! with v0 and UNSUPPORTED_VERSION plus our ranges (KIP-511), so a newer client can
//! retry with a version we speak.

use bytes::Bytes;
use sluice_protocol::api::ApiKey;
use sluice_protocol::codec::Decode;
use sluice_protocol::error::ErrorCode;
use sluice_protocol::frame::{encode_response, ParsedHeader};
use sluice_protocol::messages::api_versions_response::ApiVersion;
use sluice_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::SUPPORTED;
use crate::error::BrokerError;

pub const VERSIONS: (i16, i16) = (0, 4);

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, (min, max))| ApiVersion {
            api_key: *k as i16,
            min_version: advertised_min(*k, *min),
            max_version: *max,
        })
        .collect()
}

/// The one deliberate gap between what we advertise and what we serve, copied from
/// Kafka 4.0 (KAFKA-18659): librdkafka before 2.10 compresses with gzip, snappy or lz4
/// only if the broker lists Produce v0, so Produce is advertised from v0 while v0-2
/// (the pre-v2 record formats) are still refused. Clients pick the highest common
/// version, so none of them sends v0-2 because of this.
fn advertised_min(api: ApiKey, served_min: i16) -> i16 {
    if api == ApiKey::Produce {
        0
    } else {
        served_min
    }
}

/// Kafka's rule for ClientSoftwareName/Version (v3+): alphanumerics, '.', '-', starting
/// and ending alphanumeric.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
}

pub fn handle(header: &ParsedHeader, body: &mut Bytes) -> Result<Option<Bytes>, BrokerError> {
    let v = header.api_version;
    // ApiVersions responses always use header v0, whatever the version (KIP-511).
    let header_version =
        ApiKey::ApiVersions.response_header_version(v.clamp(VERSIONS.0, VERSIONS.1));
    if !(VERSIONS.0..=VERSIONS.1).contains(&v) {
        let resp = ApiVersionsResponse {
            error_code: ErrorCode::UnsupportedVersion.code(),
            api_keys: api_keys(),
            ..Default::default()
        };
        return Ok(Some(encode_response(
            header.correlation_id,
            header_version,
            &resp,
            0,
        )?));
    }
    let req = ApiVersionsRequest::decode(body, v)?;
    let mut resp = ApiVersionsResponse {
        api_keys: api_keys(),
        ..Default::default()
    };
    if v >= 3
        && (!valid_software_field(&req.client_software_name)
            || !valid_software_field(&req.client_software_version))
    {
        // As Kafka: INVALID_REQUEST with no API list.
        resp.error_code = ErrorCode::InvalidRequest.code();
        resp.api_keys.clear();
    }
    Ok(Some(encode_response(
        header.correlation_id,
        header_version,
        &resp,
        v,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names() {
        for ok in ["librdkafka", "apache-kafka-java", "2.12.1", "a"] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "a b", "kafka_python"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
