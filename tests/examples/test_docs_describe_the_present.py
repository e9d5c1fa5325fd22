"""Docs that describe the past (issue 13 item 10): the README and docs/ name only files
that exist, say what is built, and say what ``make test`` needs and installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A repo path as docs write it: `docs/hub.md`, examples/chat/app.py, bench/paired.py...
PATH = re.compile(r"(?<![\w/.])((?:docs|examples|bench|tests|tools|src)/[\w./-]*\w)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repo_path_a_doc_names_exists(doc: Path) -> None:
    named = set(PATH.findall(doc.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists()
                     and "*" not in p and "{" not in p)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_the_readme_status_says_what_is_built_and_what_is_not() -> None:
    status = ROOT.joinpath("README.md").read_text().split("Status:", 1)[1].split("\n\n")[0]
    for built in ("protocol core", "built-in server", "App", "TestClient", "hub"):
        assert built in status.split("Not built yet")[0], built


def test_the_readme_says_what_make_test_needs_and_installs() -> None:
    readme = ROOT.joinpath("README.md").read_text().lower()
    for needed in ("redis-server", "chromium", "tools/system-deps.sh", "installs"):
        assert needed in readme, needed


def test_design_layers_and_the_echo_core_example_do_not_call_built_layers_missing() -> None:
    layers = ROOT.joinpath("docs/design.md").read_text().split("## Layers", 1)[1]
    layers = layers.split("\n## ", 1)[0]
    assert "All of it is built" in layers
    echo = ROOT.joinpath("examples/echo_core.py").read_text().split('"""')[1]
    assert "stand-in" not in echo and "not built" not in echo
