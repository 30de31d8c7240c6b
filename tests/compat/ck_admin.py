"""One shared confluent-kafka AdminClient per bootstrap address, and topic creation,
for the scenario scripts that use confluent-kafka's admin API (confluent_kafka_groups,
kcat_groups)."""

from confluent_kafka.admin import AdminClient, NewTopic

_ADMINS = {}


def admin(bs):
    # One shared client: a future fails with _DESTROY if its client is collected first.
    if bs not in _ADMINS:
        _ADMINS[bs] = AdminClient({"bootstrap.servers": bs})
    return _ADMINS[bs]


def create(bs, name, partitions, timeout=20):
    fs = admin(bs).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], request_timeout=timeout
    )
    fs[name].result(timeout=timeout)
