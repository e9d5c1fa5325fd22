"""Writes that go straight to the socket: a connection's writer and the hub's
broadcast loop.

``writer_for(transport)`` gives the callable every write of a connection goes through.
With the compiled module (``_direct.c``) and a plain TCP socket it is a ``Sender``: it
``send(2)``s on the socket while the transport holds nothing and hands the transport
whatever the kernel does not take, so the transport's order and flow control (pause
above the high-water mark) still hold. Otherwise (TLS, ``LEGATO_NO_EXTENSIONS=1``, no
compiler) it is ``transport.write`` itself. Measured with perf: the transport's write()
and the write(2) system call behind it cost more than send(2) from C (vfs_write,
fdget_pos; see docs/design.md).

``send_all(outboxes, data)`` writes ``data`` through each outbox's ``fast`` writer (the
hub keeps it set while frames may go straight out) and returns the outboxes that have
none (or None), for the caller to queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["NATIVE", "Sender", "detach", "send_all", "send_all_python", "writer_for"]

Writer = Callable[[bytes], Any]


def send_all_python(outboxes: list[Any], data: bytes) -> list[Any] | None:
    """send_all without the compiled module: the same contract, a Python loop."""
    slow = None
    for outbox in outboxes:
        fast = outbox.fast
        if fast is not None:
            fast(data)
        elif slow is None:
            slow = [outbox]
        else:
            slow.append(outbox)
    return slow


Sender: Any = None
send_all: Callable[[list[Any], bytes], list[Any] | None] = send_all_python
NATIVE = False

if os.environ.get("LEGATO_NO_EXTENSIONS") != "1":
    try:
        from ._direct import Sender, send_all
    except ImportError:  # not built: the transport writes
        pass
    else:
        NATIVE = True


def writer_for(transport: Any) -> Writer:
    """The writer of a new connection: a Sender for plain TCP when compiled, else the
    transport's own write."""
    if NATIVE and transport.get_extra_info("sslcontext") is None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0:
            return Sender(sock.fileno(), transport)  # type: ignore[no-any-return]
    return transport.write  # type: ignore[no-any-return]


def detach(writer: Writer) -> None:
    """The connection is lost (its socket closes next): a Sender stops writing."""
    if NATIVE and type(writer) is Sender:
        writer.detach()  # type: ignore[attr-defined]
