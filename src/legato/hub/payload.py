"""A message and its key as the brokers carry it (Redis and NATS alike): one type byte,
``t`` text or ``b`` bytes (``T``/``B``: a key first, as ``<length>:<key>``), then the
payload as published. Encoded once per publish, decoded once per delivery."""

from __future__ import annotations

__all__ = ["decode", "encode"]

_TEXT, _BINARY = 0x74, 0x62  # b"t", b"b"
_KEYED_TEXT, _KEYED_BINARY = 0x54, 0x42  # b"T", b"B"


def encode(payload: str | bytes, key: str | None) -> bytes:
    text = isinstance(payload, str)
    body = payload.encode() if isinstance(payload, str) else payload
    if key is None:
        return (b"t" if text else b"b") + body
    raw_key = key.encode()
    return (b"T" if text else b"B") + b"%d:" % len(raw_key) + raw_key + body


def decode(data: bytes, start: int = 0) -> tuple[str | bytes, str | None]:
    """The message and its key from ``data[start:]``; ``ValueError`` for anything else."""
    kind = data[start]
    key = None
    if kind in (_KEYED_TEXT, _KEYED_BINARY):
        colon = data.index(b":", start + 1)
        length = int(data[start + 1:colon])
        end = colon + 1 + length
        if length < 0 or end > len(data):
            raise ValueError("key length out of range")
        key = data[colon + 1:end].decode()
        kind = _TEXT if kind == _KEYED_TEXT else _BINARY
        start = end - 1
    if kind == _TEXT:
        return data[start + 1:].decode(), key
    if kind == _BINARY:
        return data[start + 1:], key
    raise ValueError(f"unknown message type byte {kind!r}")
