"""Compile a lake: run the pipeline's stages in order over a loaded catalog into one :class:`LakeIndex`.

Both ``lakegen build`` and ``lakegen check`` run these stages; nothing downstream of the index
re-derives lineage, results or findings.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from lakegen.artifacts.digests import default_cache_dir
from lakegen.catalog.loader import CATALOG_DIR, Catalog, load_catalog
from lakegen.compile.base import base_index
from lakegen.compile.inputs import Inputs, Recorded, recorded, remember
from lakegen.compile.scope import Scope
from lakegen.compile.store import INDEX_FILE, load_index, save
from lakegen.executor import Engine, forked
from lakegen.executor.forked import in_fork
from lakegen.model.index import CompiledFrom, LakeIndex


def compile_catalog(scope: Scope, index: LakeIndex | None = None) -> LakeIndex:
    """Run every stage (:data:`lakegen.compile.stages.STAGES`, in order) over ``scope`` into one index."""
    from lakegen.compile.stages import STAGES

    index = index if index is not None else base_index(scope.catalog)
    for stage in STAGES:
        index = stage(scope, index)
    return index


def compile_lake(
    root: Path | str,
    *,
    verify_artifacts: bool = True,
    run_evaluations: bool = False,
    engine: Engine = "local",
    workers: int | None = None,
    reuse: bool = True,
) -> LakeIndex:
    """Load the lake at ``root`` and run every stage into one :class:`LakeIndex`.

    Benchmark results are read from the results cache; evaluations run only with ``run_evaluations``.
    Fingerprints and evaluations run on the executor ``engine`` (:mod:`lakegen.executor`), ``workers``
    at a time; the index is the same whichever runs them.

    The compiled lake is a function of its inputs (:mod:`lakegen.compile.inputs`): with ``reuse``, the
    index the last compile saved (:func:`lakegen.compile.store.save`) is returned as it is while
    nothing it was compiled from changed and it was compiled the same way.
    """
    return compile_or_reuse(
        root,
        verify_artifacts=verify_artifacts,
        run_evaluations=run_evaluations,
        engine=engine,
        workers=workers,
        reuse=reuse,
    )[0]


def compile_or_reuse(
    root: Path | str,
    *,
    verify_artifacts: bool = True,
    run_evaluations: bool = False,
    engine: Engine = "local",
    workers: int | None = None,
    reuse: bool = True,
    isolate: bool = False,
) -> tuple[LakeIndex, bool]:
    """:func:`compile_lake`, and whether the saved index was reused (so there is nothing to save).
    With ``isolate``, a whole compile runs in a fork and saves the index, which is read back here
    (and counts as reused)."""
    root = Path(root)
    options = {"verify_artifacts": verify_artifacts}
    previous = recorded(root) if reuse else None
    trusted = Recorded(root, previous)
    # taken before loading, so that an edit made meanwhile shows as stale
    take = functools.partial(Inputs.take, root, [CATALOG_DIR], digests=trusted)
    if previous is not None and not run_evaluations:
        from lakegen.compile import delta

        before: LakeIndex | None = None
        if delta.may_start_from(previous, options):
            # the snapshot (a stat of every file: 1.4 s at 100,000 models) in a fork while the
            # saved index, which a delta or a reuse starts from, is read here (2.6 s there)
            taking = forked.start(take)
            before = delta.saved_index(root, previous, options)
            read = taking.result()
        else:
            read = take()
        now = delta.as_before(root, read, previous, trusted)
        if now.digest == previous.recorded_digest:  # nothing it was compiled from changed
            kept = before if before is not None else delta.saved_index(root, previous, options)
            if kept is not None:
                return kept, True
        else:
            index = delta.delta_compile(
                root, now, previous, options=options, engine=engine, workers=workers, before=before
            )
            if index is not None:
                remember(root, now)
                return index, False
        del before  # not held through a whole compile (1.5 GB at 100,000 models)
    else:
        read = take()
    if isolate and engine == "local":
        # the whole compile in a fork that saves its index: its peak (the catalog, every
        # fingerprint, attribution's memo: 3.6 GB at 100,000 models) leaves with it, rather than
        # staying in this process's heap under the site build. A fork that fails is done again here.
        def full() -> None:
            index, _ = _full(root, read, trusted, options, verify_artifacts, run_evaluations, engine, workers)
            save(index, root)

        if in_fork(full):
            with contextlib.suppress(OSError, ValueError):
                return load_index(root / INDEX_FILE), True
    return _full(root, read, trusted, options, verify_artifacts, run_evaluations, engine, workers)


def _full(
    root: Path,
    read: Inputs,
    trusted: Recorded,
    options: dict[str, bool],
    verify_artifacts: bool,
    run_evaluations: bool,
    engine: Engine,
    workers: int | None,
) -> tuple[LakeIndex, bool]:
    """The whole compile, from the snapshot ``read`` of the inputs."""
    digests = Recorded(root, read)  # the loader checks artifacts against what was just read
    catalog = load_catalog(
        root,
        verify_artifacts=verify_artifacts,
        parse_cache=default_cache_dir(root),
        engine=engine,
        workers=workers,
        digests=digests,
    )
    read.add(root, *_named_inputs(catalog), digests=trusted)
    index = base_index(catalog)
    index.inputs = CompiledFrom(digest=read.digest, folders=read.folders, files=read.extra, options=options)
    remember(root, read)
    scope = Scope(catalog, run_evaluations=run_evaluations, engine=engine, workers=workers, digests=digests)
    index = compile_catalog(scope, index)
    if catalog.parsed is not None:
        catalog.parsed.save()
    return index, False


def _named_inputs(catalog: Catalog) -> tuple[list[str], list[str]]:
    """Folders and files outside ``catalog/`` that manifests name, relative to the lake: local
    artifacts (an adapter or sharded checkpoint as its folder), their pinned companions, code folders."""
    from lakegen.artifacts import uris as artifacts
    from lakegen.weights import model_location

    root = catalog.root.resolve()
    # real paths as strings: the loader followed every artifact's symlinks (so an artifact's
    # folder is real too); only code folders are named lexically
    folders: set[str] = set()
    files: set[str] = set()
    for record in catalog.records.values():
        entry = record.entry
        code_path = getattr(entry, "path", None) if entry.kind == "code" else None
        if isinstance(code_path, str):
            folders.add(os.path.realpath(root / code_path))
        for i, version in enumerate(getattr(entry, "versions", [])):
            where = catalog.local.get((entry.id, i))  # resolved by the loader (None: remote or refused)
            if where is None:
                continue
            location = model_location(where)
            (folders if location.is_dir() else files).add(str(location))
            if version.artifact.files:
                pinned = artifacts.companions(version.artifact, record.file, catalog.root)
                files.update(str(p) for _, _, p in pinned if isinstance(p, Path))

    def outside_catalog(paths: set[str]) -> list[str]:
        top = str(root) + os.sep
        catalog_dir = top + CATALOG_DIR
        return sorted(
            p[len(top) :].replace(os.sep, "/")
            for p in paths
            if p.startswith(top) and p != catalog_dir and not p.startswith(catalog_dir + os.sep)
        )

    return outside_catalog(folders), outside_catalog(files)
