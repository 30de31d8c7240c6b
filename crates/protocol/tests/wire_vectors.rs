//! Hand-written byte vectors in Kafka's wire format. Round trips cannot catch a
//! mistake made identically in encoder and decoder (a swapped field order, a
//! compact length where a classic one belongs); these spell the bytes out.

use bytes::{Bytes, BytesMut};
use sluice_protocol::api::{decode_request, ApiKey, RequestBody};
use sluice_protocol::codec::{Decode, DecodeError, Encode, EncodeError, Uuid, Writer};
use sluice_protocol::frame::{decode_request_header, encode_request, encode_response, take_frame};
use sluice_protocol::messages::{
    api_versions_response, consumer_group_heartbeat_response, metadata_request, produce_request,
    ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupHeartbeatResponse, MetadataRequest,
    ProduceRequest,
};

/// Concatenates byte pieces, so vectors can be written field by field.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn encode<M: Encode>(m: &M, version: i16) -> Vec<u8> {
    let mut buf = Writer::new();
    m.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode v{version}: {e}"));
    buf.into_bytes().to_vec()
}

fn decode<M: Decode>(bytes: &[u8], version: i16) -> M {
    let mut input = Bytes::copy_from_slice(bytes);
    let m = M::decode(&mut input, version).unwrap_or_else(|e| panic!("decode v{version}: {e}"));
    assert!(input.is_empty(), "{} trailing bytes", input.len());
    m
}

#[test]
fn api_versions_v3_request_frame() {
    // What librdkafka sends first: header v2 (classic client id string, then tagged
    // fields), body with compact strings.
    let wire = cat(&[
        &[0, 0, 0, 36], // frame size
        &[0, 18, 0, 3], // api key 18, version 3
        &[0, 0, 0, 1],  // correlation id
        &[0, 7],        // client id: int16 length
        b"rdkafka",
        &[0],  // header tagged fields
        &[11], // compact string: length 10 + 1
        b"librdkafka",
        &[6],
        b"2.0.2",
        &[0], // body tagged fields
    ]);
    let body = ApiVersionsRequest {
        client_software_name: "librdkafka".into(),
        client_software_version: "2.0.2".into(),
    };
    let frame = encode_request(ApiKey::ApiVersions, 3, 1, Some("rdkafka"), &body).unwrap();
    assert_eq!(&frame[..], &wire[..]);

    let mut buf = BytesMut::from(&wire[..]);
    let mut frame = take_frame(&mut buf, 1 << 20).unwrap().unwrap();
    let header = decode_request_header(&mut frame).unwrap();
    assert_eq!(header.header_version, 2);
    assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
    let req = decode_request(ApiKey::ApiVersions, 3, &mut frame).unwrap();
    assert_eq!(req, RequestBody::ApiVersions(body));
    assert!(frame.is_empty());
}

#[test]
fn api_versions_v3_response_omits_default_tagged_fields() {
    let resp = ApiVersionsResponse {
        error_code: 0,
        api_keys: vec![api_versions_response::ApiVersion {
            api_key: 0,
            min_version: 3,
            max_version: 11,
        }],
        throttle_time_ms: 0,
        ..Default::default()
    };
    assert_eq!(resp.finalized_features_epoch, -1, "schema default");
    // ApiVersions responses always use response header v0: no tagged fields after
    // the correlation id, whatever the body version.
    assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
    let frame = encode_response(1, 0, &resp, 3).unwrap();
    let wire = cat(&[
        &[0, 0, 0, 19],
        &[0, 0, 0, 1],           // correlation id
        &[0, 0],                 // error code
        &[2],                    // compact array of 1
        &[0, 0, 0, 3, 0, 11, 0], // key 0, min 3, max 11, no tags
        &[0, 0, 0, 0],           // throttle time
        &[0],                    // no tagged fields: all at their defaults
    ]);
    assert_eq!(&frame[..], &wire[..]);
}

#[test]
fn api_versions_v3_response_tagged_fields_in_tag_order() {
    let resp = ApiVersionsResponse {
        supported_features: vec![api_versions_response::SupportedFeatureKey {
            name: "metadata.version".into(),
            min_version: 1,
            max_version: 20,
        }],
        finalized_features_epoch: 5,
        ..Default::default()
    };
    let wire = cat(&[
        &[0, 0],       // error code
        &[1],          // empty compact array
        &[0, 0, 0, 0], // throttle time
        &[2],          // two tagged fields
        &[0, 23],      // tag 0, 23 bytes
        &[2, 17],
        b"metadata.version",
        &[0, 1, 0, 20, 0],
        &[1, 8, 0, 0, 0, 0, 0, 0, 0, 5], // tag 1: int64 epoch
    ]);
    assert_eq!(encode(&resp, 3), wire);
    assert_eq!(decode::<ApiVersionsResponse>(&wire, 3), resp);

    // v0-v2 have no tagged fields at all: the section and its contents vanish
    // (the fields are ignorable, so no error either).
    let v2 = encode(&resp, 2);
    assert_eq!(v2, cat(&[&[0, 0], &[0, 0, 0, 0], &[0, 0, 0, 0]]));
}

#[test]
fn unknown_tagged_fields_are_skipped() {
    let wire = cat(&[
        &[0, 0],
        &[1],
        &[0, 0, 0, 0],
        &[2],                      // two tagged fields
        &[9, 3, 0xaa, 0xbb, 0xcc], // tag 9: unknown to us
        &[1, 8, 0, 0, 0, 0, 0, 0, 0, 7],
    ]);
    let resp: ApiVersionsResponse = decode(&wire, 3);
    assert_eq!(resp.finalized_features_epoch, 7);
}

#[test]
fn metadata_v12_request() {
    let topic_id = Uuid(*b"0123456789abcdef");
    let req = MetadataRequest {
        topics: Some(vec![metadata_request::MetadataRequestTopic {
            topic_id,
            name: Some("t".into()),
        }]),
        allow_auto_topic_creation: true,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: true,
    };
    let wire = cat(&[
        &[2],                // compact nullable array of 1
        b"0123456789abcdef", // topic id
        &[2, b't'],          // compact nullable string
        &[0],                // topic tagged fields
        &[1],                // allow auto topic creation
        &[1],                // include topic authorized operations
        &[0],                // tagged fields
    ]);
    assert_eq!(encode(&req, 12), wire);
    assert_eq!(decode::<MetadataRequest>(&wire, 12), req);

    // A null topic list asks for every topic.
    let all = MetadataRequest {
        topics: None,
        ..req.clone()
    };
    assert_eq!(encode(&all, 12), [0, 1, 1, 0]);
    // v0 cannot express "all topics" as null (its empty list means all).
    assert!(matches!(
        all.encode(&mut Writer::new(), 0),
        Err(EncodeError::NullNotAllowed { .. })
    ));
    let mut v0_null = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        MetadataRequest::decode(&mut v0_null, 0),
        Err(DecodeError::UnexpectedNull { .. })
    ));
    // Non-ignorable IncludeTopicAuthorizedOperations (8+) set to true at v7.
    assert!(matches!(
        req.encode(&mut Writer::new(), 7),
        Err(EncodeError::NonDefaultField { .. })
    ));
}

fn produce(records: &'static [u8]) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![produce_request::TopicProduceData {
            name: "t".into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: 0,
                records: Some(Bytes::from_static(records)),
            }],
        }],
    }
}

#[test]
fn produce_v3_and_v9_requests() {
    let req = produce(b"abc");
    let v3 = cat(&[
        &[0xff, 0xff],       // null transactional id
        &[0xff, 0xff],       // acks -1
        &[0, 0, 0x75, 0x30], // timeout 30000
        &[0, 0, 0, 1],       // one topic
        &[0, 1, b't'],
        &[0, 0, 0, 1], // one partition
        &[0, 0, 0, 0], // index 0
        &[0, 0, 0, 3], // records: int32 length
        b"abc",
    ]);
    assert_eq!(encode(&req, 3), v3);
    let decoded: ProduceRequest = decode(&v3, 3);
    assert_eq!(decoded, req);

    let v9 = cat(&[
        &[0], // compact null transactional id
        &[0xff, 0xff],
        &[0, 0, 0x75, 0x30],
        &[2],
        &[2, b't'],
        &[2],
        &[0, 0, 0, 0],
        &[4], // records: compact length 3 + 1
        b"abc",
        &[0, 0, 0], // partition, topic, request tagged fields
    ]);
    assert_eq!(encode(&req, 9), v9);
    assert_eq!(decode::<ProduceRequest>(&v9, 9), req);

    // The transactional id does not exist before v3 and is not ignorable.
    let txn = ProduceRequest {
        transactional_id: Some("txn".into()),
        ..req
    };
    assert_eq!(
        txn.encode(&mut Writer::new(), 2),
        Err(EncodeError::NonDefaultField {
            field: "ProduceRequest.TransactionalId",
            version: 2
        })
    );
}

#[test]
fn records_are_zero_copy_slices_of_the_frame() {
    let wire = Bytes::from(encode(&produce(b"record-batch-bytes"), 9));
    let mut input = wire.clone();
    let req = ProduceRequest::decode(&mut input, 9).unwrap();
    let records = req.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .unwrap();
    let offset = records.as_ptr() as usize - wire.as_ptr() as usize;
    assert_eq!(&wire[offset..offset + records.len()], &records[..]);
    assert!(offset + records.len() <= wire.len());
}

#[test]
fn nullable_struct_presence_byte() {
    let none = ConsumerGroupHeartbeatResponse {
        error_message: None,
        member_id: None,
        assignment: None,
        ..Default::default()
    };
    let wire = cat(&[
        &[0, 0, 0, 0], // throttle
        &[0, 0],       // error code
        &[0],          // null error message
        &[0],          // null member id
        &[0, 0, 0, 0], // member epoch
        &[0, 0, 0, 0], // heartbeat interval
        &[0xff],       // null assignment: int8 -1
        &[0],
    ]);
    assert_eq!(encode(&none, 0), wire);

    let some = ConsumerGroupHeartbeatResponse {
        assignment: Some(consumer_group_heartbeat_response::Assignment {
            topic_partitions: vec![consumer_group_heartbeat_response::TopicPartitions {
                topic_id: Uuid([7; 16]),
                partitions: vec![1, 2],
            }],
        }),
        ..none
    };
    let bytes = encode(&some, 0);
    let tail = cat(&[
        &[1], // present
        &[2],
        &[7; 16],
        &[3, 0, 0, 0, 1, 0, 0, 0, 2],
        &[0], // topic partition tagged fields
        &[0], // assignment tagged fields
        &[0], // response tagged fields
    ]);
    assert!(bytes.ends_with(&tail), "{bytes:?}");
    assert_eq!(decode::<ConsumerGroupHeartbeatResponse>(&bytes, 0), some);
}

#[test]
fn header_client_id_stays_a_classic_string_in_header_v2() {
    // Metadata v12 uses header v2, yet the client id keeps its int16 length so that
    // old brokers can always read the header.
    let frame = encode_request(
        ApiKey::Metadata,
        12,
        0x0102_0304,
        None,
        &MetadataRequest::default(),
    )
    .unwrap();
    assert_eq!(&frame[4..14], &[0, 3, 0, 12, 1, 2, 3, 4, 0xff, 0xff]);
    assert_eq!(frame[14], 0, "header tagged fields");
}

#[test]
fn api_key_table() {
    assert_eq!(ApiKey::ALL.len(), 88);
    for (i, key) in ApiKey::ALL.iter().enumerate() {
        assert_eq!(*key as i16, i as i16);
        assert_eq!(ApiKey::from_i16(i as i16), Some(*key));
    }
    assert_eq!(ApiKey::from_i16(88), None);
    assert_eq!(ApiKey::from_i16(-1), None);
    assert_eq!(ApiKey::Produce.name(), "Produce");
    assert_eq!(ApiKey::Produce.valid_versions(), (0, 11));
    assert_eq!(ApiKey::Fetch.to_string(), "Fetch");
    assert!(ApiKey::EndTxn.latest_version_unstable());
    assert!(!ApiKey::Produce.latest_version_unstable());
    assert_eq!(ApiKey::Produce.request_header_version(8), 1);
    assert_eq!(ApiKey::Produce.request_header_version(9), 2);
    assert_eq!(ApiKey::Produce.response_header_version(9), 1);
    assert_eq!(ApiKey::ControlledShutdown.request_header_version(0), 0);
    assert_eq!(ApiKey::ControlledShutdown.request_header_version(1), 1);
    assert_eq!(ApiKey::ApiVersions.response_header_version(4), 0);
    assert!(ApiKey::Produce.listeners().contains(&"broker"));
    assert_eq!(ProduceRequest::API_KEY, ApiKey::Produce as i16);
    assert_eq!(ProduceRequest::FLEXIBLE_MIN_VERSION, Some(9));
}
