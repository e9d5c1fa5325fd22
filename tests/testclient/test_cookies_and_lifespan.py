"""TestClient state across requests: the cookie jar (RFC 6265 §5, what a browser keeps)
and the ASGI lifespan run by ``with``."""

from __future__ import annotations

import pytest
from apps import LifespanApp, cookie_app

from legato.testclient import TestClient

# ------------------------------------------------------------------- RFC 6265 jar


def test_a_cookie_set_by_a_response_is_sent_with_later_requests() -> None:
    with TestClient(cookie_app) as client:
        response = client.get("/set", params={"session": "abc"})
        assert response.cookies == {"session": "abc"}
        assert client.cookies["session"] == "abc"
        assert client.get("/").text == "session=abc"


@pytest.mark.parametrize("how", ["/delete", "/expire"])
def test_a_cookie_with_max_age_zero_or_a_past_expiry_is_deleted(how: str) -> None:
    with TestClient(cookie_app) as client:
        client.get("/set", params={"session": "abc"})
        response = client.get(how, params="session")
        assert response.cookies == {}
        assert "session" not in client.cookies
        assert client.get("/").text == ""


def test_a_cookie_for_a_path_is_sent_only_below_that_path() -> None:
    # RFC 6265 §5.1.4: /admin matches /admin and /admin/..., not /administrator.
    with TestClient(cookie_app) as client:
        client.get("/admin/set", params={"admin": "1"})
        assert client.get("/admin").text == "admin=1"
        assert client.get("/admin/users").text == "admin=1"
        assert client.get("/administrator").text == ""
        assert client.get("/").text == ""


def test_client_and_request_cookies_are_sent_and_the_request_wins_by_name() -> None:
    with TestClient(cookie_app, cookies={"a": "client", "b": "client"}) as client:
        assert client.get("/", cookies={"b": "request"}).text == "a=client; b=request"
        assert client.get("/").text == "a=client; b=client"  # per request only


def test_cookies_set_on_the_client_are_sent_and_can_be_removed() -> None:
    with TestClient(cookie_app) as client:
        client.cookies["theme"] = "dark"
        assert client.get("/").text == "theme=dark"
        del client.cookies["theme"]
        client.cookies = {"lang": "fr"}
        assert client.get("/").text == "lang=fr"


def test_a_cookie_for_another_host_is_not_kept_for_this_one() -> None:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        from apps import respond
        await respond(send, 200, b"", [(b"set-cookie", b"x=1; Domain=other.example")])

    with TestClient(app) as client:
        client.get("/")
        assert dict(client.cookies) == {}


# ----------------------------------------------------------------------- lifespan


def test_with_runs_lifespan_startup_and_shutdown_and_shares_its_state() -> None:
    app = LifespanApp()
    with TestClient(app) as client:
        assert app.events == ["lifespan.startup"]
        assert client.get("/").json() == {"started": True}
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_without_with_lifespan_is_not_run() -> None:
    app = LifespanApp()
    client = TestClient(app)
    assert client.get("/").json() == {}
    client.close()
    assert app.events == []


def test_a_failed_startup_raises_on_entering_with() -> None:
    app = LifespanApp(fail_startup=True)
    with pytest.raises(RuntimeError, match="startup failed: no db"):
        with TestClient(app):
            pass  # pragma: no cover - never reached


def test_an_app_without_lifespan_support_is_served_anyway() -> None:
    from apps import echo_app  # asserts the scope type is http: raises for lifespan

    with TestClient(echo_app) as client:
        assert client.get("/").status_code == 200
