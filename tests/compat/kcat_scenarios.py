"""kcat (Debian's build, linked against librdkafka 2.0.2) against a fresh Sluice broker.

Run by `cargo xtask compat` as ``python kcat_scenarios.py HOST:PORT``. Each scenario
shells out to kcat and asserts on its output. Topics are auto-created (one partition)
by kcat's produce, except the multi-partition one, which the confluent-kafka admin
client creates because kcat has no admin mode.
"""

import json
import subprocess
import time

from confluent_kafka.admin import AdminClient, NewTopic

from harness import advertised_apis, check, check_codec, eq, main, scenario

T = 20  # seconds: bound on every kcat invocation
FIND_COORDINATOR = 10  # api key


def kcat(bs, *args, stdin=None):
    """Runs kcat and returns stdout; a non-zero exit fails the scenario with stderr."""
    cmd = ["kcat", "-b", bs, "-q", *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=T)
    check(r.returncode == 0, f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return r.stdout.decode()


def produce(bs, topic, lines, *args):
    kcat(bs, "-P", "-t", topic, *args, stdin="".join(f"{l}\n" for l in lines).encode())


def consume(bs, topic, *args, fmt="%o %k %s\\n"):
    out = kcat(bs, "-C", "-t", topic, "-e", "-f", fmt, *args)
    return out.splitlines()


@scenario
def version_and_metadata(bs):
    r = subprocess.run(["kcat", "-V"], capture_output=True, timeout=T)
    check(b"librdkafka" in r.stdout, "kcat -V names no librdkafka version")
    md = json.loads(kcat(bs, "-L", "-J"))
    eq([b["name"] for b in md["brokers"]], [bs], "brokers")
    eq(md["controllerid"], 1, "controller id")


@scenario
def produce_consume_lines(bs):
    lines = [f"line-{i:05d}" for i in range(1000)]
    produce(bs, "kc-lines", lines)
    eq(consume(bs, "kc-lines", "-o", "beginning"), [f"{i}  {l}" for i, l in enumerate(lines)], "consumed")


@scenario
def produce_consume_keys(bs):
    produce(bs, "kc-keys", [f"key-{i % 7}:value-{i}" for i in range(700)], "-K", ":")
    got = consume(bs, "kc-keys", "-o", "beginning", fmt="%o|%k|%s|%K\\n")
    eq(got, [f"{i}|key-{i % 7}|value-{i}|{len(f'key-{i % 7}')}" for i in range(700)], "keyed messages")


def _compression_scenario(codec):
    def fn(bs):
        topic = f"kc-z-{codec}"
        lines = [f"{codec}-payload-{i:05d}-" + "x" * (i % 50) for i in range(2000)]
        produce(bs, topic, lines[:1000], "-z", codec)
        produce(bs, topic, lines[1000:], "-z", codec, "-X", "linger.ms=50")
        got = consume(bs, topic, "-o", "beginning", fmt="%o %s\\n")
        eq(got, [f"{i} {l}" for i, l in enumerate(lines)], "consumed")
        if codec == "lz4" and FIND_COORDINATOR not in advertised_apis(bs):
            # librdkafka derives its LZ4 feature from FindCoordinator being advertised
            # (rdkafka_feature.c); FindCoordinator comes with consumer groups.
            check_codec(topic, "none")
            return "lz4 sent uncompressed: librdkafka enables LZ4 only once FindCoordinator is advertised"
        # librdkafka before 2.10 sends gzip/snappy/lz4 only to a broker whose advertised
        # Produce range includes v0 (librdkafka#4956); Kafka 4.0 advertises Produce
        # v0-2 while refusing them for exactly this reason (KAFKA-18659).
        why = "librdkafka 2.0.2 compresses gzip/snappy/lz4 only if Produce v0 is advertised (KAFKA-18659)"
        check_codec(topic, codec, why if codec in ("gzip", "snappy", "lz4") else "")

    fn.__name__ = f"produce_consume_compression_{codec}"
    return scenario(fn)


for _codec in ("none", "gzip", "snappy", "lz4", "zstd"):
    _compression_scenario(_codec)


@scenario
def produce_acks_levels(bs):
    for acks in ("0", "1", "all"):
        produce(bs, "kc-acks", [f"acks-{acks}-{i}" for i in range(300)], "-X", f"acks={acks}")
    got = consume(bs, "kc-acks", "-o", "beginning", fmt="%s\\n")
    eq(got, [f"acks-{a}-{i}" for a in ("0", "1", "all") for i in range(300)], "consumed")


@scenario
def consume_from_offsets(bs):
    produce(bs, "kc-offsets", [f"m{i}" for i in range(500)])
    eq(consume(bs, "kc-offsets", "-o", "420", fmt="%o:%s\\n"), [f"{i}:m{i}" for i in range(420, 500)], "-o 420")
    eq(consume(bs, "kc-offsets", "-o", "-5", fmt="%o\\n"), [str(i) for i in range(495, 500)], "-o -5")
    eq(consume(bs, "kc-offsets", "-o", "100", "-c", "3", fmt="%o\\n"), ["100", "101", "102"], "-c 3")
    eq(consume(bs, "kc-offsets", "-o", "end"), [], "-o end")


@scenario
def consume_and_query_by_timestamp(bs):
    produce(bs, "kc-times", [f"early-{i}" for i in range(100)])
    time.sleep(0.05)  # CreateTime is the producer's clock: keep the two batches apart
    split = int(time.time() * 1000)
    time.sleep(0.05)
    produce(bs, "kc-times", [f"late-{i}" for i in range(50)])
    stamps = [int(l) for l in consume(bs, "kc-times", "-o", "beginning", fmt="%T\\n")]
    eq(len(stamps), 150, "messages")
    check(max(stamps[:100]) < split < min(stamps[100:]), f"timestamps {stamps[99]}..{stamps[100]} vs {split}")
    got = consume(bs, "kc-times", "-o", f"s@{split}", fmt="%o %s\\n")
    eq(got, [f"{100 + i} late-{i}" for i in range(50)], "-o s@split")
    for ts, offset in ((split, 100), (stamps[0] - 1000, 0), (stamps[-1] + 60_000, -1)):
        eq(kcat(bs, "-Q", "-t", f"kc-times:0:{ts}"), f"kc-times [0] offset {offset}\n", f"-Q at {ts}")


@scenario
def headers_roundtrip(bs):
    produce(bs, "kc-headers", ["with-headers"] * 3, "-H", "trace=abc123", "-H", "tenant=blue")
    got = consume(bs, "kc-headers", "-o", "beginning", fmt="%h|%s\\n")
    eq(got, ["trace=abc123,tenant=blue|with-headers"] * 3, "headers")
    msg = json.loads(kcat(bs, "-C", "-t", "kc-headers", "-e", "-c", "1", "-o", "beginning", "-J"))
    eq(msg["headers"], ["trace", "abc123", "tenant", "blue"], "JSON headers")
    eq((msg["offset"], msg["tstype"]), (0, "create"), "JSON offset/tstype")


@scenario
def explicit_partitions_and_listing(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("kc-parts", 3, 1)], request_timeout=T)["kc-parts"].result(timeout=T)
    for p in range(3):
        produce(bs, "kc-parts", [f"p{p}-{i}" for i in range(10 * (p + 1))], "-p", str(p))
    md = json.loads(kcat(bs, "-L", "-J", "-t", "kc-parts"))
    (topic,) = md["topics"]
    eq(sorted(p["partition"] for p in topic["partitions"]), [0, 1, 2], "partitions")
    for p in topic["partitions"]:
        eq((p["leader"], p["replicas"], p["isrs"]), (1, [{"id": 1}], [{"id": 1}]), "leader/replicas/isrs")
    for p in range(3):
        got = consume(bs, "kc-parts", "-p", str(p), "-o", "beginning", fmt="%p %o %s\\n")
        eq(got, [f"{p} {i} p{p}-{i}" for i in range(10 * (p + 1))], f"partition {p}")
    # Without -p the consumer reads all partitions to their ends.
    eq(len(consume(bs, "kc-parts", "-o", "beginning")), 60, "all partitions")


@scenario
def null_and_empty_values(bs):
    produce(bs, "kc-null", ["k1:", "k2:v2", ":v3"], "-K", ":", "-Z")
    got = consume(bs, "kc-null", "-o", "beginning", "-Z", fmt="%k|%s|%S\\n")
    eq(got, ["k1|NULL|-1", "k2|v2|2", "NULL|v3|2"], "null key/value")


if __name__ == "__main__":
    main()
