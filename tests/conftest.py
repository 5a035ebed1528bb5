"""Shared fixtures: small real lakes on disk, and the real ``lakegen`` entry point."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAKEGEN = Path(sys.executable).with_name("lakegen")


@pytest.fixture(autouse=True)
def _no_remote_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach no network beyond 127.0.0.1: manifests naming https://example.org/... stay
    unchecked; tests/test_remote.py lifts this for its servers on 127.0.0.1."""
    monkeypatch.setenv("LAKEGEN_OFFLINE", "1")


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative path -> text or bytes) under ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def artifact(data: bytes, uri: str, fmt: str = "safetensors") -> str:
    """An inline YAML artifact mapping for ``data`` stored at ``uri``."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{{uri: {uri}, sha256: {digest}, size: {len(data)}, format: {fmt}}}"


WEIGHTS_A = b"weights of toy-a " * 64
WEIGHTS_B = b"weights of toy-b " * 64
DATA = b"toy dataset bytes " * 32

DATASET = f"""\
# yaml-language-server: $schema=../../schemas/dataset.schema.json
kind: dataset
id: toy-data
name: Toy data
description: A toy dataset.
owners: ['@ada']
license: CC-BY-4.0
task: tabular-classification
source: {{name: Made up, url: 'https://example.org/toy'}}
personal_data: false
versions:
  - version: 1.0.0
    released: 2026-01-02
    artifact: {artifact(DATA, "../artifacts/toy-data-1.0.0.npz", "npz")}
splits:
  - {{name: train, rows: 10}}
  - {{name: test, rows: 5}}
"""

CODE = """\
kind: code
id: toy-code
name: Toy code
description: Builds toy networks.
owners: ['@ada']
license: MIT
path: src
entrypoints:
  build_model: toy.nets:build
"""

MODEL_A = f"""\
# yaml-language-server: $schema=../../schemas/model.schema.json
kind: model
id: toy-a
name: Toy A
description: |
  The **root** model.
owners: ['@ada', 'acme/vision']
license: Apache-2.0
tags: [toy]
task: tabular-classification
framework: pytorch
architecture:
  family: toy-mlp
  code: toy-code
  entrypoint: toy.nets:build
  config: {{hidden: 4}}
versions:
  - version: 1.0.0
    released: 2026-01-03
    changelog: First.
    artifact: {artifact(WEIGHTS_A, "../artifacts/toy-a-1.0.0.safetensors")}
datasets:
  - {{id: toy-data, role: train}}
code:
  - {{id: toy-code, role: train}}
evaluations:
  - {{dataset: toy-data, split: test, metric: accuracy, value: 0.9}}
risk: minimal
"""

MODEL_B = f"""\
kind: model
id: toy-b
name: Toy B
description: A fine-tune of toy-a.
owners: ['@ada']
license: Apache-2.0
task: tabular-classification
framework: pytorch
architecture: {{family: toy-mlp}}
versions:
  - version: 0.1.0
    released: 2026-01-04
    artifact: {artifact(WEIGHTS_B, "../artifacts/toy-b-0.1.0.safetensors")}
base_models:
  - id: toy-a
    version: 1.0.0
    relation: finetune
risk: minimal
"""


def lake_files() -> dict[str, str | bytes]:
    return {
        "catalog/datasets/toy-data.yaml": DATASET,
        "catalog/code/toy-code.yaml": CODE,
        "catalog/models/toy-a.yaml": MODEL_A,
        "catalog/models/toy-b.yaml": MODEL_B,
        "catalog/artifacts/toy-data-1.0.0.npz": DATA,
        "catalog/artifacts/toy-a-1.0.0.safetensors": WEIGHTS_A,
        "catalog/artifacts/toy-b-0.1.0.safetensors": WEIGHTS_B,
        "src/toy/__init__.py": "",
        "src/toy/nets.py": "def build(hidden):\n    return hidden\n",
    }


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A small valid lake: one dataset, one code entry, a root model and its fine-tune."""
    root = tmp_path / "lake"
    write_tree(root, lake_files())
    return root


def age(path: Path, seconds: int = 60) -> None:
    """Set ``path``'s modification time ``seconds`` back: older than the window in which
    :mod:`lakegen.digests` will not trust a file's stat record (a file written just now)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def run_lakegen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``lakegen`` console script."""
    return subprocess.run([str(LAKEGEN), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle`` in ``text``."""
    return text[: text.index(needle)].count("\n") + 1


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime, to prove a command wrote nothing."""
    return {
        p.relative_to(root).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }
