"""Transactions with kafka-python (pure Python client) against Sluice.

Run by `cargo xtask compat` as ``python kafka_python_transactions.py HOST:PORT``.
Covers a transactional KafkaProducer committing and aborting over two topics (what a
read_committed and a read_uncommitted KafkaConsumer see) and sending consumed offsets
to a transaction. Every wait is bounded.
"""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from harness import eq, main, scenario

T_MS = 10_000  # bound on every client call
T = T_MS / 1000

_ADMINS = {}


def create(bs, name):
    if bs not in _ADMINS:
        _ADMINS[bs] = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=T_MS)
    _ADMINS[bs].create_topics({name: {"num_partitions": 1, "replication_factor": 1}}, timeout_ms=T_MS)


def txn_producer(bs, txn_id):
    p = KafkaProducer(
        bootstrap_servers=bs,
        transactional_id=txn_id,
        transaction_timeout_ms=30_000,
        linger_ms=5,
        request_timeout_ms=T_MS,
        max_block_ms=T_MS,
    )
    p.init_transactions()
    return p


def read(bs, topic, isolation, want):
    """Values of ``topic``-0 at ``isolation``, until ``want`` of them or the deadline."""
    c = KafkaConsumer(
        bootstrap_servers=bs,
        isolation_level=isolation,
        enable_auto_commit=False,
        request_timeout_ms=T_MS + 1000,
    )
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + T
        while len(out) < want and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=200).values():
                out.extend(r.value.decode() for r in records)
        # A moment more: anything beyond `want` would be a visible aborted record.
        for records in c.poll(timeout_ms=500).values():
            out.extend(r.value.decode() for r in records)
        return out
    finally:
        c.close()


@scenario
def commit_and_abort_across_two_topics(bs):
    create(bs, "kp-tx-a")
    create(bs, "kp-tx-b")
    p = txn_producer(bs, "kp-tx-two-topics")
    p.begin_transaction()
    p.send("kp-tx-a", b"a-1")
    p.send("kp-tx-b", b"b-1")
    p.commit_transaction()
    p.begin_transaction()
    p.send("kp-tx-a", b"a-aborted")
    p.send("kp-tx-b", b"b-aborted")
    p.flush(timeout=T)
    p.abort_transaction()
    p.begin_transaction()
    p.send("kp-tx-a", b"a-2")
    p.commit_transaction()
    p.close(timeout=T)
    eq(read(bs, "kp-tx-a", "read_committed", 2), ["a-1", "a-2"], "kp-tx-a read_committed")
    eq(read(bs, "kp-tx-b", "read_committed", 1), ["b-1"], "kp-tx-b read_committed")
    eq(read(bs, "kp-tx-a", "read_uncommitted", 3), ["a-1", "a-aborted", "a-2"], "kp-tx-a read_uncommitted")


@scenario
def offsets_sent_to_a_transaction_commit_with_it(bs):
    create(bs, "kp-ctp-in")
    p = txn_producer(bs, "kp-ctp-app")
    tp = TopicPartition("kp-ctp-in", 0)
    for offset, commit in ((5, True), (9, False)):
        p.begin_transaction()
        p.send("kp-ctp-in", b"x")
        p.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "", -1)}, "kp-ctp")
        if commit:
            p.commit_transaction()
        else:
            p.abort_transaction()
    p.close(timeout=T)
    c = KafkaConsumer(bootstrap_servers=bs, group_id="kp-ctp", enable_auto_commit=False, isolation_level="read_committed")
    try:
        eq(c.committed(tp), 5, "the committed transaction's offset, not the aborted one's")
    finally:
        c.close()


if __name__ == "__main__":
    main()
