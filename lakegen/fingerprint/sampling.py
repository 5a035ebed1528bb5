"""Where a fingerprint samples each tensor, the samples themselves, and the signature over them."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.fingerprint.prints import SIGNATURE, TensorPrint
from lakegen.weights import PRECISION, WeightFile, logical_tensors, lora_delta, read_adapter, to_float32
from lakegen.weights.coordinates import coordinates, sampling_name, seed

__all__ = ["coordinates", "gather", "sample_adapter", "sample_model", "sampling_name", "seed", "signature_of"]

if TYPE_CHECKING:
    import numpy as np


def gather(raw: np.ndarray, rows: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
    import numpy as np

    if cols is None:
        return np.ascontiguousarray(raw.reshape(-1)[rows])
    flat = raw.reshape(raw.shape[0], -1)
    return np.ascontiguousarray(flat[np.ix_(rows, cols)]).reshape(-1)


def signature_of(tensors: list[TensorPrint], samples: np.ndarray) -> np.ndarray:
    """A CountSketch of every matrix's standardised samples: cosine ~ mean sample correlation."""
    import numpy as np

    sig = np.zeros(SIGNATURE, dtype=np.float64)
    for t in tensors:
        if not t.is_matrix or t.count < 4:
            continue
        x = samples[t.offset : t.offset + t.count].astype(np.float64)
        x = np.where(np.isfinite(x), x, 0.0)
        x = x - x.mean()
        norm = float(np.sqrt(x @ x))
        if norm == 0:
            continue
        buckets, signs = _sketch(t.name, tuple(t.shape), t.count)
        sig += np.bincount(buckets, weights=signs * x * (math.sqrt(t.count) / norm), minlength=SIGNATURE)
    return sig.astype(np.float32)


# Both are fixed by a tensor's name and shape, and a lake's models share their tensors' names: drawn
# once a process rather than once a tensor (a seeded generator each, a fifth of fingerprinting a
# 1 KiB file). Read-only, as every caller shares them. A matrix's sketch is 64 KB (4,096 samples):
# 512 of them, 32 MB at most, for a lake of many architectures.
@functools.lru_cache(maxsize=512)
def _sketch(name: str, shape: tuple[int, ...], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The signature's CountSketch of a matrix: each sample's bucket and sign."""
    import numpy as np

    rng = np.random.default_rng(seed(name, shape) ^ 0x5EED)
    buckets = rng.integers(0, SIGNATURE, count)
    signs = rng.integers(0, 2, count) * 2.0 - 1.0
    buckets.setflags(write=False)
    signs.setflags(write=False)
    return buckets, signs


@functools.lru_cache(maxsize=4096)
def _coordinates(name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    rows, cols = coordinates(name, shape)
    for a in (rows, cols):
        if a is not None:
            a.setflags(write=False)
    return rows, cols


def sample_model(wf: WeightFile) -> tuple[list[TensorPrint], Any, Any, dict[str, Any] | None, list[str]]:
    import numpy as np

    prints: list[TensorPrint] = []
    chunks: list[np.ndarray] = []
    scale_chunks: list[np.ndarray] = []
    skipped: list[str] = []
    offset = scale_offset = 0
    for t in sorted(logical_tensors(wf), key=lambda t: t.name):
        if t.numel == 0:
            skipped.append(f"{t.name}: empty tensor {list(t.shape)}")
            continue
        if t.dtype not in PRECISION and not t.dtype.startswith(("int", "uint")):
            skipped.append(f"{t.name}: {t.dtype} tensor")
            continue
        rows, cols = _coordinates(t.name, tuple(t.shape))
        if wf.offset(t.name) is not None:
            inner = t.numel // t.shape[0] if cols is not None else 1
            flat = (rows[:, None] * inner + cols[None, :]).reshape(-1) if cols is not None else rows
            values = to_float32(wf.gather(t.name, flat), t.dtype)
        else:
            values = to_float32(gather(wf.raw(t.name), rows, cols), t.dtype)
        so = -1
        if t.scale is not None:
            scale = to_float32(wf.raw(t.scale), wf.tensors[t.scale].dtype).reshape(-1)
            if cols is not None:
                row_scale = scale[rows] if scale.size > 1 else np.full(len(rows), scale[0], np.float32)
                values = values * np.repeat(row_scale, len(cols))
                so = scale_offset
                scale_chunks.append(row_scale.astype(np.float32))
                scale_offset += len(row_scale)
            else:  # a quantised vector: dequantise; the rounding test only uses matrices
                values = values * (scale[rows] if scale.size > 1 else scale[0])
        values = values.astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        quantized = t.scale is not None
        prints.append(TensorPrint(t.name, t.shape, t.dtype, offset, len(values), quantized, so, bad))
        chunks.append(values)
        offset += len(values)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    scales = np.concatenate(scale_chunks) if scale_chunks else np.zeros(0, np.float32)
    return prints, samples, scales, None, skipped


def sample_adapter(
    wf: WeightFile, path: Path
) -> tuple[list[TensorPrint], Any, Any, dict[str, Any] | None, list[str]]:
    import numpy as np

    adapter = read_adapter(path, wf)
    prints, chunks, offset = [], [], 0
    for pair in sorted(adapter.pairs, key=lambda p: p.target):
        rows, cols = coordinates(pair.target, pair.shape)
        if cols is None:
            continue
        values = lora_delta(wf, pair, rows, cols).reshape(-1)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        dtype = wf.tensors[pair.b].dtype
        prints.append(TensorPrint(pair.target, pair.shape, dtype, offset, len(values), nonfinite=bad))
        chunks.append(values)
        offset += len(values)
    config = adapter.config
    meta = {
        "base": adapter.base,
        "revision": adapter.revision,
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "targets": [p.target for p in adapter.pairs],
    }
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return prints, samples, np.zeros(0, np.float32), meta, []
