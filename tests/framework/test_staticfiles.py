"""StaticFiles (SPEC H3): files under a directory, nothing outside it. Traversal attempts
arrive as the server hands them over: percent-decoded (``%2e%2e`` is already ``..``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from asgi_calls import Exchange, call, http_scope, run

from legato.staticfiles import StaticFiles, safe_segments


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """tmp/public/{index.html, css/site.css, docs/index.html, empty/} and tmp/secret.txt,
    with one symlink leading out of public and one staying inside."""
    public = tmp_path / "public"
    (public / "css").mkdir(parents=True)
    (public / "docs").mkdir()
    (public / "empty").mkdir()
    (public / "index.html").write_text("<h1>home</h1>")
    (public / "css" / "site.css").write_text("body{}")
    (public / "docs" / "index.html").write_text("<h1>docs</h1>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (public / "out-link.txt").symlink_to(tmp_path / "secret.txt")
    (public / "in-link.css").symlink_to(public / "css" / "site.css")
    return public


def get(app: StaticFiles, path: str, *headers: tuple[str, str], method: str = "GET",
        **scope: object) -> Exchange:
    return call(app, http_scope(path, method=method, headers=headers, **scope))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- serving


def test_a_file_is_served_with_its_content_type(site: Path) -> None:
    sent = get(StaticFiles(site), "/css/site.css")
    assert sent.status == 200
    assert sent.body == b"body{}"
    assert sent.header("content-type") == "text/css; charset=utf-8"


def test_served_files_answer_conditional_requests_with_304(site: Path) -> None:
    app = StaticFiles(site)
    first = get(app, "/css/site.css")
    etag, last_modified = first.header("etag"), first.header("last-modified")
    assert etag is not None and last_modified is not None
    assert get(app, "/css/site.css", ("if-none-match", etag)).status == 304
    assert get(app, "/css/site.css", ("if-modified-since", last_modified)).status == 304


def test_served_files_answer_ranges_and_head(site: Path) -> None:
    app = StaticFiles(site)
    ranged = get(app, "/css/site.css", ("range", "bytes=0-3"))
    assert (ranged.status, ranged.body) == (206, b"body")
    head = get(app, "/css/site.css", method="HEAD")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", "6")


def test_a_symlink_that_stays_inside_the_directory_is_served(site: Path) -> None:
    assert get(StaticFiles(site), "/in-link.css").body == b"body{}"


def test_a_directory_given_through_a_symlink_is_served(site: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(site)
    assert get(StaticFiles(tmp_path / "alias"), "/index.html").status == 200


@pytest.mark.parametrize("path", ["/missing.txt", "/css/missing.css", "/css/site.css/x"])
def test_a_missing_file_is_404(site: Path, path: str) -> None:
    sent = get(StaticFiles(site), path)
    assert (sent.status, sent.body) == (404, b"Not Found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_methods_other_than_get_and_head_are_405_with_allow(site: Path, method: str) -> None:
    sent = get(StaticFiles(site), "/index.html", method=method)
    assert sent.status == 405
    assert sent.header("allow") == "GET, HEAD"


def test_a_websocket_upgrade_for_a_file_is_refused(site: Path) -> None:
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = http_scope("/index.html")
    scope["type"] = "websocket"
    run(StaticFiles(site)(scope, Exchange().receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]


# ----------------------------------------------------------------------- traversal


@pytest.mark.parametrize("path", [
    "/../secret.txt",
    "/css/../../secret.txt",
    "/../public/../secret.txt",
    "/..",
    "/%2e%2e/secret.txt".replace("%2e", "."),  # what the server hands over for %2e%2e
    "/..\\secret.txt",
    "/a\\..\\..\\secret.txt",
    "/\\..\\secret.txt",
    "/index.html\x00.png",
    "/\x00",
])
def test_traversal_attempts_are_404_and_never_reach_the_secret(site: Path, path: str) -> None:
    sent = get(StaticFiles(site), path)
    assert sent.status == 404
    assert b"SECRET" not in sent.body


def test_a_literal_percent_2e_name_is_only_a_file_name(site: Path) -> None:
    # Undecoded escapes are plain characters: no file has that name, and nothing escapes.
    assert get(StaticFiles(site), "/%2e%2e/secret.txt").status == 404


def test_an_absolute_looking_path_stays_inside_the_directory(site: Path,
                                                             tmp_path: Path) -> None:
    secret = str(tmp_path / "secret.txt")
    assert get(StaticFiles(site), "/" + secret).status == 404
    assert get(StaticFiles(site), "//" + secret.lstrip("/")).status == 404


def test_a_symlink_leading_out_of_the_directory_is_404(site: Path) -> None:
    sent = get(StaticFiles(site), "/out-link.txt")
    assert sent.status == 404
    assert b"SECRET" not in sent.body


def test_follow_symlinks_serves_a_symlink_leading_out(site: Path) -> None:
    sent = get(StaticFiles(site, follow_symlinks=True), "/out-link.txt")
    assert (sent.status, sent.body) == (200, b"TOP SECRET")


def test_follow_symlinks_still_refuses_dot_dot(site: Path) -> None:
    assert get(StaticFiles(site, follow_symlinks=True), "/../secret.txt").status == 404


def test_safe_segments_drops_empty_and_dot_segments() -> None:
    assert safe_segments("//a/./b/") == ["a", "b"]
    assert safe_segments("/a/../b") is None


def test_a_path_too_long_for_the_file_system_is_404(site: Path) -> None:
    assert get(StaticFiles(site), "/" + "a" * 5000).status == 404


# --------------------------------------------------------------------- directories


def test_a_directory_is_404_without_html(site: Path) -> None:
    assert get(StaticFiles(site), "/docs/").status == 404
    assert get(StaticFiles(site), "/").status == 404


def test_html_serves_index_html_for_a_directory(site: Path) -> None:
    app = StaticFiles(site, html=True)
    assert get(app, "/docs/").body == b"<h1>docs</h1>"
    assert get(app, "/").body == b"<h1>home</h1>"


def test_html_redirects_a_directory_without_its_slash(site: Path) -> None:
    sent = get(StaticFiles(site, html=True), "/docs", query_string=b"v=1")
    assert sent.status == 307
    assert sent.header("location") == "docs/?v=1"


def test_html_redirects_the_bare_mount_point_to_its_slash(site: Path) -> None:
    sent = get(StaticFiles(site, html=True), "", root_path="/static")
    assert sent.header("location") == "static/"


def test_html_directory_without_index_is_404(site: Path) -> None:
    assert get(StaticFiles(site, html=True), "/empty/").status == 404


def test_html_serves_404_html_for_missing_files_when_there_is_one(site: Path) -> None:
    (site / "404.html").write_text("<h1>lost</h1>")
    sent = get(StaticFiles(site, html=True), "/nowhere")
    assert (sent.status, sent.body) == (404, b"<h1>lost</h1>")
    assert sent.header("content-type") == "text/html; charset=utf-8"


# -------------------------------------------------------------------- construction


def test_a_missing_directory_is_a_runtime_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no-such-dir.*does not exist"):
        StaticFiles(tmp_path / "no-such-dir")


def test_a_file_instead_of_a_directory_is_a_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RuntimeError, match="not a directory"):
        StaticFiles(os.fspath(tmp_path / "file"))
