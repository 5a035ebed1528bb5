"""Fingerprinting many artifacts as executor jobs (lakegen.lineage.fingerprinting): through two local
workers the fingerprints, their order and the reasons for unreadable files are those of the in-process
path a build takes by default."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from helpers import LAKEGEN
from safetensors.numpy import save_file

from lakegen.fingerprint import Cache
from lakegen.lineage.fingerprinting import (
    BATCH_BYTES,
    BATCH_FILES,
    IN_PROCESS_BELOW,
    batches,
    fingerprint_all,
)


def weights(folder: Path, count: int) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    folder.mkdir()
    paths = {}
    for i in range(count):
        path = folder / f"m{i}.safetensors"
        save_file({"w": rng.standard_normal((64, 32), dtype=np.float32)}, str(path))
        paths[f"m{i}@1.0.0"] = path
    return paths


def test_two_workers_give_the_fingerprints_one_gives_in_the_same_order(tmp_path: Path) -> None:
    paths = weights(tmp_path / "w", IN_PROCESS_BELOW + 2)
    paths["m0-again@1.0.0"] = paths["m0@1.0.0"]  # two versions releasing one file
    here, _ = fingerprint_all(paths, Cache(tmp_path / "one"))
    seen: list[str] = []
    fanned, failed = fingerprint_all(paths, Cache(tmp_path / "two"), seen.append, workers=2)
    assert not failed and list(fanned) == list(paths)  # the order of the lake, not of completion
    assert {k: fp.to_bytes() for k, fp in fanned.items()} == {k: fp.to_bytes() for k, fp in here.items()}
    assert sorted(seen) == sorted(paths)
    assert len(list((tmp_path / "two" / "fingerprints").glob("*/*.lgfp"))) == len(paths) - 1
    # a second run finds every print in the cache the workers wrote
    again, _ = fingerprint_all(paths, Cache(tmp_path / "two"), workers=2)
    assert {k: fp.to_bytes() for k, fp in again.items()} == {k: fp.to_bytes() for k, fp in here.items()}


def test_files_go_to_the_workers_in_batches_bounded_in_files_and_bytes() -> None:
    many = {f"k{i}": 1024 for i in range(10_000)}
    cut = batches(many, workers=2)
    assert [k for b in cut for k in b] == list(many)  # every file once, in order
    sizes = [len(b) for b in cut]
    assert sizes[0] == BATCH_FILES and sizes == sorted(sizes, reverse=True)  # shrinking to the end,
    assert sizes[-2:] == [1, 1] and len(cut) < 2 * 10_000 / BATCH_FILES  # in a few more round trips
    few = batches({f"k{i}": 1024 for i in range(16)}, workers=2)
    assert len(few) >= 8 and len(few[-1]) == 1  # a few per worker, however small the files
    big = {"a": BATCH_BYTES // 2, "b": BATCH_BYTES // 2, "c": 1, "d": 2 * BATCH_BYTES, "e": 1}
    assert batches(big, workers=1) == [["a", "b"], ["c"], ["d"], ["e"]]


def test_an_unreadable_file_gives_the_same_reason_through_the_workers(tmp_path: Path) -> None:
    paths = weights(tmp_path / "w", IN_PROCESS_BELOW + 1)
    paths["m1@1.0.0"].write_bytes(b"\xff" * 64)  # not safetensors
    _, here = fingerprint_all(paths, None)
    fanned, failed = fingerprint_all(paths, None, workers=2)
    assert failed == here and list(failed) == ["m1@1.0.0"]
    assert len(fanned) == len(paths) - 1


def test_an_unknown_executor_in_the_environment_is_one_usage_line(lake: Path) -> None:
    env = {**os.environ, "LAKEGEN_EXECUTOR": "spark"}
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(lake), "bench"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "lakegen bench: $LAKEGEN_EXECUTOR: unknown executor 'spark': choose one of local, ray"
    )
