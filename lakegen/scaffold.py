"""``lakegen new``: write a fresh manifest that validates as it stands."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lakegen.catalog.loader import CATALOG_DIR
from lakegen.errors import Finding, LakeError
from lakegen.model.manifest import FOLDERS, SEMVER_PATTERN, SLUG_PATTERN
from lakegen.model.schema import schema_file
from lakegen.model.schema import write as write_schemas

if TYPE_CHECKING:
    from lakegen.fingerprint import Cache

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
    companion files; for a model, a comment says what the lake's weights make of it. The
    manifest's ``$schema`` line points at ``schemas/``, written when the lake has none yet.
    """
    if not re.match(SLUG_PATTERN, entry_id):
        raise LakeError(Finding(entry_id, 1, "id", "must be a lowercase slug: a-z, 0-9, '.', '_' and '-'"))
    folder = root / CATALOG_DIR / FOLDERS[kind]
    path = folder / f"{entry_id}.yaml"
    display = path.relative_to(root).as_posix()
    if path.exists():
        raise LakeError(Finding(display, 1, "", "already exists; edit it instead"))
    owner = owner or f"@{re.sub(r'[^A-Za-z0-9._-]', '', os.environ.get('USER', '')) or 'owner'}"
    schema = os.path.relpath(root / schema_file(kind), folder)
    today = dt.date.today().isoformat()
    body = _BODIES[kind].format(id=entry_id, today=today)
    if artifact is not None:
        if kind == "code":
            raise LakeError(
                Finding("--artifact", 1, "", "a code entry has no artifact; it names a repository")
            )
        if not re.match(SEMVER_PATTERN, version):
            raise LakeError(Finding("--version", 1, "", f"'{version}' is not a semantic version (1.0.0)"))
        from lakegen.artifacts.digests import default_cache_dir
        from lakegen.fingerprint import Cache

        main, companions, fmt, uri = locate_artifact(root, path, artifact)
        # one cache for both: fingerprinting the weights records their sha256, so pinning reads no file again
        cache = Cache(default_cache_dir(root))
        hint = _weights_say(root, artifact, cache) if kind == "model" else ""
        pinned: dict[str, Any] = {
            "uri": uri,
            "sha256": cache.digests.sha256(main),
            "size": main.stat().st_size,
            "format": fmt,
        }
        if companions:
            pinned["files"] = [
                {
                    "path": c.relative_to(main.parent).as_posix(),
                    "sha256": cache.digests.sha256(c),
                    "size": c.stat().st_size,
                }
                for c in companions
            ]
        released = dt.date.fromisoformat(today)
        release = [
            {"version": version, "released": released, "changelog": "First release.", "artifact": pinned}
        ]
        block = "versions:\n" + _indent(yaml.safe_dump(release, sort_keys=False, width=4096))
        body = re.sub(r"versions: \[\]\n(  #.*\n)*", lambda _: block, body, count=1)
        body = body.replace("base_models: []", hint + "base_models: []", 1)
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
    write_schemas(root, missing_only=True)  # a new lake's first manifest: its $schema line must resolve
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
    ".gguf": "gguf",
}


def locate_artifact(root: Path, manifest: Path, artifact: Path) -> tuple[Path, list[Path], str, str]:
    """What ``manifest`` pins for ``artifact``: the file its URI names (an adapter folder's weights, a
    sharded checkpoint's index, else the file itself), the companion files pinned beside it (the
    adapter's config, the shards), the format, and the URI relative to the manifest. Refuses what
    is not in the lake or of no known format; reads no weights."""
    from lakegen.artifacts import uris as artifacts
    from lakegen.artifacts.layout import model_layout, model_location
    from lakegen.weights import WeightsError

    shown = str(artifact)
    path = artifact if artifact.is_absolute() else Path.cwd() / artifact
    if not path.exists():
        raise LakeError(Finding(shown, 1, "", "no such file or folder"))
    try:  # an adapter or a sharded checkpoint is named by its folder or its artifact file
        layout = model_layout(path if path.is_dir() else model_location(path))
    except WeightsError as e:
        raise LakeError(Finding(shown, 1, "", e.reason)) from None
    main, files, companions = layout.main, layout.files, layout.companions  # files: what the format reads
    fmt = FORMATS.get(files[0].suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise LakeError(
            Finding(shown, 1, "", f"unknown artifact format '{files[0].suffix or files[0].name}' ({known})")
        )
    uri = Path(os.path.relpath(main.resolve(), manifest.parent.resolve())).as_posix()
    try:
        artifacts.resolve(uri, manifest, root)
    except artifacts.ArtifactPathError as e:
        raise LakeError(Finding(shown, 1, "", f"{e}: put the file under {CATALOG_DIR}/ first")) from None
    return main, companions, fmt, uri


def _weights_say(root: Path, artifact: Path, cache: Cache) -> str:
    """A comment line: what the lake's weights make of a new model's artifact (nothing when they
    cannot tell: an empty lake, unreadable weights)."""
    from lakegen.catalog.loader import load_catalog
    from lakegen.lineage.search import search_like
    from lakegen.weights import WeightsError

    try:
        found = search_like(load_catalog(root, verify_artifacts=False), artifact, cache)
    except (WeightsError, LakeError, OSError):
        return ""
    if found.best is None:
        return "# the weights say: no model of the lake is related to this one\n"
    return f"# the weights say: {found.sentence} (confidence {found.best.confidence:.2f}); declare it below\n"


def _indent(text: str) -> str:
    return "".join("  " + line if line.strip() else line for line in text.splitlines(keepends=True))
