"""Several processes on one port (``--workers N``) and restart on change (``--reload``).

Each worker process (spawned, so every worker imports the app afresh) listens on a
socket of its own bound with SO_REUSEPORT, and the kernel spreads connections evenly
over them by address hash; the supervisor keeps the port bound (not listening: nothing
is queued to it) so it stays ours while workers come and go. Where SO_REUSEPORT is
missing, with ``--reload``, or with ``reuse_port=False``, the supervisor binds one
listening socket and hands it to every worker (they all wake for each connection and
the first takes it: uneven counts of long-lived connections, docs/design.md).

SIGTERM/SIGINT to the supervisor stop every worker gracefully (each runs the server's
own shutdown) and the supervisor exits 0. A worker that dies is replaced.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from typing import Any

from .config import ServerConfig
from .state import logger

__all__ = ["bind_socket", "run_worker", "Supervisor"]

_spawn = multiprocessing.get_context("spawn")

#: One listening socket per worker is possible here (Linux: connections are spread over
#: a SO_REUSEPORT group by address hash; the BSDs' SO_REUSEPORT does not spread).
CAN_REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def bind_socket(config: ServerConfig, *, reuse_port: bool = False,
                listen: bool = True) -> socket.socket:
    """A socket bound to the configured address: listening (the one all workers share,
    or with ``reuse_port`` one worker's own), or only bound (the supervisor's hold on
    the port). ``ValueError`` for a port that is not one,
    :class:`~legato.server.serve.CannotServe` when it cannot be bound."""
    from .serve import cannot_listen, check_port  # noqa: PLC0415

    check_port(config.port)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise cannot_listen(config.host, config.port, exc) from None
    if listen:
        sock.listen(2048)
        sock.set_inheritable(True)
    return sock


def run_worker(target: str, config: ServerConfig, sock: socket.socket | None,
               options: dict[str, Any]) -> None:
    """Entry point of one worker process (also used in-process when workers == 1)."""
    from .serve import Server, configure_logging, import_app, new_event_loop  # noqa: PLC0415

    configure_logging(config.log_level, config.access_log)
    if sock is None and options.get("reuse_port"):
        sock = bind_socket(config, reuse_port=True)  # this worker's own (see above)
    app = import_app(target)
    if options.get("debug") and hasattr(app, "debug"):
        app.debug = True
    loop = new_event_loop()
    try:
        loop.run_until_complete(Server(app, config).serve(sock))
    finally:
        loop.close()


class Supervisor:
    """Keeps ``workers`` processes serving ``target``; restarts them on change if asked."""

    def __init__(self, target: str, config: ServerConfig, *, workers: int = 1,
                 reload: bool = False, reload_dirs: list[str] | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.target = target
        self.config = config
        self.workers = max(1, workers)
        self.reload = reload
        self.reload_dirs = reload_dirs or [os.getcwd()]
        self.options = options or {}
        self.processes: list[SpawnProcess] = []
        self._stop = threading.Event()
        self._deaths: list[float] = []

    def run(self) -> int:
        from .serve import import_app  # noqa: PLC0415

        try:
            import_app(self.target)  # fail here, once, rather than in a worker crash loop
        except (ImportError, ValueError) as exc:
            logger.error("cannot load %r: %s", self.target, exc)
            return 2
        from .serve import tls_context  # noqa: PLC0415

        tls_context(self.config)  # bad TLS files: one error here, not a worker crash loop
        own = self.config.reuse_port and CAN_REUSE_PORT and not self.reload
        if own and self.config.port:
            # A port another server listens on must be refused, as without SO_REUSEPORT
            # (which would let a second server of this user share it silently).
            bind_socket(self.config, listen=False).close()
        sock = bind_socket(self.config, reuse_port=own, listen=not own)
        port = sock.getsockname()[1]
        if own:
            # Workers bind the port the supervisor got (port 0: the one it was given).
            self.config = dataclasses.replace(self.config, port=port)
            self.options = {**self.options, "reuse_port": True}
        logger.info("supervisor %d: %d worker(s) on %s:%d%s%s", os.getpid(), self.workers,
                    self.config.host, port, " with reload" if self.reload else "",
                    ", a socket each (SO_REUSEPORT)" if own else "")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            for _ in range(self.workers):
                self._spawn(sock)
            if self.reload:
                self._watch(sock)
            else:
                while not self._stop.wait(0.5):
                    if not self._replace_dead(sock):
                        return 1
        finally:
            self._stop_all()
            sock.close()
        return 0

    def _spawn(self, sock: socket.socket) -> None:
        shared = None if self.options.get("reuse_port") else sock
        process = _spawn.Process(target=run_worker,
                                 args=(self.target, self.config, shared, self.options))
        process.start()
        self.processes.append(process)

    def _replace_dead(self, sock: socket.socket) -> bool:
        """Replace dead workers; False when they keep dying (a crash loop: give up)."""
        for process in list(self.processes):
            if not process.is_alive():
                logger.warning("worker %s exited with %s; starting another",
                               process.pid, process.exitcode)
                self.processes.remove(process)
                self._deaths.append(time.monotonic())
                if len(self._deaths) >= 5 and self._deaths[-1] - self._deaths[-5] < 10:
                    logger.error("workers keep dying; stopping")
                    return False
                self._spawn(sock)
        return True

    def _watch(self, sock: socket.socket) -> None:
        for changes in self._changes():
            logger.info("reloading: %s changed", ", ".join(sorted({p for _, p in changes})[:3]))
            self._stop_all()
            for _ in range(self.workers):
                self._spawn(sock)

    def _changes(self) -> Iterator[set[tuple[Any, str]]]:
        from watchfiles import PythonFilter, watch  # noqa: PLC0415 - the 'reload' extra

        yield from watch(*self.reload_dirs, watch_filter=PythonFilter(),
                         stop_event=self._stop, yield_on_timeout=False)

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(self.config.shutdown_timeout + 5)
            if process.is_alive():
                process.kill()
                process.join()
        self.processes.clear()
