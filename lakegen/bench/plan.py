"""Turn a model's declared evaluations into runnable, content-keyed jobs.

For each evaluation this resolves, without running anything, what a worker
needs: the code folder and entry point that build the network, the weight files
(an adapter's base included), the dataset file, and the metric (built in, or an
entry point of one of the model's code entries). Every input is identified by
content, which gives the cache key: weight and dataset sha256, a hash of each
code folder's files, the metric and its config, the build config, and
:data:`RUNNER_VERSION`. When an input is missing, the plan says which instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen.artifacts import remote
from lakegen.artifacts import uris as artifacts
from lakegen.artifacts.digests import Digests, default_cache_dir
from lakegen.artifacts.layout import ADAPTER_CONFIG
from lakegen.bench import metrics
from lakegen.catalog.loader import Catalog, Record, latest_version
from lakegen.model.manifest import Artifact, Code, Dataset, Evaluation, Model, is_external

# Bump when a change to the runner can change reproduced numbers: every cached result is then stale.
RUNNER_VERSION = "1"
WEIGHT_FORMATS = ("safetensors", "pytorch", "npz")


@dataclass
class Plan:
    """One declared evaluation, resolved: a job payload and its cache key, or why it cannot run."""

    record: Record
    index: int
    evaluation: Evaluation
    version: str
    key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    missing: str = ""
    missing_loc: tuple[str | int, ...] = ()

    @property
    def model(self) -> Model:
        return self.record.entry  # type: ignore[return-value]


class Missing(Exception):
    """An input of an evaluation is not in the lake; ``field`` is the manifest field to point at."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class Planner:
    """Resolves evaluations against one catalog, hashing each code folder and artifact once."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._hashes: dict[Path, str] = {}
        self._verified: set[tuple[str, str]] = set()
        self._digests = Digests(default_cache_dir(catalog.root))
        # many models share one code folder and one dataset: resolve each once per planner
        self._resolved: dict[tuple[str, str], Any] = {}

    def plans(self, model_ids: list[str] | None = None) -> list[Plan]:
        out = []
        for model in sorted(self.catalog.models(), key=lambda m: m.id):
            if model_ids is not None and model.id not in model_ids:
                continue
            for i, ev in enumerate(model.evaluations):
                out.append(self.plan(self.catalog.records[model.id], i, ev))
        return out

    def plan(self, record: Record, index: int, ev: Evaluation) -> Plan:
        model: Model = record.entry  # type: ignore[assignment]
        version = ev.version or latest_version(model) or ""
        plan = Plan(record, index, ev, version)
        try:
            if not version:
                raise Missing("the model has no versions to evaluate", "version")
            code, entrypoint, build_config = self._architecture(model)
            folders = [self._code_folder(code)]
            weights, weight_ids = self._weights(model, version, set())
            dataset, dataset_ids = self._dataset(ev.dataset)
            metric_entrypoint, metric_ref = self._metric(model, ev.metric, folders)
        except Missing as e:
            plan.missing = str(e)
            if e.field in ("dataset", "split", "metric", "version"):
                plan.missing_loc = ("evaluations", index, e.field)
            else:
                plan.missing_loc = tuple(e.field.split(".")) if e.field else ("evaluations", index)
            return plan
        plan.payload = {
            "code_paths": [str(f) for f in folders],
            "entrypoint": entrypoint,
            "build_config": build_config,
            "weights": weights,
            "dataset": str(dataset),
            "split": ev.split,
            "metric": ev.metric,
            "metric_entrypoint": metric_entrypoint,
            "metric_config": ev.config,
            "seed": 0,
        }
        identity = {
            "runner": RUNNER_VERSION,
            "weights": weight_ids,
            "dataset": dataset_ids,
            "split": ev.split,
            "code": [self._folder_hash(f) for f in folders],
            "entrypoint": entrypoint,
            "build_config": build_config,
            "metric": ev.metric,
            "metric_ref": metric_ref,
            "metric_config": ev.config,
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
        plan.key = hashlib.sha256(canonical.encode()).hexdigest()
        return plan

    def _architecture(self, model: Model) -> tuple[Code, str, dict[str, Any]]:
        arch = model.architecture
        if arch.code is None or arch.entrypoint is None:
            # An adapter or a quantized copy is built like its base.
            bases = [b for b in model.base_models if b.relation in ("adapter", "quantized")]
            base = self.catalog.records.get(bases[0].id) if len(bases) == 1 else None
            if base is not None and isinstance(base.entry, Model) and base.entry.id != model.id:
                return self._architecture(base.entry)
            raise Missing("no code builds the network: give architecture.code and entrypoint", "architecture")
        code = self.catalog.records.get(arch.code)
        if code is None or not isinstance(code.entry, Code):
            raise Missing(f"code entry '{arch.code}' is not in the lake", "architecture.code")
        return code.entry, arch.entrypoint, dict(arch.config)

    def _once(self, what: str, key: str, resolve: Callable[[], Any]) -> Any:
        """``resolve()``, or what it returned or raised (:class:`Missing`) the first time for ``key``."""
        if (what, key) not in self._resolved:
            try:
                self._resolved[what, key] = resolve()
            except Missing as e:
                self._resolved[what, key] = e
        found = self._resolved[what, key]
        if isinstance(found, Missing):
            raise Missing(str(found), found.field)
        return found

    def _code_folder(self, code: Code) -> Path:
        return self._once("code", code.id, lambda: self._resolve_code_folder(code))

    def _resolve_code_folder(self, code: Code) -> Path:
        if code.path is None:
            raise Missing(
                f"code '{code.id}' lives in {code.repository} at {code.ref}; "
                "lakegen bench runs code from this repository only",
                "architecture.code",
            )
        root = self.catalog.root.resolve()
        folder = (root / code.path).resolve()
        if not folder.is_relative_to(root) or not folder.is_dir():
            raise Missing(
                f"code '{code.id}': folder '{code.path}' is not in the repository", "architecture.code"
            )
        return folder

    def _local_artifact(
        self, entry: Model | Dataset, version: str, what: str, field: str = ""
    ) -> tuple[Path, list[str], str]:
        """The artifact's local path, the sha256 of it and of its companion files, and its format."""
        record = self.catalog.records[entry.id]
        found = next((v for v in entry.versions if v.version == version), None)
        if found is None:
            raise Missing(f"{what}: no version {version}", field or "version")
        art = found.artifact
        try:
            where = artifacts.resolve(art.uri, record.file, self.catalog.root)
        except artifacts.ArtifactPathError as e:
            raise Missing(f"{what}: {e}", field) from None
        if where.path is None:
            local = remote.local_weights(self.catalog.root, art)
            if isinstance(local, str):
                raise Missing(f"{what}: {local}", field)
            # the cache holds only what hashed to the pinned sha256s
            return local, [art.sha256, *(f.sha256 for f in art.files)], art.format
        if not where.path.is_file():
            raise Missing(f"{what}: file {art.uri} is missing", field)
        state = self.catalog.artifacts.get((entry.id, version), "unchecked")
        # The cache key trusts the manifest's sha256s, so the files of an unchecked artifact (its
        # companions too: a sharded checkpoint's shards) are hashed here, once.
        problem = None
        if state == "unchecked" and (entry.id, version) not in self._verified:
            problem = self._verify(art, where.path, record.file)
            if problem is None:
                self._verified.add((entry.id, version))
        if state != "verified" and (entry.id, version) not in self._verified:
            raise Missing(f"{what}: {problem or f'{art.uri} does not match the manifest'}", field)
        return where.path, [art.sha256, *(f.sha256 for f in art.files)], art.format

    def _verify(self, art: Artifact, path: Path, manifest: Path) -> str | None:
        """Why the artifact's file or one of its companion files is not what the manifest pins, or None."""
        checks = [(art.uri, path, art.size, art.sha256)]
        for extra, uri, found in artifacts.companions(art, manifest, self.catalog.root):
            if isinstance(found, artifacts.ArtifactPathError):
                return f"{uri}: {found}"
            checks.append((uri, found, extra.size, extra.sha256))
        for uri, file, size, sha256 in checks:
            problem = artifacts.verify(file, size, sha256, self._digests)
            if problem is not None:
                return f"{uri}: {problem}"
        return None

    def _weights(self, model: Model, version: str, seen: set[str]) -> tuple[dict[str, Any], list[str]]:
        """The weights spec for the worker, and the content ids of every file it reads."""
        if model.id in seen:
            raise Missing(f"adapter lineage of '{model.id}' loops", "base_models")
        seen.add(model.id)
        what = f"weights of {model.id} {version}"
        path, ids, fmt = self._local_artifact(model, version, what)
        if fmt not in WEIGHT_FORMATS:
            raise Missing(f"{what} are {fmt}; the runner loads {', '.join(WEIGHT_FORMATS)}")
        spec: dict[str, Any] = {"path": str(path), "base": None}
        adapters = [b for b in model.base_models if b.relation == "adapter"]
        if adapters:
            base_ref = adapters[0]
            base = self.catalog.records.get(base_ref.id)
            if is_external(base_ref.id) or base is None or not isinstance(base.entry, Model):
                raise Missing(f"the adapter's base model '{base_ref.id}' is not in the lake", "base_models")
            config = path.parent / ADAPTER_CONFIG
            if not config.is_file():
                raise Missing(f"{what}: no {ADAPTER_CONFIG} next to the adapter")
            base_version = base_ref.version or latest_version(base.entry) or ""
            spec["base"], base_ids = self._weights(base.entry, base_version, seen)
            spec["adapter_config"] = str(config)
            ids += [artifacts.sha256_file(config), *base_ids]
        return spec, ids

    def _dataset(self, dataset_id: str) -> tuple[Path, list[str]]:
        path, ids = self._once("dataset", dataset_id, lambda: self._resolve_dataset(dataset_id))
        return path, list(ids)

    def _resolve_dataset(self, dataset_id: str) -> tuple[Path, list[str]]:
        record = self.catalog.records.get(dataset_id)
        if record is None or not isinstance(record.entry, Dataset):
            raise Missing(f"no dataset '{dataset_id}' in the lake", "dataset")
        version = latest_version(record.entry)
        if version is None:
            raise Missing(f"dataset '{dataset_id}' has no versions", "dataset")
        path, ids, fmt = self._local_artifact(
            record.entry, version, f"dataset {dataset_id} {version}", "dataset"
        )
        if fmt != "npz":
            raise Missing(f"dataset {dataset_id} {version} is {fmt}; the runner reads npz", "dataset")
        return path, ids

    def _metric(self, model: Model, name: str, folders: list[Path]) -> tuple[str | None, str]:
        """A custom metric's entry point (its folder joins ``folders``), and what identifies the metric."""
        if name in metrics.REGISTRY:
            return None, f"builtin:{metrics.REGISTRY.get(name).version}"
        ids = [model.architecture.code, *(c.id for c in model.code)]
        for code_id in dict.fromkeys(i for i in ids if i):
            code = self.catalog.records.get(code_id)
            if code is not None and isinstance(code.entry, Code) and name in code.entry.entrypoints:
                folder = self._code_folder(code.entry)
                if folder not in folders:
                    folders.append(folder)
                return code.entry.entrypoints[name], f"code:{code_id}"
        raise Missing(
            f"no metric '{name}': not built in ({', '.join(metrics.REGISTRY.names())}) and no code entry "
            f"of the model has an entry point named '{name}'",
            "metric",
        )

    def _folder_hash(self, folder: Path) -> str:
        if folder not in self._hashes:
            self._hashes[folder] = folder_hash(folder)
        return self._hashes[folder]


def folder_hash(folder: Path) -> str:
    """sha256 over the names and contents of a code folder's files (caches and hidden files left out)."""
    files = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        files += [Path(top, n) for n in names if not n.startswith(".") and not n.endswith((".pyc", ".pyo"))]
    digest = hashlib.sha256()
    for path in sorted(files):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            digest.update(rel.encode() + b"\0" + artifacts.sha256_file(path).encode() + b"\n")
    return digest.hexdigest()
