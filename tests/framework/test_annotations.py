"""S1 (newcomer): a parameter annotation that does not resolve is an error that names
the function and the parameter, never a silent ``str`` (issue 13).

Under ``from __future__ import annotations`` (this module's first line) nothing
evaluates an annotation at ``def`` time, so ``n: itn`` is only a string until legato
reads it. Registration reads it. A name not defined yet while the module is still being
imported may be a class further down (a forward reference): that one is checked again
at startup and at first use.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from legato import App, Request, TestClient, WebSocket, WebSocketDenied
from legato.annotations import AnnotationError

MESSAGE = r"parameter 'n' is annotated 'itn': 'itn' is not defined \(did you mean 'int'\?\)"


async def typo(ws: WebSocket, n: itn) -> None:  # type: ignore[name-defined]  # noqa: F821
    """The handler of every registration below (each kind takes any signature)."""


def register_websocket(app: App) -> None:
    app.websocket("/ws/{n}")(typo)


def register_route(app: App) -> None:
    app.route("/h/{n}")(typo)


def register_http_hook(app: App) -> None:
    app.before_request(typo)


def register_websocket_hook(app: App) -> None:
    app.before_request(websocket=True)(typo)


def register_after_hook(app: App) -> None:
    app.after_request(typo)


def register_startup(app: App) -> None:
    app.on_startup(typo)


def register_provider(app: App) -> None:
    app.provider(typo)


def register_on_connect(app: App) -> None:
    app.websocket("/ws", on_connect=typo)(lambda ws: None)


def register_on_close(app: App) -> None:
    app.websocket("/ws", on_close=typo)(lambda ws: None)


def register_exception_handler(app: App) -> None:
    app.exception_handler(KeyError)(typo)


@pytest.mark.parametrize(("register", "what"), [
    (register_websocket, "WebSocket handler"), (register_route, "HTTP handler"),
    (register_http_hook, "before_request hook"),
    (register_websocket_hook, "before_request hook"),
    (register_after_hook, "after_request hook"), (register_startup, "on_startup hook"),
    (register_provider, "provider"), (register_on_connect, "on_connect callback"),
    (register_on_close, "on_close callback"),
    (register_exception_handler, "exception handler"),
])
def test_S1_an_unresolvable_annotation_fails_at_registration_naming_function_and_parameter(
        register: Callable[[App], None], what: str) -> None:
    with pytest.raises(AnnotationError, match=f"^{what} {__name__}.typo: {MESSAGE}$"):
        register(App())


def test_S1_an_annotation_error_is_a_name_error_carrying_the_missing_name() -> None:
    with pytest.raises(NameError) as info:
        register_websocket(App())
    assert info.value.name == "itn"


def test_S1_an_annotation_that_can_never_evaluate_fails_at_registration() -> None:
    async def broken(ws: WebSocket, n: "list[int") -> None:  # noqa: F722
        pass

    with pytest.raises(AnnotationError, match="WebSocket handler .*broken: parameter 'n'"):
        App().websocket("/ws")(broken)


# ------------------------------------------ a module still being imported: forward refs

FORWARD_REFERENCE = '''
from __future__ import annotations

import enum

from legato import App

app = App()


@app.websocket("/paint/{color}")
async def paint(ws, color: Color, times: int = 1):
    await ws.send_json([color.name, times])


@app.route("/color/{color}")
async def show(request, color: Color):
    return color.name


class Color(enum.Enum):  # defined below the handlers that name it
    RED = "red"
    BLUE = "blue"
'''

STILL_UNRESOLVED = '''
from __future__ import annotations

from legato import App

app = App()


@app.websocket("/count/{n}")
async def count(ws, n: itn):
    await ws.send_text(repr(n))
'''


@pytest.fixture
def import_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[Callable[[str, str], Any]]:
    monkeypatch.syspath_prepend(str(tmp_path))
    imported: list[str] = []

    def load(name: str, source: str) -> Any:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        imported.append(name)
        return importlib.import_module(name)

    yield load
    for name in imported:
        sys.modules.pop(name, None)


def test_S1_a_forward_reference_to_a_class_further_down_the_module_resolves(
        import_module: Callable[[str, str], Any]) -> None:
    app = import_module("forward_ref_app", FORWARD_REFERENCE).app
    with TestClient(app) as client:
        assert client.get("/color/blue").text == "BLUE"
        with client.websocket_connect("/paint/red?times=2") as ws:
            assert ws.receive_json() == ["RED", 2]
        assert client.get("/color/green").status_code == 400  # converted, not a str


def test_S1_a_name_still_undefined_after_import_fails_lifespan_startup(
        import_module: Callable[[str, str], Any]) -> None:
    app = import_module("unresolved_app", STILL_UNRESOLVED).app
    with pytest.raises(RuntimeError, match=f"WebSocket handler unresolved_app.count: {MESSAGE}"):
        with TestClient(app):
            pass


def test_S1_a_name_still_undefined_after_import_fails_at_first_use_without_lifespan(
        import_module: Callable[[str, str], Any]) -> None:
    app = import_module("unresolved_app", STILL_UNRESOLVED).app
    client = TestClient(app)  # no `with`: no lifespan, as in Starlette
    with pytest.raises(AnnotationError, match=f"unresolved_app.count: {MESSAGE}"):
        with client.websocket_connect("/count/3"):
            pass


def test_S1_legato_run_refuses_to_serve_a_handler_whose_annotation_does_not_resolve(
        tmp_path: Path) -> None:
    (tmp_path / "typo_app.py").write_text(textwrap.dedent(STILL_UNRESOLVED))
    result = subprocess.run([sys.executable, "-m", "legato", "run", "typo_app:app",
                             "--port", "0"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "typo_app.count: parameter 'n' is annotated 'itn'" in result.stderr


# --------------------------------------------------- the same class: hybrid handlers

def test_R2_a_handler_annotated_websocket_or_none_is_hybrid_under_future_annotations() -> None:
    app = App()

    @app.route("/live")
    async def live(request: Request, ws: WebSocket | None = None) -> str | None:
        if ws is None:
            return "page"
        await ws.accept()
        await ws.send_text("socket")
        await ws.close()
        return None

    client = TestClient(app)
    assert client.get("/live").text == "page"
    with client.websocket_connect("/live") as ws:
        assert ws.receive_text() == "socket"


# ------------------------------------------- what still works: locals, TYPE_CHECKING

def test_S1_an_app_factory_s_local_imports_and_classes_resolve() -> None:
    import enum  # noqa: PLC0415 - local on purpose: the factory's namespace

    from legato import WebSocket as LocalWebSocket  # noqa: PLC0415

    class Size(enum.Enum):
        S = "s"
        L = "l"

    app = App()

    @app.websocket("/shirt/{size}")
    async def shirt(ws: LocalWebSocket, size: Size) -> None:
        await ws.send_text(size.name)

    with TestClient(app).websocket_connect("/shirt/l") as ws:
        assert ws.receive_text() == "L"


TYPE_CHECKING_ONLY = '''
from __future__ import annotations

from typing import TYPE_CHECKING

from legato import App

if TYPE_CHECKING:
    from legato import WebSocket
    from somewhere_else import Database

app = App()


@app.provider
def db():
    return "the database"


@app.websocket("/ws/{n}")
async def handler(ws: WebSocket, db: Database, n: int):
    await ws.send_text(f"{db} {n + 1}")
'''


def test_S1_annotations_only_a_type_checker_sees_are_fine_where_the_name_decides(
        import_module: Callable[[str, str], Any]) -> None:
    """``ws`` and a provider's name are filled by name: an ``if TYPE_CHECKING:`` import
    for their annotations is a common typed-code idiom, and keeps working."""
    app = import_module("type_checking_app", TYPE_CHECKING_ONLY).app
    with TestClient(app) as client, client.websocket_connect("/ws/41") as ws:
        assert ws.receive_text() == "the database 42"


def test_S1_a_websocket_parameter_not_named_ws_needs_its_annotation_to_resolve() -> None:
    async def handler(connection: WebSocket, n: int) -> None:
        pass

    handler.__annotations__["connection"] = "WebSockett"
    with pytest.raises(AnnotationError, match="parameter 'connection' is annotated "
                                              "'WebSockett': 'WebSockett' is not defined "
                                              r"\(did you mean 'WebSocket'\?\)"):
        App().websocket("/ws")(handler)


# ---------------------------- the same class: a type no path or query string converts to

def test_S1_a_parameter_no_string_converts_to_fails_startup_naming_it() -> None:
    import datetime  # noqa: PLC0415

    app = App()

    @app.websocket("/at/{when}")
    async def at(ws: WebSocket, when: datetime.datetime) -> None:
        pass

    with pytest.raises(RuntimeError, match=r"at: parameter 'when' is annotated "
                                           r"<class 'datetime.datetime'>, which a path value"):
        with TestClient(app):
            pass
    with pytest.raises(TypeError, match="take it as str and convert it in the handler"):
        TestClient(app).websocket_connect("/at/now").__enter__()


@pytest.mark.parametrize("annotation", ["dict[str, int]", "list[bytes]", "bytes"])
def test_S1_a_query_parameter_no_string_converts_to_is_an_error(annotation: str) -> None:
    app = App()

    async def page(request: Request, q: Any) -> str:
        return "never"

    page.__annotations__["q"] = annotation
    app.route("/")(page)
    with pytest.raises(TypeError, match=r"parameter 'q' is annotated .*which a query value"):
        TestClient(app).get("/?q=1")


def test_R1_a_literal_parameter_converts_to_one_of_its_values() -> None:
    from typing import Literal  # noqa: PLC0415

    app = App()

    @app.websocket("/sort/{order}")
    async def sort(ws: WebSocket, order: Literal["asc", "desc"], top: Literal[1, 10] = 1
                   ) -> None:
        await ws.send_json([order, top])

    client = TestClient(app)
    with client.websocket_connect("/sort/desc?top=10") as ws:
        assert ws.receive_json() == ["desc", 10]
    with pytest.raises(WebSocketDenied) as info:
        client.websocket_connect("/sort/random").__enter__()
    assert info.value.status_code == 400
    assert b"expected one of 'asc', 'desc'" in info.value.body
