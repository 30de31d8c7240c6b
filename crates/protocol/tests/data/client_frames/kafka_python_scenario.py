#!/usr/bin/env python3
"""The kafka-python half of the client frame capture: run against a recording proxy by
tests/tests/capture_client_frames.rs (see README.md here), never by CI.

    python3 kafka_python_scenario.py <bootstrap host:port>

Does the same things as the librdkafka scenario: admin calls on "capture-admin",
one producer per compression codec writing three records to "capture" partition 0
with acks=all, then a consumer reading them back and listing offsets.
"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

CLIENT = "kafka-python"
CLIENT_ID = "capture-" + CLIENT
TOPIC = "capture"
ADMIN_TOPIC = "capture-admin"
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def value(codec, i):
    # Long enough to compress: clients send a batch raw when compression does not pay.
    return ("%s-%s-%d " % (CLIENT, codec, i)).encode() + b"sluice " * 20


def main(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID)
    admin.create_topics({ADMIN_TOPIC: {"num_partitions": 3, "replication_factor": 1,
                                       "configs": {"retention.ms": "3600000"}}})
    admin.create_partitions({ADMIN_TOPIC: 4})
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC, {"retention.ms": "7200000"})])
    admin.delete_topics([ADMIN_TOPIC])
    admin.describe_cluster()
    admin.describe_log_dirs()
    admin.close()

    for codec in CODECS:
        name = codec or "none"
        # Idempotence (kafka-python 3's default) needs InitProducerId, not served yet.
        producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, acks="all",
                                 compression_type=codec, linger_ms=50, enable_idempotence=False)
        sent = [producer.send(TOPIC, key=b"k%d" % i, value=value(name, i), partition=0) for i in range(3)]
        for f in sent:
            f.get(timeout=10)
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=100)
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = 0
    for _ in range(50):
        for records in consumer.poll(timeout_ms=200).values():
            got += len(records)
        if got >= 30:
            break
    consumer.end_offsets([tp])
    consumer.offsets_for_times({tp: 0})
    consumer.close()
    if got < 30:
        sys.exit("consumed only %d records" % got)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID)
    admin.delete_records({tp: 1})
    admin.close()


if __name__ == "__main__":
    main(sys.argv[1])
