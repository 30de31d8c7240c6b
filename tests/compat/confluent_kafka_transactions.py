"""Transactions with confluent-kafka (librdkafka bundled in the wheel) against Sluice.

Run by `cargo xtask compat` as ``python confluent_kafka_transactions.py HOST:PORT``.
Covers a transaction over two topics committed and one aborted (what read_committed
and read_uncommitted consumers see), consume-transform-produce with the consumed
offsets sent to the transaction, and fencing of a zombie producer by a new instance
with the same transactional.id. Every wait is bounded.
"""

import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from ck_admin import create
from harness import check, eq, main, scenario

T = 10  # seconds: bound on every client call


def txn_producer(bs, txn_id):
    p = Producer(
        {
            "bootstrap.servers": bs,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 30000,
            "message.timeout.ms": 30000,
            "linger.ms": 5,
        }
    )
    p.init_transactions(T)
    return p


def read(bs, topic, isolation, partitions=1, group="ck-txn-reader"):
    """Every value in ``topic`` as a consumer at ``isolation`` reads it (to EOF)."""
    c = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        pending = set(range(partitions))
        out = []
        deadline = time.monotonic() + T
        while pending and time.monotonic() < deadline:
            for m in c.consume(num_messages=100, timeout=0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise KafkaException(m.error())
                out.append(m.value().decode())
        check(not pending, f"no EOF within {T}s from partitions {sorted(pending)}")
        return out
    finally:
        c.close()


@scenario
def commit_and_abort_across_two_topics(bs):
    create(bs, "ck-tx-a", 1)
    create(bs, "ck-tx-b", 1)
    p = txn_producer(bs, "ck-tx-two-topics")
    p.begin_transaction()
    p.produce("ck-tx-a", value=b"a-1")
    p.produce("ck-tx-b", value=b"b-1")
    p.commit_transaction(T)
    p.begin_transaction()
    p.produce("ck-tx-a", value=b"a-aborted")
    p.produce("ck-tx-b", value=b"b-aborted")
    # Written to the partitions first (abort_transaction purges what is still queued).
    eq(p.flush(T), 0, "aborted records still queued")
    p.abort_transaction(T)
    p.begin_transaction()
    p.produce("ck-tx-a", value=b"a-2")
    p.commit_transaction(T)
    eq(read(bs, "ck-tx-a", "read_committed"), ["a-1", "a-2"], "ck-tx-a read_committed")
    eq(read(bs, "ck-tx-b", "read_committed"), ["b-1"], "ck-tx-b read_committed")
    eq(
        read(bs, "ck-tx-a", "read_uncommitted"),
        ["a-1", "a-aborted", "a-2"],
        "ck-tx-a read_uncommitted",
    )


@scenario
def consume_transform_produce_with_offsets_in_the_transaction(bs):
    create(bs, "ck-ctp-in", 1)
    create(bs, "ck-ctp-out", 1)
    plain = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(20):
        plain.produce("ck-ctp-in", value=b"%d" % i, partition=0)
    eq(plain.flush(T), 0, "input still queued")
    c = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": "ck-ctp",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    p = txn_producer(bs, "ck-ctp-app")
    try:
        c.assign([TopicPartition("ck-ctp-in", 0, OFFSET_BEGINNING)])
        msgs = []
        deadline = time.monotonic() + T
        while len(msgs) < 20 and time.monotonic() < deadline:
            msgs.extend(m for m in c.consume(num_messages=20, timeout=0.2) if not m.error())
        eq(len(msgs), 20, "input consumed")
        for first, commit in ((0, True), (10, False)):
            p.begin_transaction()
            for m in msgs[first : first + 10]:
                p.produce("ck-ctp-out", value=b"out-" + m.value(), partition=0)
            offsets = [TopicPartition("ck-ctp-in", 0, msgs[first + 9].offset() + 1)]
            p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), T)
            if commit:
                p.commit_transaction(T)
            else:
                p.abort_transaction(T)
            committed = c.committed([TopicPartition("ck-ctp-in", 0)], timeout=T)
            eq(committed[0].offset, 10, f"committed offset after the transaction from {first}")
    finally:
        c.close()
    eq(
        read(bs, "ck-ctp-out", "read_committed"),
        [f"out-{i}" for i in range(10)],
        "output read_committed",
    )


@scenario
def a_new_instance_fences_the_zombie(bs):
    create(bs, "ck-zombie", 1)
    zombie = txn_producer(bs, "ck-zombie-app")
    zombie.begin_transaction()
    zombie.produce("ck-zombie", value=b"zombie")
    eq(zombie.flush(T), 0, "zombie's record still queued")
    fresh = txn_producer(bs, "ck-zombie-app")
    try:
        zombie.commit_transaction(T)
        check(False, "the zombie's commit succeeded")
    except KafkaException as e:
        err = e.args[0]
        check(
            err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH),
            f"the zombie got {err}",
        )
    fresh.begin_transaction()
    fresh.produce("ck-zombie", value=b"fresh")
    fresh.commit_transaction(T)
    eq(read(bs, "ck-zombie", "read_committed"), ["fresh"], "read_committed after fencing")


if __name__ == "__main__":
    main()
