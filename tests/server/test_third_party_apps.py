"""Third-party ASGI apps on legato's server (SPEC S5): Starlette and FastAPI, each with
an HTTP route, a WebSocket route and a lifespan that hands state to both, served
in-process (``Server``, asyncio and uvloop) and by ``python -m legato run`` as a
subprocess; spoken to by httpx and ``websockets``.

Each app is one module source, written into tmp_path: the subprocess imports it from
its working directory, the in-process server loads the same file. Lifespan startup and
shutdown leave marker files beside the module, so both arrangements can be checked.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import RunningServer, legato_run

STARLETTE_APP = '''
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

HERE = Path(__file__).parent


@asynccontextmanager
async def lifespan(app):
    (HERE / "started").touch()
    yield {"greeting": "hello from lifespan"}
    (HERE / "stopped").touch()


async def hello(request):
    return JSONResponse({"greeting": request.state.greeting,
                         "name": request.query_params.get("name")})


async def echo(request):
    return JSONResponse({"received": await request.json()})


async def chat(websocket):
    await websocket.accept()
    name = websocket.path_params["name"]
    async for text in websocket.iter_text():
        await websocket.send_text(f"{name}: {text} ({websocket.state.greeting})")


app = Starlette(lifespan=lifespan, routes=[
    Route("/hello", hello), Route("/echo", echo, methods=["POST"]),
    WebSocketRoute("/ws/{name}", chat),
])
'''

FASTAPI_APP = '''
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

HERE = Path(__file__).parent


@asynccontextmanager
async def lifespan(app):
    (HERE / "started").touch()
    yield {"greeting": "hello from lifespan"}
    (HERE / "stopped").touch()


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get("/hello")
async def hello(request: Request, name: str | None = None):
    return {"greeting": request.state.greeting, "name": name}


@app.post("/echo")
async def echo(item: Item):
    return {"received": item.model_dump()}


@app.websocket("/ws/{name}")
async def chat(websocket: WebSocket, name: str):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{name}: {text} ({websocket.state.greeting})")
    except WebSocketDisconnect:
        pass
'''

SOURCES = {"starlette": STARLETTE_APP, "fastapi": FASTAPI_APP}


@pytest.fixture(params=sorted(SOURCES))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_dir(tmp_path: Path, framework: str) -> Path:
    (tmp_path / f"{framework}_app.py").write_text(SOURCES[framework])
    return tmp_path


def load_app(app_dir: Path, framework: str) -> Any:
    """The app object from the module file, as the subprocess would import it."""
    name = f"{framework}_app_{abs(hash(app_dir))}"
    spec = importlib.util.spec_from_file_location(name, app_dir / f"{framework}_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.app


def check_http(url: str, framework: str) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        hello = client.get("/hello", params={"name": "ada"})
        assert hello.status_code == 200
        assert hello.headers["content-type"] == "application/json"
        # The lifespan's state reached the request (ASGI lifespan "state").
        assert hello.json() == {"greeting": "hello from lifespan", "name": "ada"}
        item = {"name": "tea", "price": 2.5}
        assert client.post("/echo", json=item).json() == {"received": item}
        assert client.get("/nowhere").status_code == 404
        if framework == "fastapi":  # its request validation runs on our scope
            assert client.post("/echo", json={"name": "tea"}).status_code == 422
        assert client.get("/hello").json()["name"] is None  # no query: None


def check_unknown_websocket_route(ws_url: str) -> None:
    """Starlette refuses a WebSocket to an unknown route by closing it before accepting:
    ASGI says that is a 403."""
    async def main() -> None:
        async with connect(ws_url + "/nowhere", proxy=None, open_timeout=10):
            pass

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(main())
    assert info.value.response.status_code == 403


def test_third_party_app_serves_http_websocket_and_lifespan_in_process(
        serve: Callable[..., RunningServer], app_dir: Path, framework: str) -> None:
    server = serve(load_app(app_dir, framework))
    assert (app_dir / "started").exists()
    check_http(server.url, framework)
    asyncio.run(check_websocket_routes(server.ws_url))
    check_unknown_websocket_route(server.ws_url)
    server.stop()
    assert not server.thread.is_alive()
    assert (app_dir / "stopped").exists()  # lifespan shutdown ran


def test_third_party_app_serves_http_websocket_and_lifespan_via_legato_run(
        app_dir: Path, framework: str) -> None:
    with legato_run(app_dir, f"{framework}_app:app", "--lifespan", "on") as legato:
        assert (app_dir / "started").exists()
        check_http(legato.url, framework)
        asyncio.run(check_websocket_routes(legato.ws_url))
        check_unknown_websocket_route(legato.ws_url)
        assert legato.terminate() == 0
    assert (app_dir / "stopped").exists(), legato.output()


async def check_websocket_routes(ws_url: str) -> None:
    async with connect(ws_url + "/ws/ada", proxy=None, open_timeout=10) as ws:
        for text in ("hi", "héllo 🎵", "x" * 100_000):
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 10) == f"ada: {text} (hello from lifespan)"
        await ws.close()
    # RFC 6455 §7.1.2: the server closed the TCP connection after the closing handshake.
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
