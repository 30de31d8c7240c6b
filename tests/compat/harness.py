"""Scenario runner shared by the compatibility scripts in this directory.

Each script registers scenarios with ``@scenario`` and calls ``main()``. Every
scenario prints ``PASS name (secs)`` or ``FAIL name: reason``; the run ends with the line
``N passed, M failed`` and exits non-zero if any failed. `cargo xtask compat`
starts a fresh broker per script and passes its address as the first argument;
``--only SUBSTRING`` runs a subset when debugging by hand.
"""

import glob
import os
import signal
import socket
import struct
import sys
import time
import traceback

# A scenario that takes longer than this is stuck (each one needs a few seconds);
# SIGALRM turns a hang into a FAIL line instead of stalling the whole run.
SCENARIO_TIMEOUT_S = 60

_SCENARIOS = []


class ScenarioTimeout(Exception):
    pass


def scenario(fn):
    """Registers ``fn(bootstrap)`` as a scenario named after the function."""
    _SCENARIOS.append(fn)
    return fn


def check(cond, message):
    """Asserts with a message that ends up in the FAIL line (not stripped by -O)."""
    if not cond:
        raise AssertionError(message)


def eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def wait_until(predicate, timeout_s, what):
    """Polls ``predicate`` until truthy; metadata changes propagate asynchronously."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored_codecs(topic, partition=0):
    """Compression codecs of the record batches the broker stored for a partition.

    The broker stores batches exactly as the producer sent them, so this tells what
    the client really put on the wire: librdkafka silently falls back to no
    compression when it decides from ApiVersions that the broker can't take a codec.
    Reads the Kafka log layout in the data dir `cargo xtask compat` passes in
    SLUICE_COMPAT_DATA_DIR; returns None when run by hand without it.
    """
    data = os.environ.get("SLUICE_COMPAT_DATA_DIR")
    if not data:
        return None
    codecs = set()
    for path in sorted(glob.glob(os.path.join(data, f"{topic}-{partition}", "*.log"))):
        with open(path, "rb") as f:
            log = f.read()
        pos = 0
        while pos + 61 <= len(log):  # 61 bytes: the v2 batch header
            (length,) = struct.unpack_from(">i", log, pos + 8)
            (attributes,) = struct.unpack_from(">h", log, pos + 21)
            codecs.add(CODECS.get(attributes & 7, f"codec {attributes & 7}"))
            pos += 12 + length
    return codecs


def advertised_apis(bootstrap):
    """The broker's ApiVersions ranges {api_key: (min, max)}, from a raw v0 request
    (clients derive features such as codecs from these ranges)."""
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        # ApiVersions v0: header v1 (api key 18, version 0, correlation id 1, null
        # client id) and an empty body.
        s.sendall(struct.pack(">ihhih", 10, 18, 0, 1, -1))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during ApiVersions")
            buf += chunk
    # size, correlation id, error code, array of (key, min, max)
    _, _, error, count = struct.unpack_from(">iihi", buf)
    if error:
        raise AssertionError(f"ApiVersions v0 failed with error {error}")
    return {k: (lo, hi) for k, lo, hi in (struct.unpack_from(">hhh", buf, 14 + 6 * i) for i in range(count))}


def check_codec(topic, expected, why=""):
    """Asserts the stored batches of partition 0 use ``expected``. A client may send
    a small batch uncompressed when compressing would not shrink it, so "none" is
    allowed beside the codec, but at least one batch must use it."""
    got = stored_codecs(topic)
    if got is not None:
        ok = expected in got and got <= {expected, "none"}
        check(ok, f"codec of stored batches{': ' + why if why else ''}: expected {expected}, got {sorted(got)}")


def _on_alarm(_signum, _frame):
    raise ScenarioTimeout(f"timed out after {SCENARIO_TIMEOUT_S}s")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT [--only SUBSTRING]")
    bootstrap = args[0]
    only = args[2] if len(args) > 2 and args[1] == "--only" else None
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = 0
    for fn in _SCENARIOS:
        name = fn.__name__
        if only and only not in name:
            continue
        started = time.monotonic()
        signal.alarm(SCENARIO_TIMEOUT_S)
        try:
            note = fn(bootstrap)
        except Exception as e:  # noqa: BLE001 - every failure becomes a FAIL line
            signal.alarm(0)
            failed += 1
            reason = f"{type(e).__name__}: {e}".replace("\n", " | ")
            print(f"FAIL {name}: {reason}", flush=True)
            # The traceback goes to stderr so stdout stays one line per scenario.
            traceback.print_exc(file=sys.stderr)
            continue
        signal.alarm(0)
        passed += 1
        # A scenario may return a note: a known gap it checked for, shown on its line.
        suffix = f" [note: {note}]" if note else ""
        print(f"PASS {name} ({time.monotonic() - started:.1f}s){suffix}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
