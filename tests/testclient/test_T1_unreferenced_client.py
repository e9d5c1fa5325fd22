"""T1: a TestClient nobody keeps in a variable still works, and its loop stops once the
last user (the client, or a WebSocket session it opened) is gone.

``TestClient(app).websocket_connect("/ws")`` drops the client at once: the session must
keep the server it needs. The idioms of Starlette's and FastAPI's testing docs run here
exactly as written there, with legato's TestClient in place of theirs.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.websockets import WebSocket as FastAPIWebSocket
from starlette.responses import HTMLResponse
from starlette.websockets import WebSocket

from legato import App, Request
from legato import WebSocket as LegatoWebSocket
from legato.testclient import TestClient


def loop_threads() -> int:
    return sum(t.name == "legato-testclient" for t in threading.enumerate())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.01)
    return True


def legato_app() -> App:
    app = App()

    @app.route("/")
    async def home(request: Request) -> str:
        return "home"

    @app.route("/echo", methods=["POST"])
    async def echo(request: Request) -> dict[str, object]:
        return {"got": await request.json()}

    @app.websocket("/ws")
    async def ws_echo(ws: LegatoWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


def test_T1_websocket_connect_on_a_client_kept_in_no_variable_works() -> None:
    with TestClient(legato_app()).websocket_connect("/ws") as ws:
        gc.collect()  # nothing holds the client: the session must hold its server
        ws.send_text("hello")
        assert ws.receive_text() == "hello"
        ws.send_text("again")
        assert ws.receive_text() == "again"


def test_T1_http_calls_on_a_client_kept_in_no_variable_work() -> None:
    assert TestClient(legato_app()).get("/").text == "home"
    assert TestClient(legato_app()).post("/echo", json=[1, 2]).json() == {"got": [1, 2]}


def test_T1_a_session_outlives_its_client_deleted_before_entry() -> None:
    client = TestClient(legato_app())
    session = client.websocket_connect("/ws")
    del client
    gc.collect()
    with session as ws:
        ws.send_text("still here")
        assert ws.receive_text() == "still here"


def test_T1_the_loop_stops_once_the_last_user_is_gone() -> None:
    before = loop_threads()
    with TestClient(legato_app()).websocket_connect("/ws") as ws:
        ws.send_text("x")
        assert ws.receive_text() == "x"
        assert loop_threads() == before + 1
    assert wait_until(lambda: loop_threads() == before), "the session's end left the loop running"

    client = TestClient(legato_app())
    with client.websocket_connect("/ws") as ws:
        ws.send_text("y")
        assert ws.receive_text() == "y"
    assert loop_threads() == before + 1  # the client is still a user
    assert client.get("/").text == "home"
    del client, ws
    assert wait_until(lambda: loop_threads() == before), "a collected client left its loop"


def test_T1_a_session_never_entered_releases_the_loop_when_collected() -> None:
    before = loop_threads()
    session = TestClient(legato_app()).websocket_connect("/ws")
    assert loop_threads() == before + 1
    del session
    assert wait_until(lambda: loop_threads() == before)


def test_T1_no_loop_leaks_over_many_unreferenced_clients() -> None:
    before = loop_threads()
    for i in range(20):
        assert TestClient(legato_app()).get("/").status_code == 200
        with TestClient(legato_app()).websocket_connect("/ws") as ws:
            ws.send_text(str(i))
            assert ws.receive_text() == str(i)
    assert wait_until(lambda: loop_threads() == before)


# ---------------------------------------------------- Starlette's docs, as written there
# https://www.starlette.io/testclient/ ("Testing WebSocket sessions" and the first example)

async def starlette_http_app(scope, receive, send):  # type: ignore[no-untyped-def]
    assert scope['type'] == 'http'
    response = HTMLResponse('<html><body>Hello, world!</body></html>')
    await response(scope, receive, send)


async def starlette_ws_app(scope, receive, send):  # type: ignore[no-untyped-def]
    assert scope['type'] == 'websocket'
    websocket = WebSocket(scope, receive=receive, send=send)
    await websocket.accept()
    await websocket.send_text('Hello, world!')
    await websocket.close()


def test_T1_starlette_docs_http_idiom_runs_as_written() -> None:
    app = starlette_http_app
    client = TestClient(app)
    response = client.get('/')
    assert response.status_code == 200


def test_T1_starlette_docs_websocket_idiom_runs_as_written() -> None:
    app = starlette_ws_app
    client = TestClient(app)
    with client.websocket_connect('/') as websocket:
        data = websocket.receive_text()
        assert data == 'Hello, world!'


def test_T1_starlette_docs_websocket_idiom_without_a_client_variable() -> None:
    with TestClient(starlette_ws_app).websocket_connect('/') as websocket:
        data = websocket.receive_text()
        assert data == 'Hello, world!'


# ------------------------------------------------------ FastAPI's docs, as written there
# https://fastapi.tiangolo.com/advanced/testing-websockets/

fastapi_app = FastAPI()


@fastapi_app.get("/")
async def read_main():  # type: ignore[no-untyped-def]
    return {"msg": "Hello World"}


@fastapi_app.websocket("/ws")
async def websocket(websocket: FastAPIWebSocket):  # type: ignore[no-untyped-def]
    await websocket.accept()
    await websocket.send_json({"msg": "Hello WebSocket"})
    await websocket.close()


def test_T1_fastapi_docs_idioms_run_as_written() -> None:
    app = fastapi_app
    client = TestClient(app)
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"msg": "Hello World"}
    client = TestClient(app)
    with client.websocket_connect("/ws") as websocket:
        data = websocket.receive_json()
        assert data == {"msg": "Hello WebSocket"}


def test_T1_fastapi_app_through_a_client_kept_in_no_variable() -> None:
    assert TestClient(fastapi_app).get("/").json() == {"msg": "Hello World"}
    with TestClient(fastapi_app).websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"msg": "Hello WebSocket"}
