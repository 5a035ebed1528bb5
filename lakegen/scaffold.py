"""``lakegen new``: write a fresh manifest that validates as it stands."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import yaml

from lakegen.catalog import CATALOG_DIR
from lakegen.errors import LakeError, Problem
from lakegen.manifest import FOLDERS, SEMVER_PATTERN, SLUG_PATTERN
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


def new_manifest(
    root: Path,
    kind: str,
    entry_id: str,
    owner: str | None = None,
    artifact: Path | None = None,
    version: str = "1.0.0",
) -> Path:
    """Create ``catalog/<kind folder>/<entry_id>.yaml`` under ``root`` and return its path.

    With ``artifact`` (a file of the lake, an adapter folder or a sharded checkpoint's
    folder), the manifest releases it as ``version``, pinned by sha256 and size with its
    companion files; for a model, a comment says what the lake's weights make of it.
    """
    if not re.match(SLUG_PATTERN, entry_id):
        raise LakeError(Problem(entry_id, 1, "id", "must be a lowercase slug: a-z, 0-9, '.', '_' and '-'"))
    folder = root / CATALOG_DIR / FOLDERS[kind]
    path = folder / f"{entry_id}.yaml"
    display = path.relative_to(root).as_posix()
    if path.exists():
        raise LakeError(Problem(display, 1, "", "already exists; edit it instead"))
    owner = owner or f"@{re.sub(r'[^A-Za-z0-9._-]', '', os.environ.get('USER', '')) or 'owner'}"
    schema = os.path.relpath(root / schema_file(kind), folder)
    today = dt.date.today().isoformat()
    body = _BODIES[kind].format(id=entry_id, today=today)
    if artifact is not None:
        if kind == "code":
            raise LakeError(
                Problem("--artifact", 1, "", "a code entry has no artifact; it names a repository")
            )
        if not re.match(SEMVER_PATTERN, version):
            raise LakeError(Problem("--version", 1, "", f"'{version}' is not a semantic version (1.0.0)"))
        pinned = pin_artifact(root, path, artifact)
        released = dt.date.fromisoformat(today)
        release = [
            {"version": version, "released": released, "changelog": "First release.", "artifact": pinned}
        ]
        block = "versions:\n" + _indent(yaml.safe_dump(release, sort_keys=False, width=4096))
        body = re.sub(r"versions: \[\]\n(  #.*\n)*", lambda _: block, body, count=1)
        if kind == "model":
            body = body.replace("base_models: []", _weights_say(root, artifact) + "base_models: []", 1)
    text = (
        f"# yaml-language-server: $schema={schema}\n"
        f"kind: {kind}\n"
        f"id: {entry_id}\n"
        f"name: {entry_id}\n"
        "description: |\n  What this is, in Markdown.\n"
        f"owners: ['{owner}']\n"
        "license: Apache-2.0\n"
        "tags: []\n" + body
    )
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as f:
        f.write(text)
    return path


FORMATS = {
    ".safetensors": "safetensors",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
    ".npz": "npz",
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".onnx": "onnx",
}


def pin_artifact(root: Path, manifest: Path, artifact: Path) -> dict[str, Any]:
    """The ``artifact`` mapping that pins ``artifact`` for ``manifest``: its URI relative to the
    manifest, sha256, size and format, and its companion files (an adapter's config, a sharded
    checkpoint's shards), each hashed."""
    from lakegen import artifacts
    from lakegen.digests import Digests, default_cache_dir
    from lakegen.weights import (
        ADAPTER_CONFIG,
        INDEX_SUFFIX,
        WeightsError,
        adapter_weights_file,
        find_shard_index,
        read_shard_index,
    )

    shown = str(artifact)
    path = artifact if artifact.is_absolute() else Path.cwd() / artifact
    if not path.exists():
        raise LakeError(Problem(shown, 1, "", "no such file or folder"))
    companions: list[Path] = []
    try:
        if path.is_dir():
            weights = adapter_weights_file(path)
            index = find_shard_index(path) if weights is None else None
            if weights is None and index is None:
                raise LakeError(
                    Problem(
                        shown,
                        1,
                        "",
                        f"a folder must be an adapter ({ADAPTER_CONFIG}) or a sharded checkpoint",
                    )
                )
            path = weights or index  # type: ignore[assignment]
        if path.name.endswith(INDEX_SUFFIX):
            companions = read_shard_index(path).files
        elif adapter_weights_file(path.parent) == path:
            companions = [path.parent / ADAPTER_CONFIG]
    except WeightsError as e:
        raise LakeError(Problem(shown, 1, "", e.reason)) from None
    main = companions[0] if path.name.endswith(INDEX_SUFFIX) else path
    fmt = FORMATS.get(main.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise LakeError(
            Problem(shown, 1, "", f"unknown artifact format '{main.suffix or main.name}' ({known})")
        )
    uri = Path(os.path.relpath(path.resolve(), manifest.parent.resolve())).as_posix()
    try:
        artifacts.resolve(uri, manifest, root)
    except artifacts.ArtifactPathError as e:
        raise LakeError(Problem(shown, 1, "", f"{e}: put the file under {CATALOG_DIR}/ first")) from None
    digests = Digests(default_cache_dir(root))
    pinned: dict[str, Any] = {
        "uri": uri,
        "sha256": digests.sha256(path),
        "size": path.stat().st_size,
        "format": fmt,
    }
    if companions:
        pinned["files"] = [
            {
                "path": c.relative_to(path.parent).as_posix(),
                "sha256": digests.sha256(c),
                "size": c.stat().st_size,
            }
            for c in companions
        ]
    return pinned


def _weights_say(root: Path, artifact: Path) -> str:
    """A comment line: what the lake's weights make of a new model's artifact (nothing when they
    cannot tell: an empty lake, unreadable weights)."""
    from lakegen.catalog import load_catalog
    from lakegen.digests import default_cache_dir
    from lakegen.fingerprint import Cache
    from lakegen.lineage import search_like
    from lakegen.weights import WeightsError

    try:
        catalog = load_catalog(root, verify_artifacts=False)
        found = search_like(catalog, artifact, Cache(default_cache_dir(root)))
    except (WeightsError, LakeError, OSError):
        return ""
    if found.best is None:
        return "# the weights say: no model of the lake is related to this one\n"
    return f"# the weights say: {found.sentence} (confidence {found.best.confidence:.2f}); declare it below\n"


def _indent(text: str) -> str:
    return "".join("  " + line if line.strip() else line for line in text.splitlines(keepends=True))
