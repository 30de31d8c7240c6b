#!/usr/bin/env python3
"""Regenerates interop_vectors.txt: record batches and compressed frames written by
other Kafka client stacks, which crates/protocol/tests/records_interop.rs decodes.

Not run by CI (the vectors are committed). To regenerate:
    pip install --target /tmp/pylibs kafka-python lz4 python-snappy zstandard cramjam
    PYTHONPATH=/tmp/pylibs python3 gen_vectors.py > interop_vectors.txt

Sources: kafka-python's DefaultRecordBatchBuilder (which compresses with python-lz4 =
the reference LZ4F library librdkafka also uses, xerial-framed snappy, zstandard, gzip),
python-lz4 frames with every optional frame flag, raw snappy as librdkafka writes it,
and a zstd frame without a content size as streaming (Java) writers produce.
"""
import gzip

import lz4.frame
import snappy
import zstandard
from kafka.record.default_records import DefaultRecordBatchBuilder

# The records every batch vector holds; records_interop.rs asserts the same list.
BASE_TS = 1_700_000_000_000
BIG = b"sluice " * 300  # makes compression worthwhile, else kafka-python sends it raw
RECORDS = [
    (BASE_TS, b"k0", b"v0", [("h", b"x")]),
    (BASE_TS + 7, None, b"hello", []),
    (BASE_TS - 3, b"k2", None, [("a", None), ("b", b"")]),
    (BASE_TS + 1000, b"big", BIG, [("content-type", b"text/plain")]),
]


def sample(n):
    # Same text as sample() in the Rust tests.
    out = bytearray()
    i = 0
    while len(out) < n:
        out += f"record {i} of the sluice test stream; ".encode()
        i += 1
    return bytes(out[:n])


def batch(codec, producer=None):
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    if producer:
        b.set_producer_state(*producer)
    for i, (ts, k, v, hs) in enumerate(RECORDS):
        b.append(i, timestamp=ts, key=k, value=v, headers=hs)
    return bytes(b.build())


def emit(name, data):
    print(name, data.hex())


for codec, name in [(0, "none"), (1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")]:
    emit(f"batch_{name}", batch(codec))
emit("batch_idempotent_txn", batch(0, producer=(4242, 7, 100, True)))

PAYLOAD_LEN = 140_000  # three 64 KiB blocks
payload = sample(PAYLOAD_LEN)
# (block checksum, content checksum, content size, linked blocks): librdkafka's
# defaults first, then kafka-python's (content size), then each optional field.
for bc, cc, size, linked in [
    (0, 0, 0, 0), (0, 0, 1, 0), (1, 0, 0, 0), (0, 1, 0, 0), (1, 1, 1, 0),
    (0, 0, 0, 1), (1, 1, 1, 1),
]:
    tag = f"lz4_bc{bc}_cc{cc}_size{size}_linked{linked}"
    emit(tag, lz4.frame.compress(
        payload, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=bool(linked),
        content_checksum=bool(cc), block_checksum=bool(bc), store_size=bool(size)))
emit("lz4_hc_4mb_blocks", lz4.frame.compress(
    payload, block_size=lz4.frame.BLOCKSIZE_MAX4MB,
    compression_level=lz4.frame.COMPRESSIONLEVEL_MINHC, block_linked=False))
emit("snappy_raw", snappy.compress(payload))
emit("zstd_no_content_size",
     zstandard.ZstdCompressor(level=3, write_content_size=False).compress(payload))
emit("gzip_stdlib", gzip.compress(payload, mtime=0))
