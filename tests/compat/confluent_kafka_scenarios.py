"""confluent-kafka (librdkafka bundled in the wheel) against a fresh Sluice broker.

Run by `cargo xtask compat` as ``python confluent_kafka_scenarios.py HOST:PORT``.
Consumers here use assign() with auto-commit off; subscribe() and commits are in
confluent_kafka_groups.py. The Python binding insists on a group.id even for
assign(), so one is set but never used for coordination.
"""

import time
import warnings
import zlib

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from harness import advertised_apis, check, check_codec, eq, main, scenario, wait_until

T = 10  # seconds: every client call below is bounded by this
N = 2000  # messages per produce scenario
FIND_COORDINATOR = 10  # api key


_ADMINS = {}


def admin(bs):
    # One shared client: a future fails with _DESTROY if its client is garbage
    # collected before the result arrives.
    if bs not in _ADMINS:
        _ADMINS[bs] = AdminClient({"bootstrap.servers": bs})
    return _ADMINS[bs]


def producer(bs, **conf):
    base = {"bootstrap.servers": bs, "linger.ms": 5, "message.timeout.ms": T * 1000}
    base.update(conf)
    return Producer(base)


def consumer(bs, **conf):
    base = {
        "bootstrap.servers": bs,
        "group.id": "compat-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        # EOF is only known after an empty fetch: keep that wait short.
        "fetch.wait.max.ms": 100,
    }
    base.update(conf)
    return Consumer(base)


def create(bs, name, partitions=1, config=None):
    fs = admin(bs).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=T,
        request_timeout=T,
    )
    fs[name].result(timeout=T)


def topic_names(bs):
    return set(admin(bs).list_topics(timeout=T).topics)


def consume(bs, tps, expected, timeout_s=T, **conf):
    """Reads from the assigned partitions until each has reported EOF; returns the
    messages in arrival order (ordered within each partition)."""
    c = consumer(bs, **conf)
    try:
        c.assign(tps)
        pending = {(tp.topic, tp.partition) for tp in tps}
        out = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard((m.topic(), m.partition()))
                        continue
                    raise KafkaException(m.error())
                out.append(m)
        check(not pending, f"no EOF within {timeout_s}s from {sorted(pending)}; got {len(out)} messages")
        eq(len(out), expected, "messages consumed")
        return out
    finally:
        c.close()


def produce_all(p, topic, n, base_ts=None, partition=None):
    """Produces n keyed messages with headers; returns delivery reports in order."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset()))

    for i in range(n):
        kwargs = {"key": b"k%d" % (i % 10), "headers": [("seq", b"%d" % i), ("src", b"compat")]}
        if base_ts is not None:
            kwargs["timestamp"] = base_ts + i
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, value=b"value-%06d" % i, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                p.poll(0.1)  # local queue full: let deliveries drain
        p.poll(0)
    eq(p.flush(T), 0, "messages still queued after flush")
    errors = [r for r in reports if r[0] is not None]
    check(not errors, f"delivery errors: {errors[:3]}")
    eq(len(reports), n, "delivery reports")
    return reports


def check_messages(msgs, n, first=0):
    for j, m in enumerate(msgs):
        i = first + j
        eq(m.offset(), i, "offset")
        eq(m.value(), b"value-%06d" % i, f"value at offset {i}")
        eq(m.key(), b"k%d" % (i % 10), f"key at offset {i}")
        eq(m.headers(), [("seq", b"%d" % i), ("src", b"compat")], f"headers at offset {i}")
    eq(len(msgs), n - first, "message count")


# --- admin -------------------------------------------------------------------------


@scenario
def admin_create_topics(bs):
    create(bs, "ck-admin", partitions=3, config={"retention.ms": "3600000"})
    md = admin(bs).list_topics(timeout=T)
    check("ck-admin" in md.topics, "topic missing from metadata")
    eq(sorted(md.topics["ck-admin"].partitions), [0, 1, 2], "partition ids")
    # A second create of the same name must fail with TOPIC_ALREADY_EXISTS.
    fs = admin(bs).create_topics([NewTopic("ck-admin", 1, 1)], request_timeout=T)
    try:
        fs["ck-admin"].result(timeout=T)
        raise AssertionError("duplicate create succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.TOPIC_ALREADY_EXISTS, "duplicate create error")


@scenario
def admin_create_validate_only(bs):
    fs = admin(bs).create_topics(
        [NewTopic("ck-validate", num_partitions=4, replication_factor=1)],
        validate_only=True,
        request_timeout=T,
    )
    fs["ck-validate"].result(timeout=T)
    check("ck-validate" not in topic_names(bs), "validate_only create made the topic")
    # Validation still rejects bad input.
    fs = admin(bs).create_topics(
        [NewTopic("ck-validate", 1, 1, config={"retention.ms": "not-a-number"})],
        validate_only=True,
        request_timeout=T,
    )
    try:
        fs["ck-validate"].result(timeout=T)
        raise AssertionError("invalid config accepted")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.INVALID_CONFIG, "invalid config error")


@scenario
def admin_list_topics_metadata(bs):
    md = admin(bs).list_topics(timeout=T)
    eq(len(md.brokers), 1, "brokers")
    (broker,) = md.brokers.values()
    eq((broker.host, broker.port), tuple([bs.split(":")[0], int(bs.split(":")[1])]), "advertised address")
    check(md.cluster_id, "cluster id empty")
    eq(md.controller_id, broker.id, "controller id")
    for pid, pm in md.topics["ck-admin"].partitions.items():
        eq(pm.leader, broker.id, f"leader of {pid}")
        eq(list(pm.replicas), [broker.id], f"replicas of {pid}")
        eq(list(pm.isrs), [broker.id], f"isr of {pid}")
        check(pm.error is None, f"partition error {pm.error}")


@scenario
def admin_describe_topics_and_cluster(bs):
    a = admin(bs)
    desc = a.describe_topics(TopicCollection(["ck-admin"]), request_timeout=T)["ck-admin"].result(timeout=T)
    eq(desc.name, "ck-admin", "name")
    check(str(desc.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"), f"zero topic id {desc.topic_id}")
    eq(len(desc.partitions), 3, "partitions")
    check(not desc.is_internal, "is_internal")
    cluster = a.describe_cluster(request_timeout=T).result(timeout=T)
    eq(len(cluster.nodes), 1, "nodes")
    eq(cluster.cluster_id, a.list_topics(timeout=T).cluster_id, "cluster id agrees with Metadata")


def topic_configs(bs, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin(bs).describe_configs([res], request_timeout=T)[res].result(timeout=T)


@scenario
def admin_describe_configs(bs):
    cfg = topic_configs(bs, "ck-admin")
    eq(cfg["retention.ms"].value, "3600000", "retention.ms")
    eq(cfg["retention.ms"].source, ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "retention.ms source")
    eq(cfg["cleanup.policy"].value, "delete", "cleanup.policy")
    eq(cfg["cleanup.policy"].source, ConfigSource.DEFAULT_CONFIG.value, "cleanup.policy source")
    check(cfg["cleanup.policy"].is_default, "cleanup.policy is_default")
    for name in ("segment.bytes", "max.message.bytes", "min.insync.replicas", "message.timestamp.type"):
        check(name in cfg, f"{name} not described")
    # An unknown topic fails with UNKNOWN_TOPIC_OR_PART.
    try:
        topic_configs(bs, "ck-no-such-topic")
        raise AssertionError("describe of missing topic succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.UNKNOWN_TOPIC_OR_PART, "missing topic error")


@scenario
def admin_alter_configs(bs):
    a = admin(bs)
    # Legacy AlterConfigs replaces the whole set of overrides.
    res = ConfigResource(ConfigResource.Type.TOPIC, "ck-admin", set_config={"retention.ms": "7200000"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tested on purpose
        a.alter_configs([res], request_timeout=T)[res].result(timeout=T)
    eq(topic_configs(bs, "ck-admin")["retention.ms"].value, "7200000", "retention.ms after alter")

    # IncrementalAlterConfigs: SET one key, DELETE another back to its default.
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "ck-admin",
        incremental_configs=[
            ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    a.incremental_alter_configs([res], request_timeout=T)[res].result(timeout=T)
    cfg = topic_configs(bs, "ck-admin")
    eq(cfg["segment.bytes"].value, "1048576", "segment.bytes")
    eq(cfg["segment.bytes"].source, ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "segment.bytes source")
    eq(cfg["retention.ms"].value, "604800000", "retention.ms back to default")
    eq(cfg["retention.ms"].source, ConfigSource.DEFAULT_CONFIG.value, "retention.ms source")

    # An invalid value is refused and changes nothing.
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "ck-admin",
        incremental_configs=[ConfigEntry("cleanup.policy", "shred", incremental_operation=AlterConfigOpType.SET)],
    )
    try:
        a.incremental_alter_configs([bad], request_timeout=T)[bad].result(timeout=T)
        raise AssertionError("cleanup.policy=shred accepted")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.INVALID_CONFIG, "invalid value error")
    eq(topic_configs(bs, "ck-admin")["cleanup.policy"].value, "delete", "cleanup.policy unchanged")


@scenario
def admin_create_partitions(bs):
    a = admin(bs)
    a.create_partitions([NewPartitions("ck-admin", 5)], request_timeout=T)["ck-admin"].result(timeout=T)
    wait_until(lambda: len(a.list_topics(timeout=T).topics["ck-admin"].partitions) == 5, T, "5 partitions")
    # Shrinking is refused.
    try:
        a.create_partitions([NewPartitions("ck-admin", 2)], request_timeout=T)["ck-admin"].result(timeout=T)
        raise AssertionError("shrinking to 2 partitions succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.INVALID_PARTITIONS, "shrink error")
    # The new partitions take writes.
    p = producer(bs, acks="all")
    produce_all(p, "ck-admin", 10, partition=4)
    eq(consumer_watermarks(bs, "ck-admin", 4), (0, 10), "watermarks of new partition")


@scenario
def admin_delete_topics(bs):
    a = admin(bs)
    a.delete_topics(["ck-admin"], operation_timeout=T, request_timeout=T)["ck-admin"].result(timeout=T)
    wait_until(lambda: "ck-admin" not in topic_names(bs), T, "topic gone from metadata")
    try:
        a.delete_topics(["ck-admin"], request_timeout=T)["ck-admin"].result(timeout=T)
        raise AssertionError("second delete succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.UNKNOWN_TOPIC_OR_PART, "second delete error")
    # Recreating the name gives an empty topic (no data resurrected).
    create(bs, "ck-admin", partitions=1)
    eq(consumer_watermarks(bs, "ck-admin", 0), (0, 0), "watermarks of recreated topic")


# --- produce / consume -------------------------------------------------------------


def consumer_watermarks(bs, topic, partition):
    c = consumer(bs)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=T, cached=False)
    finally:
        c.close()


def produce_consume_roundtrip(bs, acks, compression):
    topic = f"ck-produce-acks{acks}-{compression}"
    create(bs, topic)
    reports = produce_all(producer(bs, acks=acks, **{"compression.type": compression}), topic, N)
    if acks != "0":  # acks=0 gets no offsets back
        eq([r[2] for r in reports], list(range(N)), "delivered offsets")
    msgs = consume(bs, [TopicPartition(topic, 0, OFFSET_BEGINNING)], N)
    check_messages(msgs, N)
    if compression == "lz4" and FIND_COORDINATOR not in advertised_apis(bs):
        # librdkafka derives its LZ4 feature from the broker advertising
        # FindCoordinator (rdkafka_feature.c) and otherwise sends lz4 batches
        # uncompressed; FindCoordinator comes with consumer groups.
        check_codec(topic, "none")
        return "lz4 sent uncompressed: librdkafka enables LZ4 only once FindCoordinator is advertised"
    check_codec(topic, compression)


def _roundtrip_scenario(acks, compression):
    def fn(bs):
        return produce_consume_roundtrip(bs, acks, compression)

    fn.__name__ = f"produce_consume_acks_{acks}_{compression}"
    return scenario(fn)


for _acks in ("0", "1", "all"):
    for _compression in ("none", "gzip", "snappy", "lz4", "zstd"):
        _roundtrip_scenario(_acks, _compression)


@scenario
def consume_from_offset_and_watermarks(bs):
    create(bs, "ck-offsets")
    # zstd: the start offset falls inside a compressed batch the client must skip into.
    produce_all(producer(bs, acks="all", **{"compression.type": "zstd"}), "ck-offsets", N)
    eq(consumer_watermarks(bs, "ck-offsets", 0), (0, N), "watermarks")
    msgs = consume(bs, [TopicPartition("ck-offsets", 0, 1234)], N - 1234)
    check_messages(msgs, N, first=1234)
    # OFFSET_END yields nothing until new data arrives.
    consume(bs, [TopicPartition("ck-offsets", 0, OFFSET_END)], 0)


@scenario
def consume_with_tiny_fetch_limits(bs):
    # Limits far below one batch: the broker must still return the first batch whole
    # (KIP-74) or the consumer never makes progress.
    msgs = consume(
        bs,
        [TopicPartition("ck-offsets", 0, 100)],
        N - 100,
        **{"fetch.max.bytes": 1000, "message.max.bytes": 1000, "max.partition.fetch.bytes": 512},
    )
    check_messages(msgs, N, first=100)


@scenario
def log_append_time_topic(bs):
    create(bs, "ck-append-time", config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(bs, acks="all"), "ck-append-time", 100, base_ts=1_000_000)
    after = int(time.time() * 1000)
    msgs = consume(bs, [TopicPartition("ck-append-time", 0, OFFSET_BEGINNING)], 100)
    check_messages(msgs, 100)
    for m in msgs:
        kind, ts = m.timestamp()
        eq(kind, TIMESTAMP_LOG_APPEND_TIME, "timestamp type")
        check(before - 1000 <= ts <= after + 1000, f"append time {ts} outside [{before}, {after}]")
    c = consumer(bs)
    try:
        found = c.offsets_for_times([TopicPartition("ck-append-time", 0, before - 1000)], timeout=T)
        eq(found[0].offset, 0, "offsets_for_times by append time")
    finally:
        c.close()


@scenario
def consume_by_timestamp(bs):
    create(bs, "ck-times")
    base = int(time.time() * 1000) - 60_000
    produce_all(producer(bs, acks="all"), "ck-times", N, base_ts=base)
    c = consumer(bs)
    try:
        # One partition per call: librdkafka folds repeats of a partition into one.
        def lookup(ts):
            return c.offsets_for_times([TopicPartition("ck-times", 0, ts)], timeout=T)[0].offset

        eq(lookup(base + 1500), 1500, "offset for base+1500")
        eq(lookup(base - 5), 0, "offset for a time before the first message")
        eq(lookup(base + N + 10), OFFSET_END, "offset for a time after the last message")
    finally:
        c.close()
    msgs = consume(bs, [TopicPartition("ck-times", 0, 1500)], N - 1500)
    eq(msgs[0].timestamp()[1], base + 1500, "timestamp of first message read")
    check_messages(msgs, N, first=1500)


@scenario
def admin_list_offsets(bs):
    create(bs, "ck-list-offsets")
    base = int(time.time() * 1000) - 60_000
    # Out-of-order timestamps: the max timestamp is not the last record.
    p = producer(bs, acks="all")
    produce_all(p, "ck-list-offsets", 100, base_ts=base)
    p.produce("ck-list-offsets", value=b"late", timestamp=base + 50_000)
    p.produce("ck-list-offsets", value=b"early", timestamp=base + 10)
    eq(p.flush(T), 0, "queued after flush")
    tp = TopicPartition("ck-list-offsets", 0)
    a = admin(bs)

    def offset_of(spec):
        return a.list_offsets({tp: spec}, request_timeout=T)[tp].result(timeout=T)

    eq(offset_of(OffsetSpec.earliest()).offset, 0, "earliest")
    eq(offset_of(OffsetSpec.latest()).offset, 102, "latest")
    mx = offset_of(OffsetSpec.max_timestamp())
    eq((mx.offset, mx.timestamp), (100, base + 50_000), "max_timestamp (offset, timestamp)")
    eq(offset_of(OffsetSpec.for_timestamp(base + 42)).offset, 42, "for_timestamp")


@scenario
def default_partitioner_key_stickiness(bs):
    create(bs, "ck-keys", partitions=3)
    p = producer(bs, acks="all")
    placed = {}

    def on_delivery(err, msg):
        check(err is None, f"delivery error {err}")
        placed.setdefault(msg.key(), set()).add(msg.partition())

    keys = [b"user-%d" % k for k in range(20)]
    for i in range(600):
        p.produce("ck-keys", key=keys[i % 20], value=b"%d" % i, on_delivery=on_delivery)
    eq(p.flush(T), 0, "queued after flush")
    for key, parts in placed.items():
        eq(len(parts), 1, f"partitions used by {key!r}")
        # librdkafka's default partitioner (consistent_random) is CRC32(key) % n.
        eq(parts, {zlib.crc32(key) % 3}, f"partition of {key!r}")
    check(len(set().union(*placed.values())) > 1, "all keys landed on one partition")
    msgs = consume(bs, [TopicPartition("ck-keys", i, OFFSET_BEGINNING) for i in range(3)], 600)
    for m in msgs:
        eq({m.partition()}, placed[m.key()], f"partition read back for {m.key()!r}")
    # Per key, values come back in the order produced.
    by_key = {}
    for m in msgs:
        by_key.setdefault(m.key(), []).append(int(m.value()))
    for key, values in by_key.items():
        eq(values, sorted(values), f"order for {key!r}")
        eq(len(values), 30, f"count for {key!r}")


@scenario
def admin_delete_records(bs):
    create(bs, "ck-delete-records", partitions=2)
    p = producer(bs, acks="all")
    produce_all(p, "ck-delete-records", 1000, partition=0)
    produce_all(p, "ck-delete-records", 10, partition=1)
    a = admin(bs)
    tp0 = TopicPartition("ck-delete-records", 0, 600)
    res = a.delete_records([tp0], request_timeout=T, operation_timeout=T)
    eq(res[tp0].result(timeout=T).low_watermark, 600, "low watermark returned")
    eq(consumer_watermarks(bs, "ck-delete-records", 0), (600, 1000), "watermarks after delete")
    earliest = a.list_offsets({tp0: OffsetSpec.earliest()}, request_timeout=T)[tp0].result(timeout=T)
    eq(earliest.offset, 600, "earliest after delete")
    msgs = consume(bs, [TopicPartition("ck-delete-records", 0, OFFSET_BEGINNING)], 400)
    check_messages(msgs, 1000, first=600)
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE; the other partition is untouched.
    tp1 = TopicPartition("ck-delete-records", 1, 11)
    try:
        a.delete_records([tp1], request_timeout=T)[tp1].result(timeout=T)
        raise AssertionError("delete beyond high watermark succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.OFFSET_OUT_OF_RANGE, "beyond-HW error")
    eq(consumer_watermarks(bs, "ck-delete-records", 1), (0, 10), "other partition")


@scenario
def auto_create_on_produce(bs):
    # The broker auto-creates topics (num.partitions=1) when a producer asks for one.
    p = producer(bs, acks="all", **{"allow.auto.create.topics": True})
    produce_all(p, "ck-auto-created", 10)
    eq(len(admin(bs).list_topics(timeout=T).topics["ck-auto-created"].partitions), 1, "partitions")
    check_messages(consume(bs, [TopicPartition("ck-auto-created", 0, OFFSET_BEGINNING)], 10), 10)


@scenario
def large_messages(bs):
    create(bs, "ck-large")
    p = producer(bs, acks="all", **{"compression.type": "zstd", "message.max.bytes": 2_000_000})
    values = [bytes([i]) * 700_000 for i in range(5)]
    for v in values:
        p.produce("ck-large", value=v)
    eq(p.flush(T), 0, "queued after flush")
    msgs = consume(bs, [TopicPartition("ck-large", 0, OFFSET_BEGINNING)], 5)
    eq([m.value() for m in msgs], values, "large values")


if __name__ == "__main__":
    main()
