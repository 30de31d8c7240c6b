"""Consumer groups with kafka-python (pure Python client) against Sluice.

Run by `cargo xtask compat` as ``python kafka_python_groups.py HOST:PORT``, against a
broker started with ``--group-initial-rebalance-delay-ms 0`` and a 1 s minimum session
timeout. Covers subscribe() with several members, commit() after processing, the
periodic auto commit, resuming from committed offsets, auto_offset_reset without
commits, and KafkaAdminClient's group APIs (list_groups, describe_groups,
list_group_offsets with lag from list_partition_offsets, delete_groups,
delete_group_offsets). Producers pass enable_idempotence=False (no InitProducerId
yet). Every wait is a poll with a deadline.

kafka-python 3.0.12 joins from inside poll(), and loses a join that completes after a
poll's timeout ended: the next poll finds the JoinGroup/SyncGroup task done, drops
its result and starts a new JoinGroup (or, when need_rejoin() has turned false by
then, never applies the assignment, so the member stops heartbeating and its session
expires). A member whose join waits for other members is exposed to this whenever
its poll returns before they rejoin; polling several consumers in turn from one
thread with short timeouts makes that near certain and rebalances then never end. So
each member of a multi-member group polls in its own thread, polls wait long enough
for a join to finish, and consumers learn their topic's metadata before subscribing
(see subscribe()).
"""

import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import GroupSubscribedToTopicError, NoError
from kafka.structs import OffsetAndMetadata

from harness import check, eq, main, scenario, wait_until

T_MS = 10_000  # bound on every client call
T = T_MS / 1000

_ADMINS = {}


def admin(bs):
    if bs not in _ADMINS:
        _ADMINS[bs] = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=T_MS)
    return _ADMINS[bs]


def create(bs, name, partitions):
    admin(bs).create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, timeout_ms=T_MS)


def produce(bs, topic, partitions, per_partition, tag="m"):
    p = KafkaProducer(bootstrap_servers=bs, enable_idempotence=False, linger_ms=5, request_timeout_ms=T_MS, max_block_ms=T_MS)
    futures = [
        p.send(topic, value=f"{tag}-{part}-{i}".encode(), partition=part)
        for part in range(partitions)
        for i in range(per_partition)
    ]
    p.flush(timeout=T)
    for f in futures:
        f.get(timeout=T)
    p.close(timeout=T)


def group_consumer(bs, group, **conf):
    base = {
        "bootstrap_servers": bs,
        "group_id": group,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "fetch_max_wait_ms": 100,
        "request_timeout_ms": T_MS + 1_000,
    }
    base.update(conf)
    return KafkaConsumer(**base)


def subscribe(c, topic):
    """subscribe() once the consumer's metadata knows the topic. Without it the first
    generation is assigned from empty metadata and the metadata update that follows
    starts a second join, one more chance for the lost-join race described above."""
    eq(c.partitions_for_topic(topic) != set(), True, f"metadata of {topic} known")
    c.subscribe([topic])


POLL_MS = 500  # returns at once when records are there; long enough for a join


def poll_once(c, max_records=500):
    return [r for records in c.poll(timeout_ms=POLL_MS, max_records=max_records).values() for r in records]


class Member(threading.Thread):
    """One consumer polled in its own thread, so that a member waiting in poll() for a
    join never holds up the others. The main thread only reads what it collected, and
    asks it to commit (the consumer is used from this thread alone until close)."""

    def __init__(self, consumer):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.lock = threading.Lock()
        self.records = []
        self.share = set()
        self.error = None
        self.stop = threading.Event()
        self.commit_wanted = threading.Event()
        self.committed = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                batch = poll_once(self.consumer)
                share = {tp.partition for tp in self.consumer.assignment()}
                with self.lock:
                    self.records.extend(batch)
                    self.share = share
                if self.commit_wanted.is_set():
                    self.consumer.commit(timeout_ms=T_MS)
                    self.commit_wanted.clear()
                    self.committed.set()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def snapshot(self):
        check(self.error is None, f"member thread failed: {type(self.error).__name__}: {self.error}")
        with self.lock:
            return list(self.records), set(self.share)

    def commit(self):
        self.committed.clear()
        self.commit_wanted.set()
        check(self.committed.wait(T), "member thread did not commit")
        self.snapshot()  # raises if the commit failed

    def close(self):
        self.stop.set()
        self.join(T)
        check(not self.is_alive(), "member thread did not stop")
        self.consumer.close(autocommit=False, timeout_ms=T_MS)


def poll_into(consumers, got, n, timeout_s, what):
    """Polls every consumer in turn until ``got`` (one list per consumer) holds ``n``
    records in all."""
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got)) < n:
        check(time.monotonic() < deadline, f"{what}: {sum(map(len, got))} of {n} records after {timeout_s}s")
        for c, out in zip(consumers, got):
            out.extend(poll_once(c))


def keys(records):
    return [(r.partition, r.offset) for r in records]


def check_once(records, expected):
    ks = keys(records)
    check(len(ks) == len(set(ks)), f"{len(ks) - len(set(ks))} records consumed twice")
    eq(len(ks), len(expected), "records consumed")
    check(set(ks) == expected, f"consumed set differs: missing {sorted(expected - set(ks))[:5]}, extra {sorted(set(ks) - expected)[:5]}")


def wait_split(members, partitions, timeout_s=20):
    """Waits until each member thread holds a non-empty share and the shares partition
    the topic; returns the shares."""

    def split():
        snaps = [m.snapshot() for m in members]
        for records, _ in snaps:
            check(not records, f"consumed before anything was produced: {keys(records)[:5]}")
        shares = [share for _, share in snaps]
        if all(shares) and sum(map(len, shares)) == partitions and set().union(*shares) == set(range(partitions)):
            return shares
        return None

    return wait_until(split, timeout_s, f"{len(members)} members to split {partitions} partitions")


def group_offsets(bs, group):
    """{partition: committed offset} of every partition the group has committed."""
    offsets = admin(bs).list_group_offsets({group: None})[group]
    return {tp.partition: om.offset for tp, om in offsets.items()}


def latest(bs, topic, partitions):
    res = admin(bs).list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST for p in range(partitions)}, timeout_ms=T_MS)
    return {tp.partition: o.offset for tp, o in res.items()}


def listed(bs, **kwargs):
    return {g["group_id"]: g for g in admin(bs).list_groups(**kwargs)}


def describe(bs, group):
    d = admin(bs).describe_groups([group])[group]
    check(d["error"] is None, f"describe_groups error: {d['error']}")
    return d


def close_all(consumers):
    for c in consumers:
        c.close(autocommit=False, timeout_ms=T_MS)


# --- scenarios ---------------------------------------------------------------------


@scenario
def subscribe_three_members_split_partitions(bs):
    topic, group, parts = "kpg-split", "kpg-split-g", 6
    create(bs, topic, parts)
    members = []
    try:
        for i in range(3):
            c = group_consumer(bs, group, client_id=f"member-{i}")
            subscribe(c, topic)
            members.append(Member(c))
        for m in members:
            m.start()
        shares = wait_split(members, parts)
        eq(sorted(map(len, shares)), [2, 2, 2], "partitions per member")
        # Produced once the group is stable, so no rebalance moves a partition mid-way.
        produce(bs, topic, parts, 100)

        def all_read():
            snaps = [m.snapshot() for m in members]
            return snaps if sum(len(r) for r, _ in snaps) >= 600 else None

        snaps = wait_until(all_read, T, "600 records between the members")
        check_once([r for records, _ in snaps for r in records], {(p, o) for p in range(parts) for o in range(100)})
        for share, (records, now) in zip(shares, snaps):
            eq(now, share, "share after consuming (no rebalance)")
            check({r.partition for r in records} <= share, f"member read outside its share {share}")
        for m in members:
            m.commit()
        eq(group_offsets(bs, group), {p: 100 for p in range(parts)}, "committed offsets")
        d = describe(bs, group)
        eq((d["group_state"], d["protocol_type"]), ("Stable", "consumer"), "state, protocol type")
        eq(sorted(m["client_id"] for m in d["members"]), ["member-0", "member-1", "member-2"], "client ids")
        described = sorted(sorted(p for t in m["member_assignment"]["assigned_partitions"] for p in t["partitions"]) for m in d["members"])
        eq(described, sorted(sorted(s) for s in shares), "described assignments")
    finally:
        for m in members:
            m.close()
    wait_until(lambda: describe(bs, group)["group_state"] == "Empty", 3, "group empty after close")


@scenario
def commit_after_processing_then_resume(bs):
    topic, group, parts = "kpg-resume", "kpg-resume-g", 4
    create(bs, topic, parts)
    produce(bs, topic, parts, 100)
    first = group_consumer(bs, group)
    processed = []
    try:
        subscribe(first, topic)
        deadline = time.monotonic() + T
        while len(processed) < 150:
            check(time.monotonic() < deadline, f"only {len(processed)} records in {T}s")
            batch = poll_once(first, max_records=40)
            processed.extend(batch)
            if batch:
                first.commit(timeout_ms=T_MS)  # commits the positions after this batch
        expected = {p: 0 for p in range(parts)}
        for r in processed:
            expected[r.partition] = max(expected[r.partition], r.offset + 1)
        # commit() sends the position of every assigned partition, 0 for one not read
        # yet (when its position is known) or nothing (when it is not).
        for p in range(parts):
            got = first.committed(TopicPartition(topic, p), timeout_ms=T_MS)
            check(got == expected[p] or (expected[p] == 0 and got is None), f"committed({p}): expected {expected[p]}, got {got}")
    finally:
        first.close(autocommit=False, timeout_ms=T_MS)
    eq({p: o for p, o in group_offsets(bs, group).items() if o}, {p: o for p, o in expected.items() if o}, "list_group_offsets")
    second = group_consumer(bs, group)
    rest = [[]]
    try:
        subscribe(second, topic)
        poll_into([second], rest, 400 - len(processed), T, "resumed consume")
    finally:
        second.close(autocommit=False, timeout_ms=T_MS)
    check_once(processed + rest[0], {(p, o) for p in range(parts) for o in range(100)})
    firsts = {}
    for r in rest[0]:
        firsts.setdefault(r.partition, r.offset)
    for p, o in firsts.items():
        eq(o, expected[p], f"first offset of partition {p} after resume")
    return f"first consumer committed {len(processed)} of 400, the second read the other {len(rest[0])}"


@scenario
def auto_commit_interval(bs):
    topic, group, parts = "kpg-auto", "kpg-auto-g", 5
    create(bs, topic, parts)
    produce(bs, topic, parts, 60)
    c = group_consumer(bs, group, enable_auto_commit=True, auto_commit_interval_ms=200)
    try:
        subscribe(c, topic)
        got = [[]]
        poll_into([c], got, 300, T, "auto-commit consume")
        check_once(got[0], {(p, o) for p in range(parts) for o in range(60)})
        # Still open: only the periodic commit (run from poll) can move these to the end.
        def committed_to_end():
            stray = poll_once(c)
            check(not stray, f"records after all were consumed: {keys(stray)[:5]}")
            return group_offsets(bs, group) == {p: 60 for p in range(parts)}

        wait_until(committed_to_end, T, "auto-committed offsets at the end of every partition")
        eq(describe(bs, group)["group_state"], "Stable", "state while consuming")
    finally:
        c.close(autocommit=False, timeout_ms=T_MS)


@scenario
def offset_reset_earliest_and_latest(bs):
    topic, parts = "kpg-reset", 2
    create(bs, topic, parts)
    produce(bs, topic, parts, 25, tag="old")
    eq(group_offsets(bs, "kpg-reset-latest"), {}, "no commits yet")
    early = group_consumer(bs, "kpg-reset-earliest", auto_offset_reset="earliest")
    late = group_consumer(bs, "kpg-reset-latest", auto_offset_reset="latest")
    try:
        subscribe(early, topic)
        subscribe(late, topic)
        got = [[]]
        poll_into([early], got, 50, T, "earliest")
        check_once(got[0], {(p, o) for p in range(parts) for o in range(25)})
        tps = [TopicPartition(topic, p) for p in range(parts)]

        def positioned():
            stray = poll_once(late)
            check(not stray, f"latest consumer read {keys(stray)[:5]}")
            if len(late.assignment()) != parts:
                return False
            # position() resolves the reset (ListOffsets latest) for an assigned partition.
            return all(late.position(tp, timeout_ms=T_MS) == 25 for tp in tps)

        wait_until(positioned, T, "latest consumer positioned at the end")
        produce(bs, topic, parts, 5, tag="new")
        news = [[]]
        poll_into([late], news, 10, T, "latest")
        check_once(news[0], {(p, o) for p in range(parts) for o in range(25, 30)})
        eq({r.value[:3] for r in news[0]}, {b"new"}, "latest values")
    finally:
        close_all([early, late])


@scenario
def admin_groups_offsets_lag_and_delete(bs):
    topic, group, parts = "kpg-lag", "kpg-lag-g", 5
    create(bs, topic, parts)
    produce(bs, topic, parts, 100)
    c = group_consumer(bs, group, client_id="lag-member")
    try:
        subscribe(c, topic)
        got = [[]]
        poll_into([c], got, 230, T, "partial consume")
        ends = {}
        for r in got[0][:230]:
            ends[r.partition] = r.offset + 1
        eq(sum(ends.values()), 230, "records processed")
        c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in ends.items()}, timeout_ms=T_MS)

        groups = listed(bs)
        check(group in groups, f"{group} not in list_groups: {sorted(groups)}")
        eq(groups[group]["protocol_type"], "consumer", "listed protocol type")
        check(group in listed(bs, states_filter=["Stable"]), "not listed with states_filter=[Stable]")
        check(group not in listed(bs, states_filter=["Empty"]), "listed with states_filter=[Empty]")

        d = describe(bs, group)
        eq((d["group_state"], d["protocol_type"]), ("Stable", "consumer"), "state, protocol type")
        # protocol_data: the assignor the group chose (DescribeGroups' protocol field).
        check(d["protocol_data"] in ("range", "roundrobin"), f"protocol {d['protocol_data']!r}")
        (member,) = d["members"]
        eq(member["client_id"], "lag-member", "client id")
        eq(member["client_host"], "/127.0.0.1", "client host")
        eq(member["member_metadata"]["topics"], [topic], "subscription in member metadata")
        assigned = [(t["topic"], sorted(t["partitions"])) for t in member["member_assignment"]["assigned_partitions"]]
        eq(assigned, [(topic, list(range(parts)))], "assignment")

        committed = group_offsets(bs, group)
        eq(committed, ends, "list_group_offsets")
        hw = latest(bs, topic, parts)
        eq(hw, {p: 100 for p in range(parts)}, "latest offsets")
        eq(sum(hw[p] - committed.get(p, 0) for p in range(parts)), 500 - 230, "total lag = unconsumed records")
        produce(bs, topic, parts, 10, tag="more")
        hw = latest(bs, topic, parts)
        eq(sum(hw[p] - committed.get(p, 0) for p in range(parts)), 550 - 230, "lag after 50 more")

        eq(admin(bs).delete_groups([group]), {group: "NonEmptyGroupError"}, "delete of non-empty group")
        # OffsetDelete is refused (per partition) for a topic the live group consumes.
        eq(
            admin(bs).delete_group_offsets(group, [TopicPartition(topic, 0)]),
            {TopicPartition(topic, 0): GroupSubscribedToTopicError},
            "delete_group_offsets on a subscribed topic",
        )
    finally:
        c.close(autocommit=False, timeout_ms=T_MS)

    wait_until(lambda: describe(bs, group)["group_state"] == "Empty", 3, "group empty after close")
    check(group in listed(bs, states_filter=["Empty"]), "not listed as Empty after close")
    # With no member, offsets of single partitions can be deleted (OffsetDelete).
    eq(admin(bs).delete_group_offsets(group, [TopicPartition(topic, 0)]), {TopicPartition(topic, 0): NoError}, "delete_group_offsets")
    eq(group_offsets(bs, group), {p: o for p, o in ends.items() if p != 0}, "offsets after delete_group_offsets")
    eq(admin(bs).delete_groups([group]), {group: "OK"}, "delete of empty group")
    check(group not in listed(bs), "group still listed after delete")
    eq(group_offsets(bs, group), {}, "offsets after delete")
    eq(admin(bs).delete_groups([group]), {group: "GroupIdNotFoundError"}, "delete of deleted group")


if __name__ == "__main__":
    main()
