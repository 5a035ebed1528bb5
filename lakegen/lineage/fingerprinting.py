"""Fingerprint many artifacts at once, as executor jobs keyed by content.

An artifact whose fingerprint is not cached becomes one :class:`~lakegen.executor.local.Job`, keyed
by its path and the stat records of its files (what :mod:`lakegen.artifacts.digests` trusts), so
versions that share a file read it once. The job writes the fingerprint into the content-addressed
cache and returns its key; the caller reads it from there (a cache it cannot write sends the bytes
back instead). A job run twice writes the same bytes to the same place, atomically: retried or
duplicated jobs are harmless.

A worker subprocess takes about 0.2 s to start (importing numpy and safetensors), what a few dozen
4 MiB files take to read, so one local worker, or fewer than :data:`IN_PROCESS_BELOW` files, are
fingerprinted in this process as before; ``--executor ray`` always goes to the cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lakegen.artifacts.digests import stat_record
from lakegen.executor import Engine, make_executor
from lakegen.executor.local import Job, Outcome
from lakegen.fingerprint import Cache, Fingerprint, cache_key, fingerprint, weight_files
from lakegen.weights import WeightsError

TARGET = "lakegen.lineage.fingerprinting:fingerprint_job"
IN_PROCESS_BELOW = 8
TIMEOUT_S = 3600.0  # one pass over the largest shard set; a stuck read fails alone after it


def fingerprint_job(payload: Mapping[str, Any]) -> dict[str, str]:
    """The job: fingerprint ``payload["path"]`` into the cache at ``payload["cache"]`` (or none)."""
    path = Path(payload["path"])
    cache = Cache(payload["cache"]) if payload.get("cache") else None
    try:
        fp = fingerprint(path, cache)
    except WeightsError as e:
        return {"unreadable": e.reason}
    key = cache_key(path, fp.sha256)
    if cache is not None and cache.path_of(key).is_file():
        return {"key": key}
    return {"bytes": base64.b64encode(fp.to_bytes()).decode("ascii")}


def job_key(path: Path) -> str:
    """Which artifact, as it is now: its path and its files' stat records."""
    stats = [[str(f), *stat_record(f.stat())] for f in weight_files(path)]
    return hashlib.sha256(json.dumps([str(path.resolve()), stats]).encode()).hexdigest()


def fingerprint_all(
    paths: Mapping[str, Path],
    cache: Cache | None,
    progress: Callable[[str], None] | None = None,
    engine: Engine = "local",
    workers: int | None = None,
) -> tuple[dict[str, Fingerprint], dict[str, str]]:
    """Fingerprints of ``paths`` (id -> path), and why the others could not be read.

    Cached ones are read here; the rest go through the executor of ``engine`` unless, on the local
    engine, there are too few of them or one worker to gain from it.
    """
    out: dict[str, Fingerprint] = {}
    failed: dict[str, str] = {}
    todo: dict[str, list[str]] = {}
    paths_of: dict[str, Path] = {}

    def here(ids: list[str], path: Path) -> None:
        try:
            out.update(dict.fromkeys(ids, fingerprint(path, cache)))
        except WeightsError as e:
            failed.update(dict.fromkeys(ids, e.reason))
        if progress is not None:
            for model_id in ids:
                progress(model_id)

    for model_id, path in paths.items():
        key = cache.known_key(path) if cache is not None else None
        found = cache.get(key) if cache is not None and key is not None else None
        if found is not None:
            out[model_id] = found
            if progress is not None:
                progress(model_id)
            continue
        try:
            jkey = job_key(path)
        except (OSError, WeightsError):
            here([model_id], path)  # fails here with the reason it always gave
            continue
        todo.setdefault(jkey, []).append(model_id)
        paths_of[jkey] = path
    if engine == "local" and ((workers or 1) <= 1 or len(todo) < IN_PROCESS_BELOW):
        for jkey, ids in todo.items():
            here(ids, paths_of[jkey])
        todo.clear()
    if todo:
        _fan_out(todo, paths_of, cache, engine, workers, out, failed, progress)
    # in the order of ``paths``, whatever order the jobs finished in: attribution reads them in order
    return {m: out[m] for m in paths if m in out}, {m: failed[m] for m in paths if m in failed}


def _fan_out(
    todo: dict[str, list[str]],
    paths_of: dict[str, Path],
    cache: Cache | None,
    engine: Engine,
    workers: int | None,
    out: dict[str, Fingerprint],
    failed: dict[str, str],
    progress: Callable[[str], None] | None,
) -> None:
    folder = str(cache.folder) if cache is not None else None
    jobs = [Job(k, TARGET, {"path": str(paths_of[k]), "cache": folder}) for k in todo]

    def finished(outcome: Outcome) -> None:
        ids = todo[outcome.job.key]
        fp, why = _read(outcome, cache)
        if fp is not None:
            out.update(dict.fromkeys(ids, fp))
        else:
            failed.update(dict.fromkeys(ids, why))
        if progress is not None:
            for model_id in ids:
                progress(model_id)

    executor = make_executor(engine, workers=workers, timeout_s=TIMEOUT_S, preload=[__name__])
    executor.run(jobs, finished)


def _read(outcome: Outcome, cache: Cache | None) -> tuple[Fingerprint | None, str]:
    """The fingerprint a job made, or why there is none."""
    if not outcome.ok:
        first_line = outcome.message.split("\n", 1)[0]
        return None, f"fingerprinting {_FAILED[outcome.error]}: {first_line}"
    value = outcome.value
    if "unreadable" in value:
        return None, str(value["unreadable"])
    if "key" in value and cache is not None:
        fp = cache.get(value["key"])
        if fp is not None:
            return fp, ""
        return None, f"fingerprint {value['key']} is not in the cache at {cache.folder}"
    return Fingerprint.from_bytes(base64.b64decode(value["bytes"])), ""


_FAILED = {"raised": "raised", "timeout": "timed out", "crashed": "crashed"}
