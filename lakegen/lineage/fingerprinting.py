"""Fingerprint many artifacts at once, as executor jobs keyed by content.

Each artifact whose fingerprint is not cached is keyed by its path and the stat records of its
files (what :mod:`lakegen.artifacts.digests` trusts), so versions that share a file read it once.
Artifacts go to the workers in batches, one :class:`~lakegen.executor.local.Job` each (keyed by its
members' keys): a job costs a round trip to a worker (about 0.1 ms here, 1 to 2 ms to a Ray actor)
and a file of 1 KiB about 0.3 ms to fingerprint, so one job a file kept the parent as busy as the
workers. A batch holds at most :data:`BATCH_FILES` files and :data:`BATCH_BYTES` bytes, there
are several per worker, and they shrink towards the end, so a slow file holds up few others and no
worker waits long for the last ones. The job writes each fingerprint into
the content-addressed cache and returns its key; the caller reads it from there (a cache it cannot
write sends the bytes back instead). A job run twice writes the same bytes to the same place,
atomically: retried or duplicated jobs are harmless. A batch that crashes or times out is run again
one file a job, so that only the file at fault is reported.

A worker subprocess takes about 0.2 s to start (importing numpy and safetensors), what a few dozen
4 MiB files take to read, so one local worker, or fewer than :data:`IN_PROCESS_BELOW` files, are
fingerprinted in this process, and (unless ``workers`` is 1) from :data:`FORK_FROM` files in forks
of it too, one a core (:mod:`lakegen.executor.forked`; no interpreter to start, no batches to hand
out: 10,000 files of 1 KiB cost this process half their CPU); ``--executor ray`` always goes to
the cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lakegen.artifacts.digests import stat_record
from lakegen.executor import Engine, forked, make_executor
from lakegen.executor.local import Job, Outcome
from lakegen.fingerprint import Cache, Fingerprint, cache_key, fingerprint, weight_files
from lakegen.fingerprint.cache import Read, computed, remember
from lakegen.weights import WeightsError

TARGET = "lakegen.lineage.fingerprinting:fingerprint_job"
IN_PROCESS_BELOW = 8
FORK_FROM = 128  # artifacts to fingerprint before forks of this process pay for themselves
TIMEOUT_S = 3600.0  # one pass over the largest shard set; a stuck read fails alone after it
BATCH_FILES = 64
BATCH_BYTES = 256 << 20
BATCHES_PER_WORKER = 4  # so that workers finishing early find more to do


def fingerprint_job(payload: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The job: fingerprint each of ``payload["paths"]`` into the cache at ``payload["cache"]`` (or
    none); for each, in order, its cache key, its bytes (no cache), or why it is unreadable."""
    cache = Cache(payload["cache"]) if payload.get("cache") else None
    return {"done": [_one(Path(path), cache) for path in payload["paths"]]}


def _one(path: Path, cache: Cache | None) -> dict[str, str]:
    try:
        fp = fingerprint(path, cache)
    except WeightsError as e:
        return {"unreadable": e.reason}
    key = cache_key(path, fp.sha256)
    if cache is not None and cache.path_of(key).is_file():
        return {"key": key}
    return {"bytes": base64.b64encode(fp.to_bytes()).decode("ascii")}


def job_key(path: Path) -> tuple[str, int]:
    """Which artifact, as it is now (its path and its files' stat records), and its bytes."""
    records = [(str(f), stat_record(f.stat())) for f in weight_files(path)]
    text = json.dumps([str(path.resolve()), [[f, *r] for f, r in records]])
    return hashlib.sha256(text.encode()).hexdigest(), sum(r[0] for _, r in records)


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
    sizes: dict[str, int] = {}

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
            jkey, sizes[model_id] = job_key(path)
        except (OSError, WeightsError):
            here([model_id], path)  # fails here with the reason it always gave
            continue
        todo.setdefault(jkey, []).append(model_id)
        paths_of[jkey] = path
    if engine == "local" and ((workers or 1) <= 1 or len(todo) < IN_PROCESS_BELOW):
        _here_and_forked(todo, paths_of, cache, workers, out, failed, progress)
        todo.clear()
    if todo:
        bytes_of = {k: sizes[ids[0]] for k, ids in todo.items()}
        _fan_out(todo, paths_of, bytes_of, cache, engine, workers, out, failed, progress)
    # in the order of ``paths``, whatever order the jobs finished in: attribution reads them in order
    return {m: out[m] for m in paths if m in out}, {m: failed[m] for m in paths if m in failed}


def _here_and_forked(
    todo: Mapping[str, list[str]],
    paths_of: Mapping[str, Path],
    cache: Cache | None,
    workers: int | None,
    out: dict[str, Fingerprint],
    failed: dict[str, str],
    progress: Callable[[str], None] | None,
) -> None:
    """``todo``'s artifacts fingerprinted in this process and, unless ``workers`` is 1, in forks of
    it (:func:`lakegen.executor.forked.map_forked`: no interpreter to start, no batch to hand out;
    each writes its fingerprints into the cache and sends them back). The stat records of the
    files read are kept here, in the order one artifact after another would keep them."""

    def one(path: Path) -> tuple[Fingerprint, Read] | str:
        try:
            return computed(path, cache)
        except WeightsError as e:
            return e.reason

    keys = list(todo)
    processes = 1 if workers == 1 else forked.workers(len(keys), FORK_FROM)
    for jkey, done in zip(keys, forked.map_forked(one, [paths_of[k] for k in keys], processes), strict=True):
        ids = todo[jkey]
        if isinstance(done, str):
            failed.update(dict.fromkeys(ids, done))
        else:
            out.update(dict.fromkeys(ids, done[0]))
            if cache is not None:
                remember(cache, done[1])
        if progress is not None:
            for model_id in ids:
                progress(model_id)


def batches(sizes: Mapping[str, int], workers: int | None) -> list[list[str]]:
    """The keys of ``sizes`` (key -> bytes) in batches, in their order: each of at most
    :data:`BATCH_FILES` files and :data:`BATCH_BYTES` bytes (a larger file alone), and of at most a
    :data:`BATCHES_PER_WORKER`-th of each worker's share of the files still to place. The batches
    shrink towards the end, so the last ones, a file or two each, keep every worker busy to the end
    however unevenly the workers went (guided self-scheduling)."""
    share = BATCHES_PER_WORKER * (workers or 8)
    keys = list(sizes)
    out: list[list[str]] = []
    i = 0
    while i < len(keys):
        most = min(BATCH_FILES, -(-(len(keys) - i) // share))
        out.append([keys[i]])
        room = BATCH_BYTES - sizes[keys[i]]
        i += 1
        while i < len(keys) and len(out[-1]) < most and sizes[keys[i]] <= room:
            out[-1].append(keys[i])
            room -= sizes[keys[i]]
            i += 1
    return out


def _fan_out(
    todo: dict[str, list[str]],
    paths_of: dict[str, Path],
    bytes_of: dict[str, int],
    cache: Cache | None,
    engine: Engine,
    workers: int | None,
    out: dict[str, Fingerprint],
    failed: dict[str, str],
    progress: Callable[[str], None] | None,
) -> None:
    folder = str(cache.folder) if cache is not None else None

    def job(keys: list[str]) -> Job:
        key = keys[0] if len(keys) == 1 else hashlib.sha256("".join(keys).encode()).hexdigest()
        return Job(key, TARGET, {"paths": [str(paths_of[k]) for k in keys], "cache": folder})

    members: dict[str, list[str]] = {}
    alone: list[str] = []  # the files of batches that failed, to run one a job

    def finished(outcome: Outcome) -> None:
        keys = members[outcome.job.key]
        if not outcome.ok and len(keys) > 1:
            alone.extend(keys)
            return
        replies = outcome.value.get("done", []) if outcome.ok else []
        for i, k in enumerate(keys):
            fp, why = _read(outcome, replies[i] if i < len(replies) else None, cache)
            ids = todo[k]
            if fp is not None:
                out.update(dict.fromkeys(ids, fp))
            else:
                failed.update(dict.fromkeys(ids, why))
            if progress is not None:
                for model_id in ids:
                    progress(model_id)

    executor = make_executor(engine, workers=workers, timeout_s=TIMEOUT_S, preload=[__name__])
    jobs = []
    for keys in batches(bytes_of, workers):
        jobs.append(job(keys))
        members[jobs[-1].key] = keys
    executor.run(jobs, finished)
    if alone:
        singles = [job([k]) for k in alone]
        members.update((j.key, [k]) for j, k in zip(singles, alone, strict=True))
        executor.run(singles, finished)


def _read(
    outcome: Outcome, value: Mapping[str, Any] | None, cache: Cache | None
) -> tuple[Fingerprint | None, str]:
    """The fingerprint a job made of one of its files (``value``: its part of the reply), or why
    there is none."""
    if not outcome.ok:
        first_line = outcome.message.split("\n", 1)[0]
        return None, f"fingerprinting {_FAILED[outcome.error]}: {first_line}"
    if not isinstance(value, Mapping):
        return None, "fingerprinting gave no reply for this file"
    if "unreadable" in value:
        return None, str(value["unreadable"])
    if "key" in value and cache is not None:
        fp = cache.get(value["key"])
        if fp is not None:
            return fp, ""
        return None, f"fingerprint {value['key']} is not in the cache at {cache.folder}"
    return Fingerprint.from_bytes(base64.b64decode(value["bytes"])), ""


_FAILED = {"raised": "raised", "timeout": "timed out", "crashed": "crashed"}
