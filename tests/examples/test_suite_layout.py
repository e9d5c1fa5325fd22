"""The suite's own layout: test folders have no __init__.py (each has its own conftest),
so pytest imports test modules by their file name, and two with one name cannot both be
collected in one run (`make test` runs them all at once)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_no_two_test_modules_share_a_file_name() -> None:
    names = Counter(p.name for p in (ROOT / "tests").rglob("*.py")
                    if p.name != "conftest.py" and "__pycache__" not in p.parts)
    shared = sorted(name for name, count in names.items() if count > 1)
    assert not shared, f"rename one of each: {shared}"
