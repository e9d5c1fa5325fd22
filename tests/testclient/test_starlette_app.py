"""TestClient with an app nobody here wrote: a Starlette app (any ASGI 3 app will do)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from apps import Failure
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from legato.testclient import TestClient


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"url": str(request.url), "cookie": request.cookies.get("user"),
                         "started": getattr(request.state, "started", False)})


async def login(request: Request) -> RedirectResponse:
    response = RedirectResponse("/whoami", status_code=303)
    response.set_cookie("user", "ann")
    return response


async def echo(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="json")
    data = await websocket.receive_json()
    await websocket.send_json({"echo": data})
    await websocket.close(code=4000)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started": True}


def make_app(**options: Any) -> Starlette:
    return Starlette(routes=[Route("/whoami", whoami), Route("/login", login, methods=["POST"]),
                             WebSocketRoute("/ws", echo)], **options)


def test_a_login_redirect_sets_a_cookie_that_the_next_page_sees() -> None:
    with TestClient(make_app(lifespan=lifespan)) as client:
        response = client.post("/login", follow_redirects=True)
    assert response.json() == {"url": "http://testserver/whoami", "cookie": "ann",
                               "started": True}
    assert [r.status_code for r in response.history] == [303]


def test_a_starlette_websocket_route_works_through_the_test_client() -> None:
    with TestClient(make_app()) as client:
        with client.websocket_connect("/ws", subprotocols=["json"]) as ws:
            assert ws.accepted_subprotocol == "json"
            ws.send_json([1, 2])
            assert ws.receive_json() == {"echo": [1, 2]}
            assert ws.receive() == {"type": "websocket.close", "code": 4000, "reason": ""}


def test_an_exception_in_lifespan_startup_is_raised_on_entering_with() -> None:
    @asynccontextmanager
    async def failing(app: Starlette) -> AsyncIterator[None]:
        raise Failure("no database")
        yield  # pragma: no cover

    with pytest.raises(Failure, match="no database"):
        with TestClient(make_app(lifespan=failing)):
            pass  # pragma: no cover - never reached


def test_an_unknown_route_is_a_404_and_a_websocket_to_it_is_denied() -> None:
    from legato.exceptions import WebSocketDenied

    with TestClient(make_app()) as client:
        assert client.get("/nowhere").status_code == 404
        with pytest.raises(WebSocketDenied) as caught:
            with client.websocket_connect("/nowhere"):
                pass  # pragma: no cover - never reached
    assert caught.value.status_code == 403
