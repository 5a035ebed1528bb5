"""Shared fixtures; the helpers they use live in :mod:`helpers`, which tests import directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import lake_files, write_tree


@pytest.fixture(autouse=True)
def _no_remote_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach no network beyond 127.0.0.1: manifests naming https://example.org/... stay
    unchecked; tests/test_remote.py lifts this for its servers on 127.0.0.1."""
    monkeypatch.setenv("LAKEGEN_OFFLINE", "1")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A small valid lake: one dataset, one code entry, a root model and its fine-tune."""
    root = tmp_path / "lake"
    write_tree(root, lake_files())
    return root
