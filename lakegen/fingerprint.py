"""Compact fingerprints of weight files: one streaming pass that also yields the sha256.

A fingerprint keeps, for every tensor, its name, dtype and shape (from the
header) and its values at a fixed pseudo-random set of coordinates: a
``GRID`` x ``GRID`` sub-matrix of each matrix (rows and columns seeded by the
tensor's name and shape) and ``VECTOR`` entries of each vector. Sampling is a
linear map, so ``sample(A) - sample(B) = sample(A - B)``, a low-rank delta
stays low-rank on the sub-matrix, and a merge of models is the same mix of
their samples. Every model of the same architecture is sampled at the same
coordinates, so all comparisons run on fingerprints alone.

Reading is one pass: a thread hashes the file (hashlib releases the GIL) while
the caller's thread gathers the samples; safetensors files are memory-mapped
and the pages already hashed or sampled are dropped from the process, so
memory stays flat whatever the file size. Fingerprints are cached by content
(sha256) under ``.lakegen/cache/`` (or ``$LAKEGEN_CACHE``), with a per-path
stat record so an unchanged file is never read again.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import math
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.atomicfile import write_atomic
from lakegen.digests import Digests
from lakegen.layout import is_sharded, model_layout
from lakegen.weights import (
    ADAPTER_CONFIG,
    PRECISION,
    SafetensorsFile,
    ShardedWeights,
    WeightFile,
    WeightsError,
    is_adapter,
    logical_tensors,
    lora_delta,
    open_model,
    read_adapter,
    to_float32,
)

if TYPE_CHECKING:
    import numpy as np

GRID = 64  # rows and columns sampled from every matrix
VECTOR = 1024  # entries sampled from every other tensor
SIGNATURE = 512  # length of the CountSketch used to rank candidates quickly
VERSION = 2
MAGIC = b"LGFPv2\n\0"  # 8 bytes, so the signature after the length is aligned
PREFIX = len(MAGIC) + 4 + 4 * SIGNATURE  # magic, header length, signature
WINDOW = 8 << 20  # bytes hashed between page releases


@dataclass(frozen=True)
class TensorPrint:
    """One tensor of a fingerprint: header facts and where its samples lie."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int  # into Fingerprint.samples
    count: int
    quantized: bool = False  # int8 values with a per-channel scale
    scale_offset: int = -1  # into Fingerprint.scales: one scale per sampled row
    nonfinite: int = 0  # NaN/Inf among the samples (they are compared as missing)

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return self.name, self.shape

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2 and self.shape[0] >= 2 and math.prod(self.shape[1:]) >= 2


@dataclass
class Fingerprint:
    """What lakegen remembers of a weight file (a model, or a LoRA adapter as its weight delta)."""

    sha256: str
    bytes: int
    format: str
    kind: str  # "model" or "adapter"
    stored_tensors: int
    parameters: int
    dtypes: dict[str, int]  # dtype -> parameters stored in it
    tensors: list[TensorPrint]
    samples: np.ndarray
    scales: np.ndarray
    signature: np.ndarray
    adapter: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)  # tensors left out, with why
    shards: list[dict[str, Any]] | None = None  # a sharded checkpoint's files: file, sha256, bytes

    def __post_init__(self) -> None:
        self._index = {t.name: t for t in self.tensors}

    def tensor(self, name: str) -> TensorPrint | None:
        return self._index.get(name)

    def values(self, t: TensorPrint) -> np.ndarray:
        return self.samples[t.offset : t.offset + t.count]

    def row_scales(self, t: TensorPrint) -> np.ndarray:
        rows = min(t.shape[0], GRID) if t.is_matrix else 1
        return self.scales[t.scale_offset : t.scale_offset + rows]

    @property
    def architecture(self) -> str:
        """A short hash of the tensor names and shapes."""
        text = ";".join(f"{t.name}:{list(t.shape)}" for t in sorted(self.tensors, key=lambda t: t.name))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """The facts ``lakegen fingerprint --json`` prints."""
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "bytes": self.bytes,
            "format": self.format,
            "kind": self.kind,
            "tensors": self.stored_tensors,
            "parameters": self.parameters,
            "dtypes": dict(sorted(self.dtypes.items())),
            "architecture": self.architecture,
            "quantized_tensors": sum(1 for t in self.tensors if t.quantized),
            "nonfinite_samples": sum(t.nonfinite for t in self.tensors),
        }
        if self.adapter is not None:
            out["adapter"] = self.adapter
        if self.skipped:
            out["skipped"] = self.skipped
        if self.shards is not None:
            out["shards"] = self.shards
        return out

    def file_digests(self) -> list[str]:
        """The sha256 of each file read, in :func:`weight_files` order."""
        return [s["sha256"] for s in self.shards] if self.shards is not None else [self.sha256]

    # ----------------------------------------------------------------- serialisation

    def to_bytes(self) -> builtins.bytes:
        """``MAGIC | u32 header length | signature | JSON header | samples | scales``.

        The signature sits at a fixed offset, so ranking thousands of cached
        fingerprints reads a few kilobytes of each (:func:`read_signature`).
        """
        import numpy as np

        signature = np.ascontiguousarray(self.signature, dtype="<f4")
        samples = np.ascontiguousarray(self.samples, dtype="<f4")
        scales = np.ascontiguousarray(self.scales, dtype="<f4")
        header = {
            "version": VERSION,
            "grid": GRID,
            "vector": VECTOR,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "format": self.format,
            "kind": self.kind,
            "stored_tensors": self.stored_tensors,
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "adapter": self.adapter,
            "skipped": self.skipped,
            "shards": self.shards,
            "arrays": {"samples": int(samples.size), "scales": int(scales.size)},
            "tensors": [
                [t.name, list(t.shape), t.dtype, t.offset, t.count, t.quantized, t.scale_offset, t.nonfinite]
                for t in self.tensors
            ],
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-(PREFIX + len(text)) % 8)
        parts = [
            MAGIC,
            struct.pack("<I", len(text)),
            signature.tobytes(),
            text,
            samples.tobytes(),
            scales.tobytes(),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: builtins.bytes) -> Fingerprint:
        import numpy as np

        if not data.startswith(MAGIC) or len(data) < PREFIX:
            raise ValueError("not a lakegen fingerprint")
        (length,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
        header = json.loads(data[PREFIX : PREFIX + length])
        if header.get("version") != VERSION or header.get("grid") != GRID or header.get("vector") != VECTOR:
            raise ValueError("fingerprint from another lakegen version")
        start = PREFIX + length
        n_samples, n_scales = header["arrays"]["samples"], header["arrays"]["scales"]
        tensors = [
            TensorPrint(n, tuple(s), d, o, c, q, so, nf) for n, s, d, o, c, q, so, nf in header["tensors"]
        ]
        return cls(
            sha256=header["sha256"],
            bytes=header["bytes"],
            format=header["format"],
            kind=header["kind"],
            stored_tensors=header["stored_tensors"],
            parameters=header["parameters"],
            dtypes=header["dtypes"],
            tensors=tensors,
            samples=np.frombuffer(data, dtype="<f4", count=n_samples, offset=start),
            scales=np.frombuffer(data, dtype="<f4", count=n_scales, offset=start + 4 * n_samples),
            signature=np.frombuffer(data, dtype="<f4", count=SIGNATURE, offset=len(MAGIC) + 4),
            adapter=header["adapter"],
            skipped=header["skipped"],
            shards=header.get("shards"),
        )


# ----------------------------------------------------------------------------- coordinates


def _seed(name: str, shape: tuple[int, ...]) -> int:
    digest = hashlib.sha256(f"{name}|{list(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def coordinates(name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """The sampled coordinates of a tensor: (rows, columns) of a matrix, or (flat indices, None)."""
    import numpy as np

    rng = np.random.default_rng(_seed(name, shape))
    n = math.prod(shape)
    if len(shape) >= 2 and shape[0] >= 2 and n // shape[0] >= 2:
        inner = n // shape[0]
        rows = np.sort(rng.choice(shape[0], size=min(shape[0], GRID), replace=False))
        cols = np.sort(rng.choice(inner, size=min(inner, GRID), replace=False))
        return rows, cols
    return np.sort(rng.choice(n, size=min(n, VECTOR), replace=False)), None


def _gather(raw: np.ndarray, rows: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
    import numpy as np

    if cols is None:
        return np.ascontiguousarray(raw.reshape(-1)[rows])
    flat = raw.reshape(raw.shape[0], -1)
    return np.ascontiguousarray(flat[np.ix_(rows, cols)]).reshape(-1)


def _signature(tensors: list[TensorPrint], samples: np.ndarray) -> np.ndarray:
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
        rng = np.random.default_rng(_seed(t.name, t.shape) ^ 0x5EED)
        buckets = rng.integers(0, SIGNATURE, t.count)
        signs = rng.integers(0, 2, t.count) * 2.0 - 1.0
        sig += np.bincount(buckets, weights=signs * x * (math.sqrt(t.count) / norm), minlength=SIGNATURE)
    return sig.astype(np.float32)


# ----------------------------------------------------------------------------- hashing


class _Hasher(threading.Thread):
    """Hash files (or memory maps of them) one after another in a thread; hashlib releases the GIL."""

    def __init__(self, sources: list[tuple[Path, SafetensorsFile | None]]):
        super().__init__(daemon=True)
        self.sources = sources
        self.digests: list[str] = []
        self.sizes: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for path, source in self.sources:
                digest, size = self._hash(path, source)
                self.digests.append(digest)
                self.sizes.append(size)
        except BaseException as e:  # re-raised in the caller's thread
            self.error = e

    @staticmethod
    def _hash(path: Path, source: SafetensorsFile | None) -> tuple[str, int]:
        h = hashlib.sha256()
        if source is not None and source.map is not None:
            view = memoryview(source.map)
            try:
                for start in range(0, len(view), WINDOW):
                    h.update(view[start : start + WINDOW])
                    source.release(start, start + WINDOW)
            finally:
                view.release()
            return h.hexdigest(), source.size
        size = 0
        buf = bytearray(1 << 16)
        mv = memoryview(buf)
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(mv[:n])
                size += n
        return h.hexdigest(), size


# ------------------------------------------------------------------------ fingerprinting


def weight_files(path: Path) -> list[Path]:
    """The files whose bytes a fingerprint hashes: the file itself, an adapter folder's weights,
    or a sharded checkpoint's shards (sorted by name)."""
    return model_layout(path).files


def content_sha256(path: Path, files: Sequence[Path], digests: Sequence[str]) -> str:
    """The sha256 a fingerprint is known by: the file's own, or for a sharded checkpoint the sha256
    of its shards' ``sha256sum`` listing (``sha256sum <shards, sorted> | sha256sum``)."""
    if not is_sharded(path):
        return digests[0]
    listing = "".join(f"{digest}  {file.name}\n" for file, digest in zip(files, digests, strict=True))
    return hashlib.sha256(listing.encode()).hexdigest()


def compute(path: Path | str) -> Fingerprint:
    """Read one weight file (or adapter folder) once: its sha256 and its fingerprint."""
    path = Path(path)
    adapter = is_adapter(path)
    wf = open_model(path)
    parts = wf.shards if isinstance(wf, ShardedWeights) else [wf]
    files = [part.path for part in parts]  # as weight_files(path) names them, without reading the index again
    hasher = _Hasher([(part.path, part if isinstance(part, SafetensorsFile) else None) for part in parts])
    hasher.start()
    try:
        if adapter:
            prints, samples, scales, meta, skipped = _sample_adapter(wf, path)
        else:
            prints, samples, scales, meta, skipped = _sample_model(wf)
        stored = len(wf.tensors)
        dtypes: dict[str, int] = {}
        scale_names = {t.scale for t in logical_tensors(wf) if t.scale} if not adapter else set()
        for info in wf.tensors.values():
            if info.name not in scale_names:
                dtypes[info.dtype] = dtypes.get(info.dtype, 0) + info.numel
    finally:
        hasher.join()
        wf.close()
    if hasher.error is not None:
        if isinstance(hasher.error, OSError):
            raise WeightsError(path, f"cannot read: {hasher.error}")
        raise hasher.error
    shards = None
    if isinstance(wf, ShardedWeights):
        shards = [
            {"file": f.name, "sha256": d, "bytes": n}
            for f, d, n in zip(files, hasher.digests, hasher.sizes, strict=True)
        ]
    return Fingerprint(
        sha256=content_sha256(path, files, hasher.digests),
        bytes=sum(hasher.sizes),
        format=wf.format,
        kind="adapter" if adapter else "model",
        stored_tensors=stored,
        parameters=sum(dtypes.values()),
        dtypes=dtypes,
        tensors=prints,
        samples=samples,
        scales=scales,
        signature=_signature(prints, samples),
        adapter=meta,
        skipped=skipped,
        shards=shards,
    )


def _sample_model(wf: WeightFile) -> tuple[list[TensorPrint], Any, Any, dict[str, Any] | None, list[str]]:
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
        rows, cols = coordinates(t.name, t.shape)
        if wf.offset(t.name) is not None:
            inner = t.numel // t.shape[0] if cols is not None else 1
            flat = (rows[:, None] * inner + cols[None, :]).reshape(-1) if cols is not None else rows
            values = to_float32(wf.gather(t.name, flat), t.dtype)
        else:
            values = to_float32(_gather(wf.raw(t.name), rows, cols), t.dtype)
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


def _sample_adapter(
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


# ---------------------------------------------------------------------------------- cache


class Cache:
    """Fingerprints on disk, keyed by content; each write is atomic (write, then rename)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.digests = Digests(self.folder)

    def path_of(self, key: str) -> Path:
        return self._fp_path(key)

    def _fp_path(self, key: str) -> Path:
        return self.folder / "fingerprints" / key[:2] / f"{key}.lgfp"

    def get(self, key: str) -> Fingerprint | None:
        try:
            return Fingerprint.from_bytes(self._fp_path(key).read_bytes())
        except (OSError, ValueError, KeyError, struct.error):
            return None

    def put(self, key: str, fp: Fingerprint) -> None:
        write_atomic(self._fp_path(key), fp.to_bytes())

    def keys(self) -> list[str]:
        """Every cached fingerprint's key."""
        base = self.folder / "fingerprints"
        return sorted(p.stem for p in base.glob("*/*.lgfp")) if base.is_dir() else []

    def known_key(self, path: Path) -> str | None:
        """The cache key of a weight file or adapter folder whose weights have not changed since
        they were last hashed (see :mod:`lakegen.digests`)."""
        try:
            files = weight_files(path)
            digests = [self.digests.known(f) for f in files]
            if any(d is None for d in digests):
                return None
            return cache_key(path, content_sha256(path, files, digests))  # type: ignore[arg-type]
        except (OSError, WeightsError):
            return None


def read_signature(path: Path) -> np.ndarray | None:
    """The signature of a stored fingerprint, read from its first few kilobytes."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            head = f.read(PREFIX)
    except OSError:
        return None
    if len(head) < PREFIX or not head.startswith(MAGIC):
        return None
    return np.frombuffer(head, dtype="<f4", count=SIGNATURE, offset=len(MAGIC) + 4)


class Cached(Mapping[str, Fingerprint]):
    """Model id -> fingerprint, loaded from the cache only when asked for.

    :meth:`signatures` reads just the signatures, so one new model can be ranked
    against many cached ones without loading them all.
    """

    def __init__(self, cache: Cache, keys: Mapping[str, str]):
        self.cache, self.keys_of = cache, dict(keys)
        self._loaded: dict[str, Fingerprint] = {}

    def __getitem__(self, model_id: str) -> Fingerprint:
        if model_id not in self._loaded:
            fp = self.cache.get(self.keys_of[model_id])
            if fp is None:
                raise KeyError(model_id)
            self._loaded[model_id] = fp
        return self._loaded[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_of)

    def __len__(self) -> int:
        return len(self.keys_of)

    def signatures(self, ids: Sequence[str]) -> np.ndarray:
        import numpy as np

        rows = np.zeros((len(ids), SIGNATURE), dtype=np.float32)
        for i, model_id in enumerate(ids):
            sig = read_signature(self.cache.path_of(self.keys_of[model_id]))
            if sig is not None:
                rows[i] = sig
        return rows


def cache_key(path: Path, sha256: str) -> str:
    """The cache key of a weight file: its sha256, plus the adapter config's hash for adapters."""
    if is_adapter(path):
        folder = path if path.is_dir() else path.parent
        config = hashlib.sha256((folder / ADAPTER_CONFIG).read_bytes()).hexdigest()[:16]
        return f"{sha256}-{config}"
    return sha256


def fingerprint(path: Path | str, cache: Cache | None = None) -> Fingerprint:
    """The fingerprint of a weight file or adapter folder, from the cache when the file is unchanged."""
    path = Path(path)
    files = weight_files(path)
    if cache is not None:
        key = cache.known_key(path)
        found = cache.get(key) if key is not None else None
        if found is not None:
            return found
    try:
        before = [f.stat() for f in files]
    except OSError as e:
        raise WeightsError(path, f"cannot read: {e.strerror or e}") from None
    fp = compute(path)
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            cache.put(cache_key(path, fp.sha256), fp)
        for file, digest, stat in zip(files, fp.file_digests(), before, strict=True):
            cache.digests.remember(file, digest, stat)
    return fp
