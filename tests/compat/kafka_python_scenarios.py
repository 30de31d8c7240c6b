"""kafka-python (pure Python client) against a fresh Sluice broker.

Run by `cargo xtask compat` as ``python kafka_python_scenarios.py HOST:PORT``.
Consumers here use assign() with group_id=None; groups are in kafka_python_groups.py.
kafka-python 3 enables the idempotent producer by default, which needs
InitProducerId (not served yet), so producers pass enable_idempotence=False.
"""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, OffsetSpec
from kafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.partitioner.default import murmur2

from harness import check, check_codec, eq, main, scenario, wait_until

T_MS = 10_000  # every client call below is bounded by this
N = 2000  # messages per produce scenario

_ADMINS = {}


def admin(bs):
    if bs not in _ADMINS:
        _ADMINS[bs] = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=T_MS)
    return _ADMINS[bs]


def producer(bs, **conf):
    return KafkaProducer(
        bootstrap_servers=bs,
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=T_MS,
        delivery_timeout_ms=T_MS + 5_000,
        max_block_ms=T_MS,
        **conf,
    )


def consumer(bs, **conf):
    return KafkaConsumer(
        bootstrap_servers=bs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
        request_timeout_ms=T_MS + 1_000,  # must exceed fetch_max_wait_ms and session timeouts
        **conf,
    )


def create(bs, name, partitions=1, configs=None):
    admin(bs).create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=T_MS,
    )


def read_to_end(c, tps, timeout_s=10):
    """Polls until the position of every assigned partition reaches its end offset."""
    ends = c.end_offsets(tps, timeout_ms=T_MS)
    out = []
    deadline = time.monotonic() + timeout_s
    while any(c.position(tp, timeout_ms=T_MS) < ends[tp] for tp in tps):
        check(time.monotonic() < deadline, f"not at end offsets {ends} after {timeout_s}s; got {len(out)}")
        for records in c.poll(timeout_ms=200, max_records=5000).values():
            out.extend(records)
    return out


def produce_all(p, topic, n, timestamp_base=None, partition=None):
    futures = []
    for i in range(n):
        futures.append(
            p.send(
                topic,
                key=b"k%d" % (i % 10),
                value=b"value-%06d" % i,
                headers=[("seq", b"%d" % i), ("src", b"compat")],
                partition=partition,
                timestamp_ms=None if timestamp_base is None else timestamp_base + i,
            )
        )
    p.flush(timeout=T_MS / 1000)
    return [f.get(timeout=T_MS / 1000) for f in futures]


def check_records(records, n, first=0):
    eq(len(records), n - first, "record count")
    for j, r in enumerate(records):
        i = first + j
        eq(r.offset, i, "offset")
        eq(r.value, b"value-%06d" % i, f"value at offset {i}")
        eq(r.key, b"k%d" % (i % 10), f"key at offset {i}")
        eq(list(r.headers), [("seq", b"%d" % i), ("src", b"compat")], f"headers at offset {i}")


# --- admin -------------------------------------------------------------------------


@scenario
def admin_create_topics(bs):
    create(bs, "kp-admin", partitions=3, configs={"retention.ms": "3600000"})
    (desc,) = admin(bs).describe_topics(["kp-admin"])
    eq(desc["error_code"], 0, "error code")
    eq(sorted(p["partition_index"] for p in desc["partitions"]), [0, 1, 2], "partitions")
    check(desc["topic_id"] and str(desc["topic_id"]) != "00000000-0000-0000-0000-000000000000", "topic id")
    for p in desc["partitions"]:
        eq((p["leader_id"], p["replica_nodes"], p["isr_nodes"]), (1, [1], [1]), "leader/replicas/isr")
    try:
        create(bs, "kp-admin")
        raise AssertionError("duplicate create succeeded")
    except TopicAlreadyExistsError:
        pass


@scenario
def admin_create_validate_only(bs):
    admin(bs).create_topics(
        {"kp-validate": {"num_partitions": 2, "replication_factor": 1}}, timeout_ms=T_MS, validate_only=True
    )
    check("kp-validate" not in admin(bs).list_topics(), "validate_only create made the topic")


@scenario
def admin_describe_cluster(bs):
    cluster = admin(bs).describe_cluster()
    eq(len(cluster["brokers"]), 1, "brokers")
    b = cluster["brokers"][0]
    eq(f"{b['host']}:{b['port']}", bs, "advertised address")
    eq(cluster["controller_id"], b["broker_id"], "controller")
    check(cluster["cluster_id"], "cluster id")


def configs_of(bs, topic, keys=None, config_filter="all", synonyms=False):
    res = admin(bs).describe_configs(
        [ConfigResource("TOPIC", topic, keys)], include_synonyms=synonyms, config_filter=config_filter
    )
    return res["topic"][topic]


@scenario
def admin_describe_configs(bs):
    modified = configs_of(bs, "kp-admin", config_filter="modified")
    eq(sorted(modified), ["retention.ms"], "modified configs")
    eq(modified["retention.ms"]["value"], "3600000", "retention.ms")
    eq(modified["retention.ms"]["config_source"], "DYNAMIC_TOPIC_CONFIG", "retention.ms source")
    eq(modified["retention.ms"]["config_type"], "LONG", "retention.ms type")
    everything = configs_of(bs, "kp-admin")
    for name, value in (("cleanup.policy", "delete"), ("compression.type", "producer"), ("min.insync.replicas", "1")):
        eq(everything[name]["value"], value, name)
        eq(everything[name]["config_source"], "DEFAULT_CONFIG", f"{name} source")
    with_synonyms = configs_of(bs, "kp-admin", ["retention.ms"], synonyms=True)["retention.ms"]
    eq(
        with_synonyms["synonyms"][0],
        {"name": "retention.ms", "value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"},
        "first synonym",
    )


@scenario
def admin_alter_configs(bs):
    a = admin(bs)
    # IncrementalAlterConfigs (chosen by the client since the broker advertises it).
    res = a.alter_configs([ConfigResource("TOPIC", "kp-admin", {"segment.bytes": "1048576"})])
    eq(res, {"topic": {"kp-admin": "OK"}}, "incremental alter result")
    a.reset_configs([ConfigResource("TOPIC", "kp-admin", ["retention.ms"])])
    cfg = configs_of(bs, "kp-admin", config_filter="modified")
    eq({k: v["value"] for k, v in cfg.items()}, {"segment.bytes": "1048576"}, "overrides after incremental")
    # Legacy AlterConfigs: the client re-sends the other overrides, as the API requires.
    res = a.alter_configs([ConfigResource("TOPIC", "kp-admin", {"retention.ms": "60000"})], incremental=False)
    eq(res, {"topic": {"kp-admin": "OK"}}, "legacy alter result")
    cfg = configs_of(bs, "kp-admin", config_filter="modified")
    eq(
        {k: v["value"] for k, v in cfg.items()},
        {"segment.bytes": "1048576", "retention.ms": "60000"},
        "overrides after legacy alter",
    )
    bad = a.alter_configs([ConfigResource("TOPIC", "kp-admin", {"retention.ms": "soon"})])
    check(InvalidConfigurationError.__name__ in bad["topic"]["kp-admin"], f"bad value: {bad}")
    eq(configs_of(bs, "kp-admin", ["retention.ms"])["retention.ms"]["value"], "60000", "unchanged")


@scenario
def admin_create_partitions(bs):
    a = admin(bs)
    a.create_partitions({"kp-admin": 5}, timeout_ms=T_MS)
    wait_until(lambda: len(a.describe_topics(["kp-admin"])[0]["partitions"]) == 5, 10, "5 partitions")
    try:
        a.create_partitions({"kp-admin": 4}, timeout_ms=T_MS)
        raise AssertionError("shrinking succeeded")
    except InvalidPartitionsError:
        pass


@scenario
def admin_delete_topics(bs):
    a = admin(bs)
    a.delete_topics(["kp-admin"], timeout_ms=T_MS)
    wait_until(lambda: "kp-admin" not in a.list_topics(), 10, "topic gone")
    try:
        a.delete_topics(["kp-admin"], timeout_ms=T_MS)
        raise AssertionError("second delete succeeded")
    except UnknownTopicOrPartitionError:
        pass


# --- produce / consume -------------------------------------------------------------


def _roundtrip_scenario(acks, compression):
    def fn(bs):
        topic = f"kp-produce-acks{acks}-{compression}"
        create(bs, topic)
        kwargs = {} if compression == "none" else {"compression_type": compression}
        acks_value = acks if acks == "all" else int(acks)
        metas = produce_all(producer(bs, acks=acks_value, **kwargs), topic, N)
        if acks != "0":  # acks=0 gets no offsets back
            eq([m.offset for m in metas], list(range(N)), "acknowledged offsets")
        c = consumer(bs)
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        check_records(read_to_end(c, [tp]), N)
        c.close()
        check_codec(topic, compression)

    fn.__name__ = f"produce_consume_acks_{acks}_{compression}"
    return scenario(fn)


for _acks in ("0", "1", "all"):
    for _compression in ("none", "gzip", "snappy", "lz4", "zstd"):
        _roundtrip_scenario(_acks, _compression)


@scenario
def consumer_seek_offsets_and_times(bs):
    create(bs, "kp-seek")
    base = int(time.time() * 1000) - 60_000
    produce_all(producer(bs, acks="all", compression_type="gzip"), "kp-seek", N, timestamp_base=base)
    c = consumer(bs)
    tp = TopicPartition("kp-seek", 0)
    c.assign([tp])
    eq(c.beginning_offsets([tp], timeout_ms=T_MS), {tp: 0}, "beginning offsets")
    eq(c.end_offsets([tp], timeout_ms=T_MS), {tp: N}, "end offsets")
    c.seek(tp, 1750)
    records = read_to_end(c, [tp])
    check_records(records, N, first=1750)
    eq(records[0].timestamp, base + 1750, "timestamp")
    found = c.offsets_for_times({tp: base + 1234}, timeout_ms=T_MS)[tp]
    eq((found.offset, found.timestamp), (1234, base + 1234), "offsets_for_times")
    eq(c.offsets_for_times({tp: base + N + 5}, timeout_ms=T_MS), {tp: None}, "time past the end")
    c.seek(tp, found.offset)
    check_records(read_to_end(c, [tp]), N, first=1234)
    c.close()


@scenario
def consumer_tiny_fetch_limits(bs):
    # Limits far below one batch: the broker must still return the first batch whole
    # (KIP-74) or the consumer never makes progress.
    c = consumer(bs, fetch_max_bytes=1024, max_partition_fetch_bytes=512)
    tp = TopicPartition("kp-seek", 0)
    c.assign([tp])
    c.seek(tp, 10)
    check_records(read_to_end(c, [tp]), N, first=10)
    c.close()


@scenario
def admin_list_and_delete_records(bs):
    create(bs, "kp-records")
    base = int(time.time() * 1000) - 60_000
    produce_all(producer(bs, acks=1), "kp-records", 500, timestamp_base=base)
    tp = TopicPartition("kp-records", 0)
    a = admin(bs)

    def offset(spec):
        return a.list_partition_offsets({tp: spec}, timeout_ms=T_MS)[tp]

    eq(offset(OffsetSpec.EARLIEST).offset, 0, "earliest")
    eq(offset(OffsetSpec.LATEST).offset, 500, "latest")
    mx = offset(OffsetSpec.MAX_TIMESTAMP)
    eq((mx.offset, mx.timestamp), (499, base + 499), "max timestamp")
    a.delete_records({tp: 321}, timeout_ms=T_MS)
    eq(offset(OffsetSpec.EARLIEST).offset, 321, "earliest after delete_records")
    c = consumer(bs)
    c.assign([tp])
    c.seek_to_beginning(tp)
    check_records(read_to_end(c, [tp]), 500, first=321)
    c.close()


@scenario
def default_partitioner_key_stickiness(bs):
    create(bs, "kp-keys", partitions=4)
    p = producer(bs, acks="all")
    keys = [b"account-%d" % k for k in range(16)]
    metas = [p.send("kp-keys", key=keys[i % 16], value=b"%d" % i) for i in range(320)]
    p.flush(timeout=T_MS / 1000)
    placed = {}
    for i, f in enumerate(metas):
        placed.setdefault(keys[i % 16], set()).add(f.get(timeout=T_MS / 1000).partition)
    for key, parts in placed.items():
        # kafka-python's default partitioner is the Java client's murmur2.
        eq(parts, {(murmur2(key) & 0x7FFFFFFF) % 4}, f"partitions of {key!r}")
    c = consumer(bs)
    tps = [TopicPartition("kp-keys", i) for i in range(4)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    records = read_to_end(c, tps)
    eq(len(records), 320, "records")
    by_key = {}
    for r in records:
        eq({r.partition}, placed[r.key], f"partition read back for {r.key!r}")
        by_key.setdefault(r.key, []).append(int(r.value))
    for key, values in by_key.items():
        eq(values, sorted(values), f"order for {key!r}")
    c.close()


if __name__ == "__main__":
    main()
