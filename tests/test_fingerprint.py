"""Fingerprints: one pass that yields the sha256, linear samples, a content-addressed cache, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import age
from safetensors.numpy import save_file

from lakegen.artifacts.digests import MEMO_FROM
from lakegen.fingerprint import GRID, Cache, Fingerprint, compute, coordinates, fingerprint
from lakegen.fingerprint import cache as fingerprint_module

LAKEGEN = Path(sys.executable).with_name("lakegen")


def save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file(tensors, str(path))
    return path


@pytest.fixture
def model(tmp_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "layers.0.weight": rng.normal(size=(300, 90)).astype(np.float32),
        "layers.0.bias": rng.normal(size=300).astype(np.float32),
        "layers.2.weight": rng.normal(size=(10, 300)).astype(np.float32),
    }


def test_fingerprint_yields_the_files_sha256_and_header_facts(tmp_path: Path, model: dict) -> None:
    path = save(tmp_path / "m.safetensors", model)
    fp = compute(path)
    assert fp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fp.bytes == path.stat().st_size
    assert (fp.stored_tensors, fp.parameters, fp.dtypes) == (3, 300 * 90 + 300 + 10 * 300, {"float32": 30300})
    t = fp.tensor("layers.0.weight")
    assert t is not None and t.count == GRID * GRID
    rows, cols = coordinates("layers.0.weight", (300, 90))
    assert np.array_equal(fp.values(t), model["layers.0.weight"][np.ix_(rows, cols)].reshape(-1))


def test_samples_are_linear_and_shared_by_tensors_of_one_name_and_shape(tmp_path: Path, model: dict) -> None:
    rng = np.random.default_rng(8)
    other = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in model.items()}
    diff = {k: model[k] - other[k] for k in model}
    a, b, d = (
        compute(save(tmp_path / f"{n}.safetensors", t)) for n, t in (("a", model), ("b", other), ("d", diff))
    )
    for t in a.tensors:
        assert np.array_equal(a.values(t) - b.values(b.tensor(t.name)), d.values(d.tensor(t.name)))
    r1, c1 = coordinates("w", (300, 90))
    r2, c2 = coordinates("w", (300, 91))
    assert not (np.array_equal(r1, r2) and np.array_equal(c1, c2))


def test_fingerprint_stays_small_whatever_the_tensor_size(tmp_path: Path) -> None:
    big = np.zeros((3000, 2000), dtype=np.float32)
    fp = compute(save(tmp_path / "big.safetensors", {"w": big}))
    assert len(fp.to_bytes()) < 2 * GRID * GRID * 4 + 4096
    assert Fingerprint.from_bytes(fp.to_bytes()).tensors == fp.tensors


def test_nan_zero_size_and_int8_tensors(tmp_path: Path) -> None:
    w = np.ones((70, 70), dtype=np.float32)
    w[3, :] = np.nan
    tensors = {
        "w": w,
        "empty": np.zeros((0, 5), np.float32),
        "q": np.full((70, 8), 2, np.int8),
        "q_scale": np.full(70, 0.5, np.float32),
    }
    fp = compute(save(tmp_path / "odd.safetensors", tensors))
    assert fp.skipped == ["empty: empty tensor [0, 5]"]
    q = fp.tensor("q")
    assert q is not None and q.quantized and np.all(fp.values(q) == 1.0)
    nan = fp.tensor("w")
    rows, cols = coordinates("w", (70, 70))
    assert (
        nan is not None and nan.nonfinite == len(cols) * int(3 in rows) == fp.summary()["nonfinite_samples"]
    )


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every weight file :func:`fingerprint` actually reads."""
    reads: list[Path] = []

    def counting(path: Path | str) -> Fingerprint:
        reads.append(Path(path))
        return compute(path)

    monkeypatch.setattr(fingerprint_module, "compute", counting)
    return reads


def test_cache_skips_unchanged_files_and_reads_changed_ones(
    tmp_path: Path, model: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(tmp_path / "m.safetensors", model)
    age(path)
    cache = Cache(tmp_path / "cache")
    reads = _count_reads(monkeypatch)
    first = fingerprint(path, cache)
    assert cache.keys() == [first.sha256] and reads == [path]
    # unchanged: not read again
    assert fingerprint(path, cache).sha256 == first.sha256 and reads == [path]
    # other bytes, same size, the modification time set back: the change time gives it away
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = fingerprint(path, cache)
    assert reads == [path, path]
    assert again.sha256 == hashlib.sha256(bytes(data)).hexdigest() != first.sha256
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_a_file_written_just_now_is_not_trusted_by_its_stat(
    tmp_path: Path, model: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second write in the same timestamp tick would leave the stat record unchanged; only files
    # of MEMO_FROM bytes or more are known by their stat (smaller ones are hashed each time)
    big = np.random.default_rng(8).normal(size=(600, 500)).astype(np.float32)
    path = save(tmp_path / "m.safetensors", {**model, "big.weight": big})
    assert path.stat().st_size >= MEMO_FROM
    cache = Cache(tmp_path / "cache")
    reads = _count_reads(monkeypatch)
    fingerprint(path, cache)
    fingerprint(path, cache)
    assert reads == [path, path]
    age(path)
    fingerprint(path, cache)
    fingerprint(path, cache)
    assert reads == [path, path, path]


def test_a_small_file_is_known_by_its_hash_and_leaves_no_memo(
    tmp_path: Path, model: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(tmp_path / "m.safetensors", model)  # written just now: its stat is not to be trusted
    cache = Cache(tmp_path / "cache")
    reads = _count_reads(monkeypatch)
    first = fingerprint(path, cache)
    assert fingerprint(path, cache).sha256 == first.sha256 and reads == [path]  # found by its sha256
    assert not list((tmp_path / "cache").rglob("*.json"))  # no memo file per small artifact
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # other bytes, the same stat record
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = fingerprint(path, cache)
    assert reads == [path, path] and again.sha256 == hashlib.sha256(bytes(data)).hexdigest()


def test_cli_fingerprint_json_and_cache_env(tmp_path: Path, model: dict) -> None:
    path = save(tmp_path / "digits-mlp-1.0.0.safetensors", model)
    env = {**os.environ, "LAKEGEN_CACHE": str(tmp_path / "c")}
    result = subprocess.run(
        [LAKEGEN, "fingerprint", "--json", str(path)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["id"] == "digits-mlp-1.0.0"
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (row["bytes"], row["tensors"], row["parameters"]) == (path.stat().st_size, 3, 30300)
    assert row["dtypes"] == {"float32": 30300}
    assert len(list((tmp_path / "c" / "fingerprints").rglob("*.lgfp"))) == 1
    assert result.stderr == ""


def test_adapter_folder_fingerprint_is_its_delta_and_keyed_by_its_config(tmp_path: Path) -> None:
    folder = tmp_path / "ad"
    folder.mkdir()
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 90)).astype(np.float32), rng.normal(size=(300, 4)).astype(np.float32)
    save(
        folder / "adapter_model.safetensors",
        {"base_model.model.l.lora_A.weight": a, "base_model.model.l.lora_B.weight": b},
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    cache = Cache(tmp_path / "cache")
    fp = fingerprint(folder, cache)
    assert (
        fp.kind == "adapter"
        and fp.sha256 == hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
    )
    rows, cols = coordinates("l.weight", (300, 90))
    assert np.allclose(
        fp.values(fp.tensor("l.weight")), (2 * b @ a)[np.ix_(rows, cols)].reshape(-1), atol=1e-4
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 4}))
    changed = fingerprint(folder, cache)
    assert np.allclose(changed.samples * 2, fp.samples, atol=1e-4)
    assert len(cache.keys()) == 2
