"""Weight-verified lineage of a lake: what the weights show, next to what the manifests declare.

:func:`attribute_catalog` fingerprints every local model version (from the
cache when unchanged), recovers lineage with :mod:`lakegen.attribution`, and
compares it with each manifest's ``base_models``:

- every declared edge gets a status: ``verified`` (the weights show it, with
  that relation), ``contradicted`` (they show another relation, another
  parent, or no relation at all) or ``unchecked`` (the base is outside the
  lake, such as ``hf:...``, or its weights are not local);
- every disagreement is a :class:`Finding` tied to the manifest line:
  ``undeclared-derivation`` (the weights show a parent the manifest does not
  name), ``unsupported-claim`` (a declared parent the weights do not support),
  ``wrong-relation`` (the parent is right, the relation or merge weight is not).

Versions of one model may derive from one another (1.1.0 continuing 1.0.0);
that is what versions are, so it is never a finding. Release dates order the
versions: a model is never made the fine-tuned child of one released after it.
:func:`search_like` ranks the lake's models by closeness to a weight file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from lakegen.artifacts import remote
from lakegen.artifacts import uris as artifacts
from lakegen.attribution import attribute
from lakegen.catalog.loader import Catalog, latest_version
from lakegen.errors import Finding, format_loc
from lakegen.executor import Engine
from lakegen.fingerprint import Cache, Cached, Fingerprint, cache_key, fingerprint
from lakegen.fingerprint.align import realigner
from lakegen.lineage.audit import AuditCache
from lakegen.lineage.declared import CatalogLineage, audit_verified, compare_declared, finding_at, node, split
from lakegen.lineage.fingerprinting import fingerprint_all
from lakegen.lineage.memo import DiskMemo
from lakegen.model.manifest import HUB, Artifact, Model, slug
from lakegen.weights import WeightsError, is_adapter, model_location


def artifact_paths(
    catalog: Catalog, models: Collection[str] | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Each model version's local weights (file, or adapter folder); and why others have none.
    ``models``: of these models only."""
    paths: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    records = catalog.records.values() if models is None else [catalog.records[m] for m in models]
    for record in records:
        entry = record.entry
        if not isinstance(entry, Model):
            continue
        for version in entry.versions:
            key = node(entry.id, version.version)
            if version.yanked:
                skipped[key] = f"yanked: {version.yanked}"
                continue
            if catalog.artifacts.get((entry.id, version.version)) == "contradicted":
                skipped[key] = "the artifact does not match its manifest's sha256 and size; not read"
                continue
            try:
                where = artifacts.resolve(version.artifact.uri, record.file, catalog.root)
            except artifacts.ArtifactPathError as e:
                skipped[key] = str(e)
                continue
            if where.path is None:
                local = remote.readable_weights(catalog.root, version.artifact)
                if isinstance(local, str):
                    skipped[key] = local
                else:
                    paths[key] = model_location(local)
                continue
            if not where.path.is_file():
                skipped[key] = f"artifact not found: {version.artifact.uri}"
                continue
            paths[key] = model_location(where.path)
    return paths, skipped


def lazily(
    paths: dict[str, Path], cache: Cache | None, progress: Callable[[str], None] | None
) -> Mapping[str, Fingerprint]:
    """Fingerprints of ``paths``; those cached and unchanged are loaded only when needed."""
    if cache is None:
        return fingerprint_all(paths, None, progress)[0]
    keys: dict[str, str] = {}
    for model_id, path in paths.items():
        key = cache.known_key(path)
        if key is None or not cache.path_of(key).is_file():
            try:
                key = cache_key(path, fingerprint(path, cache).sha256)
            except WeightsError:
                key = None
        if key is not None:
            keys[model_id] = key
        if progress is not None:
            progress(model_id)
    return Cached(cache, keys)


# ------------------------------------------------------------------------------ catalog


def _release_order(catalog: Catalog, models: Collection[str] | None = None) -> dict[str, tuple[Any, ...]]:
    order = {}
    for model in catalog.models() if models is None else [catalog.records[m].entry for m in models]:
        assert isinstance(model, Model)
        for v in model.versions:
            order[node(model.id, v.version)] = (v.released.isoformat(),)
    return order


def _adapter_resolver(
    catalog: Catalog, known: set[str], paths: Mapping[str, Path]
) -> Callable[[str, Fingerprint], str | None]:
    """Which lake model version an adapter's ``base_model_name_or_path`` names. Real values are lake
    ids, Hub ids (``sentence-transformers/all-MiniLM-L6-v2``) or the local folder it was trained on:
    a Hub id is matched through a model's ``links`` to the Hub, then by its name as a lake id; a path
    by the lake version whose weights lie there, then by its folder's name. The adapter edge is still
    tested against the weights (the adapter must fit the base) before it is reported."""
    # what a Hub id or a folder name is matched against, made at the first adapter that needs it
    # (most name a lake id; a whole lake's paths take seconds to resolve)
    found: dict[str, dict[Any, str]] = {}

    def lookup(what: str) -> dict[Any, str]:
        if not found:
            hub: dict[Any, str] = {}
            names: dict[Any, str] = {}
            for model in catalog.models():
                names.setdefault(slug(model.id), model.id)
                for link in model.links:
                    url = str(link.url).rstrip("/")
                    if url.startswith(HUB + "/"):
                        hub.setdefault(url[len(HUB) + 1 :].lower(), model.id)
            found.update(hub=hub, names=names)
        if what == "located" and what not in found:
            found["located"] = {p.resolve(): key for key, p in paths.items()}
        return found[what]

    def version_of(base: str, revision: str | None) -> str | None:
        entry = catalog.records[base].entry
        if not isinstance(entry, Model):
            return None
        latest = latest_version(entry)
        for version in [v for v in (revision, latest) if v]:
            if node(base, version) in known:
                return node(base, version)
        return None

    def resolve(adapter_id: str, fp: Fingerprint) -> str | None:
        meta = fp.adapter or {}
        base, revision = str(meta.get("base") or ""), meta.get("revision")
        if not base:
            return None
        if base in catalog.records:
            return version_of(base, revision)
        if base.startswith(("/", ".", "~")) or "\\" in base:
            here = paths.get(adapter_id)
            for where in (Path(base).expanduser(), *([here / base] if here is not None else [])):
                key = lookup("located").get(where.resolve()) if where.exists() else None
                if key is not None and key in known:
                    return key
            base = Path(base).name
        lake_id = lookup("hub").get(base.lower().removeprefix("hf:")) or lookup("names").get(
            slug(base.rsplit("/", 1)[-1])
        )
        return version_of(lake_id, revision) if lake_id is not None else None

    return resolve


def attribute_catalog(
    catalog: Catalog,
    cache: Cache | None = None,
    progress: Callable[[str], None] | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    *,
    memo: bool = True,
    models: Collection[str] | None = None,
    search: Collection[str] | None = None,
) -> CatalogLineage:
    """Recover lineage from every local model version of ``catalog`` and check it against the manifests.

    The weights are fingerprinted on the executor of ``engine`` with ``workers``. With ``cache`` and
    ``memo``, attribution's results of earlier runs on the same fingerprints are reused
    (:mod:`lakegen.attribution.memo`), kept in the cache folder. ``models`` and ``search``: the
    part of the lake a PR check attributes again, and the roots it searches (see
    :func:`lakegen.attribution.attribute`), family by family as the whole lake is."""
    paths, skipped = artifact_paths(catalog, models)
    fps, failed = fingerprint_all(paths, cache, progress, engine, workers)
    for model in catalog.models() if models is None else [catalog.records[m].entry for m in models]:
        assert isinstance(model, Model)
        for v in model.versions:
            key = node(model.id, v.version)
            why = _unpinned(fps[key], paths[key], v.artifact) if key in fps else None
            if why is not None:
                del fps[key]
                failed[key] = f"{why}; its weights are not used"
    kept = DiskMemo(cache.folder) if cache is not None and memo else None
    resolve = _adapter_resolver(catalog, set(fps), paths)
    result = CatalogLineage(
        attribute(
            fps,
            order=_release_order(catalog, models),
            adapter_base=resolve,
            realign=realigner(paths, fps, cache),
            memo=kept,
            partition=models is not None,
            search=search,
        )
    )
    result.fingerprints, result.memo = fps, kept
    result.adapters = {k: resolve(k, fp) for k, fp in fps.items() if fp.kind == "adapter"}
    if kept is not None:
        kept.save()
    result.skipped = {**skipped, **{k: f"unreadable weights: {why}" for k, why in failed.items()}}
    result.parameters = {k: fp.parameters for k, fp in fps.items()}
    for key, why in failed.items():
        model_id, version = split(key)
        record = catalog.records[model_id]
        index = [v.version for v in record.entry.versions].index(version)  # type: ignore[union-attr]
        result.findings.append(
            finding_at(
                model_id,
                record.path,
                record.line("versions", index, "artifact", "uri"),
                "unreadable-weights",
                why,
                field=format_loc(("versions", index, "artifact", "uri")),
            )
        )
    compare_declared(catalog, result, models)
    audits = AuditCache(cache.folder) if cache is not None else None
    audit_verified(result, paths, fps, audits)
    if audits is not None:
        audits.save()
    result.findings.sort(key=Finding.key)
    return result


def _unpinned(fp: Fingerprint, path: Path, art: Artifact) -> str | None:
    """Why the weights just read are not the ones the manifest pins (None when they are).

    The fingerprint pass hashes every file it reads, so weights changed after
    validation are caught here; a sharded checkpoint's shards are pinned in the
    artifact's ``files``, by name.
    """
    if is_adapter(path):
        return None
    if fp.shards is None:
        return None if fp.sha256 == art.sha256 else "the file changed since its sha256 was recorded"
    pinned = {f.path: f.sha256 for f in art.files}
    for shard in fp.shards:
        if shard["file"] not in pinned:
            return f"shard {shard['file']} is not pinned in the artifact's files"
        if pinned[shard["file"]] != shard["sha256"]:
            return f"shard {shard['file']} changed since its sha256 was recorded"
    return None
