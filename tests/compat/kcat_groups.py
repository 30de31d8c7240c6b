"""kcat's balanced consumer (``-G group topic``, Debian's build on librdkafka 2.0.2)
against Sluice.

Run by `cargo xtask compat` as ``python kcat_groups.py HOST:PORT`` after
kcat_scenarios.py, on the same broker. kcat has no admin mode, so topics are created
and the group inspected with the confluent-kafka admin client. kcat -G commits with
librdkafka's auto commit and once more when it closes (at -e, or on SIGTERM).
"""

import json
import signal
import subprocess
import tempfile

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition

from ck_admin import admin, create
from harness import check, eq, main, scenario, wait_until

T = 20  # seconds: bound on every kcat invocation and client call
OFFSETS_TOPIC = "__consumer_offsets"



def kcat(bs, *args, stdin=None):
    cmd = ["kcat", "-b", bs, "-q", *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=T)
    check(r.returncode == 0, f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return r.stdout.decode()


def produce(bs, topic, partitions, per_partition, tag):
    for p in range(partitions):
        lines = "".join(f"{tag}-{p}-{i}\n" for i in range(per_partition))
        kcat(bs, "-P", "-t", topic, "-p", str(p), stdin=lines.encode())


GROUP_ARGS = ("-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-f", "%p %o %s\\n")


def group_consume(bs, group, topic):
    """One `kcat -G` run to the end of every partition (-e); returns [(partition, offset)]."""
    out = kcat(bs, "-G", group, "-e", *GROUP_ARGS, topic)
    return [tuple(map(int, line.split()[:2])) for line in out.splitlines()]


def committed(bs, group, topic, partitions):
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])]
    res = admin(bs).list_consumer_group_offsets(req, request_timeout=T)[group].result(timeout=T)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def describe(bs, group):
    return admin(bs).describe_consumer_groups([group], request_timeout=T)[group].result(timeout=T)


def check_once(got, expected, what):
    check(len(got) == len(set(got)), f"{what}: {len(got) - len(set(got))} messages delivered twice")
    check(set(got) == expected, f"{what}: missing {sorted(expected - set(got))[:5]}, extra {sorted(set(got) - expected)[:5]}")


@scenario
def group_consume_then_resume(bs):
    topic, group, parts = "kcg-resume", "kcg-resume-g", 4
    create(bs, topic, parts)
    produce(bs, topic, parts, 25, "first")
    first = group_consume(bs, group, topic)
    check_once(first, {(p, o) for p in range(parts) for o in range(25)}, "first run")
    eq(committed(bs, group, topic, parts), {p: 25 for p in range(parts)}, "committed after the first run")
    eq(group_consume(bs, group, topic), [], "second run with nothing new (no re-delivery)")
    produce(bs, topic, parts, 10, "second")
    again = group_consume(bs, group, topic)
    check_once(again, {(p, o) for p in range(parts) for o in range(25, 35)}, "run after 40 more")
    eq(committed(bs, group, topic, parts), {p: 35 for p in range(parts)}, "committed after the third run")
    wait_until(lambda: describe(bs, group).state == ConsumerGroupState.EMPTY, 3, "group empty after kcat exited")


@scenario
def two_kcat_members_split_partitions(bs):
    topic, group, parts = "kcg-split", "kcg-split-g", 4
    create(bs, topic, parts)
    procs, outs = {}, {}
    try:
        for name in ("kcat-a", "kcat-b"):
            outs[name] = tempfile.TemporaryFile()
            cmd = ["kcat", "-b", bs, "-q", "-u", "-G", group, "-X", f"client.id={name}", *GROUP_ARGS, topic]
            procs[name] = subprocess.Popen(cmd, stdout=outs[name], stderr=subprocess.PIPE)

        def split():
            for name, p in procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited early with {p.returncode}: {p.stderr.read().decode()[-300:]}")
            d = describe(bs, group)
            shares = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}
            if d.state != ConsumerGroupState.STABLE or sorted(shares) != sorted(procs) or not all(shares.values()):
                return None
            if sum(map(len, shares.values())) != parts or set().union(*shares.values()) != set(range(parts)):
                return None
            return shares

        shares = wait_until(split, T, "two kcat members sharing the partitions")
        # Produced once the group is stable: each partition has one reader throughout.
        produce(bs, topic, parts, 20, "split")

        def lines():
            got = {}
            for name, f in outs.items():
                f.seek(0)
                got[name] = [tuple(map(int, l.split()[:2])) for l in f.read().decode().splitlines()]
            return got

        def all_read():
            got = lines()
            return got if sum(map(len, got.values())) >= 80 else None

        got = wait_until(all_read, T, "80 messages between the two")
        for name, msgs in got.items():
            check({p for p, _ in msgs} <= shares[name], f"{name} read outside its share {sorted(shares[name])}")
            check(msgs, f"{name} read nothing")
        check_once([m for msgs in got.values() for m in msgs], {(p, o) for p in range(parts) for o in range(20)}, "both members")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # kcat closes its consumer: commit, LeaveGroup
        for name, p in procs.items():
            try:
                p.wait(timeout=T)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in outs.values():
            f.close()
    wait_until(lambda: describe(bs, group).state == ConsumerGroupState.EMPTY, 3, "group empty after both left")
    eq(committed(bs, group, topic, parts), {p: 20 for p in range(parts)}, "committed on close")
    return f"shares {sorted(sorted(s) for s in shares.values())}"


@scenario
def metadata_lists_consumer_offsets(bs):
    md = json.loads(kcat(bs, "-L", "-J"))
    topics = {t["topic"]: t for t in md["topics"]}
    check(OFFSETS_TOPIC in topics, f"{OFFSETS_TOPIC} not in kcat -L after group use: {sorted(topics)}")
    n = len(topics[OFFSETS_TOPIC]["partitions"])
    return f"kcat -L lists {OFFSETS_TOPIC} with {n} partitions"


if __name__ == "__main__":
    main()
