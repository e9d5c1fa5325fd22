"""Parse and serialise throughput of legato's sans-I/O WebSocket core vs websockets and wsproto.

For each case -- text/binary x 32 B / 1 KiB / 64 KiB payload x permessage-deflate off/on --
three sans-I/O engines run in one process, built directly in OPEN state (no handshake):
legato ``legato.protocol.Connection``, websockets ``websockets.protocol.Protocol`` (the
engine under ServerProtocol/ClientProtocol) and wsproto ``wsproto.connection.Connection``.

serialise  A fresh client-role engine sends N messages, draining the bytes after each send
           (``data_to_send()`` / ``send``'s return value) as an I/O layer does. Every frame
           is masked with a fresh key (RFC 6455 §5.3).
parse      The bytes of a serialise run by the *same library's* client (so each inflates
           its own compressor's output) are cut into reads of ``--chunk`` bytes (64 KiB, a
           typical socket read; 0 = one read) and fed to a fresh server-role engine,
           draining events after every read, until every message is out.

Figures: messages/s and MB/s of application payload (uncompressed, 10**6 B/MB), best of
``--repeat`` runs, libraries interleaved. The clock is the thread's CPU time around the
send/receive/drain calls only, so a busy neighbour process (tests run in parallel) does
not count against whichever library it hit; it still adds cache noise, so rerun a case
that looks off. The table gives legato's figure and legato/websockets, legato/wsproto.

Why: the protocol core is the per-message cost of every legato server. The bar is legato
>= 2x websockets at 32 B (per-frame Python overhead dominates) and >= 1x at 64 KiB
(masking, copies, UTF-8 and zlib dominate).

Fairness: text -- legato and wsproto deliver validated ``str`` and take ``str``;
websockets' Protocol deals in UTF-8 bytes and leaves that to its connection layer, so its
loops include ``frame.data.decode()`` / ``str.encode()``. Deflate -- all three use zlib
level 6, window bits 12 both ways, memLevel 5 (legato's defaults), context takeover;
websockets via ``compress_settings``; wsproto hard-codes memLevel 8, so its deflater is
pre-created with memLevel 5. Whatever else legato's ``PerMessageDeflate`` defaults to
(e.g. ``min_size``) applies as shipped. wsproto hands out a frame split across reads as
partial messages; joining them is left out of its time.

Correctness is checked once per case and library in an untimed run: the parsed messages
(type, content, count, FIN) must equal those sent, which proves the serialised bytes too.
A failure prints FAILED and the run exits 1, so a broken fast path cannot win.
Single-threaded, ~1 min (``--quick`` ~5 s); see ``--help``. ``LEGATO_NO_EXTENSIONS=1``
measures legato's pure-Python fallback (websockets keeps its C masking).
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import websockets.frames as ws_frames
import wsproto.events as wp_events
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
from websockets.frames import BINARY as WS_BINARY, TEXT as WS_TEXT
from websockets.protocol import CLIENT as WS_CLIENT, OPEN as WS_OPEN, SERVER as WS_SERVER
from websockets.protocol import Protocol as WsProtocol
from wsproto.connection import Connection as WpConnection, ConnectionType
from wsproto.extensions import Extension, PerMessageDeflate as WpDeflate

from legato.protocol import (BytesMessage, Connection, DeflateCodec, DeflateParams,
                             PerMessageDeflate, Role, TextMessage, masking)

LEVEL, WBITS, MEM_LEVEL = 6, 12, 5
SIZES = (32, 1024, 65536)
COUNTS = {32: (20000, 10000), 1024: (10000, 4000), 65536: (400, 100)}  # deflate off/on, /5 quick
BAR = {32: 2.0, 65536: 1.0}  # legato/websockets needed, by size
clock = time.thread_time  # CPU time: a neighbour stealing the core does not count
Msgs = list[Any]  # str or bytes, one kind per case


_WORDS = ("the quick brown fox jumps over lazy dog price update user joined room chat "
          "café naïve über 日本 ok ack status online typing 42 true false null").split()


def make_payloads(size: int, text: bool, count: int, rng: random.Random) -> Msgs:
    """``count`` distinct payloads of exactly ``size`` bytes: JSON-like chat text (some
    non-ASCII) or int16 telemetry samples (a random walk), both moderately compressible."""
    out: Msgs = []
    for i in range(count):
        if text:
            words = " ".join(rng.choice(_WORDS) for _ in range(size // 4 + 2))
            raw = f'{{"seq":{i},"user":"u{rng.randrange(1000)}","text":"{words}"}}'.encode()
            t = raw[:size].decode("utf-8", "ignore")
            out.append(t + " " * (size - len(t.encode())))
        else:
            walk = array.array("h", [rng.randrange(-40, 41) for _ in range(size // 2)])
            for j in range(1, len(walk)):
                walk[j] = max(-30000, min(30000, walk[j - 1] + walk[j]))
            out.append(walk.tobytes())
    return out


# ------------------------------------------------------------------------------- engines

#: Overrides of legato's shipped PerMessageDeflate defaults (set by --min-size).
LEGATO_OPTIONS: dict[str, Any] = {}


def legato_engine(role: Role, deflate: bool) -> Connection:
    codec = None
    if deflate:
        config = PerMessageDeflate(server_max_window_bits=WBITS, client_max_window_bits=WBITS,
                                   mem_level=MEM_LEVEL, compress_level=LEVEL, **LEGATO_OPTIONS)
        params = DeflateParams(server_max_window_bits=WBITS, client_max_window_bits=WBITS)
        codec = DeflateCodec(params, is_client=role is Role.CLIENT, config=config)
    return Connection(role, deflate=codec)


def ws_engine(side: Any, deflate: bool) -> WsProtocol:
    proto = WsProtocol(side, state=WS_OPEN)
    if deflate:
        proto.extensions = [WsDeflate(False, False, WBITS, WBITS,
                                      {"level": LEVEL, "memLevel": MEM_LEVEL})]
    return proto


def wp_engine(kind: ConnectionType, deflate: bool) -> WpConnection:
    exts: list[Extension] = []
    if deflate:
        ext = WpDeflate(client_max_window_bits=WBITS, server_max_window_bits=WBITS)
        ext.finalize("permessage-deflate")  # what a completed handshake does: enables it
        # wsproto would create compressobj(-1, DEFLATED, -bits) i.e. memLevel 8.
        ext._compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -WBITS, MEM_LEVEL)
        exts.append(ext)
    return WpConnection(kind, extensions=exts)


# ----------------------------------------------------------------------------- serialise
# Each returns (seconds, wire chunks). Loops are written out per library so no adapter
# call sits inside the clock. Output is kept only for the (untimed) checking run; timed
# runs drop it at once, as a server that has written it does, so memory stays warm.

Result = tuple[float, list[Any]]


def _drop() -> deque[Any]:  # its append/extend discard, at list-append cost
    return deque(maxlen=0)


def ser_legato(msgs: Msgs, text: bool, deflate: bool, keep: bool) -> Result:
    conn = legato_engine(Role.CLIENT, deflate)
    send = conn.send_text if text else conn.send_bytes
    drain = conn.data_to_send
    out: list[Any] = []
    append = out.append if keep else _drop().append
    t0 = clock()
    for m in msgs:
        send(m)
        append(drain())
    return clock() - t0, out


def ser_ws(msgs: Msgs, text: bool, deflate: bool, keep: bool) -> Result:
    proto = ws_engine(WS_CLIENT, deflate)
    drain = proto.data_to_send
    out: list[Any] = []
    extend = out.extend if keep else _drop().extend
    t0 = clock()
    if text:
        send = proto.send_text
        for m in msgs:
            send(m.encode())
            extend(drain())
    else:
        send = proto.send_binary
        for m in msgs:
            send(m)
            extend(drain())
    return clock() - t0, out


def ser_wp(msgs: Msgs, text: bool, deflate: bool, keep: bool) -> Result:
    conn = wp_engine(ConnectionType.CLIENT, deflate)
    send = conn.send
    event = wp_events.TextMessage if text else wp_events.BytesMessage
    out: list[Any] = []
    append = out.append if keep else _drop().append
    t0 = clock()
    for m in msgs:
        append(send(event(data=m)))
    return clock() - t0, out


# --------------------------------------------------------------------------------- parse
# Each returns (seconds, events as the library reports them, when kept).

def parse_legato(chunks: list[bytes], text: bool, deflate: bool, keep: bool) -> Result:
    conn = legato_engine(Role.SERVER, deflate)
    feed, drain = conn.receive_data, conn.events_received
    out: list[Any] = []
    extend = out.extend if keep else _drop().extend
    t0 = clock()
    for c in chunks:
        feed(c)
        extend(drain())
    return clock() - t0, out


def parse_ws(chunks: list[bytes], text: bool, deflate: bool, keep: bool) -> Result:
    proto = ws_engine(WS_SERVER, deflate)
    feed, drain = proto.receive_data, proto.events_received
    out: list[Any] = []
    append, extend = (out.append, out.extend) if keep else (_drop().append, _drop().extend)
    t0 = clock()
    if text:
        for c in chunks:
            feed(c)
            for frame in drain():
                frame.data.decode()  # type: ignore[union-attr]  # -> str, as the others
                append(frame)
    else:
        for c in chunks:
            feed(c)
            extend(drain())
    return clock() - t0, out


def parse_wp(chunks: list[bytes], text: bool, deflate: bool, keep: bool) -> Result:
    conn = wp_engine(ConnectionType.SERVER, deflate)
    feed, events = conn.receive_data, conn.events
    out: list[Any] = []
    extend = out.extend if keep else _drop().extend
    t0 = clock()
    for c in chunks:
        feed(c)
        extend(events())
    return clock() - t0, out


def norm(name: str, ev: Any) -> tuple[bool | None, Any]:
    """(is_text, data) of a complete data message; (None, ev) for anything else."""
    if name == "legato" and type(ev) in (TextMessage, BytesMessage):
        return type(ev) is TextMessage, ev.data
    if name == "websockets" and ev.fin and ev.opcode in (WS_TEXT, WS_BINARY):
        text = ev.opcode is WS_TEXT
        return text, bytes(ev.data).decode() if text else bytes(ev.data)
    if name == "wsproto" and isinstance(ev, wp_events.Message) and ev.message_finished:
        return isinstance(ev, wp_events.TextMessage), ev.data
    return None, ev


LIBS: dict[str, tuple[Callable[..., Result], Callable[..., Result]]] = {
    "legato": (ser_legato, parse_legato), "websockets": (ser_ws, parse_ws),
    "wsproto": (ser_wp, parse_wp)}


def reassemble_wp(events: list[Any]) -> list[Any]:
    """Join wsproto's partial messages (a frame split across reads); untimed."""
    out: list[Any] = []
    parts: list[Any] = []
    for ev in events:
        if not isinstance(ev, wp_events.Message):
            out.append(ev)  # e.g. CloseConnection after a parse failure
            continue
        parts.append(ev.data)
        if ev.message_finished:
            out.append(type(ev)(data=parts[0][:0].join(parts), message_finished=True))
            parts = []
    return out


def check(name: str, events: list[Any], msgs: Msgs, text: bool) -> str | None:
    """None when ``events`` are exactly ``msgs`` as complete messages of the right type."""
    if name == "wsproto":
        events = reassemble_wp(events)
    if len(events) != len(msgs):
        return f"{name}: {len(events)} events for {len(msgs)} messages"
    for i, (ev, m) in enumerate(zip(events, msgs, strict=True)):
        kind, data = norm(name, ev)
        if kind is not text or data != m:
            return f"{name}: message {i} differs ({type(ev).__name__})"
    return None


# ---------------------------------------------------------------------------------- run

def run_case(size: int, text: bool, deflate: bool, n: int, repeat: int, chunk: int,
             rng: random.Random) -> dict[str, Any]:
    pool = make_payloads(size, text, 256 if size <= 1024 else 8, rng)
    msgs = [pool[i % len(pool)] for i in range(n)]
    best: dict[str, dict[str, float]] = {lib: {"serialise": 1e9, "parse": 1e9} for lib in LIBS}
    errors: list[str] = []
    wires, wire_bytes = {}, {}  # legato's wire bytes vs the others' show its compression
    for lib, (ser, parse) in LIBS.items():  # checking run (its time is not used); a warm-up too
        wire = b"".join(ser(msgs, text, deflate, True)[1])
        wire_bytes[lib] = len(wire)
        step = chunk or len(wire)
        wires[lib] = [wire[i:i + step] for i in range(0, len(wire), step)]
        err = check(lib, parse(wires[lib], text, deflate, True)[1], msgs, text)
        if err:
            errors.append(err)
    for _ in range(repeat):
        for lib, (ser, parse) in LIBS.items():
            gc.collect()
            best[lib]["serialise"] = min(best[lib]["serialise"], ser(msgs, text, deflate, False)[0])
            gc.collect()
            best[lib]["parse"] = min(best[lib]["parse"], parse(wires[lib], text, deflate, False)[0])
    libs = {lib: {"wire_bytes": wire_bytes[lib], **{op: {
        "seconds": t, "msg_per_s": n / t, "mb_per_s": n * size / t / 1e6,
        **{f"x_{other}": best[other][op] / t for other in LIBS if other != lib}}
        for op, t in best[lib].items()}} for lib in LIBS}
    return {"size": size, "kind": "text" if text else "binary", "deflate": deflate,
            "messages": n, "errors": errors, "libs": libs}


def fmt_size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def print_table(results: list[dict[str, Any]]) -> list[str]:
    """Print the table; return the cases that miss the bar."""
    misses = []
    print(f"\n{'op':<10}{'msg':<7}{'size':>7}  {'deflate':<8}{'legato msg/s':>13}"
          f"{'MB/s':>9}{'x websockets':>14}{'x wsproto':>11}  bar")
    for op in ("parse", "serialise"):
        for res in results:
            name = f"{op:<10}{res['kind']:<7}{fmt_size(res['size']):>7}  " \
                   f"{'on' if res['deflate'] else 'off':<8}"
            if res["errors"]:
                print(name + "FAILED: " + "; ".join(res["errors"]))
                continue
            leg = res["libs"]["legato"][op]
            need = BAR.get(res["size"])
            ok = need is None or leg["x_websockets"] >= need
            verdict = "" if need is None else f"{'ok' if ok else 'MISS'} (>= {need:g}x)"
            wire = res["libs"]["legato"]["wire_bytes"] / res["libs"]["websockets"]["wire_bytes"]
            verdict += f" [legato sends {wire:.2f}x the bytes]" if abs(wire - 1) > 0.01 else ""
            if not ok:
                misses.append(" ".join(name.split()))
            print(f"{name}{leg['msg_per_s']:>13,.0f}{leg['mb_per_s']:>9.1f}"
                  f"{leg['x_websockets']:>13.2f}x{leg['x_wsproto']:>10.2f}x  {verdict}")
    return misses


def _git_describe() -> str:
    """The commit measured ("-dirty": tracked files changed)."""
    cmd = ["git", "describe", "--always", "--dirty"]
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(cmd, cwd=here, text=True, capture_output=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1/5 of the messages, 3 repeats")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--repeat", type=int, help="runs per measurement, best kept (7; quick 3)")
    ap.add_argument("--chunk", type=int, default=65536,
                    help="bytes per receive_data() call when parsing; 0 = whole buffer")
    ap.add_argument("--cpu", type=int, help="pin to this CPU (default: not pinned)")
    ap.add_argument("--min-size", type=int, help="legato's PerMessageDeflate min_size "
                    "(default: as shipped, 128; 0 compresses every message like the peers)")
    args = ap.parse_args()
    if args.min_size is not None:
        LEGATO_OPTIONS["min_size"] = args.min_size
    repeat = args.repeat or (3 if args.quick else 7)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    rng = random.Random(1234)
    meta = {"legato_commit": _git_describe(), "python": platform.python_version(),
            "legato_speedups": masking.SPEEDUPS, "websockets": version("websockets"),
            "websockets_speedups": vars(ws_frames)["apply_mask"].__module__.endswith("speedups"),
            "wsproto": version("wsproto"), "repeat": repeat, "chunk": args.chunk,
            "quick": args.quick, "legato_options": LEGATO_OPTIONS,
            "zlib": {"level": LEVEL, "wbits": WBITS, "mem": MEM_LEVEL}}
    print(f"legato C speed-up (legato.protocol.masking.SPEEDUPS): "
          f"{'ACTIVE' if masking.SPEEDUPS else 'OFF (pure-Python fallback)'}"
          f"{'  [LEGATO_NO_EXTENSIONS=1]' if os.environ.get('LEGATO_NO_EXTENSIONS') else ''}")
    reads = f"{args.chunk} B reads" if args.chunk else "whole buffer in one read"
    print(f"legato {meta['legato_commit']}, websockets {meta['websockets']} "
          f"(C masking: {meta['websockets_speedups']}), wsproto {meta['wsproto']}, "
          f"CPython {meta['python']}; best of {repeat}, {reads}, deflate = zlib level {LEVEL}, "
          f"{WBITS} window bits, memLevel {MEM_LEVEL}")
    results = []
    t_start = time.perf_counter()
    for deflate in (False, True):
        for text in (True, False):
            for size in SIZES:
                n = COUNTS[size][deflate] // (5 if args.quick else 1)
                res = run_case(size, text, deflate, n, repeat, args.chunk, rng)
                results.append(res)
                elapsed = time.perf_counter() - t_start
                print(f"  {res['kind']:<6} {fmt_size(size):>6} deflate "
                      f"{'on ' if deflate else 'off'} x{n:<6} done ({elapsed:5.1f} s)",
                      file=sys.stderr)
    misses = print_table(results)
    failed = any(r["errors"] for r in results)
    print(f"\nratios are legato/other msg/s (> 1: legato faster); MB/s = uncompressed payload; "
          f"total {time.perf_counter() - t_start:.0f} s")
    print("acceptance bar (legato >= 2x websockets at 32 B, >= 1x at 64 KiB): "
          + ("met" if not misses and not failed else f"MISSED in {len(misses)} case(s)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "bar_misses": misses}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
