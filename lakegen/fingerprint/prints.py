"""What a fingerprint holds (per tensor and per file) and its on-disk form."""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakegen.weights.coordinates import GRID, VECTOR

if TYPE_CHECKING:
    import numpy as np

__all__ = ["GRID", "MAGIC", "PREFIX", "SIGNATURE", "VECTOR", "VERSION", "Fingerprint", "TensorPrint"]

SIGNATURE = 512  # length of the CountSketch used to rank candidates quickly
VERSION = 4  # 4: GGUF of llama and BERT under Hugging Face names; 3: sampling_name (no wrapper prefix)
MAGIC = b"LGFPv3\n\0"  # 8 bytes, so the signature after the length is aligned
PREFIX = len(MAGIC) + 4 + 4 * SIGNATURE  # magic, header length, signature


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
