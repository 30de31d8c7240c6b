//! librdkafka (the `rdkafka` crate) against a real `sluice` process: round trips,
//! every compression codec, keyed partitioning, acks levels, and offset lookups.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use sluice_protocol::records::RecordBatchHeader;
use sluice_system_tests::kafka::{consume, consumer, create_topic, produce_all, producer};
use sluice_system_tests::raw::RawClient;
use sluice_system_tests::wire::fetch_at;
use sluice_system_tests::Sluice;

fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("msg-{i:08}-").into_bytes();
    while v.len() < size {
        v.push(b'a' + (i % 26) as u8);
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_thousand_messages_round_trip_in_order() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "bulk", 1, &[]).await;
    let n = 100_000;
    let msgs: Vec<_> = (0..n).map(|i| (None, payload(i, 100))).collect();
    let p = producer(
        &node.addr,
        &[("queue.buffering.max.messages", "1000000"), ("acks", "all")],
    );
    let offsets = produce_all(&p, "bulk", Some(0), &msgs).await;
    let expected: Vec<(i32, i64)> = (0..n as i64).map(|o| (0, o)).collect();
    assert_eq!(
        offsets, expected,
        "offsets are assigned densely from 0 in send order"
    );
    let c = consumer(&node.addr, &[]);
    let got = consume(
        &c,
        "bulk",
        &[(0, Offset::Beginning)],
        n,
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), n);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.offset, i as i64);
        assert_eq!(
            m.value.as_deref(),
            Some(&payload(i, 100)[..]),
            "message {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compression_codec_round_trips() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "codecs", 1, &[]).await;
    let mut next = 0i64;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let p = producer(
            &node.addr,
            &[("compression.codec", codec), ("linger.ms", "20")],
        );
        // Compressible keyed values.
        let msgs: Vec<_> = (0..500)
            .map(|i| (Some(format!("k{i}").into_bytes()), payload(i, 300)))
            .collect();
        let offsets = produce_all(&p, "codecs", Some(0), &msgs).await;
        assert_eq!(offsets.first().map(|o| o.1), Some(next), "{codec}");
        let c = consumer(&node.addr, &[]);
        let got = consume(
            &c,
            "codecs",
            &[(0, Offset::Offset(next))],
            msgs.len(),
            Duration::from_secs(30),
        );
        assert_eq!(got.len(), msgs.len(), "{codec}: all messages come back");
        for (i, m) in got.iter().enumerate() {
            assert_eq!(
                m.key.as_deref(),
                Some(format!("k{i}").as_bytes()),
                "{codec} key {i}"
            );
            assert_eq!(
                m.value.as_deref(),
                Some(&msgs[i].1[..]),
                "{codec} value {i}"
            );
        }
        // The batches on disk really use the codec (librdkafka silently sends
        // uncompressed batches when it thinks a broker cannot take the codec).
        let mut raw = RawClient::connect(&node.addr);
        let records = fetch_at(&mut raw, "codecs", 0, next)
            .records
            .unwrap_or_default();
        let header = RecordBatchHeader::parse(&records).expect("a stored batch");
        assert_eq!(header.base_offset, next, "{codec}");
        assert_eq!(
            header.compression().expect("known codec").name(),
            codec,
            "{codec}: stored batch codec"
        );
        next += msgs.len() as i64;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_messages_stay_on_one_partition_in_order() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "keyed", 4, &[]).await;
    let p = producer(&node.addr, &[]);
    let keys = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let msgs: Vec<_> = (0..600)
        .map(|i| {
            (
                Some(keys[i % keys.len()].as_bytes().to_vec()),
                format!("{}-{i}", keys[i % keys.len()]).into_bytes(),
            )
        })
        .collect();
    let placed = produce_all(&p, "keyed", None, &msgs).await;
    let mut partition_of = std::collections::HashMap::new();
    for ((k, _), (part, _)) in msgs.iter().zip(&placed) {
        let prev = partition_of.insert(k.clone(), *part);
        assert!(
            prev.is_none() || prev == Some(*part),
            "key {:?} moved partitions",
            k
        );
    }
    let c = consumer(&node.addr, &[]);
    let from: Vec<_> = (0..4).map(|p| (p, Offset::Beginning)).collect();
    let got = consume(&c, "keyed", &from, msgs.len(), Duration::from_secs(30));
    assert_eq!(got.len(), msgs.len());
    for key in keys {
        let seq: Vec<usize> = got
            .iter()
            .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
            .map(|m| {
                let v = String::from_utf8(m.value.clone().unwrap()).unwrap();
                v.rsplit('-').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(seq.len(), 100, "{key}");
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {seq:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_zero_one_and_all_all_store_messages() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "acks", 1, &[]).await;
    let mut total = 0;
    for acks in ["0", "1", "all"] {
        let p = producer(&node.addr, &[("acks", acks)]);
        let msgs: Vec<_> = (0..200)
            .map(|i| (None, format!("acks{acks}-{i}").into_bytes()))
            .collect();
        let placed = produce_all(&p, "acks", Some(0), &msgs).await;
        if acks == "0" {
            // With acks=0 the broker sends nothing back, so librdkafka reports no offsets
            // (RD_KAFKA_OFFSET_INVALID); the data is checked by consuming below.
            assert!(placed.iter().all(|(_, o)| *o < 0), "{placed:?}");
        } else {
            assert_eq!(placed[0].1, total as i64, "acks={acks}");
        }
        total += msgs.len();
    }
    let c = consumer(&node.addr, &[]);
    let got = consume(
        &c,
        "acks",
        &[(0, Offset::Beginning)],
        total,
        Duration::from_secs(30),
    );
    assert_eq!(got.len(), total);
    assert_eq!(got[0].value.as_deref(), Some(&b"acks0-0"[..]));
    assert_eq!(got[total - 1].value.as_deref(), Some(&b"acksall-199"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_from_latest_offset_and_timestamp_and_list_offsets() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "seek", 1, &[]).await;
    let p = producer(&node.addr, &[("linger.ms", "0")]);
    // Timestamps within the broker's default bounds (at most 1 h in the future).
    let base_ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 200_000;
    for i in 0..100i64 {
        let v = format!("v{i}");
        p.send(
            FutureRecord::<(), _>::to("seek")
                .partition(0)
                .payload(&v)
                .timestamp(base_ts + i * 1000),
            Duration::from_secs(10),
        )
        .await
        .expect("send");
    }
    let c = consumer(&node.addr, &[]);
    let (low, high) = c
        .fetch_watermarks("seek", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, 100));

    // From an offset.
    let got = consume(
        &c,
        "seek",
        &[(0, Offset::Offset(42))],
        3,
        Duration::from_secs(10),
    );
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![42, 43, 44]
    );
    assert_eq!(got[0].value.as_deref(), Some(&b"v42"[..]));
    assert_eq!(got[0].timestamp, Some(base_ts + 42_000));

    // From a timestamp: the first message at or after it.
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("seek", 0, Offset::Offset(base_ts + 57_500))
        .unwrap();
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition("seek", 0).unwrap().offset(),
        Offset::Offset(58)
    );
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("seek", 0, Offset::Offset(base_ts + 1_000_000))
        .unwrap();
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition("seek", 0).unwrap().offset(),
        Offset::End,
        "after the last message: end"
    );

    // From latest: only messages produced after assignment arrive.
    let c2 = consumer(&node.addr, &[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("seek", 0, Offset::End).unwrap();
    c2.assign(&tpl).unwrap();
    // Let the consumer resolve "latest" before producing the new message.
    for _ in 0..20 {
        let _ = c2.poll(Duration::from_millis(100));
        if c2
            .position()
            .unwrap()
            .find_partition("seek", 0)
            .map(|e| e.offset())
            == Some(Offset::Offset(100))
        {
            break;
        }
    }
    p.send(
        FutureRecord::<(), _>::to("seek")
            .partition(0)
            .payload("after"),
        Duration::from_secs(10),
    )
    .await
    .expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < deadline {
        if let Some(m) = c2.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            got = Some((
                rdkafka::Message::offset(&m),
                rdkafka::Message::payload(&m).map(<[u8]>::to_vec),
            ));
        }
    }
    assert_eq!(
        got,
        Some((100, Some(b"after".to_vec()))),
        "a consumer at latest sees only the new message"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_compression_type_recompresses_on_append() {
    let node = Sluice::start(&[]);
    create_topic(&node.addr, "recompress", 1, &[("compression.type", "zstd")]).await;
    create_topic(
        &node.addr,
        "plain",
        1,
        &[("compression.type", "uncompressed")],
    )
    .await;
    for (topic, producer_codec, stored) in
        [("recompress", "gzip", "zstd"), ("plain", "snappy", "none")]
    {
        let p = producer(
            &node.addr,
            &[("compression.codec", producer_codec), ("linger.ms", "20")],
        );
        let msgs: Vec<_> = (0..300)
            .map(|i| (Some(format!("k{i}").into_bytes()), payload(i, 200)))
            .collect();
        produce_all(&p, topic, Some(0), &msgs).await;
        let c = consumer(&node.addr, &[]);
        let got = consume(
            &c,
            topic,
            &[(0, Offset::Beginning)],
            msgs.len(),
            Duration::from_secs(30),
        );
        assert_eq!(got.len(), msgs.len(), "{topic}");
        for (i, m) in got.iter().enumerate() {
            assert_eq!(
                (m.offset, m.key.as_deref(), m.value.as_deref()),
                (
                    i as i64,
                    Some(format!("k{i}").as_bytes()),
                    Some(&msgs[i].1[..])
                ),
                "{topic} {i}"
            );
        }
        let mut raw = RawClient::connect(&node.addr);
        let records = fetch_at(&mut raw, topic, 0, 0).records.unwrap_or_default();
        let header = RecordBatchHeader::parse(&records).expect("a stored batch");
        assert_eq!(
            header.compression().expect("known codec").name(),
            stored,
            "{topic}"
        );
    }
}
