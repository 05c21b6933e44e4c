"""The suite runs as one pytest session: test modules need unique basenames across
tests/unit and tests/integration (pytest's default import mode keys modules by basename)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
