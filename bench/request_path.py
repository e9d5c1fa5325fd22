"""One HTTP request through the App, followed call by call (issue 17): which framework
modules it passes through, how often it switches module, and how many calls go back up
into app.py from a module the App imports (0: the path reads app → endpoint → plan →
handler).

Usage: python bench/request_path.py   (PYTHONPATH=<another checkout>/src for a baseline)
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from legato import App

app = App()



@app.before_request
async def hook(request: Any) -> None:
    return None


@app.get("/items/{item_id:int}")
async def item(item_id: int, q: str = "x") -> dict[str, Any]:
    return {"id": item_id, "q": q}


scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/items/3", "raw_path": b"/items/3", "query_string": b"q=y",
         "root_path": "", "headers": [(b"host", b"x")], "client": ("1.2.3.4", 1),
         "server": ("x", 80)}

FRAMEWORK = {"app", "http_endpoint", "providers", "params", "plans", "exception_handlers",
             "responses", "requests", "routing", "scope", "sessions"}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


sent: list[dict[str, Any]] = []


async def send(message: dict[str, Any]) -> None:
    sent.append(message)


async def one() -> None:
    await app(dict(scope), receive, send)


asyncio.run(one())  # warm: plans made
steps: list[str] = []
ups: list[str] = []


def tracer(frame: Any, event: str, arg: Any) -> None:
    if event == "call":
        mod = frame.f_globals.get("__name__", "")
        if mod.startswith("legato.") and mod.split(".")[1] in FRAMEWORK:
            steps.append(mod)
            caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
            if mod == "legato.app" and caller.startswith("legato.") and caller != "legato.app":
                ups.append(f"{caller}.{frame.f_back.f_code.co_name} -> "
                           f"app.{frame.f_code.co_name}")


sent.clear()


async def traced() -> None:
    sys.settrace(tracer)  # type: ignore[arg-type]
    try:
        await app(dict(scope), receive, send)
    finally:
        sys.settrace(None)


asyncio.run(traced())
assert sent[0]["status"] == 200, sent
switches = [(a, b) for a, b in zip(steps, steps[1:], strict=False) if a != b]
path = [m.removeprefix("legato.") for i, m in enumerate(steps) if i == 0 or steps[i - 1] != m]
print(f"{len(steps)} calls into framework modules, {len(switches)} module switches, "
      f"{len(ups)} calls from another legato module up into app.py {ups}")
print("path: " + " > ".join(path))
