"""Remote artifacts verified side by side, as executor jobs keyed by content.

Validating a lake whose weights live in a bucket is a stream of downloads: each object is hashed over
every byte (:mod:`lakegen.artifacts.remote`). With more than one worker (``--workers``, or
``--executor ray``) every remote artifact becomes one :class:`~lakegen.executor.local.Job` that runs
:func:`lakegen.artifacts.remote.check` in a worker: the same pass, the same cache (captures, blobs,
records of what hashed to its pin), under the storage settings of *this* process's
:class:`~lakegen.artifacts.remote.Remote` (a pull request's check passes its base's), and the worker
sends back the artifact's state and its problems for the loader to report at the manifest's lines.
A job is keyed by the artifact's pins, whether its bytes are kept, and the settings, so two versions
naming one object fetch it once, and a retried or duplicated job repeats a pass whose results land
atomically in the same content-addressed places. On a Ray cluster the cache folder must be shared
by the workers, as for fingerprinting (docs/scale.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakegen.executor import Engine, make_executor
from lakegen.executor.local import Job, Outcome

TARGET = "lakegen.catalog.remotejobs:verify_job"
FAN_OUT_FROM = 2  # one artifact gains nothing from a worker's start-up


@dataclass(frozen=True)
class Verified:
    """What a job found: the artifact's state and its problems, each ``(field path, message)``."""

    state: str
    problems: tuple[tuple[tuple[str | int, ...], str], ...]


def verify_job(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The job: :func:`lakegen.artifacts.remote.check` of one artifact, under the payload's settings."""
    from lakegen.artifacts import remote
    from lakegen.model.manifest import Artifact
    from lakegen.weights.capture import Capture

    fetcher = remote.Remote(
        Path(payload["root"]),
        remote.StorageSettings.model_validate(payload["settings"]),
        Path(payload["cache"]),
    )
    problems: list[list[Any]] = []
    art = Artifact.model_validate(payload["artifact"])
    state = remote.check(
        fetcher, art, lambda at, message: problems.append([list(at), message]), payload["keep"], Capture
    )
    return {"state": state, "problems": problems}


def fans_out(engine: Engine, workers: int | None, count: int) -> bool:
    """Whether ``count`` remote artifacts go to the executor rather than one by one in this process."""
    return engine == "ray" or ((workers or 1) > 1 and count >= FAN_OUT_FROM)


def verify_all(
    root: Path,
    items: Mapping[Any, tuple[Any, bool]],
    engine: Engine,
    workers: int | None,
) -> dict[Any, Verified]:
    """Each of ``items`` (key -> (artifact, keep its bytes)) verified by a job; keys of artifacts whose
    job failed map to an ``unchecked`` state with the reason as its problem."""
    from lakegen.artifacts import remote

    fetcher = remote.for_lake(root)
    settings = fetcher.settings.model_dump(mode="json")
    jobs: dict[str, Job] = {}
    keys_of: dict[str, list[Any]] = {}
    for key, (art, keep) in items.items():
        payload = {
            "root": str(root),
            "cache": str(fetcher.folder),
            "settings": settings,
            "artifact": art.model_dump(mode="json"),
            "keep": keep,
        }
        jkey = hashlib.sha256(
            json.dumps([payload["artifact"], keep, settings], sort_keys=True).encode()
        ).hexdigest()
        jobs.setdefault(jkey, Job(jkey, TARGET, payload))
        keys_of.setdefault(jkey, []).append(key)
    out: dict[Any, Verified] = {}

    def finished(outcome: Outcome) -> None:
        found = _verified(outcome)
        for key in keys_of[outcome.job.key]:
            out[key] = found

    timeout = fetcher.settings.max_seconds * (fetcher.settings.retries + 1) + 60
    executor = make_executor(engine, workers=workers, timeout_s=timeout, preload=[__name__])
    executor.run(list(jobs.values()), finished)
    return out


def _verified(outcome: Outcome) -> Verified:
    if not outcome.ok:
        first_line = outcome.message.split("\n", 1)[0]
        return Verified(
            "unchecked", ((("uri",), f"could not be verified: the job {outcome.error}: {first_line}"),)
        )
    value = outcome.value
    problems: Sequence[Any] = value.get("problems", [])
    return Verified(str(value["state"]), tuple((tuple(at), str(message)) for at, message in problems))
