"""Redis Cluster key slots (issue 16): which of the 16,384 slots, and so which shard, a
key lives on, and the hash-tagged names that keep a topic's keys together.

A cluster hashes only the *hash tag* of a key when it has one: the bytes between the
first ``{`` and the next ``}``, if that is not empty (the Redis Cluster specification,
"Keys hash tags"). The hub names every key of a topic (its stream, epoch, presence,
counts, pub/sub channel) with the same tag, so they share a slot: a publish (XADD + the
epoch + SPUBLISH in one script) stays one round trip on one shard. A topic name may hold
``{`` or ``}`` itself, which would cut the tag short: such a topic's tag is a digest of
it instead.
"""

from __future__ import annotations

import hashlib

__all__ = ["SLOTS", "crc16", "key_slot", "topic_tag"]

#: Slots of a Redis Cluster.
SLOTS = 16384


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial 0): the checksum Redis Cluster uses."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The slot of ``key``: of its hash tag when it has a non-empty one."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


def topic_tag(prefix: str, topic: str) -> str:
    """The hash tag every key of ``topic`` carries, braces included."""
    if "{" in topic or "}" in topic:
        topic = "#" + hashlib.sha1(topic.encode()).hexdigest()[:20]
    return "{" + f"{prefix}:{topic}" + "}"
