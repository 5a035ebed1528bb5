"""Safe weight loading: formats, dtypes, int8 scales, adapters, and every refusal as one clear line."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from lakegen.weights import (
    WeightsError,
    dequantized,
    iter_float32,
    logical_tensors,
    lora_delta,
    open_weights,
    read_adapter,
    to_float32,
)

LAKEGEN = Path(sys.executable).with_name("lakegen")


def refused(path: Path) -> str:
    with pytest.raises(WeightsError) as info, open_weights(path) as wf:
        for name in wf.tensors:
            wf.raw(name)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ formats


def test_safetensors_float_dtypes_read_exactly(tmp_path: Path) -> None:
    w = torch.randn(5, 7)
    path = tmp_path / "m.safetensors"
    save_torch({"a": w, "b": w.to(torch.float16), "c": w.to(torch.bfloat16)}, str(path))
    with open_weights(path) as wf:
        assert {n: (t.dtype, t.shape) for n, t in wf.tensors.items()} == {
            "a": ("float32", (5, 7)),
            "b": ("float16", (5, 7)),
            "c": ("bfloat16", (5, 7)),
        }
        assert np.array_equal(to_float32(wf.raw("a"), "float32"), w.numpy())
        assert np.array_equal(to_float32(wf.raw("b"), "float16"), w.to(torch.float16).float().numpy())
        assert np.array_equal(to_float32(wf.raw("c"), "bfloat16"), w.to(torch.bfloat16).float().numpy())


def test_pytorch_checkpoint_with_bfloat16(tmp_path: Path) -> None:
    w = torch.randn(3, 4)
    path = tmp_path / "m.pt"
    torch.save({"state_dict": {"layer.weight": w.to(torch.bfloat16), "layer.bias": torch.zeros(3)}}, path)
    values = dict(iter_float32(path))
    assert set(values) == {"layer.weight", "layer.bias"}
    assert np.array_equal(values["layer.weight"], w.to(torch.bfloat16).float().numpy())


def test_npz_reads_and_object_arrays_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, w=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.array_equal(dict(iter_float32(good))["w"], np.arange(6).reshape(2, 3))
    bad = tmp_path / "bad.npz"
    np.savez(bad, w=np.array([{"x": 1}], dtype=object))
    assert "allow_pickle stays off" in refused(bad)


def test_npz_samples_are_read_where_stored_members_lie_and_equal_what_numpy_loads(tmp_path: Path) -> None:
    """An uncompressed .npz member's samples are read with pread at their offset (not the member
    inflated whole and CRC-checked: twice openssl's CPU time on 2 GiB); a compressed, big-endian or
    Fortran-ordered one, or one whose local header lies, is read through numpy, with the same values."""
    from lakegen.fingerprint import compute

    rng = np.random.default_rng(3)
    arrays = {
        "w": rng.standard_normal((64, 33)).astype(np.float32),
        "h": rng.standard_normal(40).astype(np.float16),
        "big": rng.standard_normal(50).astype(">f4"),
        "f": np.asfortranarray(rng.standard_normal((6, 5)).astype(np.float32)),
    }
    stored, packed = tmp_path / "stored.npz", tmp_path / "packed.npz"
    np.savez(stored, **arrays)
    np.savez_compressed(packed, **arrays)
    flat = np.array([0, 3, 4, 17, 29])
    with open_weights(stored) as s, open_weights(packed) as c:
        assert {n for n in arrays if s.offset(n) is not None} == {"w", "h"}
        assert all(c.offset(n) is None for n in arrays)
        for name in arrays:
            want = np.ascontiguousarray(c.raw(name).reshape(-1)[flat])
            got = s.gather(name, flat)
            assert got.dtype.itemsize == want.dtype.itemsize and np.array_equal(
                got.astype("f8"), want.astype("f8")
            )
    # a local header that lies about its extra field: one clear error, nothing read past the file
    data = bytearray(stored.read_bytes())
    at = data.index(b"PK\x03\x04")
    data[at + 28 : at + 30] = struct.pack("<H", 0xFFFF)
    lying = tmp_path / "lying.npz"
    lying.write_bytes(bytes(data))
    assert "not a readable .npz archive" in refused(lying)
    one, other = compute(stored), compute(packed)  # the same samples, whichever way read
    assert one.sha256 != other.sha256 and np.array_equal(one.samples, other.samples)
    assert np.array_equal(one.signature, other.signature)


def test_int8_with_per_channel_scale_is_one_dequantised_tensor(tmp_path: Path) -> None:
    q = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)
    scale = np.array([0.5, 0.25], dtype=np.float32)
    path = tmp_path / "q.safetensors"
    save_numpy({"fc.weight": q, "fc.weight_scale": scale, "fc.bias": np.ones(2, np.float32)}, str(path))
    with open_weights(path) as wf:
        tensors = {t.name: t for t in logical_tensors(wf)}
        assert set(tensors) == {"fc.weight", "fc.bias"}
        assert tensors["fc.weight"].scale == "fc.weight_scale"
        assert np.array_equal(dequantized(wf, tensors["fc.weight"]), q * scale[:, None])


def test_int8_scale_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.safetensors"
    save_numpy({"w": np.ones((4, 3), np.int8), "w_scale": np.ones(3, np.float32)}, str(path))
    with pytest.raises(WeightsError, match="one scale per output channel"), open_weights(path) as wf:
        logical_tensors(wf)


def write_adapter(folder: Path, a: torch.Tensor, b: torch.Tensor, config: dict | None = None) -> Path:
    folder.mkdir()
    tensors = {"base_model.model.layers.0.lora_A.weight": a, "base_model.model.layers.0.lora_B.weight": b}
    save_torch(tensors, str(folder / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "r": a.shape[0], "lora_alpha": 8, "base_model_name_or_path": "base"}
    (folder / "adapter_config.json").write_text(json.dumps(config or settings))
    return folder


def test_adapter_pairs_lora_a_and_b_with_their_scaling(tmp_path: Path) -> None:
    a, b = torch.randn(4, 6), torch.randn(5, 4)
    folder = write_adapter(tmp_path / "ad", a, b)
    adapter = read_adapter(folder)
    (pair,) = adapter.pairs
    assert (pair.target, pair.shape, pair.scaling) == ("layers.0.weight", (5, 6), 2.0)
    assert adapter.base == "base"
    with open_weights(adapter.weights) as wf:
        assert np.allclose(lora_delta(wf, pair), (2.0 * b @ a).numpy(), atol=1e-5)


def test_adapter_without_lora_b_or_of_another_type_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ad"
    folder.mkdir()
    save_torch(
        {"base_model.model.x.lora_A.weight": torch.ones(2, 3)}, str(folder / "adapter_model.safetensors")
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 2}))
    with pytest.raises(WeightsError, match="no lora_B"):
        read_adapter(folder)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(WeightsError, match="only LORA"):
        read_adapter(folder)


# ---------------------------------------------------------------------------- bad input


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x01\x02", "shorter than its 8-byte header"),
        (struct.pack("<Q", 1 << 40) + b"{}", "implausible"),
        (struct.pack("<Q", 500) + b"{}", "truncated"),
        (
            safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
            "outside",
        ),
        (
            safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
            "needs 16",
        ),
        (safetensors_bytes({"w": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "dtype"),
        (
            safetensors_bytes(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlap",
        ),
        (struct.pack("<Q", 6) + b"[1, 2]", "not a JSON object"),
    ],
    ids=[
        "tiny",
        "huge-header",
        "truncated",
        "offsets-out-of-range",
        "wrong-size",
        "dtype",
        "overlap",
        "list",
    ],
)
def test_corrupt_safetensors_is_one_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert expected in refused(path)


class Touch:
    """Unpickling this would create the file ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if layout == "zip":
        torch.save({"w": torch.ones(2), "x": Touch(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"w": Touch(marker)}))
    message = refused(path)
    assert "refused" in message or "legacy" in message
    assert not marker.exists()
    result = subprocess.run([LAKEGEN, "fingerprint", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and str(path) in result.stderr
    assert not marker.exists()


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    odd = tmp_path / "m.h5"
    odd.write_bytes(b"x")
    assert "unknown weight format" in refused(odd)
    assert "file not found" in refused(tmp_path / "none.safetensors")


def test_cli_reports_a_corrupt_file_in_one_line_and_goes_on(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 500) + b"{}")
    good = tmp_path / "good.safetensors"
    save_numpy({"w": np.ones((3, 3), np.float32)}, str(good))
    result = subprocess.run(
        [LAKEGEN, "fingerprint", "--no-cache", "--json", str(bad), str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert [row["id"] for row in json.loads(result.stdout)] == ["good"]
    assert result.stderr.strip().splitlines() == [
        f"lakegen: {bad}: truncated or corrupt safetensors file: header says 500 bytes, file has 10"
    ]


@pytest.mark.parametrize("size", [1, 2, 4, 144])
def test_read_runs_gives_the_bytes_at_each_offset_whatever_the_gaps(tmp_path: Path, size: int) -> None:
    # runs of samples closer than a read's gap and lone ones far apart, up to the file's last byte
    from lakegen.weights.base import GATHER_GAP, read_runs

    rng = np.random.default_rng(size)
    data = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "f").write_bytes(data)
    steps = rng.choice([0, 1, 3, GATHER_GAP // size, GATHER_GAP // size + 1, 5000], 400) * size
    offsets = 7 + np.cumsum(steps)
    last = 7 + (len(data) - size - 7) // size * size
    offsets = np.append(offsets[offsets < last], last)
    with open(tmp_path / "f", "rb") as f:
        got = read_runs(f.fileno(), offsets, size)
        assert got.tobytes() == b"".join(data[o : o + size] for o in offsets.tolist())
        with pytest.raises(OSError, match="short read"):
            read_runs(f.fileno(), np.array([last + size]), size)
        if size > 1:
            with pytest.raises(ValueError, match="whole number"):
                read_runs(f.fileno(), np.array([0, size + 1]), size)
