"""TestClient over HTTP: requests reach the app as a real client's would (through
legato's server), and responses come back parsed off the wire."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import time
from typing import Any

import pytest
from apps import (
    Failure,
    echo_app,
    failing_app,
    gzip_app,
    read_body,
    redirect_app,
    respond,
    silent_app,
    streaming_app,
)

from legato.server import ServerConfig
from legato.testclient import TestClient


@pytest.fixture
def client() -> Any:
    with TestClient(echo_app) as client:
        yield client


def header(report: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in report["headers"] if n == name]


# -------------------------------------------------------------------- the request


def test_get_sends_method_path_and_query_to_the_app(client: TestClient) -> None:
    report = client.get("/items/42", params={"q": "a b", "flag": True, "n": [1, 2]}).json()
    assert report["method"] == "GET"
    assert report["path"] == "/items/42"
    assert report["query"] == "q=a+b&flag=true&n=1&n=2"


def test_params_are_appended_to_a_query_already_in_the_url(client: TestClient) -> None:
    assert client.get("/x?a=1", params={"b": "2"}).json()["query"] == "a=1&b=2"


def test_a_path_with_spaces_and_unicode_is_percent_encoded_on_the_wire(
        client: TestClient) -> None:
    report = client.get("/a b/é").json()
    assert report["raw_path"] == "/a%20b/%C3%A9"
    assert report["path"] == "/a b/é"


def test_host_header_comes_from_the_base_url() -> None:
    with TestClient(echo_app, base_url="http://example.org:8080") as client:
        report = client.get("/").json()
    assert header(report, "host") == ["example.org:8080"]
    assert report["server"] == ["example.org", 8080]
    assert report["client"][0] == "testclient"


def test_an_https_base_url_gives_the_https_scheme() -> None:
    with TestClient(echo_app, base_url="https://testserver") as client:
        assert client.get("/").json()["scheme"] == "https"


def test_root_path_reaches_the_scope() -> None:
    with TestClient(echo_app, root_path="/api") as client:
        assert client.get("/api/users").json()["root_path"] == "/api"


def test_request_headers_override_client_headers_by_name_case_insensitively() -> None:
    with TestClient(echo_app, headers={"X-Token": "client", "X-Other": "kept"}) as client:
        report = client.get("/", headers={"x-token": "request"}).json()
    assert header(report, "x-token") == ["request"]
    assert header(report, "x-other") == ["kept"]
    assert header(report, "user-agent") == ["testclient"]


def test_a_header_value_with_a_newline_is_refused_before_sending(client: TestClient) -> None:
    with pytest.raises(ValueError):
        client.get("/", headers={"x-evil": "a\r\nx-injected: 1"})


def test_every_method_helper_sends_its_method(client: TestClient) -> None:
    for name in ("get", "post", "put", "patch", "delete", "options"):
        assert getattr(client, name)("/").json()["method"] == name.upper()


def test_head_returns_the_headers_without_a_body(client: TestClient) -> None:
    response = client.head("/")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


# ------------------------------------------------------------------------ bodies


def test_json_is_sent_as_application_json(client: TestClient) -> None:
    report = client.post("/", json={"name": "légato", "n": [1, 2]}).json()
    assert header(report, "content-type") == ["application/json"]
    assert json.loads(report["body"].encode("latin-1")) == {"name": "légato", "n": [1, 2]}


def test_data_is_sent_as_an_urlencoded_form(client: TestClient) -> None:
    report = client.post("/", data={"a": "1 2", "b": ["x", "y"], "c": True}).json()
    assert header(report, "content-type") == ["application/x-www-form-urlencoded"]
    assert report["body"] == "a=1+2&b=x&b=y&c=true"


def test_files_are_sent_as_multipart_form_data_with_the_data_fields() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["content_type"] = dict(scope["headers"])[b"content-type"].decode()
        seen["body"] = await read_body(receive)
        await respond(send)

    with TestClient(app) as client:
        client.post("/", data={"title": "report"}, files={
            "upload": ("notes.txt", b"hello\r\nworld", "text/plain"),
            "blob": io.BytesIO(b"\x00\x01"),
            "quoted": ('a"b.csv', "x,y"),
        })
    boundary = seen["content_type"].split("boundary=")[1]
    parts = seen["body"].split(b"--" + boundary.encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    assert parts[1] == b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nreport\r\n'
    assert parts[2] == (b'\r\nContent-Disposition: form-data; name="upload"; '
                        b'filename="notes.txt"\r\nContent-Type: text/plain\r\n\r\n'
                        b'hello\r\nworld\r\n')
    assert b'filename="upload"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01' \
        in parts[3]
    assert b'filename="a%22b.csv"\r\nContent-Type: text/csv\r\n\r\nx,y' in parts[4]


def test_multipart_bodies_parse_with_the_standard_library_email_parser() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        head = b"content-type: " + dict(scope["headers"])[b"content-type"] + b"\r\n\r\n"
        seen["message"] = email.message_from_bytes(head + await read_body(receive),
                                                   policy=email.policy.HTTP)
        await respond(send)

    with TestClient(app) as client:
        client.post("/", data={"name": "x"}, files={"upload": ("a.bin", b"\xff" * 1000)})
    message = seen["message"]
    assert message.get_content_type() == "multipart/form-data"
    name, upload = message.iter_parts()
    assert name.get_param("name", header="content-disposition") == "name"
    assert name.get_content() == "x"
    assert upload.get_filename() == "a.bin"
    assert upload.get_payload(decode=True) == b"\xff" * 1000


def test_an_iterable_content_is_sent_chunked(client: TestClient) -> None:
    report = client.post("/", content=iter([b"ab", b"", b"cd"])).json()
    assert header(report, "transfer-encoding") == ["chunked"]
    assert report["body"] == "abcd"


def test_a_post_without_body_says_content_length_zero(client: TestClient) -> None:
    assert header(client.post("/").json(), "content-length") == ["0"]


def test_two_kinds_of_body_at_once_are_refused(client: TestClient) -> None:
    with pytest.raises(TypeError):
        client.post("/", content=b"x", json={})


def test_a_one_mebibyte_body_goes_both_ways() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, the server's default body limit

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send, 200, await read_body(receive))

    with TestClient(app) as client:
        response = client.post("/", content=payload)
    assert response.content == payload


def test_a_body_over_the_server_limit_gets_413_from_the_server() -> None:
    with TestClient(echo_app, config=ServerConfig(max_body_size=1000)) as client:
        assert client.post("/", content=b"x" * 1001).status_code == 413


# --------------------------------------------------------------------- responses


def test_a_streamed_response_is_reassembled_from_its_chunks() -> None:
    with TestClient(streaming_app) as client:
        response = client.get("/")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "one two three"
    assert response.reason_phrase == "OK"


def test_headers_are_case_insensitive(client: TestClient) -> None:
    response = client.get("/")
    assert response.headers["Content-Type"] == response.headers["content-type"]
    assert response.is_success and not response.is_error and not response.is_redirect


def test_a_gzip_response_is_decoded() -> None:
    with TestClient(gzip_app) as client:
        response = client.get("/")
    assert response.text == "compressed text"
    assert response.raw_content != response.content


def test_work_the_app_does_after_responding_is_done_when_request_returns() -> None:
    done: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send, 204)
        await asyncio.sleep(0.05)  # a background task, as Starlette's run after the response
        done.append("background")

    with TestClient(app) as client:
        client.get("/")
        assert done == ["background"]


def test_an_app_still_running_long_after_its_response_is_cancelled_with_a_warning() -> None:
    cancelled: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send, 200, b"answered")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    client = TestClient(app, timeout=0.2)
    with pytest.warns(RuntimeWarning, match="GET /stuck did not return within 0.2 s"):
        assert client.get("/stuck").text == "answered"
    assert cancelled == [True]
    client.close()


def test_a_100_continue_interim_response_is_skipped(client: TestClient) -> None:
    # RFC 9110 §15.2: 1xx responses are interim; the final one follows.
    response = client.post("/", content=b"body", headers={"expect": "100-continue"})
    assert response.status_code == 200
    assert response.json()["body"] == "body"


# --------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed_when_asked(status: int) -> None:
    with TestClient(redirect_app) as client:
        response = client.get(f"/redirect/{status}/2", follow_redirects=True)
    assert response.text == f"GET /redirect/{status}/0 "
    assert [r.status_code for r in response.history] == [status, status]
    assert response.url == f"http://testserver/redirect/{status}/0"


def test_redirects_are_not_followed_by_default() -> None:
    with TestClient(redirect_app) as client:
        response = client.get("/redirect/302/1")
    assert response.status_code == 302
    assert response.headers["location"] == "/redirect/302/0"


@pytest.mark.parametrize(("status", "method", "body"),
                         [(303, "GET", ""), (302, "GET", ""), (307, "POST", "data")])
def test_a_redirected_post_becomes_a_get_except_after_307_and_308(
        status: int, method: str, body: str) -> None:
    with TestClient(redirect_app) as client:
        response = client.post(f"/redirect/{status}/1", content=b"data", follow_redirects=True)
    assert response.text == f"{method} /redirect/{status}/0 {body}"


def test_more_than_twenty_redirects_raise() -> None:
    with TestClient(redirect_app) as client, pytest.raises(RuntimeError, match="redirects"):
        client.get("/loop", follow_redirects=True)


# ----------------------------------------------------------- failures and timeouts


def test_an_exception_in_the_app_is_raised_in_the_test() -> None:
    with TestClient(failing_app) as client:
        for path in ("/before", "/during", "/after"):
            with pytest.raises(Failure):
                client.get(path)


def test_without_raise_server_exceptions_the_test_sees_the_500_page() -> None:
    with TestClient(failing_app, raise_server_exceptions=False) as client:
        response = client.get("/before")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def test_without_raise_server_exceptions_a_cut_response_raises_connection_error() -> None:
    with TestClient(failing_app, raise_server_exceptions=False) as client:
        with pytest.raises(ConnectionError, match="middle of the response body"):
            client.get("/during")
        assert client.get("/after").text == "complete"


def test_an_app_that_never_answers_times_out_quickly_with_a_clear_message() -> None:
    client = TestClient(silent_app, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no complete response to GET /slow"):
        client.get("/slow")
    client.close()
    assert time.monotonic() - start < 2


def test_the_client_works_without_a_with_block_and_after_close() -> None:
    client = TestClient(echo_app)
    assert client.get("/one").json()["path"] == "/one"
    client.close()
    assert client.get("/two").json()["path"] == "/two"
    client.close()
