//! Regenerates crates/protocol/tests/data/client_frames: the request frames real clients
//! send, recorded by a proxy in front of a real node. Ignored by default (the frames are
//! committed); run by hand as that directory's README says.
//!
//! Clients: librdkafka through the `rdkafka` crate (this file), kafka-python through
//! `kafka_python_scenario.py` in the data directory (when `SLUICE_KAFKA_PYTHON` names a
//! Python that has it), and kcat (when it is on PATH). Each sets its own client id, which
//! tells their frames apart; the first frame of each (client, API, version) is kept, and
//! of each compression codec for Produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_protocol::api::{decode_request, ApiKey, RequestBody};
use sluice_protocol::frame::decode_request_header;
use sluice_protocol::records::BatchIter;
use sluice_system_tests::kafka::{client_config, consume};
use sluice_system_tests::recorder::Recorder;
use sluice_system_tests::Sluice;

const TOPIC: &str = "capture";
const ADMIN_TOPIC: &str = "capture-admin";
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Client id prefix of every capturing client; the rest is the client's label.
const ID_PREFIX: &str = "capture-";

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/protocol/tests/data/client_frames")
}

async fn librdkafka(bootstrap: &str) {
    let client = "librdkafka";
    let mut cfg = client_config(bootstrap);
    cfg.set("client.id", format!("{ID_PREFIX}{client}"));
    let admin: rdkafka::admin::AdminClient<_> = cfg.create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [
        NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1)),
        NewTopic::new(ADMIN_TOPIC, 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000"),
    ];
    for r in admin.create_topics(&topics, &opts).await.unwrap() {
        r.unwrap();
    }
    for r in admin
        .create_partitions(&[NewPartitions::new(ADMIN_TOPIC, 4)], &opts)
        .await
        .unwrap()
    {
        r.unwrap();
    }
    for r in admin
        .describe_configs(&[ResourceSpecifier::Topic(TOPIC)], &opts)
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let alter = AlterConfig::new(ResourceSpecifier::Topic(TOPIC)).set("retention.ms", "7200000");
    for r in admin.alter_configs(&[alter], &opts).await.unwrap() {
        r.unwrap();
    }
    for r in admin.delete_topics(&[ADMIN_TOPIC], &opts).await.unwrap() {
        r.unwrap();
    }
    for codec in CODECS {
        let producer: FutureProducer = client_config(bootstrap)
            .set("client.id", format!("{ID_PREFIX}{client}"))
            .set("compression.codec", codec)
            .set("acks", "all")
            .set("linger.ms", "50")
            .create()
            .expect("producer");
        let values: Vec<String> = (0..3).map(|i| value(client, codec, i)).collect();
        let futures: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let key = format!("k{i}");
                producer
                    .send_result(FutureRecord::to(TOPIC).partition(0).key(&key).payload(v))
                    .expect("enqueue")
            })
            .collect();
        for f in futures {
            f.await.unwrap().unwrap();
        }
    }
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("client.id", format!("{ID_PREFIX}{client}"))
        .set("group.id", "capture-unused") // assign() needs one; no group is joined
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let got = consume(
        &consumer,
        TOPIC,
        &[(0, Offset::Beginning)],
        15,
        Duration::from_secs(20),
    );
    assert_eq!(got.len(), 15);
    assert_eq!(
        got[14].value.as_deref(),
        Some(value(client, "zstd", 2).as_bytes())
    );
    consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .unwrap();
    consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .unwrap();
    let mut del = TopicPartitionList::new();
    del.add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .unwrap();
    admin.delete_records(&del, &opts).await.unwrap();
}

fn kafka_python(bootstrap: &str) {
    let Ok(python) = std::env::var("SLUICE_KAFKA_PYTHON") else {
        eprintln!("SLUICE_KAFKA_PYTHON not set: skipping kafka-python");
        return;
    };
    let status = Command::new(python)
        .arg(out_dir().join("kafka_python_scenario.py"))
        .arg(bootstrap)
        .status()
        .expect("run kafka-python scenario");
    assert!(status.success(), "kafka-python scenario failed");
}

fn kcat(bootstrap: &str) {
    let base = |args: &[&str]| {
        let mut c = Command::new("kcat");
        c.args(["-b", bootstrap, "-X", "client.id=capture-kcat"])
            .args(args);
        c
    };
    if base(&["-V"]).output().is_err() {
        eprintln!("kcat not on PATH: skipping kcat");
        return;
    }
    for codec in CODECS {
        let mut p = base(&[
            "-P",
            "-t",
            TOPIC,
            "-p",
            "0",
            "-z",
            codec,
            "-X",
            "acks=all",
            "-X",
            "linger.ms=50",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat -P");
        let input: String = (0..3).map(|i| value("kcat", codec, i) + "\n").collect();
        std::io::Write::write_all(p.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        drop(p.stdin.take());
        assert!(p.wait().unwrap().success(), "kcat -P -z {codec}");
    }
    let out = base(&[
        "-C",
        "-t",
        TOPIC,
        "-p",
        "0",
        "-o",
        "beginning",
        "-c",
        "30",
        "-e",
        "-q",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "kcat -C");
    let out = base(&["-L", "-t", TOPIC]).output().unwrap();
    assert!(out.status.success(), "kcat -L");
    let out = base(&["-Q", "-t", &format!("{TOPIC}:0:0")])
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat -Q");
}

/// A record value: long enough to compress, since clients send a batch raw when
/// compression does not pay (kafka_python_scenario.py builds the same).
fn value(client: &str, codec: &str, i: usize) -> String {
    format!("{client}-{codec}-{i} {}", "sluice ".repeat(20))
}

/// kebab-case of Kafka's API name: ListOffsets -> list-offsets.
fn kebab(name: &str) -> String {
    let mut s = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            s.push('-');
        }
        s.push(ch.to_ascii_lowercase());
    }
    s
}

/// File name for a frame, or `None` for frames of other clients.
fn file_name(frame: &Bytes) -> Option<String> {
    let mut body = frame.slice(4..);
    let header = decode_request_header(&mut body).expect("request header");
    let label = header
        .client_id
        .as_deref()?
        .strip_prefix(ID_PREFIX)?
        .to_string();
    let api = header.api()?;
    let mut name = format!("{label}-{}-v{}", kebab(api.name()), header.api_version);
    if api == ApiKey::Produce {
        let Ok(RequestBody::Produce(p)) = decode_request(api, header.api_version, &mut body) else {
            return None;
        };
        let records = p.topic_data[0].partition_data[0]
            .records
            .clone()
            .unwrap_or_default();
        let (h, _) = BatchIter::new(&records).next()?.ok()?;
        name.push('-');
        name.push_str(h.compression().ok()?.name());
    }
    Some(name + ".hex")
}

fn to_hex(frame: &[u8]) -> String {
    let mut s = String::new();
    for line in frame.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "regenerates crates/protocol/tests/data/client_frames; run by hand (see the README there)"]
async fn capture_client_frames() {
    let mut rec = Recorder::reserve();
    // Clients follow Metadata to the advertised address: make that the proxy.
    let node = Sluice::start(&["--advertise", &rec.addr.clone()]);
    rec.forward_to(&node.addr);
    librdkafka(&rec.addr).await;
    kafka_python(&rec.addr);
    kcat(&rec.addr);

    let mut kept: BTreeMap<String, Bytes> = BTreeMap::new();
    for frame in rec.frames() {
        if let Some(name) = file_name(&frame) {
            kept.entry(name).or_insert(frame);
        }
    }
    let dir = out_dir();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (name, frame) in &kept {
        std::fs::write(dir.join(name), to_hex(frame)).unwrap();
        println!("{name}: {} bytes", frame.len());
    }
    assert!(kept.len() >= 10, "captured {} frames", kept.len());
}
