"""Framework tests run each App three ways: in-process TestClient, legato's built-in
server, uvicorn (SPEC §1: the App is an ASGI 3 app that runs unchanged elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from live import MODES, client_for


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(mode: str) -> Iterator[Callable[[Any], Any]]:
    """``connect(app)`` → a client of the app in this test's mode."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(client_for(mode, app))
