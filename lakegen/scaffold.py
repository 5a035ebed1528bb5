"""``lakegen new``: write a fresh manifest that validates as it stands."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from lakegen.catalog import CATALOG_DIR
from lakegen.errors import LakeError, Problem
from lakegen.manifest import FOLDERS, SLUG_PATTERN
from lakegen.schema import schema_file

_BODIES = {
    "model": """\
task: image-classification
framework: pytorch
architecture:
  family: {id}
  # code: <code entry id>          # the code entry that builds the network
  # entrypoint: package.module:build_model
  # config: {{}}
versions: []
  # - version: 1.0.0
  #   released: {today}
  #   changelog: First release.
  #   artifact: {{uri: ../artifacts/models/{id}.safetensors, sha256: ..., size: ..., format: safetensors}}
base_models: []    # - {{id: <model id or hf:org/name>, relation: finetune}}
datasets: []       # - {{id: <dataset id>, role: train}}
code: []           # - {{id: <code id>, role: train}}
evaluations: []    # - {{dataset: <id>, split: test, metric: accuracy, value: 0.9, tolerance: 0.01}}
intended_use: ""
limitations: ""
risk: minimal
""",
    "dataset": """\
task: image-classification
source:
  name: Where the data comes from
  # url: https://...
personal_data: false
versions: []
splits: []         # - {{name: train, rows: 1000}}
features: []       # - {{name: image, dtype: float32, shape: [8, 8]}}
derived_from: []
""",
    "code": """\
repository: https://example.com/your-org/{id}.git   # or path: a folder of this repository
ref: main
language: python
entrypoints: {{}}    # build_model: package.module:build_model
""",
}


def new_manifest(root: Path, kind: str, entry_id: str, owner: str | None = None) -> Path:
    """Create ``catalog/<kind folder>/<entry_id>.yaml`` under ``root`` and return its path."""
    if not re.match(SLUG_PATTERN, entry_id):
        raise LakeError(Problem(entry_id, 1, "id", "must be a lowercase slug: a-z, 0-9, '.', '_' and '-'"))
    folder = root / CATALOG_DIR / FOLDERS[kind]
    path = folder / f"{entry_id}.yaml"
    display = path.relative_to(root).as_posix()
    if path.exists():
        raise LakeError(Problem(display, 1, "", "already exists; edit it instead"))
    owner = owner or f"@{re.sub(r'[^A-Za-z0-9._-]', '', os.environ.get('USER', '')) or 'owner'}"
    schema = os.path.relpath(root / schema_file(kind), folder)
    text = (
        f"# yaml-language-server: $schema={schema}\n"
        f"kind: {kind}\n"
        f"id: {entry_id}\n"
        f"name: {entry_id}\n"
        "description: |\n  What this is, in Markdown.\n"
        f"owners: ['{owner}']\n"
        "license: Apache-2.0\n"
        "tags: []\n" + _BODIES[kind].format(id=entry_id, today=dt.date.today().isoformat())
    )
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as f:
        f.write(text)
    return path
