"""The ``legato`` command: ``legato run module:app [options]`` (SPEC S1)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from .server.config import ServerConfig
from .server.serve import CannotServe, check_port

__all__ = ["main", "build_parser", "config_from_args"]


def _port(text: str) -> int:
    """An argparse type: a TCP port, or the usage error argparse prints (exit 2)."""
    try:
        return check_port(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: use 0 to 65535 (0: any free port)") from None


def _number(kind: type[int] | type[float], minimum: float,
            what: str) -> Callable[[str], Any]:
    """An argparse type for a count or a duration of at least ``minimum``: a value
    the server would misread (``--workers 0`` as 1, a negative timeout) is refused."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value < minimum or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = kind.__name__
    return parse


_COUNT = _number(int, 1, "a whole number of at least 1")
_SIZE = _number(int, 0, "a size in bytes (0 or more)")
_SECONDS = _number(float, 0, "a number of seconds (0 or more)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="legato", description="legato: real-time web apps")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an app (a legato App or any ASGI 3 app)")
    run.add_argument("app", help="the app to serve, as 'module:attribute'")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=_port, default=8000, help="0 to 65535 (0: any free port)")
    run.add_argument("--workers", type=_COUNT, default=1, help="processes sharing the port")
    run.add_argument("--no-reuse-port", action="store_true",
                     help="--workers share one listening socket (not one each, SO_REUSEPORT)")
    run.add_argument("--reload", action="store_true", help="restart when .py files change")
    run.add_argument("--reload-dir", action="append", dest="reload_dirs")
    run.add_argument("--debug", action="store_true",
                     help="debug pages and logs (not in production)")
    run.add_argument("--ssl-certfile")
    run.add_argument("--ssl-keyfile")
    run.add_argument("--no-ws", action="store_true", help="WebSocket upgrades are plain HTTP")
    run.add_argument("--log-level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"])
    run.add_argument("--access-log", action="store_true")
    run.add_argument("--lifespan", default="auto", choices=["auto", "on", "off"])
    run.add_argument("--root-path", default="")
    run.add_argument("--max-connections", type=_COUNT)
    run.add_argument("--max-body-size", type=_SIZE)
    run.add_argument("--keepalive-timeout", type=_SECONDS)
    run.add_argument("--head-timeout", type=_SECONDS)
    run.add_argument("--shutdown-timeout", type=_SECONDS)
    run.add_argument("--ws-max-message-size", type=_COUNT)
    run.add_argument("--ws-ping-interval", type=_SECONDS, help="0: no pings")
    run.add_argument("--ws-ping-timeout", type=_SECONDS, help="0: wait for pongs forever")
    run.add_argument("--no-ws-compression", action="store_true",
                     help="never negotiate permessage-deflate")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig(host=args.host, port=args.port, ws=not args.no_ws,
                          log_level="debug" if args.debug else args.log_level,
                          access_log=args.access_log, ssl_certfile=args.ssl_certfile,
                          ssl_keyfile=args.ssl_keyfile, lifespan=args.lifespan,
                          root_path=args.root_path, reuse_port=not args.no_reuse_port)
    for name in ("max_connections", "max_body_size", "keepalive_timeout", "head_timeout",
                 "shutdown_timeout", "ws_max_message_size", "ws_ping_interval",
                 "ws_ping_timeout"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.no_ws_compression:
        config.ws_deflate = None
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    sys.path.insert(0, os.getcwd())  # `legato run app:app` finds modules where it runs
    options: dict[str, Any] = {"debug": args.debug}
    if args.workers > 1 or args.reload:
        from .server.serve import configure_logging  # noqa: PLC0415

        configure_logging(config.log_level, config.access_log)
        from .server.supervisor import Supervisor  # noqa: PLC0415

        try:
            return Supervisor(args.app, config, workers=args.workers, reload=args.reload,
                              reload_dirs=args.reload_dirs, options=options).run()
        except CannotServe as exc:
            print(f"legato: {exc}", file=sys.stderr)
            return 1
    from .server.supervisor import run_worker  # noqa: PLC0415

    try:
        run_worker(args.app, config, None, options)
    except CannotServe as exc:
        print(f"legato: {exc}", file=sys.stderr)
        return 1
    except (ImportError, ValueError) as exc:
        print(f"legato: cannot load {args.app!r}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"legato: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
