"""Bytes that arrive in pieces and are joined once (a message, a compressed frame)."""

from __future__ import annotations

__all__ = ["Pieces"]


class Pieces:
    """Collects pieces for one join at the end.

    Big or few pieces are kept as they are: exact-size allocations joined once, never
    grown by realloc (growing large buffers makes glibc remap and fault pages on every
    message). Once many small pieces have come, they move to one bytearray, so that data
    dribbled in byte by byte costs memory close to its size rather than ~40x (one bytes
    object per byte).
    """

    __slots__ = ("_parts", "_raw", "size")

    SMALL = 1024  # bytes: a piece under this counts as small
    MAX_SMALL = 32  # pieces kept separately before switching to one bytearray

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._raw: bytearray | None = None
        self.size = 0

    def append(self, piece: bytes) -> None:
        self.size += len(piece)
        raw = self._raw
        if raw is not None:
            raw += piece
        elif len(piece) >= self.SMALL or len(self._parts) < self.MAX_SMALL:
            self._parts.append(piece)
        else:
            self._raw = raw = bytearray(b"".join(self._parts))
            raw += piece
            self._parts = []

    def join(self) -> bytes:
        """All pieces as one bytes object (no copy when there is a single piece)."""
        raw = self._raw
        return b"".join(self._parts) if raw is None else bytes(raw)

    def clear(self) -> None:
        self._parts = []
        self._raw = None
        self.size = 0
