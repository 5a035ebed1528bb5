"""Sharded checkpoints (a folder with ``*.index.json`` and its shards): read as one model, pinned shard by shard."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LAKEGEN, age, write_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from test_attribution import finetune, manifest, trained

from lakegen.catalog.loader import load_catalog
from lakegen.fingerprint import Cache, compute, fingerprint
from lakegen.fingerprint import cache as fingerprint_module
from lakegen.governance.versiondiff import _tensor_diffs
from lakegen.lineage.recover import attribute_catalog
from lakegen.weights import WeightsError, model_location, open_model

INDEX = "model.safetensors.index.json"


def shard(folder: Path, sd: dict[str, np.ndarray], groups: list[list[str]], fmt: str = "safetensors") -> Path:
    """Write ``sd`` as a Hugging Face sharded checkpoint: one shard per group of tensor names."""
    folder.mkdir(parents=True)
    weight_map = {}
    for i, names in enumerate(groups, 1):
        ext = "safetensors" if fmt == "safetensors" else "bin"
        name = f"model-{i:05d}-of-{len(groups):05d}.{ext}"
        part = {n: sd[n] for n in names}
        if fmt == "safetensors":
            save_file(part, str(folder / name))
        else:
            torch.save({n: torch.from_numpy(v) for n, v in part.items()}, folder / name)
        weight_map.update(dict.fromkeys(names, name))
    index = {"metadata": {"total_size": sum(v.nbytes for v in sd.values())}, "weight_map": weight_map}
    (folder / (INDEX if fmt == "safetensors" else "pytorch_model.bin.index.json")).write_text(
        json.dumps(index)
    )
    (folder / "config.json").write_text('{"model_type": "mlp"}')  # other files of the folder are ignored
    return folder


GROUPS = [["layers.0.bias", "layers.0.weight"], ["layers.2.weight", "layers.4.weight"]]


def listing_sha256(folder: Path, names: list[str]) -> str:
    text = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in sorted(names))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
def test_a_sharded_checkpoint_fingerprints_as_the_whole_model(tmp_path: Path, fmt: str) -> None:
    sd = trained(np.random.default_rng(1))
    whole = tmp_path / "whole.safetensors"
    save_file(sd, str(whole))
    folder = shard(tmp_path / "sharded", sd, GROUPS, fmt)
    one, many = compute(whole), compute(folder)
    assert [(t.name, t.shape) for t in many.tensors] == [(t.name, t.shape) for t in one.tensors]
    assert np.array_equal(many.samples, one.samples)
    assert (many.parameters, many.stored_tensors, many.format) == (one.parameters, one.stored_tensors, fmt)
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    assert [s["file"] for s in many.shards] == files
    assert [s["sha256"] for s in many.shards] == [
        hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in files
    ]
    # known by the sha256 of its shards' `sha256sum` listing: `sha256sum model-*.safetensors | sha256sum`
    assert many.sha256 == listing_sha256(folder, files)
    assert many.bytes == sum((folder / f).stat().st_size for f in files)


def test_cli_attributes_a_sharded_fine_tune_to_its_parent(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    parent = trained(rng)
    save_file(parent, str(tmp_path / "base.safetensors"))
    shard(tmp_path / "base-ft", finetune(rng, parent), GROUPS)
    save_file(trained(rng), str(tmp_path / "other.safetensors"))
    env = {**os.environ, "LAKEGEN_CACHE": str(tmp_path / "cache")}
    paths = [str(tmp_path / p) for p in ("base.safetensors", "base-ft", "other.safetensors")]
    result = subprocess.run([LAKEGEN, "attribute", *paths, "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert sorted(out["models"]) == ["base", "base-ft", "other"]
    assert [(e["parent"], e["child"], e["relation"]) for e in out["edges"]] == [
        ("base", "base-ft", "finetune")
    ]
    fp = subprocess.run(
        [LAKEGEN, "fingerprint", "--json", str(tmp_path / "base-ft")], capture_output=True, text=True, env=env
    )
    (row,) = json.loads(fp.stdout)
    assert row["id"] == "base-ft" and len(row["shards"]) == 2 and row["tensors"] == 4
    text = subprocess.run(
        [LAKEGEN, "fingerprint", str(tmp_path / "base-ft")], capture_output=True, text=True, env=env
    ).stdout.splitlines()
    assert text[0].startswith(f"base-ft  {row['sha256']}  ") and "  2 shards  4 tensors  " in text[0]
    assert [line.split()[:2] for line in text[1:]] == [[s["file"], s["sha256"]] for s in row["shards"]]


def test_version_diff_reads_a_sharded_checkpoint_tensor_by_tensor(tmp_path: Path) -> None:
    sd = trained(np.random.default_rng(7))
    save_file(sd, str(tmp_path / "whole.safetensors"))
    folder = shard(tmp_path / "sharded", sd, GROUPS)
    assert model_location(folder / INDEX) == folder
    rows = _tensor_diffs(tmp_path / "whole.safetensors", folder)
    assert {(r.name, r.status) for r in rows} == {(name, "same") for name in sd}


def test_unchanged_shards_are_not_read_again_and_a_changed_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = shard(tmp_path / "m", trained(np.random.default_rng(3)), GROUPS)
    for p in folder.iterdir():
        age(p)
    cache = Cache(tmp_path / "cache")
    first = fingerprint(folder, cache)
    reads: list[Path] = []
    monkeypatch.setattr(fingerprint_module, "compute", lambda p: reads.append(p) or compute(p))
    assert fingerprint(folder, cache).sha256 == first.sha256 and reads == []
    second = folder / "model-00002-of-00002.safetensors"
    st = second.stat()
    data = bytearray(second.read_bytes())
    data[-1] ^= 0x01
    second.write_bytes(bytes(data))
    os.utime(second, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = fingerprint(folder, cache)
    assert reads == [folder] and changed.sha256 != first.sha256
    assert changed.shards[0] == first.shards[0] and changed.shards[1] != first.shards[1]


def _index(folder: Path) -> dict:
    return json.loads((folder / INDEX).read_text())


def _in_both(folder: Path, index: dict) -> None:
    first = "model-00001-of-00002.safetensors"
    sd = {"layers.0.bias": np.zeros(96, np.float32), "layers.2.weight": np.zeros((80, 96), np.float32)}
    save_file(sd, str(folder / first))
    index["weight_map"]["layers.2.weight"] = first


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda f, ix: ix["weight_map"].update({"layers.0.bias": "model-00002-of-00002.safetensors"}),
            "tensor 'layers.0.bias' is in 'model-00001-of-00002.safetensors' but the index maps it to "
            "'model-00002-of-00002.safetensors'",
        ),
        (
            lambda f, ix: ix["weight_map"].update({"ghost": "model-00001-of-00002.safetensors"}),
            "the index maps 'ghost' to 'model-00001-of-00002.safetensors', which does not hold it",
        ),
        (
            lambda f, ix: ix["weight_map"].update({"ghost": "../../outside.safetensors"}),
            "tensor 'ghost' maps to '../../outside.safetensors'; a shard is a file name in the same folder",
        ),
        (
            lambda f, ix: ix["weight_map"].update({"ghost": "model-00003-of-00002.safetensors"}),
            "shard 'model-00003-of-00002.safetensors' named by the index is missing",
        ),
        (
            lambda f, ix: ix["weight_map"].update({"ghost": "notes.txt"}),
            "tensor 'ghost' maps to 'notes.txt', which is not a weight file",
        ),
        (lambda f, ix: ix.pop("weight_map"), "shard index needs a non-empty 'weight_map' object"),
        (_in_both, "tensor 'layers.2.weight' is in both 'model-00001-of-00002.safetensors' and 'model-00002"),
        (
            lambda f, ix: (f / "model-00002-of-00002.safetensors").write_bytes(b"\x10\x00\x00\x00"),
            "model-00002-of-00002.safetensors",
        ),
    ],
)
def test_a_broken_sharded_checkpoint_gets_one_clear_error(tmp_path: Path, change, expected: str) -> None:  # type: ignore[no-untyped-def]
    folder = shard(tmp_path / "m", trained(np.random.default_rng(4)), GROUPS)
    index = _index(folder)
    change(folder, index)
    (folder / INDEX).write_text(json.dumps(index))
    with pytest.raises(WeightsError) as info:
        open_model(folder).close()
    assert expected in str(info.value) and "\n" not in str(info.value)
    result = subprocess.run(
        [LAKEGEN, "fingerprint", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "LAKEGEN_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr


def test_duplicate_keys_and_two_indexes_are_refused(tmp_path: Path) -> None:
    folder = shard(tmp_path / "m", trained(np.random.default_rng(5)), GROUPS)
    text = (folder / INDEX).read_text()
    (folder / INDEX).write_text(
        text.replace('"weight_map": {', '"weight_map": {"layers.0.bias": "x.safetensors", ', 1)
    )
    with pytest.raises(WeightsError, match=r"duplicate tensor name 'layers\.0\.bias'"):
        open_model(folder)
    (folder / INDEX).write_text(text)
    (folder / "pytorch_model.bin.index.json").write_text(text)
    with pytest.raises(WeightsError, match="a folder must hold one sharded checkpoint: found 2 indexes"):
        open_model(folder)


def _sharded_lake(tmp_path: Path, pin_all: bool = True) -> tuple[Path, Path]:
    """A lake whose fine-tune is a sharded checkpoint; its manifest pins the index and the shards."""
    rng = np.random.default_rng(6)
    root = tmp_path / "lake"
    parent = trained(rng)
    art = root / "catalog" / "artifacts"
    art.mkdir(parents=True)
    save_file(parent, str(art / "base.safetensors"))
    folder = shard(art / "ft", finetune(rng, parent), GROUPS)
    base_data = (art / "base.safetensors").read_bytes()
    index = (folder / INDEX).read_bytes()
    shards = sorted(p.name for p in folder.iterdir() if p.suffix == ".safetensors")
    pinned = shards if pin_all else shards[:1]
    files = ", ".join(
        f"{{path: {n}, sha256: {hashlib.sha256((folder / n).read_bytes()).hexdigest()}, "
        f"size: {(folder / n).stat().st_size}}}"
        for n in pinned
    )
    ft = manifest("ft", f"../artifacts/ft/{INDEX}", index, "2026-02-01", ["{id: base, relation: finetune}"])
    ft = ft.replace("format: safetensors}", f"format: safetensors, files: [{files}]}}")
    write_tree(
        root,
        {
            "catalog/models/base.yaml": manifest(
                "base", "../artifacts/base.safetensors", base_data, "2026-01-01", []
            ),
            "catalog/models/ft.yaml": ft,
        },
    )
    return root, folder


def test_a_lake_pins_and_attributes_a_sharded_model(tmp_path: Path) -> None:
    root, folder = _sharded_lake(tmp_path)
    catalog = load_catalog(root)
    assert not catalog.problems, catalog.problems
    assert catalog.artifacts[("ft", "1.0.0")] == "verified"
    result = attribute_catalog(catalog, Cache(tmp_path / "cache"))
    assert [(d.model, d.base, d.status) for d in result.declared] == [("ft", "base", "verified")]
    assert not result.findings and not result.skipped
    # a shard changed after validation is caught by the fingerprint pass and its weights are not used
    shard_file = folder / "model-00002-of-00002.safetensors"
    data = bytearray(shard_file.read_bytes())
    data[-1] ^= 0x01
    shard_file.write_bytes(bytes(data))
    later = attribute_catalog(catalog, Cache(tmp_path / "cache"))
    assert later.skipped["ft@1.0.0"] == (
        "unreadable weights: shard model-00002-of-00002.safetensors changed since its sha256 was recorded; "
        "its weights are not used"
    )


def test_validate_requires_every_shard_to_be_pinned(tmp_path: Path) -> None:
    root, _ = _sharded_lake(tmp_path, pin_all=False)
    catalog = load_catalog(root)
    assert catalog.artifacts[("ft", "1.0.0")] == "contradicted"
    (problem,) = catalog.problems
    assert problem.path == "catalog/models/ft.yaml" and problem.field == "versions[0].artifact.files"
    assert problem.message == "the index names shards not pinned here: model-00002-of-00002.safetensors"


def test_fingerprinting_shards_keeps_memory_flat(tmp_path: Path) -> None:
    # samples are read with pread from each shard; reading them through the memory map
    # would pull whole page-cache folios into the process (about 190 MiB here)
    folder = tmp_path / "big"
    folder.mkdir()
    weight_map = {}
    for k in (1, 2):
        name = f"model-0000{k}-of-00002.safetensors"
        save_file({f"layers.{k}.weight": np.full((4096, 8192), float(k), np.float32)}, str(folder / name))
        weight_map[f"layers.{k}.weight"] = name
    (folder / INDEX).write_text(json.dumps({"weight_map": weight_map}))
    code = (
        "import sys\nfrom lakegen.fingerprint import compute\ncompute(sys.argv[1])\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 120 * 1024, (
        f"peak RSS {int(result.stdout) // 1024} MiB for a 256 MiB checkpoint"
    )


NAMES = ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.4.weight", "ghost", ""]
SHARDS = [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "../model-00001-of-00002.safetensors",
    "sub/x.safetensors",
    "x\x00.safetensors",
    "config.json",
    ".",
    "",
]
index_values = st.one_of(
    st.sampled_from(SHARDS), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)
)
indexes = st.one_of(
    st.fixed_dictionaries({"weight_map": st.dictionaries(st.sampled_from(NAMES), index_values, max_size=6)}),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=20),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=indexes, raw=st.booleans())
def test_fuzz_shard_index(tmp_path_factory: pytest.TempPathFactory, index: object, raw: bool) -> None:
    """Whatever the index says, reading the folder either works or gives one WeightsError."""
    folder = tmp_path_factory.mktemp("fuzz") / "m"
    shard(folder, trained(np.random.default_rng(8)), GROUPS)
    text = index if raw and isinstance(index, str) else json.dumps(index)
    (folder / INDEX).write_text(str(text))
    try:
        fp = compute(folder)
    except WeightsError as e:
        assert "\n" not in str(e)
    else:
        assert fp.shards is not None and {t.name for t in fp.tensors} <= set(NAMES)
