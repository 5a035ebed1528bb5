"""GGUF: the header parsed strictly, tensors dequantised as llama.cpp's gguf-py does.

The default tests write GGUF files with the small writer below (numpy bytes, the layout of the
GGUF spec) and quantise Q8_0 and Q4_0 the way llama.cpp's reference quantisers do; where the
``gguf`` package is installed (the zoo extra), every supported type, K-quants included, is also
compared with its own dequantisation of files its own writer wrote.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import run_lakegen
from safetensors.numpy import save_file

from lakegen.fingerprint import compute
from lakegen.weights import WeightsError, iter_float32, open_weights, to_float32

F32, F16, Q4_0, Q8_0, BF16, IQ2_XXS = 0, 1, 2, 8, 30, 16


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def write_gguf(
    path: Path,
    tensors: list[tuple[str, int, tuple[int, ...], bytes]],
    kv: bytes = b"",
    n_kv: int = 0,
    version: int = 3,
    alignment: int = 32,
    offsets: list[int] | None = None,
    n_tensors: int | None = None,
) -> Path:
    """A GGUF file: ``tensors`` as (name, GGML type, numpy shape, data bytes); ``kv`` pre-encoded."""
    infos, data, placed = b"", b"", []
    for *_, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        placed.append(len(data))
        data += raw
    for i, (name, kind, shape, _raw) in enumerate(tensors):
        dims = tuple(reversed(shape))
        where = offsets[i] if offsets is not None else placed[i]
        infos += _string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        infos += struct.pack("<IQ", kind, where)
    count = len(tensors) if n_tensors is None else n_tensors
    head = b"GGUF" + struct.pack("<IQQ", version, count, n_kv) + kv + infos
    head += b"\0" * (-len(head) % alignment)
    path.write_bytes(head + data)
    return path


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", 8) + _string(value)


def quantize_q8_0(x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """llama.cpp's quantize_row_q8_0_ref: per 32 values, d = amax / 127 (fp16), q = round(x / d)."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / 127
    q = np.round(blocks / np.where(d == 0, 1, d)).astype(np.int8)
    d16 = d.astype(np.float16)
    raw = b"".join(d16[i].tobytes() + q[i].tobytes() for i in range(len(blocks)))
    return raw, (d16.astype(np.float32) * q.astype(np.float32)).reshape(x.shape)


def quantize_q4_0(x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """llama.cpp's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, q = x / d + 8.5."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    idx = np.abs(blocks).argmax(axis=1)
    d = (blocks[np.arange(len(blocks)), idx] / -8).reshape(-1, 1)
    q = np.clip((blocks / np.where(d == 0, 1, d) + 8.5).astype(np.int8), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    d16 = d.astype(np.float16)
    raw = b"".join(d16[i].tobytes() + packed[i].tobytes() for i in range(len(blocks)))
    return raw, (d16.astype(np.float32) * (q.astype(np.float32) - 8)).reshape(x.shape)


@pytest.fixture
def weights() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)


def test_float_and_block_tensors_read_as_written(tmp_path: Path, weights: np.ndarray) -> None:
    q8, want8 = quantize_q8_0(weights)
    q4, want4 = quantize_q4_0(weights)
    bf16 = (weights.view(np.uint32) >> 16).astype(np.uint16)
    path = write_gguf(
        tmp_path / "m.gguf",
        [
            ("blk.0.f32.weight", F32, weights.shape, weights.tobytes()),
            ("blk.0.f16.weight", F16, weights.shape, weights.astype(np.float16).tobytes()),
            ("blk.0.bf16.weight", BF16, weights.shape, bf16.tobytes()),
            ("blk.0.q8.weight", Q8_0, weights.shape, q8),
            ("blk.0.q4.weight", Q4_0, weights.shape, q4),
        ],
        kv=_kv_string("general.architecture", "llama"),
        n_kv=1,
    )
    expected = {
        "blk.0.f32.weight": weights,
        "blk.0.f16.weight": weights.astype(np.float16).astype(np.float32),
        "blk.0.bf16.weight": to_float32(bf16, "bfloat16"),
        "blk.0.q8.weight": want8,
        "blk.0.q4.weight": want4,
    }
    got = dict(iter_float32(path))
    for name, values in expected.items():
        assert np.array_equal(got[name], values), name
    assert np.abs(want4 - weights).max() < np.abs(weights).max() / 7  # Q4_0 is lossy, not wrong
    with open_weights(path) as wf:
        assert wf.format == "gguf"
        assert wf.tensors["blk.0.q8.weight"].dtype == "q8_0" and wf.tensors["blk.0.q4.weight"].shape == (
            16,
            64,
        )
        flat = np.array([0, 5, 31, 32, 700, 1023])
        for name, values in expected.items():  # sampling reads only the blocks that hold the samples
            sampled = to_float32(wf.gather(name, flat), wf.tensors[name].dtype)
            assert np.array_equal(sampled, values.reshape(-1)[flat]), name


def test_a_gguf_fingerprint_sees_the_dequantised_values(tmp_path: Path, weights: np.ndarray) -> None:
    q8, want8 = quantize_q8_0(weights)
    gguf = write_gguf(tmp_path / "m.gguf", [("blk.0.attn_q.weight", Q8_0, weights.shape, q8)])
    dense = tmp_path / "dense.safetensors"
    save_file({"blk.0.attn_q.weight": want8}, str(dense))
    fp, ref = compute(gguf), compute(dense)
    (t,), (r,) = fp.tensors, ref.tensors
    assert (fp.format, t.dtype, t.shape) == ("gguf", "q8_0", (16, 64))
    assert np.array_equal(fp.values(t), ref.values(r))


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


HOSTILE = {
    "a truncated file": (
        lambda p, w: _cut(write_gguf(p, [("a", F32, w.shape, w.tobytes())]), 400),
        "truncated or corrupt GGUF file",
    ),
    "a header cut inside a name": (
        lambda p, w: _cut(write_gguf(p, [("a" * 50, F32, w.shape, w.tobytes())]), 40),
        "truncated GGUF header",
    ),
    "a lying tensor count": (
        lambda p, w: write_gguf(p, [("a", F32, w.shape, w.tobytes())], n_tensors=10**9),
        "refused: 1,000,000,000 tensors",
    ),
    "an offset out of range": (
        lambda p, w: write_gguf(p, [("a", F32, w.shape, w.tobytes())], offsets=[1 << 40]),
        "past the",
    ),
    "an unaligned offset": (
        lambda p, w: write_gguf(p, [("a", F32, w.shape, w.tobytes())], offsets=[4]),
        "alignment",
    ),
    "overlapping tensors": (
        lambda p, w: write_gguf(
            p, [("a", F32, w.shape, w.tobytes()), ("b", F32, w.shape, w.tobytes())], offsets=[0, 32]
        ),
        "tensors 'a' and 'b' overlap",
    ),
    "an unknown quant type": (
        lambda p, w: write_gguf(p, [("a", 99, w.shape, w.tobytes())]),
        "unknown GGML type 99",
    ),
    "rows that are not whole blocks": (
        lambda p, w: write_gguf(p, [("a", Q8_0, (4, 20), b"\0" * 340)]),
        "are not whole 32-blocks",
    ),
    "a huge metadata string": (
        lambda p, w: write_gguf(p, [], kv=_string("general.name") + struct.pack("<IQ", 8, 1 << 40), n_kv=1),
        "a string of 1,099,511,627,776 bytes",
    ),
    "a huge metadata array": (
        lambda p, w: write_gguf(p, [], kv=_string("tokens") + struct.pack("<IIQ", 9, 8, 1 << 40), n_kv=1),
        "refused: metadata 'tokens' is an array of 1,099,511,627,776",
    ),
    "a lying metadata count": (
        lambda p, w: write_gguf(p, [], n_kv=1 << 40),
        "metadata entries",
    ),
    "an unknown metadata type": (
        lambda p, w: write_gguf(p, [], kv=_string("x") + struct.pack("<I", 77), n_kv=1),
        "metadata 'x' has value type 77",
    ),
    "an impossible alignment": (
        lambda p, w: write_gguf(p, [], kv=_string("general.alignment") + struct.pack("<II", 4, 3), n_kv=1),
        "general.alignment 3",
    ),
    "version 1": (lambda p, w: write_gguf(p, [], version=1), "GGUF version 1"),
    "a big-endian file": (lambda p, w: write_gguf(p, [], version=3 << 24), "big-endian"),
    "no magic": (lambda p, w: p.write_bytes(b"GGUX" + bytes(40)) and p, "no GGUF magic"),
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_hostile_gguf_gets_one_line(tmp_path: Path, weights: np.ndarray, what: str) -> None:
    make, message = HOSTILE[what]
    path = tmp_path / "bad.gguf"
    make(path, weights)
    with pytest.raises(WeightsError) as info:
        for _name, values in iter_float32(path):
            values.sum()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_a_hostile_gguf_in_one_line(tmp_path: Path, weights: np.ndarray) -> None:
    path = write_gguf(
        tmp_path / "bad.gguf", [("a", F32, weights.shape, weights.tobytes())], offsets=[1 << 40]
    )
    result = run_lakegen("fingerprint", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "past the" in result.stderr


def test_a_type_lakegen_does_not_dequantise_is_skipped_by_the_fingerprint_and_refused_as_values(
    tmp_path: Path, weights: np.ndarray
) -> None:
    q8, _ = quantize_q8_0(weights)
    path = write_gguf(
        tmp_path / "m.gguf",
        [("iq", IQ2_XXS, (1, 256), bytes(66)), ("q8", Q8_0, weights.shape, q8)],
    )
    fp = compute(path)
    assert [t.name for t in fp.tensors] == ["q8"]
    assert fp.skipped == ["iq: gguf_iq2_xxs tensor"]
    with pytest.raises(WeightsError, match="lakegen does not dequantise GGUF IQ2_XXS tensors"):
        dict(iter_float32(path))


@pytest.mark.parametrize(
    "kind",
    ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"],
)
def test_every_type_matches_gguf_py(tmp_path: Path, kind: str) -> None:
    lib = pytest.importorskip("gguf", reason="the gguf package is in the zoo extra")
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    t = GGMLQuantizationType[kind]
    rng = np.random.default_rng(t.value)
    x = rng.normal(size=(4, 512)).astype(np.float32)
    writer = lib.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    if t in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        stored = x.astype(np.float16 if t == GGMLQuantizationType.F16 else np.float32)
        writer.add_tensor("w", stored)
        reference = stored.astype(np.float32)
    else:
        block, size = GGML_QUANT_SIZES[t]
        try:
            stored = quantize(x, t)
        except NotImplementedError:  # K-quants: gguf-py only dequantises; random blocks with sane scales
            stored = rng.integers(0, 256, size=(4, 512 // block * size), dtype=np.uint8)
            stored[:, :] &= np.uint8(0xBB)  # clears each byte's high exponent bits: every fp16 scale finite
        writer.add_tensor("w", stored, raw_shape=stored.shape, raw_dtype=t)
        reference = dequantize(stored, t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ((name, values),) = iter_float32(tmp_path / "m.gguf")
    assert name == "w" and values.shape == reference.shape
    assert np.array_equal(values, reference)


def test_new_pins_a_gguf_artifact_in_a_manifest_that_validates(lake: Path, weights: np.ndarray) -> None:
    q8, _ = quantize_q8_0(weights)
    file = write_gguf(
        lake / "catalog" / "artifacts" / "tiny.gguf", [("blk.0.ffn.weight", Q8_0, weights.shape, q8)]
    )
    made = run_lakegen("--root", str(lake), "new", "model", "tiny-gguf", "--artifact", str(file))
    assert made.returncode == 0, made.stderr
    text = (lake / "catalog" / "models" / "tiny-gguf.yaml").read_text()
    assert "format: gguf" in text and "uri: ../artifacts/tiny.gguf" in text
    checked = run_lakegen("--root", str(lake), "validate")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("heads", [0, 3, 1 << 31], ids=["none", "not-dividing", "huge"])
def test_llama_query_rows_llama_cpp_permuted_keep_its_name_without_a_head_count_that_fits(
    tmp_path: Path, weights: np.ndarray, heads: int
) -> None:
    """The permutation needs the head count; without one that divides the rows, the query matrix
    keeps llama.cpp's name (compared unpermuted it would look unrelated), the rest are renamed."""
    kv = _kv_string("general.architecture", "llama")
    n_kv = 1
    if heads:
        kv += _string("llama.attention.head_count") + struct.pack("<II", 4, heads)
        n_kv = 2
    raw = weights.tobytes()
    path = write_gguf(
        tmp_path / "m.gguf",
        [("blk.0.attn_q.weight", F32, weights.shape, raw), ("blk.0.ffn_up.weight", F32, weights.shape, raw)],
        kv=kv,
        n_kv=n_kv,
    )
    with open_weights(path) as wf:
        assert sorted(wf.tensors) == ["blk.0.attn_q.weight", "model.layers.0.mlp.up_proj.weight"]
        assert np.array_equal(wf.raw("model.layers.0.mlp.up_proj.weight"), weights)


def test_llama_query_rows_are_read_back_in_hugging_face_order(tmp_path: Path, weights: np.ndarray) -> None:
    """llama.cpp's permute: rows (head, half, i) -> (head, i, half); read back, and sampled, unpermuted."""
    kv = _kv_string("general.architecture", "llama") + _string("llama.attention.head_count")
    kv += struct.pack("<II", 4, 2)
    permuted = weights.reshape(2, 2, 4, 64).swapaxes(1, 2).reshape(weights.shape)
    q8, want8 = quantize_q8_0(permuted)
    path = write_gguf(
        tmp_path / "m.gguf",
        [
            ("blk.0.attn_q.weight", F32, weights.shape, permuted.tobytes()),
            ("blk.1.attn_q.weight", Q8_0, weights.shape, q8),
        ],
        kv=kv,
        n_kv=2,
    )
    unpermute = want8.reshape(2, 4, 2, 64).swapaxes(1, 2).reshape(weights.shape)
    with open_weights(path) as wf:
        assert np.array_equal(wf.raw("model.layers.0.self_attn.q_proj.weight"), weights)
        assert np.array_equal(wf.raw("model.layers.1.self_attn.q_proj.weight"), unpermute)
        flat = np.array([5, 64, 700, 1000, 3], dtype=np.int64)
        assert np.array_equal(
            wf.gather("model.layers.0.self_attn.q_proj.weight", flat), weights.reshape(-1)[flat]
        )
        got = wf.gather("model.layers.1.self_attn.q_proj.weight", flat)
        assert np.array_equal(got, unpermute.reshape(-1)[flat])
