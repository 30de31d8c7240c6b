"""Sarama (Debian's golang-github-shopify-sarama-dev, 1.22.1) against Sluice.

Run by `cargo xtask compat` as ``python sarama_scenarios.py HOST:PORT`` with
SLUICE_COMPAT_SARAMA naming the program built from tests/compat/go/ (by hand, it
defaults to target/compat-go/sarama-compat). Each scenario runs one of its
subcommands, which prints JSON, and asserts on that; topics are created and group
offsets read with the confluent-kafka admin client.

Sarama 1.22 picks request versions from Config.Version alone (it sends no
ApiVersions). Its default, V0_8_2_0, means Produce v0 with the legacy message format,
which Sluice refuses as Kafka 4.0 does, and ConsumerGroup needs at least V0_10_2_0; the
record-batch format needs V0_11_0_0. So the group scenarios run twice:

- V0_11_0_0, the oldest that works: Metadata v1, Produce v3, Fetch v4, ListOffsets v1,
  FindCoordinator v0, JoinGroup v1, SyncGroup v0, Heartbeat v0, LeaveGroup v0,
  OffsetFetch v1, OffsetCommit v1 (no retention set);
- V2_2_0_0, the newest Sarama 1.22 knows: Metadata v5 and, with
  Consumer.Offsets.Retention set, OffsetCommit v2 (the group APIs stay at the versions
  above in this Sarama release).

ClusterAdmin adds ListGroups v0, DescribeGroups v0 and DeleteGroups v0.
"""

import json
import os
import subprocess

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, eq, main, scenario

T = 30  # seconds: bound on each Sarama run (the Go side bounds its own waits at T - 5)
PARTS = 4
SARAMA = os.environ.get("SLUICE_COMPAT_SARAMA") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "compat-go", "sarama-compat"
)
NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 68, 69

_ADMINS = {}


def admin(bs):
    if bs not in _ADMINS:
        _ADMINS[bs] = AdminClient({"bootstrap.servers": bs})
    return _ADMINS[bs]


def sarama(bs, cmd, version, *args):
    argv = [SARAMA, cmd, "-brokers", bs, "-version", version, "-timeout", f"{T - 5}s", *map(str, args)]
    r = subprocess.run(argv, capture_output=True, timeout=T)
    check(r.returncode == 0, f"`{' '.join(argv[1:])}` exited {r.returncode}: {r.stderr.decode(errors='replace')[-800:]}")
    return json.loads(r.stdout)


def committed(bs, group, topic):
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTS)])]
    res = admin(bs).list_consumer_group_offsets(req, request_timeout=10)[group].result(timeout=10)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def state(bs, group):
    return admin(bs).describe_consumer_groups([group], request_timeout=10)[group].result(timeout=10).state


def check_consumed(out, expected, what):
    check(not out["timed_out"], f"{what}: Sarama timed out with {len(out['messages'])} messages, sessions {out['sessions']}")
    eq(out["errors"], [], f"{what}: errors reported by Sarama")
    got = [(p, o) for _, p, o in out["messages"]]
    check(len(got) == len(set(got)), f"{what}: {len(got) - len(set(got))} messages consumed twice")
    check(set(got) == expected, f"{what}: missing {sorted(expected - set(got))[:5]}, extra {sorted(set(got) - expected)[:5]}")


def final_shares(out, members):
    """Each member's claims in its last session, checking they share one generation."""
    last = {}
    for s in out["sessions"]:
        last[s["member"]] = s
    eq(sorted(last), list(range(members)), "members with a session")
    eq(len({s["generation"] for s in last.values()}), 1, f"one final generation: {list(last.values())}")
    return sorted(sorted(s["claims"]) for s in last.values())


def version_scenarios(version, label, retention, delete_groups):
    """Registers the produce/group scenarios for one Config.Version. ``delete_groups``:
    Sarama sends DeleteGroups only from V1_1_0_0 on (it refuses the call below)."""
    topic, group = f"sarama-{label}", f"sarama-{label}-g"
    extra = ["-retention"] if retention else []

    def produce_sync_acks_all(bs):
        admin(bs).create_topics([NewTopic(topic, PARTS, 1)], request_timeout=10)[topic].result(timeout=10)
        res = sarama(bs, "produce", version, "-topic", topic, "-n", 200, "-partitions", PARTS)["results"]
        eq(len(res), 200, "results")
        # Message i went to partition i % 4 and got the next offset there (acks=all).
        eq(res, [[i % PARTS, i // PARTS] for i in range(200)], "partitions/offsets returned")

    def group_roundrobin_two_members(bs):
        out = sarama(bs, "consume", version, "-topic", topic, "-group", group, "-expect", 200, "-members", 2, "-partitions", PARTS, *extra)
        check_consumed(out, {(p, o) for p in range(PARTS) for o in range(50)}, "two members")
        # Sarama's roundrobin over 4 partitions and 2 members: 0,2 and 1,3 (range: 0,1 and 2,3).
        eq(final_shares(out, 2), [[0, 2], [1, 3]], "roundrobin claims")
        eq(committed(bs, group, topic), {p: 50 for p in range(PARTS)}, "committed (marked offsets)")
        eq(state(bs, group), ConsumerGroupState.EMPTY, "state after Close")

    def group_restart_resumes(bs):
        sarama(bs, "produce", version, "-topic", topic, "-n", 40, "-partitions", PARTS, "-prefix", "after")
        out = sarama(bs, "consume", version, "-topic", topic, "-group", group, "-expect", 40, "-members", 1, "-partitions", PARTS, *extra)
        # Only what was produced after the first run: a re-delivery would show as an
        # offset below 50 (each partition is read in order from the committed offset).
        check_consumed(out, {(p, o) for p in range(PARTS) for o in range(50, 60)}, "restarted member")
        eq(final_shares(out, 1), [[0, 1, 2, 3]], "claims of the lone member")
        eq(committed(bs, group, topic), {p: 60 for p in range(PARTS)}, "committed after the restart")

    def admin_describe_lag_delete(bs):
        argv = [SARAMA, "consume", "-brokers", bs, "-version", version, "-timeout", f"{T - 5}s", "-topic", topic,
                "-group", group, "-expect", "0", "-members", "1", "-partitions", str(PARTS), "-hold", *extra]
        held = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = held.stdout.readline().decode().strip()  # bounded by the Go side's -timeout
            check(line == "READY", f"held consumer said {line!r}: {held.stderr.read().decode()[-500:] if not line else ''}")
            live = sarama(bs, "admin", version, "-topic", topic, "-group", group, "-partitions", PARTS)
            eq(live["groups"].get(group), "consumer", "ListGroups protocol type")
            (d,) = live["described"]
            eq((d["group"], d["error"], d["state"], d["protocol_type"], d["protocol"]), (group, 0, "Stable", "consumer", "roundrobin"), "DescribeGroups")
            (m,) = d["members"]
            eq((m["client_id"], m["client_host"], m["topics"], m["assignment"]), ("sarama-member-0", "/127.0.0.1", [topic], {topic: [0, 1, 2, 3]}), "member")
            if delete_groups:
                eq(sarama(bs, "delete-group", version, "-group", group)["error"], NON_EMPTY_GROUP, "DeleteGroups of a live group")
        finally:
            # communicate() closes stdin: the consumer closes (final commit, LeaveGroup).
            try:
                out, err = held.communicate(timeout=T)
            except subprocess.TimeoutExpired:
                held.kill()
                out, err = held.communicate()
        check(held.returncode == 0, f"held consumer exited {held.returncode}: {err.decode()[-500:]}")
        check_consumed(json.loads(out), set(), "held consumer")
        # Lag: newest offset minus committed, with 5 unconsumed messages per partition.
        sarama(bs, "produce", version, "-topic", topic, "-n", 20, "-partitions", PARTS, "-prefix", "lag")
        idle = sarama(bs, "admin", version, "-topic", topic, "-group", group, "-partitions", PARTS)
        eq(idle["described"][0]["state"], "Empty", "state after the member left")
        lag = {p: idle["newest"][str(p)] - idle["committed"][str(p)] for p in range(PARTS)}
        eq(lag, {p: 5 for p in range(PARTS)}, "lag per partition (newest - committed)")
        if not delete_groups:
            return "no DeleteGroups: Sarama 1.22 sends it only with Version >= V1_1_0_0"
        eq(sarama(bs, "delete-group", version, "-group", group)["error"], 0, "DeleteGroups of the empty group")
        eq(sarama(bs, "delete-group", version, "-group", group)["error"], GROUP_ID_NOT_FOUND, "DeleteGroups again")
        eq(committed(bs, group, topic), {p: -1001 for p in range(PARTS)}, "offsets after delete")
        return None

    for fn in (produce_sync_acks_all, group_roundrobin_two_members, group_restart_resumes, admin_describe_lag_delete):
        fn.__name__ = f"{fn.__name__}_{label}"
        scenario(fn)


@scenario
def default_version_refused(bs):
    out = sarama(bs, "default-version", "default", "-topic", "sarama-default", "-group", "sarama-default-g")
    eq(out["version"], "0.8.2.0", "Sarama's default Config.Version")
    check("Version to be >= V0_10_2_0" in out["group_error"], f"ConsumerGroup error: {out['group_error']!r}")
    check(out["produce_error"], "Produce v0 succeeded")
    check(out["produce_secs"] < 15, f"the refused produce took {out['produce_secs']:.1f}s")
    return f"default Version {out['version']}: produce fails with {out['produce_error']!r} (Produce v0 refused); ConsumerGroup needs >= V0_10_2_0"


version_scenarios("0.11.0.0", "v0_11", retention=False, delete_groups=False)
version_scenarios("2.2.0", "v2_2", retention=True, delete_groups=True)


if __name__ == "__main__":
    main()
