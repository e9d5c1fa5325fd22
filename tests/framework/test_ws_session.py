"""H4 on WebSockets: the session cookie travels only in the 101 response, so a change
made after accept cannot reach the client. It fails where it is made (SessionSealed,
naming the ways that work) instead of being lost without a word (issue 13, item 8d)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from legato import App, TestClient, WebSocket
from legato.sessions import Session, SessionSealed

SECRET = "correct horse battery staple"


def app_with_routes() -> App:
    app = App(secret_key=SECRET)

    @app.get("/me")
    async def me(session: dict[str, Any]) -> dict[str, Any]:
        return dict(session)

    @app.post("/login/{user}")
    async def login(session: dict[str, Any], user: str) -> str:
        session["user"] = user
        return "ok"

    @app.websocket("/late")
    async def late(ws: WebSocket) -> None:  # auto-accepted: the 101 has gone
        unchanged = [ws.session.get("user"), ws.session.pop("absent", None),
                     ws.session.setdefault("user", "x")]
        try:
            ws.session["visits"] = 1
        except SessionSealed as exc:
            await ws.send_json({"read": unchanged, "error": str(exc)})

    async def remember(ws: WebSocket) -> None:
        ws.session["connected"] = True

    @app.websocket("/early", on_connect=remember)
    async def early(ws: WebSocket) -> None:
        await ws.send_json(dict(ws.session))

    @app.websocket("/manual", auto_accept=False)
    async def manual(ws: WebSocket) -> None:
        ws.session["manual"] = True
        await ws.accept()
        await ws.send_json(dict(ws.session))
        await ws.close()

    return app


def test_H4_a_session_change_after_accept_raises_naming_the_ways_that_work(
        connect: Callable[[Any], Any]) -> None:
    client = connect(app_with_routes())
    client.post("/login/ann")
    with client.websocket_connect("/late") as ws:
        answer = ws.receive_json()
    assert answer["read"] == ["ann", None, "ann"]  # reading and no-ops still work
    error = answer["error"]
    assert error.startswith("ws.session cannot change after the WebSocket is accepted")
    assert "only in the 101 response" in error
    for way in ("on_connect", "before_request(websocket=True)", "auto_accept=False",
                "HTTP request"):
        assert way in error


def test_H4_an_uncaught_session_change_after_accept_is_raised_in_the_test() -> None:
    app = App(secret_key=SECRET)

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        ws.session["lost"] = True

    with pytest.raises(SessionSealed, match="after the WebSocket is accepted"):
        with TestClient(app).websocket_connect("/ws") as ws:
            ws.receive()


@pytest.mark.parametrize("path", ["/early", "/manual"])
def test_H4_a_session_changed_before_accept_reaches_the_cookie_and_later_requests(
        path: str) -> None:
    client = TestClient(app_with_routes())
    with client.websocket_connect(path) as ws:
        assert "session=" in ws.extra_headers.get("set-cookie", "")
        seen = ws.receive_json()
    assert seen == client.get("/me").json()
    assert seen in ({"connected": True}, {"manual": True})


def test_H4_a_session_changed_in_a_websocket_hook_reaches_the_cookie() -> None:
    app = app_with_routes()

    @app.before_request(websocket=True)
    async def stamp(ws: WebSocket) -> None:
        ws.session["hooked"] = ws.path

    client = TestClient(app)
    with client.websocket_connect("/early") as ws:
        assert ws.receive_json() == {"hooked": "/early", "connected": True}
    assert client.get("/me").json() == {"hooked": "/early", "connected": True}


@pytest.mark.parametrize("change", [
    lambda s: s.__setitem__("k", 2), lambda s: s.__delitem__("k"), lambda s: s.clear(),
    lambda s: s.pop("k"), lambda s: s.popitem(), lambda s: s.setdefault("new", 1),
    lambda s: s.update(k=3), lambda s: s.__ior__({"k": 4}),
])
def test_H4_a_sealed_session_refuses_every_change(change: Callable[[Session], Any]) -> None:
    session = Session({"k": 1})
    session.seal("sealed for this test")
    with pytest.raises(SessionSealed, match="sealed for this test"):
        change(session)
    assert session == {"k": 1} and not session.modified


def test_H4_a_sealed_session_allows_what_changes_nothing() -> None:
    session = Session({"k": 1})
    session.seal("sealed")
    assert session.pop("absent", None) is None
    assert session.setdefault("k", 5) == 1
    session.update()
    Session().clear()
    assert not session.modified
