"""Hostile weight files: each gets one clear error, never a crash, an out-of-memory or code execution."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_lakegen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from lakegen.weights import (
    MAX_MODEL_TENSORS,
    MAX_TENSORS,
    WeightsError,
    iter_float32,
    open_weights,
    read_shard_index,
)

EXAMPLES = int(os.environ.get("LAKEGEN_FUZZ_EXAMPLES", "150"))


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    marker = ""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _evil_state(marker: Path) -> dict[str, object]:
    Payload.marker = str(marker)
    return {"layers.0.weight": torch.ones(2, 2), "evil": Payload()}


def _read_all(path: Path) -> None:
    for _name, values in iter_float32(path):
        values.sum()


def _refused(path: Path) -> str:
    with pytest.raises(WeightsError) as info:
        _read_all(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_pickle_payload_never_runs(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / f"evil{suffix}"
    torch.save(_evil_state(marker), path)
    message = _refused(path)
    assert not marker.exists(), "the pickle payload ran"
    assert "refused" in message or "unknown weight format" in message
    result = run_lakegen("fingerprint", str(path), "--json")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_legacy_pickle_file_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "legacy.bin"
    path.write_bytes(pickle.dumps(_evil_state(marker)))
    _refused(path)
    assert not marker.exists()


def test_zip_wrapped_pickle_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "wrapped.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_evil_state(marker), protocol=2))
        archive.writestr("archive/version", "3\n")
    _refused(path)
    assert not marker.exists()


def _safetensors(header: dict[str, object] | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            _safetensors(
                {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, length=10**6
            ),
            "header",
        ),
        (_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "w"),
        (
            _safetensors(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlap",
        ),
        (_safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "w"),
        (_safetensors({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype"),
        (
            _safetensors(
                b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
                b' "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
                b"\0" * 8,
            ),
            "duplicate|twice",
        ),
        (b"\x05\0\0", "header"),
        (_safetensors(b"not json", b""), "header"),
    ],
    ids=[
        "header-longer-than-file",
        "offsets-out-of-range",
        "overlapping",
        "shape-size-mismatch",
        "bad-dtype",
        "duplicate-names",
        "truncated",
        "header-not-json",
    ],
)
def test_corrupt_safetensors(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    message = _refused(path).lower()
    assert any(word in message for word in expected.split("|")), message


def test_hundred_megabyte_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    # VmHWM, not ru_maxrss: a forked child inherits the parent's ru_maxrss across exec.
    path = tmp_path / "huge-header.safetensors"
    length = 100 * 1024 * 1024 + 1
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length))
        f.truncate(8 + length)
    code = (
        "import sys\n"
        "from lakegen.weights import WeightsError, open_weights\n"
        "try:\n    open_weights(sys.argv[1])\nexcept WeightsError as e:\n    print('refused', e)\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    refused, rss = result.stdout.strip().splitlines()
    assert refused.startswith("refused") and "header" in refused
    assert int(rss) < 400 * 1024, f"peak RSS {int(rss) // 1024} MiB: the header was read"


def test_npz_with_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, w=np.array([{"a": 1}, None], dtype=object))
    assert "objects" in _refused(path) or "object" in _refused(path)


@pytest.mark.slow
def test_npz_decompression_bomb_is_refused_without_inflating(tmp_path: Path) -> None:
    """2 GiB of zeros declared and stored deflated in a few MB: refuse before inflating."""
    path = tmp_path / "bomb.npz"
    count = 1 << 29  # float32 -> 2 GiB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("w.npy", "w", force_zip64=True) as member,
    ):
        member.write(header.getvalue())
        zeros = bytes(1 << 24)
        for _ in range((count * 4) // len(zeros)):
            member.write(zeros)
    assert path.stat().st_size < 10 * 1024 * 1024
    code = (
        "import sys\n"
        "from lakegen.weights import WeightsError, iter_float32\n"
        "try:\n    [v.sum() for _, v in iter_float32(sys.argv[1])]\nexcept WeightsError as e:\n    print('refused', e)\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("refused"), result.stdout + result.stderr
    assert int(lines[-1]) < 512 * 1024, "the bomb was inflated"


def test_nan_inf_and_empty_tensors_do_not_crash(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file(
        {
            "nan": np.array([np.nan, 1.0], dtype=np.float32),
            "inf": np.array([np.inf, -np.inf], dtype=np.float32),
            "empty": np.zeros((0, 4), dtype=np.float32),
        },
        str(path),
    )
    with open_weights(path) as wf:
        assert sorted(wf.tensors) == ["empty", "inf", "nan"]
    result = run_lakegen("fingerprint", str(path), "--json")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.binary(max_size=300), data=st.binary(max_size=64), length_delta=st.integers(-16, 16))
def test_fuzz_safetensors_loader(tmp_path: Path, header: bytes, data: bytes, length_delta: int) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", max(0, len(header) + length_delta)) + header + data)
    with contextlib.suppress(WeightsError):
        _read_all(path)


valid_header = st.fixed_dictionaries(
    {
        "w": st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "F64", "I64", "BOOL", "X"]),
                "shape": st.lists(st.integers(-2, 6), max_size=3),
                "data_offsets": st.lists(st.integers(-4, 80), min_size=0, max_size=3),
            }
        )
    }
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=valid_header, data=st.binary(max_size=80))
def test_fuzz_safetensors_structured(tmp_path: Path, header: dict[str, object], data: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(_safetensors(header, data))
    with contextlib.suppress(WeightsError):
        _read_all(path)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzz_npz_and_torch_loaders(tmp_path: Path, data: bytes) -> None:
    for suffix in (".npz", ".pt"):
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(WeightsError):
            _read_all(path)


def _safetensors_of(entries: dict[str, dict[str, object]], data: bytes = b"") -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


def test_too_many_tensors_are_refused_before_reading_them(tmp_path: Path) -> None:
    # A header just under the size cap could otherwise hold millions of tiny tensors.
    n = MAX_TENSORS + 1
    entries = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(n)}
    path = tmp_path / "many.safetensors"
    path.write_bytes(_safetensors_of(entries, bytes(n)))
    assert (
        _refused(path)
        == f"{path}: refused: {n:,} tensors; lakegen reads at most {MAX_TENSORS:,} per weight file"
    )
    result = run_lakegen("fingerprint", str(path), "--json")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "refused: 32,769 tensors" in result.stderr + result.stdout


def test_huge_names_and_dimensions_are_refused(tmp_path: Path) -> None:
    long = tmp_path / "long.safetensors"
    long.write_bytes(
        _safetensors_of({"w" * 5000: {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    )
    assert "refused: a tensor name of 5,000 characters (at most 1,024)" in _refused(long)
    deep = tmp_path / "deep.safetensors"
    deep.write_bytes(
        _safetensors_of({"w": {"dtype": "U8", "shape": [1] * 40, "data_offsets": [0, 1]}}, b"\0")
    )
    assert "tensor 'w' has 40 dimensions (at most 16)" in _refused(deep)


@pytest.mark.slow
def test_too_many_npz_members_and_torch_tensors_are_refused(tmp_path: Path) -> None:
    npz = tmp_path / "many.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        for i in range(MAX_TENSORS + 1):
            archive.writestr(f"a{i}.npy", b"")
    assert "refused: 32,769 tensors" in _refused(npz)
    pt = tmp_path / "many.pt"
    torch.save({f"t{i}": torch.zeros(1) for i in range(MAX_TENSORS + 20)}, pt)
    assert "tensors; lakegen reads at most 32,768 per weight file" in _refused(pt)


def test_a_shard_index_naming_too_many_tensors_is_refused(tmp_path: Path) -> None:
    save_file({"w": np.zeros(1, np.float32)}, str(tmp_path / "model-1.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    names = {f"t{i}": "model-1.safetensors" for i in range(MAX_MODEL_TENSORS + 1)}
    index.write_text(json.dumps({"weight_map": names}))
    with pytest.raises(WeightsError, match=r"refused: 262,145 tensors; lakegen reads at most 262,144"):
        read_shard_index(index)
