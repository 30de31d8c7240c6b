"""Consumer groups with confluent-kafka (librdkafka bundled in the wheel) against Sluice.

Run by `cargo xtask compat` as ``python confluent_kafka_groups.py HOST:PORT``, against a
broker started with ``--group-initial-rebalance-delay-ms 0`` and a 1 s minimum session
timeout, so joins complete at once and consumers use short sessions. Covers subscribe()
with several members, manual and automatic commits, resuming from committed offsets,
auto.offset.reset without commits, and the group admin APIs (list, describe, committed
offsets, lag, delete). Every wait is a poll with a deadline.
"""

import time

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from ck_admin import admin, create
from harness import check, eq, main, scenario, wait_until

T = 10  # seconds: bound on every client call



def produce(bs, topic, partitions, per_partition, tag="m"):
    """Produces ``per_partition`` messages to each partition (explicitly placed), values
    ``<tag>-<partition>-<i>``; returns nothing, checks every delivery."""
    p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "message.timeout.ms": T * 1000})
    errors = []
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, value=f"{tag}-{part}-{i}".encode(), partition=part, on_delivery=lambda e, _m: e and errors.append(e))
    eq(p.flush(T), 0, "messages still queued after flush")
    check(not errors, f"delivery errors: {errors[:3]}")


def group_consumer(bs, group, **conf):
    base = {
        "bootstrap.servers": bs,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
    }
    base.update(conf)
    return Consumer(base)


def poll_into(consumers, got, n, timeout_s, what):
    """Polls every consumer in turn until ``got`` (one list per consumer) holds ``n``
    messages in all; fails on a message error or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got)) < n:
        check(time.monotonic() < deadline, f"{what}: {sum(map(len, got))} of {n} messages after {timeout_s}s")
        for c, out in zip(consumers, got):
            for m in c.consume(num_messages=500, timeout=0.05):
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)


def keys(msgs):
    return [(m.partition(), m.offset()) for m in msgs]


def check_once(msgs, expected):
    """Each of ``expected`` (a set of (partition, offset)) consumed exactly once."""
    ks = keys(msgs)
    check(len(ks) == len(set(ks)), f"{len(ks) - len(set(ks))} messages consumed twice")
    eq(len(ks), len(expected), "messages consumed")
    check(set(ks) == expected, f"consumed set differs: missing {sorted(expected - set(ks))[:5]}, extra {sorted(set(ks) - expected)[:5]}")


def assignments(consumers):
    return [{tp.partition for tp in c.assignment()} for c in consumers]


def wait_split(consumers, partitions, timeout_s=20):
    """Polls the consumers (which drives their rebalances) until every one holds a
    non-empty share and the shares partition the topic; returns the shares."""
    parts = set(range(partitions))

    def split():
        for c in consumers:
            for m in c.consume(num_messages=100, timeout=0.05):
                check(not m.error(), f"message error while joining: {m.error()}")
                raise AssertionError(f"message consumed before any was produced: {keys([m])}")
        shares = assignments(consumers)
        if all(shares) and sum(map(len, shares)) == partitions and set().union(*shares) == parts:
            return shares
        return None

    return wait_until(split, timeout_s, f"{len(consumers)} members to split {partitions} partitions")


def describe(bs, group):
    return admin(bs).describe_consumer_groups([group], request_timeout=T)[group].result(timeout=T)


def committed_offsets(bs, group, topic, partitions):
    """The group's committed offsets by partition (-1001, OFFSET_INVALID, if none)."""
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])]
    res = admin(bs).list_consumer_group_offsets(req, request_timeout=T)[group].result(timeout=T)
    for tp in res.topic_partitions:
        check(tp.error is None, f"offset fetch error for {tp}: {tp.error}")
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def high_watermarks(bs, topic, partitions):
    fs = admin(bs).list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}, request_timeout=T)
    return {tp.partition: f.result(timeout=T).offset for tp, f in fs.items()}


def group_ids(bs, states=None):
    kwargs = {"request_timeout": T}
    if states:
        kwargs["states"] = states
    res = admin(bs).list_consumer_groups(**kwargs).result(timeout=T)
    check(not res.errors, f"list_consumer_groups errors: {res.errors}")
    return {g.group_id: g for g in res.valid}


def close_all(consumers):
    for c in consumers:
        c.close()


# --- scenarios ---------------------------------------------------------------------


@scenario
def subscribe_three_members_split_partitions(bs):
    topic, group, parts = "ckg-split", "ckg-split-g", 6
    create(bs, topic, parts)
    consumers = [group_consumer(bs, group, **{"client.id": f"member-{i}"}) for i in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])
        shares = wait_split(consumers, parts)
        eq(sorted(map(len, shares)), [2, 2, 2], "partitions per member")
        # Produced once the group is stable, so no rebalance moves a partition mid-way.
        produce(bs, topic, parts, 100)
        got = [[] for _ in consumers]
        poll_into(consumers, got, 600, T, "group consume")
        check_once([m for ms in got for m in ms], {(p, o) for p in range(parts) for o in range(100)})
        for share, msgs in zip(shares, got):
            check({m.partition() for m in msgs} <= share, f"member read outside its share {share}")
        for c in consumers:
            c.commit(asynchronous=False)
        eq(committed_offsets(bs, group, topic, parts), {p: 100 for p in range(parts)}, "committed offsets")
        d = describe(bs, group)
        eq(d.state, ConsumerGroupState.STABLE, "state")
        eq(len(d.members), 3, "members")
        eq(sorted(m.client_id for m in d.members), ["member-0", "member-1", "member-2"], "client ids")
        described = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions) for m in d.members)
        eq(described, sorted(sorted(s) for s in shares), "described assignments")
    finally:
        close_all(consumers)
    # Each close sent LeaveGroup: the group empties without waiting for session
    # timeouts (6 s), and keeps its offsets.
    wait_until(lambda: describe(bs, group).state == ConsumerGroupState.EMPTY, 3, "group empty after close")
    eq(committed_offsets(bs, group, topic, parts), {p: 100 for p in range(parts)}, "offsets kept after close")


@scenario
def manual_commit_then_resume(bs):
    topic, group, parts = "ckg-resume", "ckg-resume-g", 4
    create(bs, topic, parts)
    produce(bs, topic, parts, 100)
    first = group_consumer(bs, group)
    processed = []
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + T
        while len(processed) < 150:
            check(time.monotonic() < deadline, f"only {len(processed)} messages in {T}s")
            batch = first.consume(num_messages=50, timeout=0.2)
            for m in batch:
                check(not m.error(), f"message error: {m.error()}")
            processed.extend(batch)
            if batch:
                # commit() after processing: the offsets stored for what poll returned.
                committed = first.commit(asynchronous=False)
                check(all(tp.error is None for tp in committed), f"commit errors: {committed}")
        expected_commit = {p: 0 for p in range(parts)}
        for m in processed:
            expected_commit[m.partition()] = max(expected_commit[m.partition()], m.offset() + 1)
        tps = [TopicPartition(topic, p) for p in range(parts)]
        got = {tp.partition: tp.offset for tp in first.committed(tps, timeout=T)}
        # A partition the consumer has not read yet has no commit (OFFSET_INVALID).
        eq(got, {p: o if o else OFFSET_INVALID for p, o in expected_commit.items()}, "committed()")
    finally:
        first.close()
    second = group_consumer(bs, group)
    rest = [[]]
    try:
        second.subscribe([topic])
        poll_into([second], rest, 400 - len(processed), T, "resumed consume")
    finally:
        second.close()
    check_once(processed + rest[0], {(p, o) for p in range(parts) for o in range(100)})
    firsts = {}
    for m in rest[0]:
        firsts.setdefault(m.partition(), m.offset())
    for p, o in firsts.items():
        eq(o, expected_commit[p], f"first offset of partition {p} after resume")
    return f"first consumer committed {len(processed)} of 400, the second read the other {len(rest[0])}"


@scenario
def auto_commit_interval(bs):
    topic, group, parts = "ckg-auto", "ckg-auto-g", 5
    create(bs, topic, parts)
    produce(bs, topic, parts, 60)
    c = group_consumer(bs, group, **{"enable.auto.commit": True, "auto.commit.interval.ms": 200})
    try:
        c.subscribe([topic])
        got = [[]]
        poll_into([c], got, 300, T, "auto-commit consume")
        check_once(got[0], {(p, o) for p in range(parts) for o in range(60)})
        # The consumer stays open: only the periodic commit can bring these to the end.
        def committed_to_end():
            m = c.poll(0.05)
            check(m is None, f"message after all were consumed: {m and (m.error() or keys([m]))}")
            return committed_offsets(bs, group, topic, parts) == {p: 60 for p in range(parts)}

        wait_until(committed_to_end, T, "auto-committed offsets at the end of every partition")
        eq(describe(bs, group).state, ConsumerGroupState.STABLE, "state while consuming")
    finally:
        c.close()


@scenario
def offset_reset_earliest_and_latest(bs):
    topic, parts = "ckg-reset", 2
    create(bs, topic, parts)
    produce(bs, topic, parts, 25, tag="old")
    for group in ("ckg-reset-earliest", "ckg-reset-latest"):
        eq(committed_offsets(bs, group, topic, parts), {0: OFFSET_INVALID, 1: OFFSET_INVALID}, f"{group}: no commits yet")
    early = group_consumer(bs, "ckg-reset-earliest", **{"auto.offset.reset": "earliest"})
    late = group_consumer(bs, "ckg-reset-latest", **{"auto.offset.reset": "latest", "enable.partition.eof": True})
    try:
        early.subscribe([topic])
        late.subscribe([topic])
        got = [[]]
        poll_into([early], got, 50, T, "earliest")
        check_once(got[0], {(p, o) for p in range(parts) for o in range(25)})
        eq({m.value().decode()[:3] for m in got[0]}, {"old"}, "earliest values")
        # latest: the consumer starts at the end once its position is resolved, which it
        # reports with a partition EOF per partition; only then is new data produced.
        eofs = set()

        def at_end():
            m = late.poll(0.1)
            if m is not None:
                check(m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF, f"latest consumer read {keys([m])}")
                eofs.add(m.partition())
            return eofs == {0, 1}

        wait_until(at_end, T, "latest consumer at the end of both partitions")
        produce(bs, topic, parts, 5, tag="new")
        news = []
        deadline = time.monotonic() + T
        while len(news) < 10:
            check(time.monotonic() < deadline, f"latest consumer got {len(news)} of 10 new messages")
            m = late.poll(0.1)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            check(not m.error(), f"message error: {m.error()}")
            news.append(m)
        check_once(news, {(p, o) for p in range(parts) for o in range(25, 30)})
        eq({m.value().decode()[:3] for m in news}, {"new"}, "latest values")
    finally:
        close_all([early, late])


@scenario
def admin_describe_offsets_lag_and_delete(bs):
    topic, group, parts = "ckg-lag", "ckg-lag-g", 5
    create(bs, topic, parts)
    produce(bs, topic, parts, 100)
    c = group_consumer(bs, group, **{"client.id": "lag-member"})
    try:
        c.subscribe([topic])
        got = [[]]
        poll_into([c], got, 230, T, "partial consume")
        # Commit exactly what was processed (230 messages), explicit offsets.
        ends = {}
        for m in got[0][:230]:
            ends[m.partition()] = m.offset() + 1
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False)
        consumed = sum(ends.values())  # offsets are contiguous from 0 per partition
        eq(consumed, 230, "messages committed")

        listed = group_ids(bs)
        check(group in listed, f"{group} not in list_consumer_groups: {sorted(listed)}")
        eq(listed[group].state, ConsumerGroupState.STABLE, "listed state")
        eq(listed[group].is_simple_consumer_group, False, "is_simple_consumer_group")
        stable = group_ids(bs, states={ConsumerGroupState.STABLE})
        check(group in stable, f"{group} not listed with states={{STABLE}}")
        check(group not in group_ids(bs, states={ConsumerGroupState.EMPTY}), f"{group} listed as EMPTY")

        d = describe(bs, group)
        eq((d.group_id, d.state, d.is_simple_consumer_group), (group, ConsumerGroupState.STABLE, False), "description")
        check(d.partition_assignor in ("range", "roundrobin"), f"assignor {d.partition_assignor!r}")
        eq(d.coordinator.id, 1, "coordinator")
        (member,) = d.members
        eq(member.client_id, "lag-member", "member client id")
        check(member.host.endswith("127.0.0.1"), f"member host {member.host!r}")
        eq(sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions), [(topic, p) for p in range(parts)], "assignment")

        committed = committed_offsets(bs, group, topic, parts)
        eq(committed, {p: ends.get(p, OFFSET_INVALID) for p in range(parts)}, "committed offsets")
        hw = high_watermarks(bs, topic, parts)
        eq(hw, {p: 100 for p in range(parts)}, "high watermarks")
        lag = {p: hw[p] - max(committed[p], 0) for p in range(parts)}
        eq(sum(lag.values()), 500 - consumed, "total lag = unconsumed messages")

        # More data: the lag grows by exactly that much.
        produce(bs, topic, parts, 10, tag="more")
        hw2 = high_watermarks(bs, topic, parts)
        # The member's own view of the high watermarks agrees with ListOffsets.
        marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=T, cached=False) for p in range(parts)}
        eq({p: hi for p, (_lo, hi) in marks.items()}, hw2, "get_watermark_offsets high vs list_offsets")
        eq(sum(hw2[p] - max(committed[p], 0) for p in range(parts)), 550 - consumed, "lag after 50 more")

        # A group with a member cannot be deleted.
        try:
            admin(bs).delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
            raise AssertionError("deleting a group with a live member succeeded")
        except KafkaException as e:
            eq(e.args[0].code(), KafkaError.NON_EMPTY_GROUP, "delete of non-empty group")
    finally:
        c.close()

    wait_until(lambda: describe(bs, group).state == ConsumerGroupState.EMPTY, 3, "group empty after close")
    check(group in group_ids(bs, states={ConsumerGroupState.EMPTY}), f"{group} not listed as EMPTY")
    admin(bs).delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
    check(group not in group_ids(bs), f"{group} still listed after delete")
    eq(committed_offsets(bs, group, topic, parts), {p: OFFSET_INVALID for p in range(parts)}, "offsets after delete")
    eq(describe(bs, group).state, ConsumerGroupState.DEAD, "state of a deleted group")
    try:
        admin(bs).delete_consumer_groups([group], request_timeout=T)[group].result(timeout=T)
        raise AssertionError("deleting a deleted group succeeded")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.GROUP_ID_NOT_FOUND, "delete of unknown group")


@scenario
def roundrobin_assignor_and_rejoin(bs):
    topic, group, parts = "ckg-rr", "ckg-rr-g", 4
    create(bs, topic, parts)
    conf = {"partition.assignment.strategy": "roundrobin"}
    a = group_consumer(bs, group, **conf)
    b = None
    try:
        a.subscribe([topic])
        eq(wait_split([a], parts), [set(range(parts))], "lone member's share")
        b = group_consumer(bs, group, **conf)
        b.subscribe([topic])
        shares = wait_split([a, b], parts)
        eq(sorted(map(sorted, shares)), [[0, 2], [1, 3]], "roundrobin shares")
        eq(describe(bs, group).partition_assignor, "roundrobin", "assignor")
        b.close()
        b = None
        # The leaver's partitions go back to the remaining member.
        eq(wait_split([a], parts), [set(range(parts))], "share after the other left")
    finally:
        close_all([x for x in (a, b) if x is not None])


if __name__ == "__main__":
    main()
