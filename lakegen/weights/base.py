"""What every weight reader shares: the open-file interface, the error, the limits and dtype tables."""

from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from lakegen.errors import WeightsError

if TYPE_CHECKING:
    import numpy as np


# Every reader refuses files past these before reading tensors, so a hostile header's cost stays
# bounded (100,000 one-element tensors once cost 12 s per fingerprint). Real checkpoints hold a few
# hundred to a few thousand tensors per file; a mixture-of-experts model split into shards, up to
# about 100,000 in all.
MAX_TENSORS = 32_768
MAX_NAME = 1024
MAX_NDIM = 16
# Samples closer than this share one pread: a read costs a system call (a few microseconds, what
# copying some kilobytes costs), and each byte read is copied once from the page cache.
GATHER_GAP = 1 << 12

# safetensors dtype -> (our name, bytes per element)
SAFETENSORS_DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
# how many significant bits a float dtype keeps: lower means lossier
PRECISION = {
    "float64": 53,
    "float32": 24,
    "float16": 11,
    "bfloat16": 8,
    "float8_e4m3fn": 4,
    "float8_e5m2": 3,
    "int8": 7,
    "uint8": 8,
}
# Labels of tensors a format stores quantised and lakegen reads back as float32 (see dequant.py and
# gguf.py), with their significant bits counted as for int8: a 4-bit code under a scale keeps 3.
DEQUANTIZED = {
    "nf4": 3,
    "fp4": 2,
    "quanto_int4": 3,
    "quanto_int2": 1,
    "q8_0": 7,
    "q8_k": 7,
    "q6_k": 5,
    "q5_0": 4,
    "q5_1": 4,
    "q5_k": 4,
    "q4_0": 3,
    "q4_1": 3,
    "q4_k": 3,
    "q3_k": 2,
    "q2_k": 1,
}
PRECISION.update(DEQUANTIZED)
# the numpy dtype a tensor's raw bytes are viewed as (bfloat16 and float8 need conversion)
STORAGE = {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as stored: name, dtype (numpy-style name), shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class WeightFile:
    """An open weight file: its tensors' headers, and each tensor's raw values on request."""

    format: str = ""

    def __init__(self, path: Path):
        self.path = path
        self.tensors: dict[str, TensorInfo] = {}
        self._fd: int | None = None

    @property
    def stored(self) -> dict[str, TensorInfo]:
        """The tensors as the file names them (a dequantising view shows fewer, see ``tensors``)."""
        return self.tensors

    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored values (bfloat16 as uint16, float8 as uint8), shaped."""
        raise NotImplementedError

    def offset(self, name: str) -> int | None:
        """Where the tensor's bytes start in the file, when they lie there contiguously."""
        return None

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        """Stored values at sorted flat element indices.

        When the tensor's bytes lie in the file, they are read with ``pread``:
        sampling through a memory map would pull whole page-cache folios
        (megabytes per touched row) into the process, and reading the few blocks
        that hold the samples keeps memory flat whatever the tensor's size.
        """
        import numpy as np

        start = self.offset(name)
        if start is None or self._fd is None:
            return np.ascontiguousarray(self.raw(name).reshape(-1)[flat])
        info = self.tensors[name]
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        size = storage.itemsize
        offsets = start + np.asarray(flat, dtype=np.int64) * size
        return read_runs(self._fd, offsets, size).view(storage)

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> WeightFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def zip_local_header(f: IO[bytes], info: zipfile.ZipInfo) -> tuple[int, bytes] | None:
    """Where a zip member's bytes start in the archive open as ``f`` (past its local header, whose
    name and extra field may differ in length from the central directory's), and the name that
    header gives; None when no local header is there."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return int(info.header_offset + 30 + name_len + extra_len), f.read(name_len)


def read_runs(fd: int, offsets: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` bytes at each of the sorted byte ``offsets`` of ``fd`` (a whole number of
    ``size`` apart): one ``pread`` per run of offsets at most :data:`GATHER_GAP` apart, of the bytes
    from its first sample to its last only.

    Reading whole blocks around the samples copied most of a file again (64 rows of 2 KiB from 16
    MiB matrices: 11 of a file's 16 MiB), as much memory traffic as the sha256 pass itself.
    """
    import numpy as np

    if offsets.size == 0:
        return np.zeros(0, dtype=np.uint8)
    steps = np.diff(offsets)
    if (steps % size).any():
        raise ValueError("sample offsets must lie a whole number of samples apart")
    cut = steps > GATHER_GAP
    firsts = offsets[np.flatnonzero(np.concatenate(([True], cut)))].tolist()
    lasts = offsets[np.flatnonzero(np.concatenate((cut, [True])))].tolist()
    chunks = []
    for first, last in zip(firsts, lasts, strict=True):
        chunks.append(os.pread(fd, last + size - first, first))
        if len(chunks[-1]) != last + size - first:
            raise OSError(f"short read at byte {first:,}: the file changed while it was read")
    # the runs lie back to back in ``data``: a sample's place moves by its step within a run and by
    # one sample across a cut
    at = np.zeros(offsets.size, dtype=np.int64)
    np.cumsum(np.where(cut, size, steps), out=at[1:])
    data = np.frombuffer(b"".join(chunks), dtype=np.dtype((np.void, size)))
    return data[at // size].view(np.uint8)


def to_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values of ``dtype`` (as returned by :meth:`WeightFile.raw`) as float32."""
    import numpy as np

    if dtype == "bfloat16":
        return (np.asarray(values, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype.startswith("float8"):
        return _float8_table(dtype)[np.asarray(values, dtype=np.uint8)]
    return np.asarray(values).astype(np.float32)


def _float8_table(dtype: str) -> np.ndarray:
    import numpy as np

    exp_bits, bias = (4, 7) if dtype == "float8_e4m3fn" else (5, 15)
    man_bits = 7 - exp_bits
    out = np.empty(256, dtype=np.float32)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        exp = (byte >> man_bits) & ((1 << exp_bits) - 1)
        man = byte & ((1 << man_bits) - 1)
        if dtype == "float8_e4m3fn" and exp == 15 and man == 7:
            out[byte] = np.nan
        elif dtype == "float8_e5m2" and exp == 31:
            out[byte] = np.inf * sign if man == 0 else np.nan
        elif exp == 0:
            out[byte] = sign * man * 2.0 ** (1 - bias - man_bits)
        else:
            out[byte] = sign * (1 + man / (1 << man_bits)) * 2.0 ** (exp - bias)
    return out


def refuse_count(path: Path, tensors: int, limit: int = MAX_TENSORS, per: str = "weight file") -> None:
    """Refuse a file (or model) holding more than ``limit`` tensors."""
    if tensors > limit:
        raise WeightsError(path, f"refused: {tensors:,} tensors; lakegen reads at most {limit:,} per {per}")


def refuse_name(path: Path, name: str, shape: object = ()) -> None:
    """Refuse an overlong tensor name or a tensor of too many dimensions."""
    if len(name) > MAX_NAME:
        raise WeightsError(path, f"refused: a tensor name of {len(name):,} characters (at most {MAX_NAME:,})")
    if isinstance(shape, list | tuple) and len(shape) > MAX_NDIM:
        raise WeightsError(path, f"tensor '{name[:80]}' has {len(shape)} dimensions (at most {MAX_NDIM})")
