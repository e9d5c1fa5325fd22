"""SPEC §4, HTTP through the App (H1-H6), in every mode of the harness: in-process
TestClient, legato's built-in server and uvicorn (conftest.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from live import client_for

from legato import (
    App,
    FileResponse,
    Forbidden,
    HTMLResponse,
    HTTPError,
    JSONResponse,
    NotFound,
    RedirectResponse,
    Request,
    Response,
    Unauthorized,
    UploadFile,
)


@pytest.fixture
def connect_quietly(mode: str, connect: Callable[[Any], Any]
                    ) -> Iterator[Callable[[Any], Any]]:
    """``connect`` whose TestClient shows what a client sees (the 500 page) instead of
    re-raising the app's exception (SPEC T1)."""
    with ExitStack() as stack:
        def make(app: Any) -> Any:
            if mode != "testclient":
                return connect(app)
            from legato import TestClient

            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield make


# ---------------------------------------------------------------------------------- H1


def request_facts_app() -> App:
    app = App()

    @app.route("/facts/{n}", methods=["GET", "POST"])
    async def facts(request: Request, n: int) -> dict[str, Any]:
        client = request.client
        return {
            "method": request.method, "url": str(request.url), "path": request.path,
            "x-test": request.headers.get("X-TEST"), "host-header": request.headers["host"],
            "a": request.query_params.getlist("a"), "b": request.query_params.get("b"),
            "path_params": request.path_params, "cookies": request.cookies,
            "client": [client.host, client.port] if client else None,
            "scheme": request.scheme, "host": request.host,
        }

    @app.get("/untyped/{slug}/{num:int}")
    async def untyped(request):
        return request.path_params

    @app.post("/body")
    async def body(request):
        return {"body": (await request.body()).decode(), "again": (await request.body()).decode()}

    @app.post("/json")
    async def json_body(request):
        return {"got": await request.json()}

    @app.post("/form")
    async def form(request):
        data = await request.form()
        out: dict[str, Any] = {}
        for name, value in data.multi_items():
            if isinstance(value, UploadFile):
                value = {"filename": value.filename, "type": value.content_type,
                         "data": (await value.read()).decode()}
            out.setdefault(name, []).append(value)
        return out

    @app.post("/stream")
    async def stream(request):
        total, chunks = 0, 0
        async for chunk in request.stream():
            total += len(chunk)
            chunks += 1
        return {"total": total, "chunks_seen": chunks > 0}

    return app


def test_H1_request_exposes_method_url_path_headers_query_params_cookies_client(connect):
    client = connect(request_facts_app())
    response = client.get("/facts/3?a=1&a=2&b=x%20y",
                          headers={"x-test": "yes", "cookie": "flavour=oat; n=2"})
    facts = response.json()
    host = facts["host-header"]
    assert facts["method"] == "GET"
    assert facts["path"] == "/facts/3"
    assert facts["url"] == f"http://{host}/facts/3?a=1&a=2&b=x%20y"
    assert facts["x-test"] == "yes"  # case-insensitive
    assert (facts["a"], facts["b"]) == (["1", "2"], "x y")
    assert facts["path_params"] == {"n": 3}
    assert facts["cookies"] == {"flavour": "oat", "n": "2"}
    assert facts["scheme"] == "http"
    assert facts["host"] == host
    peer_host, peer_port = facts["client"]
    assert peer_host in ("127.0.0.1", "testclient") and isinstance(peer_port, int)
    assert client.post("/facts/4").json()["method"] == "POST"


def test_H1_request_path_params_hold_every_route_parameter_even_unnamed_by_the_handler(
        connect):
    client = connect(request_facts_app())
    assert client.get("/untyped/hello-world/7").json() == {"slug": "hello-world", "num": 7}


def test_H1_request_body_json_urlencoded_and_multipart_forms(connect):
    client = connect(request_facts_app())
    assert client.post("/body", content=b"raw bytes").json() == {"body": "raw bytes",
                                                                  "again": "raw bytes"}
    assert client.post("/json", json={"k": [1, None]}).json() == {"got": {"k": [1, None]}}
    bad = client.post("/json", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400

    form = client.post("/form", content=b"name=ann+lee&tag=a&tag=b&e=%C3%A9",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.json() == {"name": ["ann lee"], "tag": ["a", "b"], "e": ["\u00e9"]}

    boundary = "legato-boundary-42"
    multipart = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="field"\r\n\r\n'
        "value\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="upload"; filename="hello.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        "hello file\r\n"
        f"--{boundary}--\r\n").encode()
    response = client.post("/form", content=multipart, headers={
        "content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.json() == {"field": ["value"], "upload": [
        {"filename": "hello.txt", "type": "text/plain", "data": "hello file"}]}


def test_H1_request_stream_hands_over_a_large_body_in_chunks(connect):
    client = connect(request_facts_app())
    body = os.urandom(300 * 1024)
    assert client.post("/stream", content=body).json() == {"total": len(body),
                                                           "chunks_seen": True}


# ---------------------------------------------------------------------------------- H2


def returns_app(tmp_path: Path) -> App:
    app = App()
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")

    @app.get("/str")
    async def text():
        return "<p>hello</p>"

    @app.get("/dict")
    async def mapping():
        return {"a": 1, "b": [True, None]}

    @app.get("/list")
    async def sequence():
        return [1, "two"]

    @app.get("/bytes")
    async def raw():
        return b"\x00\xffdata"

    @app.get("/response")
    async def response():
        reply = Response("created", status_code=201, headers={"x-extra": "yes"},
                         media_type="text/plain")
        reply.set_cookie("flavour", "oat", httponly=True)
        return reply

    @app.get("/json")
    async def json_response():
        return JSONResponse({"ok": True}, status_code=202)

    @app.get("/html")
    async def html_response():
        return HTMLResponse("<b>bold</b>")

    @app.get("/redirect")
    async def redirect():
        return RedirectResponse("/str")

    @app.get("/see-other")
    async def see_other():
        return RedirectResponse("/str", status_code=303)

    @app.get("/file")
    async def file():
        return FileResponse(report, filename="report.csv")

    @app.get("/stream")
    async def stream():
        for part in ("<ul>", "<li>one</li>", "<li>two</li>", "</ul>"):
            yield part

    @app.get("/nothing")
    async def nothing():
        return None

    @app.get("/sync")
    def sync_handler():
        return {"sync": True}

    return app


def test_H2_str_is_html_dict_and_list_are_json_bytes_are_octet_stream(connect, tmp_path):
    client = connect(returns_app(tmp_path))
    response = client.get("/str")
    assert (response.status_code, response.text) == (200, "<p>hello</p>")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    response = client.get("/dict")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"a": 1, "b": [True, None]}
    assert client.get("/list").json() == [1, "two"]
    response = client.get("/bytes")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"\x00\xffdata"
    assert client.get("/nothing").status_code == 204
    assert client.get("/sync").json() == {"sync": True}


def test_H2_response_objects_carry_status_headers_and_cookies(connect, tmp_path):
    client = connect(returns_app(tmp_path))
    response = client.get("/response")
    assert (response.status_code, response.text) == (201, "created")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-extra"] == "yes"
    assert response.cookies["flavour"] == "oat"
    assert "httponly" in response.headers["set-cookie"].lower()
    response = client.get("/json")
    assert (response.status_code, response.json()) == (202, {"ok": True})
    response = client.get("/html")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == "<b>bold</b>"


def test_H2_redirect_and_file_responses(connect, tmp_path):
    client = connect(returns_app(tmp_path))
    response = client.get("/redirect", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/str")
    assert client.get("/see-other", follow_redirects=False).status_code == 303
    assert client.get("/redirect", follow_redirects=True).text == "<p>hello</p>"
    response = client.get("/file")
    assert response.status_code == 200
    assert response.content == b"a,b\n1,2\n"
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="report.csv"'
    assert response.headers["content-length"] == "8"


def test_H2_async_generator_handler_streams_its_chunks_with_chunked_encoding(connect,
                                                                            tmp_path):
    client = connect(returns_app(tmp_path))
    response = client.get("/stream")
    assert response.status_code == 200
    assert response.text == "<ul><li>one</li><li>two</li></ul>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers


# ---------------------------------------------------------------------------------- H3


@pytest.fixture
def site(tmp_path: Path) -> Path:
    public = tmp_path / "public"
    (public / "sub").mkdir(parents=True)
    (public / "index.html").write_text("<h1>home</h1>")
    (public / "style.css").write_text("body { color: red; }")
    (public / "app.js").write_text("console.log(1);")
    (public / "data.json").write_text('{"x": 1}')
    (public / "pixel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    (public / "sub" / "note.txt").write_text("0123456789")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return public


def static_app(directory: Path) -> App:
    app = App()
    app.static("/static", str(directory))

    @app.get("/")
    async def index():
        return "index"

    return app


def test_H3_static_files_are_served_with_their_content_types(connect, site):
    client = connect(static_app(site))
    expected = {"index.html": "text/html", "style.css": "text/css",
                "app.js": "javascript", "data.json": "application/json",
                "pixel.png": "image/png", "sub/note.txt": "text/plain"}
    for name, media_type in expected.items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (site / name).read_bytes()
        assert media_type in response.headers["content-type"], name
    assert client.get("/static/missing.txt").status_code == 404
    assert client.get("/").text == "index"  # the App's own routes are untouched


def test_H3_static_validators_give_304_and_head_has_headers_without_body(connect, site):
    client = connect(static_app(site))
    response = client.get("/static/style.css")
    etag, last_modified = response.headers["etag"], response.headers["last-modified"]
    mtime = (site / "style.css").stat().st_mtime
    assert last_modified == formatdate(mtime, usegmt=True)
    again = client.get("/static/style.css", headers={"if-none-match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    since = client.get("/static/style.css", headers={"if-modified-since": last_modified})
    assert since.status_code == 304
    changed = client.get("/static/style.css", headers={"if-none-match": '"other"'})
    assert changed.status_code == 200
    head = client.head("/static/style.css")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("body { color: red; }"))
    assert head.headers["etag"] == etag


def test_H3_static_range_request_gets_206_with_the_slice(connect, site):
    client = connect(static_app(site))
    response = client.get("/static/sub/note.txt", headers={"range": "bytes=2-5"})
    assert response.status_code == 206
    assert response.content == b"2345"
    assert response.headers["content-range"] == "bytes 2-5/10"
    suffix = client.get("/static/sub/note.txt", headers={"range": "bytes=-3"})
    assert (suffix.status_code, suffix.content) == (206, b"789")
    beyond = client.get("/static/sub/note.txt", headers={"range": "bytes=50-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == "bytes */10"


def test_H3_static_path_traversal_is_404_plain_or_percent_encoded(connect, site):
    client = connect(static_app(site))
    for path in ["/static/../secret.txt", "/static/%2e%2e/secret.txt",
                 "/static/..%2fsecret.txt", "/static/%2e%2e%2fsecret.txt",
                 "/static/sub/..%2f..%2fsecret.txt", "/static/sub/%2E%2E/%2E%2E/secret.txt",
                 "/static/..%5csecret.txt", "/static/%2fetc%2fpasswd"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"TOP SECRET" not in response.content and b"root:" not in response.content


# ---------------------------------------------------------------------------------- H4


def session_app() -> App:
    app = App(secret_key="correct horse battery staple")

    @app.post("/login/{user}")
    async def login(request, user: str):
        request.session["user"] = user
        return "logged in"

    @app.get("/me")
    async def me(session):
        return dict(session)

    @app.websocket("/ws")
    async def ws(ws):
        await ws.send_json(dict(ws.session))

    return app


def test_H4_session_set_over_http_is_read_back_over_http_and_websocket(connect):
    client = connect(session_app())
    assert client.get("/me").json() == {}
    response = client.post("/login/ann")
    assert response.text == "logged in"
    set_cookie = response.headers["set-cookie"].lower()
    assert set_cookie.startswith("session=") and "httponly" in set_cookie
    assert client.get("/me").json() == {"user": "ann"}
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"user": "ann"}


def test_H4_tampered_or_foreign_session_cookie_gives_an_empty_session(connect):
    app = session_app()
    client = connect(app)
    genuine = app.sessions.dumps({"user": "eve"})
    assert client.get("/me", headers={"cookie": f"session={genuine}"}).json() == {
        "user": "eve"}
    payload, _, signature = genuine.rpartition(".")
    tampered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    forged = session_app().sessions.dumps({"user": "admin"})  # same key: still valid
    other_key = App(secret_key="another key").sessions.dumps({"user": "admin"})
    for value in [tampered, other_key, "garbage", genuine[:-3]]:
        assert client.get("/me", headers={"cookie": f"session={value}"}).json() == {}
        with client.websocket_connect("/ws", headers={"cookie": f"session={value}"}) as ws:
            assert ws.receive_json() == {}
    assert client.get("/me", headers={"cookie": f"session={forged}"}).json() == {
        "user": "admin"}


# ---------------------------------------------------------------------------------- H5


def test_H5_startup_and_shutdown_hooks_run_around_serving(mode):
    app = App()
    events: list[str] = []

    @app.on_startup
    async def up():
        events.append("startup")

    @app.on_shutdown
    def down():  # plain functions are hooks too
        events.append("shutdown")

    @app.provider(scope="app")
    async def pool():
        events.append("pool open")
        yield "pool"
        events.append("pool closed")

    @app.get("/")
    async def index(pool):
        return [*events, f"using {pool}"]

    with client_for(mode, app) as client:
        assert events == ["startup", "pool open"]
        assert client.get("/").json() == ["startup", "pool open", "using pool"]
    deadline = time.monotonic() + 3
    while len(events) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["startup", "pool open", "shutdown", "pool closed"]


# ---------------------------------------------------------------------------------- H6


def errors_app(debug: bool = False) -> App:
    app = App(debug=debug)

    @app.get("/teapot")
    async def teapot():
        raise HTTPError(418, "short and stout")

    @app.get("/conflict")
    async def conflict():
        raise HTTPError(409, {"error": "conflict", "id": 7})

    @app.get("/missing")
    async def missing():
        raise NotFound("no such item")

    @app.get("/private")
    async def private():
        raise Unauthorized("log in first", headers={"www-authenticate": "Bearer"})

    @app.get("/forbidden")
    async def forbidden():
        raise Forbidden()

    @app.route("/only-get-post", methods=["GET", "POST"])
    async def only():
        return "ok"

    @app.get("/boom")
    async def boom():
        raise ValueError("secret internals 1234")

    @app.exception_handler(KeyError)
    async def key_error(request, exc):
        return JSONResponse({"missing key": exc.args[0], "path": request.path}, 404)

    @app.get("/lookup")
    async def lookup():
        return {}["nope"]

    return app


def test_H6_HTTPError_and_its_subclasses_answer_with_their_status_and_detail(connect):
    client = connect(errors_app())
    response = client.get("/teapot")
    assert (response.status_code, response.text) == (418, "short and stout")
    response = client.get("/conflict")
    assert (response.status_code, response.json()) == (409, {"error": "conflict", "id": 7})
    response = client.get("/missing")
    assert (response.status_code, response.text) == (404, "no such item")
    response = client.get("/private")
    assert (response.status_code, response.text) == (401, "log in first")
    assert response.headers["www-authenticate"] == "Bearer"
    response = client.get("/forbidden")
    assert (response.status_code, response.text) == (403, "Forbidden")
    response = client.get("/lookup")
    assert response.status_code == 404
    assert response.json() == {"missing key": "nope", "path": "/lookup"}


def test_H6_unknown_path_is_404_and_unknown_method_405_with_allow(connect):
    client = connect(errors_app())
    assert client.get("/no/such/path").status_code == 404
    response = client.delete("/only-get-post")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == {"GET", "HEAD", "POST"}
    assert client.put("/teapot").status_code == 405
    assert client.head("/only-get-post").status_code == 200


def test_H6_unhandled_error_is_a_500_without_traceback(connect_quietly):
    client = connect_quietly(errors_app())
    # The App re-raises after its 500 so the server logs the traceback; uvicorn then
    # drops the connection, so this request does not leave it for the next one.
    response = client.get("/boom", headers={"connection": "close"})
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert "Traceback" not in response.text and "1234" not in response.text
    assert client.get("/teapot").status_code == 418  # the app still serves


def test_H6_unhandled_error_with_debug_shows_the_traceback_page(connect_quietly):
    client = connect_quietly(errors_app(debug=True))
    response = client.get("/boom", headers={"connection": "close"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback (most recent call last)" in response.text
    assert "ValueError: secret internals 1234" in response.text


def test_H6_testclient_reraises_the_app_exception_by_default():
    # SPEC T1; over sockets a client sees the 500 page (the tests above).
    from legato import TestClient

    with TestClient(errors_app()) as client:
        with pytest.raises(ValueError, match="secret internals 1234"):
            client.get("/boom")
