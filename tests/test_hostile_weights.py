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
from conftest import run_lakegen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from lakegen.weights import WeightsError, iter_float32, open_weights

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
