"""TLS, SASL and ACLs with real clients: confluent-kafka (librdkafka), kafka-python and kcat.

Run by `cargo xtask compat security` as ``python security_scenarios.py HOST:PORT``
against a broker locked down as a Kafka user would: a SASL_SSL listener (the
bootstrap, advertised as ``localhost``), an SSL listener that asks for client
certificates, SCRAM-SHA-256/512 with ``User:admin`` bootstrapped by ``--add-scram`` and
made a super user, the ACL authorizer with Kafka's default deny, and
``connections.max.reauth.ms`` set so that sessions expire while scenarios run. The
xtask passes the test PKI directory and the other listeners in the environment:

- ``SLUICE_SEC_PKI``: ``ca.pem``, ``other-ca.pem``, client certificates
  ``<name>.pem`` / ``<name>-key.pem`` for ``writer`` and ``nobody``
  (subject ``CN=<name>,O=Sluice Test``);
- ``SLUICE_SEC_SSL``: the SSL listener (``localhost:PORT``);
- ``SLUICE_SEC_BOOTSTRAP_IP``: the SASL_SSL listener as ``127.0.0.1:PORT``, a name
  the server certificate does not carry (for the hostname check);
- ``SLUICE_SEC_HTTP``: the broker's HTTP endpoint (``/metrics``).
"""

import os
import subprocess
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from harness import check, eq, main, scenario, wait_until

T = 15  # seconds: bound on every client call
PKI = os.environ.get("SLUICE_SEC_PKI", "")
ADMIN = ("admin", "admin-secret")


def pki(name):
    return os.path.join(PKI, name)


def sasl(bs, user, password, mechanism="SCRAM-SHA-512", **extra):
    conf = {
        "bootstrap.servers": bs,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": pki("ca.pem"),
        "ssl.endpoint.identification.algorithm": "https",
    }
    conf.update(extra)
    return conf


def mtls(name, **extra):
    conf = {
        "bootstrap.servers": os.environ["SLUICE_SEC_SSL"],
        "security.protocol": "SSL",
        "ssl.ca.location": pki("ca.pem"),
        "ssl.certificate.location": pki(f"{name}.pem"),
        "ssl.key.location": pki(f"{name}-key.pem"),
        "ssl.endpoint.identification.algorithm": "https",
    }
    conf.update(extra)
    return conf


def admin_client(bs):
    return AdminClient(sasl(bs, *ADMIN))


def done(futures, client=None):
    """Waits for every future of an admin call; returns their results in order. The
    client must outlive its futures (a destroyed handle fails them), hence the
    parameter that keeps it referenced."""
    results = [f.result(T) for f in futures.values()]
    del client
    return results


def create_topic(bs, name, partitions=1):
    a = admin_client(bs)
    done(a.create_topics([NewTopic(name, partitions, 1)], operation_timeout=T), a)


def add_acls(bs, *bindings):
    a = admin_client(bs)
    done(a.create_acls(list(bindings)), a)


def allow(kind, name, principal, op, pattern=ResourcePatternType.LITERAL, permission=AclPermissionType.ALLOW):
    return AclBinding(kind, name, pattern, principal, "*", op, permission)


def add_user(bs, user, password, mechanism=ScramMechanism.SCRAM_SHA_512, iterations=8192):
    info = ScramCredentialInfo(mechanism, iterations)
    a = admin_client(bs)
    done(a.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info, password.encode())]), a)


def produce(conf, topic, values):
    """Produces ``values``; returns the list of delivery errors (empty when all landed)."""
    conf = dict(conf, **{"message.timeout.ms": T * 1000, "linger.ms": 5})
    p = Producer(conf)
    errors = []
    for v in values:
        p.produce(topic, value=v.encode(), on_delivery=lambda e, _m: e and errors.append(e))
    check(p.flush(T + 5) == 0, "messages still queued after flush")
    return errors


def produce_denied(conf, topic, what):
    errors = produce(conf, topic, ["x"])
    check(errors, f"{what}: produce to {topic} succeeded")
    eq(errors[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED, f"{what}: delivery error")


def consume(conf, topic, n, group=None):
    """Consumes ``n`` values from the start (in a group when given, else assigned)."""
    base = dict(conf, **{"auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "group.id": group or f"g-{uuid.uuid4().hex[:8]}", "fetch.wait.max.ms": 100})
    c = Consumer(base)
    if group:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + T
    try:
        while len(got) < n:
            check(time.monotonic() < deadline, f"consumed {len(got)} of {n} from {topic}")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            got.append(m.value().decode())
        if group:
            c.commit(asynchronous=False)
            committed = c.committed([TopicPartition(topic, 0)], timeout=T)
            eq(committed[0].offset, n, "committed offset")
    finally:
        c.close()
    return got


def first_consumer_error(conf, topic, group, subscribe=True):
    """The first error a consumer of ``topic`` in ``group`` sees."""
    c = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error():
                return m.error().code()
            check(m is None, f"consumed from {topic} without the right to")
        raise AssertionError(f"no error consuming {topic} in {group}")
    finally:
        c.close()


def auth_errors(conf):
    """Connects with ``conf`` and returns the error codes the client reported."""
    errors = []
    conf = dict(conf, error_cb=lambda e: errors.append(e.code()))
    p = Producer(conf)
    try:
        p.list_topics(timeout=5)
    except KafkaException as e:
        errors.append(e.args[0].code())
    return errors


def refused(errors):
    """The login failed: librdkafka reports _AUTHENTICATION, or, when the broker's
    close after SASL_AUTHENTICATION_FAILED reaches it first, a transport error."""
    return bool(set(errors) & {KafkaError._AUTHENTICATION, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


def tls_failed(errors):
    """librdkafka reports a failed handshake as _SSL (or, once every broker failed so,
    _TRANSPORT / _ALL_BROKERS_DOWN), never as an authentication error."""
    tls = {KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
    return bool(errors) and set(errors) & tls and KafkaError._AUTHENTICATION not in errors


def metric(name):
    """The sum of a Prometheus counter over its label sets, from /metrics."""
    text = urllib.request.urlopen(f"http://{os.environ['SLUICE_SEC_HTTP']}/metrics", timeout=T).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


@scenario
def scram_sha512_produce_consume_group(bs):
    """The super user over SASL_SSL + SCRAM-SHA-512: admin, produce, group consume, commit."""
    create_topic(bs, "sec-basic")
    conf = sasl(bs, *ADMIN)
    values = [f"v{i}" for i in range(200)]
    eq(produce(conf, "sec-basic", values), [], "delivery errors")
    eq(consume(conf, "sec-basic", 200, group="sec-basic-g"), values, "consumed")


@scenario
def wrong_password_is_rejected(bs):
    errors = auth_errors(sasl(bs, "admin", "not-the-password"))
    check(refused(errors), f"expected an authentication error, got {errors}")
    errors = auth_errors(sasl(bs, "nobody-at-all", "x", mechanism="SCRAM-SHA-256"))
    check(refused(errors), f"unknown user: expected an authentication error, got {errors}")


@scenario
def scram_users_managed_by_admin_api(bs):
    """AlterUserScramCredentials / DescribeUserScramCredentials from AdminClient, then logins."""
    a = admin_client(bs)
    add_user(bs, "dana", "dana-512", ScramMechanism.SCRAM_SHA_512, 8192)
    add_user(bs, "dana", "dana-256", ScramMechanism.SCRAM_SHA_256, 4096)
    described = a.describe_user_scram_credentials(["dana"])["dana"].result(T)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    eq(infos, sorted([(ScramMechanism.SCRAM_SHA_512, 8192), (ScramMechanism.SCRAM_SHA_256, 4096)]), "dana's credentials")
    eq(auth_errors(sasl(bs, "dana", "dana-512")), [], "dana SCRAM-SHA-512 login errors")
    eq(auth_errors(sasl(bs, "dana", "dana-256", mechanism="SCRAM-SHA-256")), [], "dana SCRAM-SHA-256 login errors")
    # Each mechanism has its own password; deleting one credential stops that login only.
    check(refused(auth_errors(sasl(bs, "dana", "dana-256"))), "SHA-512 with the SHA-256 password")
    done(a.alter_user_scram_credentials([UserScramCredentialDeletion("dana", ScramMechanism.SCRAM_SHA_256)]))
    check(refused(auth_errors(sasl(bs, "dana", "dana-256", mechanism="SCRAM-SHA-256"))),
          "SCRAM-SHA-256 login after its credential was deleted")
    eq(auth_errors(sasl(bs, "dana", "dana-512")), [], "dana SCRAM-SHA-512 login after the other was deleted")


@scenario
def tls_hostname_and_trust_are_checked(bs):
    # The certificate names localhost, not 127.0.0.1: with hostname verification on, a
    # client that dials the IP must refuse the broker; with it off, it connects.
    ip = os.environ["SLUICE_SEC_BOOTSTRAP_IP"]
    errors = auth_errors(sasl(ip, *ADMIN))
    check(tls_failed(errors), f"hostname mismatch: expected an SSL/transport error, got {errors}")
    eq(auth_errors(sasl(ip, *ADMIN, **{"ssl.endpoint.identification.algorithm": "none"})), [],
       "errors without hostname verification")
    # A client that trusts another CA refuses the broker's certificate.
    errors = auth_errors(sasl(bs, *ADMIN, **{"ssl.ca.location": pki("other-ca.pem")}))
    check(tls_failed(errors), f"untrusted CA: expected an SSL/transport error, got {errors}")


@scenario
def mtls_principal_from_certificate(bs):
    create_topic(bs, "sec-mtls")
    writer = "User:CN=writer,O=Sluice Test"
    add_acls(bs,
             allow(ResourceType.TOPIC, "sec-mtls", writer, AclOperation.WRITE),
             allow(ResourceType.TOPIC, "sec-mtls", writer, AclOperation.READ),
             # librdkafka looks up its group's coordinator even for assigned partitions
             allow(ResourceType.GROUP, "g-", writer, AclOperation.READ, ResourcePatternType.PREFIXED))
    eq(produce(mtls("writer"), "sec-mtls", ["a", "b", "c"]), [], "writer's delivery errors")
    eq(consume(mtls("writer"), "sec-mtls", 3), ["a", "b", "c"], "writer reads back")
    produce_denied(mtls("nobody"), "sec-mtls", "a certificate without ACLs")


@scenario
def acl_matrix(bs):
    for user in ("alice", "bob", "carol"):
        add_user(bs, user, f"{user}-secret")
    for t in ("acl-orders", "acl-shared", "acl-noacl", "logs-app"):
        create_topic(bs, t)
    alice, bob, carol = (sasl(bs, u, f"{u}-secret") for u in ("alice", "bob", "carol"))
    add_acls(bs,
             allow(ResourceType.TOPIC, "acl-orders", "User:alice", AclOperation.WRITE),
             allow(ResourceType.TOPIC, "acl-orders", "User:alice", AclOperation.READ),
             allow(ResourceType.GROUP, "acl-g", "User:alice", AclOperation.READ),
             # bob may read the topic but not use the group
             allow(ResourceType.TOPIC, "acl-orders", "User:bob", AclOperation.READ),
             allow(ResourceType.TOPIC, "logs-", "User:carol", AclOperation.WRITE, ResourcePatternType.PREFIXED),
             allow(ResourceType.GROUP, "carol-g", "User:carol", AclOperation.READ),
             allow(ResourceType.TOPIC, "acl-shared", "User:*", AclOperation.ALL),
             allow(ResourceType.TOPIC, "acl-shared", "User:bob", AclOperation.WRITE, permission=AclPermissionType.DENY))
    # allowed principal writes and reads in its group, with commits
    eq(produce(alice, "acl-orders", ["o1", "o2"]), [], "alice's delivery errors")
    eq(consume(alice, "acl-orders", 2, group="acl-g"), ["o1", "o2"], "alice consumes")
    # denied principal: produce, group join and offset commit
    produce_denied(bob, "acl-orders", "bob without Write")
    eq(first_consumer_error(bob, "acl-orders", "acl-g"), KafkaError.GROUP_AUTHORIZATION_FAILED, "bob joins acl-g")
    c = Consumer(dict(bob, **{"group.id": "acl-g", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition("acl-orders", 0, 1)], asynchronous=False)
        raise AssertionError("bob committed to acl-g")
    except KafkaException as e:
        eq(e.args[0].code(), KafkaError.GROUP_AUTHORIZATION_FAILED, "bob's commit")
    finally:
        c.close()
    # fetch without Read
    eq(first_consumer_error(carol, "acl-orders", "carol-g", subscribe=False), KafkaError.TOPIC_AUTHORIZATION_FAILED,
       "carol fetches acl-orders")
    # prefixed pattern
    eq(produce(carol, "logs-app", ["l1"]), [], "carol writes logs-app")
    produce_denied(carol, "acl-orders", "carol outside her prefix")
    # deny beats allow
    eq(produce(alice, "acl-shared", ["s1"]), [], "alice writes acl-shared")
    produce_denied(bob, "acl-shared", "bob denied on acl-shared")
    # no ACL: default deny (allow.everyone.if.no.acl.found=false)
    produce_denied(alice, "acl-noacl", "a topic without ACLs")
    # the super user needs no ACL
    eq(produce(sasl(bs, *ADMIN), "acl-noacl", ["n1"]), [], "admin writes acl-noacl")
    # DescribeAcls and DeleteAcls from AdminClient: removing the deny lets bob write
    a = admin_client(bs)
    deny_filter = AclBindingFilter(ResourceType.TOPIC, "acl-shared", ResourcePatternType.LITERAL, "User:bob", None,
                                   AclOperation.ANY, AclPermissionType.DENY)
    described = a.describe_acls(deny_filter).result(T)
    eq(len(described), 1, "bob's deny ACLs described")
    deleted = done(a.delete_acls([deny_filter]))
    eq(len(deleted[0]), 1, "ACLs deleted by the filter")
    wait_until(lambda: not produce(bob, "acl-shared", ["s2"]), T, "bob writing acl-shared once the deny is gone")


@scenario
def metadata_hides_topics(bs):
    add_user(bs, "erin", "erin-secret")
    create_topic(bs, "sec-visible")
    create_topic(bs, "sec-hidden")
    add_acls(bs, allow(ResourceType.TOPIC, "sec-visible", "User:erin", AclOperation.DESCRIBE))
    names = set(Producer(sasl(bs, "erin", "erin-secret")).list_topics(timeout=T).topics)
    check("sec-visible" in names, f"erin should see sec-visible: {sorted(names)}")
    check("sec-hidden" not in names and "sec-basic" not in names, f"erin sees topics she may not describe: {sorted(names)}")


@scenario
def kafka_python_sasl_ssl(bs):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as KpError

    create_topic(bs, "sec-kp")
    common = dict(bootstrap_servers=bs, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                  sasl_plain_username=ADMIN[0], sasl_plain_password=ADMIN[1], ssl_cafile=pki("ca.pem"))
    p = KafkaProducer(acks="all", **common)
    for i in range(50):
        p.send("sec-kp", f"kp{i}".encode())
    p.flush(T)
    p.close(T)
    c = KafkaConsumer("sec-kp", group_id="sec-kp-g", auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=T * 1000, **common)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == 50:
            break
    c.commit()
    eq(got, [f"kp{i}" for i in range(50)], "kafka-python consumed")
    c.close()
    # wrong password: the client cannot bootstrap
    bad = dict(common, sasl_plain_password="wrong")
    try:
        KafkaProducer(**bad).close(1)
        raise AssertionError("kafka-python connected with a wrong password")
    except KpError as e:
        # kafka-python reports a bootstrap that never authenticates as a timeout.
        check(any(k in type(e).__name__ for k in ("Authentication", "NoBrokers", "Timeout")),
              f"unexpected error for a wrong password: {type(e).__name__}: {e}")


@scenario
def kafka_python_denied_gets_authorization_errors(bs):
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    add_user(bs, "frank", "frank-secret", ScramMechanism.SCRAM_SHA_256)
    create_topic(bs, "sec-kp-denied")
    p = KafkaProducer(bootstrap_servers=bs, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                      sasl_plain_username="frank", sasl_plain_password="frank-secret", ssl_cafile=pki("ca.pem"),
                      max_block_ms=5000)
    try:
        p.send("sec-kp-denied", b"x").get(T)
        raise AssertionError("frank wrote without an ACL")
    except TopicAuthorizationFailedError:
        pass
    finally:
        p.close(1)


@scenario
def kcat_sasl_ssl(bs):
    create_topic(bs, "sec-kcat")
    args = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
            "-X", f"sasl.username={ADMIN[0]}", "-X", f"sasl.password={ADMIN[1]}",
            "-X", f"ssl.ca.location={pki('ca.pem')}"]
    lines = [f"k{i}" for i in range(100)]
    r = subprocess.run(["kcat", "-b", bs, "-q", *args, "-P", "-t", "sec-kcat"], input="\n".join(lines).encode() + b"\n",
                       capture_output=True, timeout=T)
    eq(r.returncode, 0, f"kcat produce: {r.stderr.decode()[-300:]}")
    r = subprocess.run(["kcat", "-b", bs, "-q", *args, "-C", "-t", "sec-kcat", "-o", "beginning", "-e"],
                       capture_output=True, timeout=T)
    eq(r.stdout.decode().splitlines(), lines, "kcat consumed")
    bad = [a.replace(ADMIN[1], "wrong") for a in args]
    r = subprocess.run(["kcat", "-b", bs, "-q", *bad, "-L", "-m", "5"], capture_output=True, timeout=T)
    check(r.returncode != 0, "kcat -L with a wrong password succeeded")


@scenario
def sessions_reauthenticate(bs):
    """KIP-368: the broker gives sessions a lifetime (connections.max.reauth.ms); a
    producer that outlives it keeps delivering, re-authenticating on its connection."""
    create_topic(bs, "sec-reauth")
    before = metric("sluice_successful_reauthentication_total")
    p = Producer(dict(sasl(bs, *ADMIN), **{"linger.ms": 0, "message.timeout.ms": T * 1000}))
    errors = []
    deadline = time.monotonic() + 8
    sent = 0
    while time.monotonic() < deadline:
        p.produce("sec-reauth", value=b"r", on_delivery=lambda e, _m: e and errors.append(e))
        sent += 1
        p.poll(0.25)
    eq(p.flush(T), 0, "messages still queued")
    eq(errors, [], "delivery errors across re-authentication")
    check(metric("sluice_successful_reauthentication_total") > before, "no re-authentication was counted")
    return f"{sent} messages over 8 s"


if __name__ == "__main__":
    main()
