"""Read model weights safely, tensor by tensor, without running code from the file.

Formats: safetensors (header checked strictly, data memory-mapped), numpy
``.npz`` (``allow_pickle`` stays off, object arrays are refused), PyTorch
``.pt``/``.pth``/``.bin`` through ``torch.load(weights_only=True, mmap=True)``
only, sharded checkpoints (a folder with ``*.index.json`` and its shards, in
any of these formats), and PEFT LoRA adapter folders
(``adapter_model.safetensors`` + ``adapter_config.json``). Int8 tensors with per-channel scales (``X.weight``
int8 beside ``X.weight_scale``) are read as one logical tensor and dequantised
on request. Every failure is a :class:`WeightsError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import mmap
import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SCALE_SUFFIX = "_scale"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PEFT_PREFIX = "base_model.model."
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
# Every reader refuses files past these before reading tensors, so a hostile header's cost stays
# bounded (100,000 one-element tensors once cost 12 s per fingerprint). Real checkpoints hold a few
# hundred to a few thousand tensors per file; a mixture-of-experts model split into shards, up to
# about 100,000 in all.
MAX_TENSORS = 32_768
MAX_MODEL_TENSORS = 262_144
MAX_NAME = 1024
MAX_NDIM = 16
GATHER_BLOCK = 1 << 16
NPZ_ARRAY_LIMIT = 1 << 30  # .npz members are inflated whole  # bytes read around each run of samples

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
# the numpy dtype a tensor's raw bytes are viewed as (bfloat16 and float8 need conversion)
_STORAGE = {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}


class WeightsError(Exception):
    """A weight file lakegen will not read, with a one-line reason."""

    def __init__(self, path: Path | str, message: str):
        self.path = str(path)
        self.reason = " ".join(message.split())
        super().__init__(f"{self.path}: {self.reason}")


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
        storage = np.dtype(_STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        size = storage.itemsize
        offsets = start + np.asarray(flat, dtype=np.int64) * size
        blocks = offsets // GATHER_BLOCK
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        out = np.empty(len(offsets) * size, dtype=np.uint8)
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(offsets)], strict=True):
            base = int(blocks[lo]) * GATHER_BLOCK
            data = np.frombuffer(os.pread(self._fd, GATHER_BLOCK + size, base), dtype=np.uint8)
            local = (offsets[lo:hi] - base)[:, None] + np.arange(size)
            out[lo * size : hi * size] = data[local].reshape(-1)
        return out.view(storage)

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> WeightFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


# ----------------------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class Span:
    """Where a safetensors tensor's bytes lie in the file."""

    start: int
    end: int


def read_safetensors_header(
    path: Path, head: bytes, size: int
) -> tuple[dict[str, TensorInfo], dict[str, Span]]:
    """Parse and check a safetensors header; ``head`` holds at least the file's first 8 + N bytes."""
    if size < 8:
        raise WeightsError(path, "not a safetensors file: shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER:
        raise WeightsError(path, f"corrupt safetensors header: length {length:,} bytes is implausible")
    if 8 + length > size:
        raise WeightsError(
            path, f"truncated or corrupt safetensors file: header says {length:,} bytes, file has {size:,}"
        )
    _refuse_count(path, head.count(b'"data_offsets"', 8, 8 + length))
    try:
        header = json.loads(head[8 : 8 + length].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsError(path, f"corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "corrupt safetensors header: not a JSON object")
    _refuse_count(path, len(header) - ("__metadata__" in header))
    data_size = size - 8 - length
    infos: dict[str, TensorInfo] = {}
    spans: dict[str, Span] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        info, span = _safetensors_entry(path, name, entry, data_size)
        infos[name] = info
        spans[name] = Span(8 + length + span.start, 8 + length + span.end)
    ordered = sorted(spans.items(), key=lambda kv: (kv[1].start, kv[1].end))
    for (a, sa), (b, sb) in itertools.pairwise(ordered):
        if sb.start < sa.end:
            raise WeightsError(path, f"corrupt safetensors file: tensors '{a}' and '{b}' overlap")
    return infos, spans


def _refuse_count(path: Path, tensors: int, limit: int = MAX_TENSORS, per: str = "weight file") -> None:
    if tensors > limit:
        raise WeightsError(path, f"refused: {tensors:,} tensors; lakegen reads at most {limit:,} per {per}")


def _refuse_name(path: Path, name: str, shape: object = ()) -> None:
    if len(name) > MAX_NAME:
        raise WeightsError(path, f"refused: a tensor name of {len(name):,} characters (at most {MAX_NAME:,})")
    if isinstance(shape, list | tuple) and len(shape) > MAX_NDIM:
        raise WeightsError(path, f"tensor '{name[:80]}' has {len(shape)} dimensions (at most {MAX_NDIM})")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate tensor name '{key}'")
        out[key] = value
    return out


def _safetensors_entry(path: Path, name: str, entry: Any, data_size: int) -> tuple[TensorInfo, Span]:
    _refuse_name(path, name, entry.get("shape") if isinstance(entry, dict) else ())
    if not isinstance(entry, dict):
        raise WeightsError(path, f"corrupt safetensors header: entry '{name}' is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise WeightsError(path, f"tensor '{name}': unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise WeightsError(path, f"corrupt safetensors header: tensor '{name}' has shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise WeightsError(
            path,
            f"truncated or corrupt safetensors file: tensor '{name}' has data offsets {offsets!r} "
            f"outside the {data_size:,}-byte data section",
        )
    our_name, itemsize = SAFETENSORS_DTYPES[dtype]
    expected = math.prod(shape) * itemsize
    if offsets[1] - offsets[0] != expected:
        raise WeightsError(
            path,
            f"corrupt safetensors header: tensor '{name}' {dtype}{shape} needs {expected:,} bytes, "
            f"offsets give {offsets[1] - offsets[0]:,}",
        )
    return TensorInfo(name, our_name, tuple(shape)), Span(offsets[0], offsets[1])


class SafetensorsFile(WeightFile):
    """A safetensors file, memory-mapped; tensors are views into the map."""

    format = "safetensors"

    def __init__(self, path: Path):
        super().__init__(path)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            size = os.fstat(self._file.fileno()).st_size
            head = self._file.read(8)
            if len(head) == 8:
                (length,) = struct.unpack("<Q", head)
                if length <= MAX_HEADER and 8 + length <= size:
                    head += self._file.read(length)
            self.tensors, self.spans = read_safetensors_header(path, head, size)
            self.size = size
            self._fd = self._file.fileno()
            self.map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except BaseException:
            self._file.close()
            raise

    def raw(self, name: str) -> np.ndarray:
        import numpy as np

        info, span = self.tensors[name], self.spans[name]
        storage = np.dtype(_STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        if info.numel == 0 or self.map is None:
            return np.zeros(info.shape, dtype=storage)
        return np.frombuffer(self.map, dtype=storage, count=info.numel, offset=span.start).reshape(info.shape)

    def offset(self, name: str) -> int | None:
        return self.spans[name].start

    def release(self, start: int, end: int) -> None:
        """Drop the pages of ``[start, end)`` from this process (they stay in the page cache)."""
        if self.map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        lo = (start // page) * page
        hi = min(self.size, -(-end // page) * page)
        if hi > lo:
            self.map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        if self.map is not None:
            with contextlib.suppress(BufferError):  # a view is still alive; it goes with the last view
                self.map.close()
        self._file.close()


# ------------------------------------------------------------------------------------ npz


class NpzFile(WeightFile):
    """A numpy ``.npz`` archive read with ``allow_pickle=False``; one member in memory at a time."""

    format = "npz"

    def __init__(self, path: Path):
        import numpy as np

        super().__init__(path)
        try:
            with zipfile.ZipFile(path) as archive:
                _refuse_zip_bomb(path, archive.infolist())
                _refuse_count(path, len(archive.infolist()))
                for member in archive.infolist():
                    if not member.filename.endswith(".npy"):
                        continue
                    name = member.filename[:-4]
                    _refuse_name(path, name)
                    with archive.open(member) as f:
                        version = np.lib.format.read_magic(f)
                        read = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shape, _fortran, dtype = read(f)
                    if dtype.hasobject:
                        raise WeightsError(
                            path, f"array '{name}' holds Python objects; refusing it (allow_pickle stays off)"
                        )
                    need = math.prod(shape) * dtype.itemsize
                    if need > NPZ_ARRAY_LIMIT:
                        raise WeightsError(
                            path,
                            f"array '{name}' would inflate to {need / (1 << 30):.1f} GiB; .npz arrays are "
                            f"loaded whole, so lakegen refuses those over {NPZ_ARRAY_LIMIT >> 30} GiB "
                            "(store large weights as safetensors)",
                        )
                    _refuse_name(path, name, shape)
                    self.tensors[name] = TensorInfo(name, _numpy_dtype_name(path, name, dtype), tuple(shape))
        except WeightsError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise WeightsError(path, f"not a readable .npz archive: {e}") from None
        self._npz = np.load(path, allow_pickle=False)

    def raw(self, name: str) -> np.ndarray:
        try:
            return self._npz[name]
        except ValueError as e:
            raise WeightsError(self.path, f"array '{name}': {e}") from None

    def close(self) -> None:
        self._npz.close()


# Float weights barely compress (pruned ones a few times); past this ratio an archive is a bomb.
NPZ_MAX_RATIO = 100
NPZ_RATIO_FROM = 64 * 1024 * 1024


def _refuse_zip_bomb(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse, from the zip directory alone, archives that would inflate far beyond their size."""
    inflated = sum(m.file_size for m in members)
    stored = sum(m.compress_size for m in members) or 1
    if inflated > NPZ_RATIO_FROM and inflated > NPZ_MAX_RATIO * stored:
        raise WeightsError(
            path,
            f"refused: {stored:,} bytes would inflate to {inflated:,} "
            f"({inflated // stored:,}:1); this looks like a decompression bomb",
        )


def _numpy_dtype_name(path: Path, name: str, dtype: Any) -> str:
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub" or dtype.itemsize > 8 or (dtype.kind == "f" and dtype.itemsize < 2):
        raise WeightsError(path, f"array '{name}' has unsupported dtype {dtype}")
    return str(dtype.newbyteorder("="))


# -------------------------------------------------------------------------------- pytorch


class TorchFile(WeightFile):
    """A PyTorch checkpoint loaded with ``weights_only=True`` and ``mmap=True``: nothing else."""

    format = "pytorch"

    def __init__(self, path: Path):
        super().__init__(path)
        import pickle

        import torch

        if not zipfile.is_zipfile(path):
            raise WeightsError(
                path,
                "not a zip-format PyTorch checkpoint (legacy torch.save format or not PyTorch); "
                "lakegen only reads PyTorch files with torch.load(weights_only=True, mmap=True) — "
                "re-save it with torch.save or as safetensors",
            )
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise WeightsError(path, f"not a readable PyTorch checkpoint: {e}") from None
        # A checkpoint holds one member per tensor storage, plus data.pkl, version and a few others.
        _refuse_count(path, len(members) - 8)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(
                path,
                "refused: the checkpoint needs more than torch.load(weights_only=True) allows, so it "
                f"is not unpickled ({first[:200]})",
            ) from None
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(path, f"not a readable PyTorch checkpoint: {first[:200]}") from None
        state = _unwrap_state_dict(state)
        if state is None:
            raise WeightsError(path, "the checkpoint is not a state dict (a mapping of names to tensors)")
        self._tensors: dict[str, Any] = {}
        _refuse_count(path, len(state))
        for name, tensor in state.items():
            _refuse_name(path, str(name), tuple(tensor.shape))
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype not in PRECISION and dtype not in ("int16", "int32", "int64", "bool"):
                raise WeightsError(path, f"tensor '{name}' has unsupported dtype {dtype}")
            self.tensors[name] = TensorInfo(name, dtype, tuple(tensor.shape))
            self._tensors[name] = tensor
        self._offsets = _torch_file_offsets(path, self._tensors)
        if self._offsets:
            self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
            self._fd = self._file.fileno()

    def offset(self, name: str) -> int | None:
        return self._offsets.get(name)

    def raw(self, name: str) -> np.ndarray:
        import torch

        tensor = self._tensors[name].contiguous()
        dtype = self.tensors[name].dtype
        if dtype == "bfloat16":
            return tensor.view(torch.int16).numpy().view("uint16")
        if dtype.startswith("float8"):
            return tensor.view(torch.uint8).numpy()
        return tensor.numpy()

    def close(self) -> None:
        self._tensors.clear()
        if self._offsets:
            self._file.close()


def _torch_file_offsets(path: Path, tensors: dict[str, Any]) -> dict[str, int]:
    """Where each contiguous tensor's bytes lie in a zip checkpoint loaded with ``mmap=True``.

    torch maps the whole file, so a storage's address minus its zip member's
    data offset is one constant; each tensor is checked against the bytes at its
    offset, and any doubt leaves the tensor to be read through torch.
    """
    import torch

    members = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if "/data/" not in info.filename or info.compress_type != zipfile.ZIP_STORED:
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return {}
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            members.append(info.header_offset + 30 + name_len + extra_len)
        if not members:
            return {}
        storages = sorted({t.untyped_storage().data_ptr() for t in tensors.values() if t.numel()})
        if not storages:
            return {}
        base = storages[0] - min(members)
        known = set(members)
        if any(ptr - base not in known for ptr in storages):
            return {}
        out = {}
        for name, t in tensors.items():
            if not t.numel() or not t.is_contiguous():
                continue
            start = t.untyped_storage().data_ptr() - base + t.storage_offset() * t.element_size()
            head = t.reshape(-1)[: max(1, 16 // t.element_size())].contiguous().view(torch.uint8)
            f.seek(start)
            if f.read(head.numel()) != head.numpy().tobytes():
                return {}
            out[name] = start
        return out


def _unwrap_state_dict(obj: Any) -> dict[str, Any] | None:
    import torch

    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            if all(isinstance(k, str) for k in obj):
                return obj
            return None
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "module"):
            obj = next(iter(obj.values()))
            continue
        # a training checkpoint: the weights beside the epoch, the optimizer's state and the like
        key = next(
            (k for k in ("state_dict", "model_state_dict") if isinstance(obj, dict) and k in obj), None
        )
        if key is not None:
            obj = obj[key]
            continue
        return None
    return None


# ---------------------------------------------------------------------------- open a file


def open_weights(path: Path | str) -> WeightFile:
    """Open one weight file; its format follows its suffix (safetensors, npz, pt/pth/bin)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(path, "file not found")
    if not path.is_file():
        raise WeightsError(path, "not a regular file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return SafetensorsFile(path)
        if suffix == ".npz":
            return NpzFile(path)
        if suffix in TORCH_SUFFIXES:
            return TorchFile(path)
    except OSError as e:
        raise WeightsError(path, f"cannot read: {e.strerror or e}") from None
    raise WeightsError(
        path, f"unknown weight format '{suffix or path.name}' (safetensors, npz, pt, pth, bin)"
    )


# --------------------------------------------------------------------- sharded checkpoints

INDEX_SUFFIX = ".index.json"  # model.safetensors.index.json, pytorch_model.bin.index.json, ...
MAX_INDEX = 16 * 1024 * 1024


@dataclass(frozen=True)
class ShardIndex:
    """A sharded checkpoint's index: which shard file holds each tensor."""

    path: Path
    weight_map: dict[str, str]

    @property
    def files(self) -> list[Path]:
        """The shard files, sorted by name."""
        return [self.path.parent / name for name in sorted(set(self.weight_map.values()))]


def find_shard_index(folder: Path) -> Path | None:
    """The ``*.index.json`` of a folder holding one sharded checkpoint (None without one)."""
    found = sorted(p for p in folder.glob("*" + INDEX_SUFFIX) if p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise WeightsError(
            folder, f"a folder must hold one sharded checkpoint: found {len(found)} indexes ({names})"
        )
    return found[0] if found else None


def read_shard_index(path: Path) -> ShardIndex:
    """Read and check an index: a JSON object whose ``weight_map`` maps tensor names to shard files
    of the same folder (plain file names, no path), each of them present."""
    try:
        if path.stat().st_size > MAX_INDEX:
            raise WeightsError(path, f"shard index over {MAX_INDEX >> 20} MiB")
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WeightsError(path, f"unreadable shard index: {e}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(
            path, "shard index needs a non-empty 'weight_map' object (tensor name -> shard file)"
        )
    _refuse_count(path, len(weight_map), MAX_MODEL_TENSORS, "sharded model")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard:
            raise WeightsError(
                path, f"tensor '{name}' maps to {shard!r}; a shard is a file name in the same folder"
            )
        if Path(shard).suffix.lower() not in (".safetensors", ".npz", *TORCH_SUFFIXES):
            raise WeightsError(path, f"tensor '{name}' maps to '{shard}', which is not a weight file")
    index = ShardIndex(path, weight_map)
    for file in index.files:
        if not file.is_file():
            raise WeightsError(path, f"shard '{file.name}' named by the index is missing")
    return index


class ShardedWeights(WeightFile):
    """A checkpoint split over several files (Hugging Face layout), read as one.

    Every shard is opened with its own reader, so the same checks apply to each;
    the index must match the shards exactly: each tensor lies in the shard the
    index names, and in no other.
    """

    def __init__(self, index: ShardIndex):
        super().__init__(index.path.parent)
        self.index = index
        self.shards: list[WeightFile] = []
        self._owner: dict[str, WeightFile] = {}
        try:
            for file in index.files:
                self.shards.append(open_weights(file))
            self._check()
        except BaseException:
            self.close()
            raise
        formats = sorted({s.format for s in self.shards})
        self.format = formats[0] if len(formats) == 1 else "+".join(formats)

    def _check(self) -> None:
        mapped = self.index.weight_map
        for shard in self.shards:
            for name, info in shard.tensors.items():
                if name in self._owner:
                    other = self._owner[name].path.name
                    raise WeightsError(
                        self.index.path, f"tensor '{name}' is in both '{other}' and '{shard.path.name}'"
                    )
                if mapped.get(name) != shard.path.name:
                    where = f"to '{mapped[name]}'" if name in mapped else "nowhere"
                    raise WeightsError(
                        self.index.path,
                        f"tensor '{name}' is in '{shard.path.name}' but the index maps it {where}",
                    )
                self._owner[name] = shard
                self.tensors[name] = info
        for name, shard_name in mapped.items():
            if name not in self._owner:
                raise WeightsError(
                    self.index.path, f"the index maps '{name}' to '{shard_name}', which does not hold it"
                )

    def raw(self, name: str) -> np.ndarray:
        return self._owner[name].raw(name)

    def offset(self, name: str) -> int | None:
        """The offset in the tensor's own shard, which :meth:`gather` reads from."""
        return self._owner[name].offset(name)

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        return self._owner[name].gather(name, flat)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()


def model_location(artifact: Path) -> Path:
    """What to read for a model artifact file: its folder when the file is an adapter's weights
    (next to ``adapter_config.json``) or a sharded checkpoint's index, else the file itself."""
    folder = artifact.parent
    if (folder / ADAPTER_CONFIG).is_file() or artifact.name.endswith(INDEX_SUFFIX):
        return folder
    return artifact


def open_model(path: Path | str) -> WeightFile:
    """A model's weights: one file (see :func:`open_weights`), a folder holding a sharded checkpoint,
    or an adapter folder (its weights file as stored: the LoRA tensors)."""
    path = Path(path)
    if path.is_dir():
        adapter = adapter_weights_file(path)
        if adapter is not None:
            return open_weights(adapter)
        index = find_shard_index(path)
        if index is None:
            raise WeightsError(
                path, f"a model folder needs a sharded checkpoint's *{INDEX_SUFFIX} or an {ADAPTER_CONFIG}"
            )
        return ShardedWeights(read_shard_index(index))
    return open_weights(path)


# ------------------------------------------------------------------- logical tensors


@dataclass(frozen=True)
class Logical:
    """A model tensor as it means: int8 values plus their scale count as one float tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: str | None = None  # the per-channel scale tensor of an int8 tensor

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def logical_tensors(wf: WeightFile) -> list[Logical]:
    """The file's tensors with each ``X`` int8 + ``X_scale`` float pair folded into one."""
    out = []
    scales = set()
    for name, info in wf.tensors.items():
        scale = wf.tensors.get(name + SCALE_SUFFIX)
        if info.dtype in ("int8", "uint8") and scale is not None and scale.dtype in PRECISION:
            if _scale_fits(info.shape, scale.shape):
                scales.add(scale.name)
                out.append(Logical(name, info.dtype, info.shape, scale.name))
                continue
            raise WeightsError(
                wf.path,
                f"tensor '{name}' {list(info.shape)} has scale '{scale.name}' of shape "
                f"{list(scale.shape)}; expected one scale per output channel [{info.shape[0]}]",
            )
        out.append(Logical(name, info.dtype, info.shape))
    return [t for t in out if t.name not in scales]


def _scale_fits(shape: tuple[int, ...], scale: tuple[int, ...]) -> bool:
    n = math.prod(scale)
    return n == 1 or (
        len(shape) >= 1 and n == shape[0] and (len(scale) == 1 or scale[1:] == (1,) * (len(scale) - 1))
    )


def dequantized(wf: WeightFile, t: Logical) -> np.ndarray:
    """The whole logical tensor as float32 (int8 times its per-channel scale)."""
    import numpy as np

    values = to_float32(wf.raw(t.name), t.dtype)
    if t.scale is None:
        return values
    scale = to_float32(wf.raw(t.scale), wf.tensors[t.scale].dtype).reshape(-1)
    if scale.size == 1 or values.ndim == 0:
        return values * scale.reshape(())
    return values * scale.reshape((-1,) + (1,) * (values.ndim - 1)).astype(np.float32)


def iter_float32(path: Path | str) -> Iterator[tuple[str, np.ndarray]]:
    """Each logical tensor of a model artifact as a float32 array, one at a time: a weight file, or a
    sharded checkpoint's index (its shards are read)."""
    with open_model(model_location(Path(path))) as wf:
        for t in logical_tensors(wf):
            yield t.name, dequantized(wf, t)


# -------------------------------------------------------------------------------- adapters


@dataclass(frozen=True)
class LoraPair:
    """One LoRA module: ``delta = scaling * B @ A`` is added to the base tensor ``target``."""

    target: str
    shape: tuple[int, ...]
    a: str
    b: str
    scaling: float


@dataclass
class Adapter:
    """A PEFT LoRA adapter folder: its weights file, config and module pairs."""

    folder: Path
    weights: Path
    config: dict[str, Any]
    pairs: list[LoraPair] = field(default_factory=list)

    @property
    def base(self) -> str | None:
        value = self.config.get("base_model_name_or_path")
        return str(value) if value else None

    @property
    def revision(self) -> str | None:
        value = self.config.get("revision")
        return str(value) if value else None


def adapter_weights_file(folder: Path) -> Path | None:
    """The adapter weights file in ``folder``, if the folder is a PEFT adapter."""
    if not (folder / ADAPTER_CONFIG).is_file():
        return None
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    return None


def is_adapter(path: Path) -> bool:
    """True for an adapter folder, or an adapter weights file next to its config."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (path.is_dir() or path.name in ADAPTER_WEIGHTS) and adapter_weights_file(folder) is not None


def read_adapter(path: Path | str, wf: WeightFile | None = None) -> Adapter:
    """Read a LoRA adapter folder (or its weights file) and pair each ``lora_A`` with its ``lora_B``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = adapter_weights_file(folder)
    if weights is None:
        raise WeightsError(folder, f"not an adapter folder: needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS[0]}")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WeightsError(folder / ADAPTER_CONFIG, f"unreadable adapter config: {e}") from None
    if not isinstance(config, dict):
        raise WeightsError(folder / ADAPTER_CONFIG, "adapter config is not a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise WeightsError(folder / ADAPTER_CONFIG, f"unsupported adapter type {peft_type!r} (only LORA)")
    r, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise WeightsError(
            folder / ADAPTER_CONFIG, f"adapter config needs a positive int r and lora_alpha (r={r!r})"
        )
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    adapter = Adapter(folder, weights, config)
    own = wf is None
    wf = open_weights(weights) if wf is None else wf
    try:
        adapter.pairs = _lora_pairs(wf, float(scaling), config)
    finally:
        if own:
            wf.close()
    return adapter


def _lora_pairs(wf: WeightFile, scaling: float, config: dict[str, Any]) -> list[LoraPair]:
    a_names: dict[str, str] = {}
    b_names: dict[str, str] = {}
    for name in wf.tensors:
        for marker, bucket in ((".lora_A.", a_names), (".lora_B.", b_names)):
            if marker in name:
                module = name.split(marker)[0]
                module = module.removeprefix(PEFT_PREFIX)
                bucket[module] = name
    if not a_names:
        raise WeightsError(wf.path, "adapter has no lora_A/lora_B tensors")
    pairs = []
    patterns = config.get("alpha_pattern") or {}
    rank_patterns = config.get("rank_pattern") or {}
    for module in sorted(a_names):
        if module not in b_names:
            raise WeightsError(wf.path, f"adapter module '{module}' has lora_A but no lora_B")
        a, b = wf.tensors[a_names[module]], wf.tensors[b_names[module]]
        if len(a.shape) < 2 or len(b.shape) < 2 or b.shape[1] != a.shape[0]:
            raise WeightsError(
                wf.path,
                f"adapter module '{module}': lora_B {list(b.shape)} and lora_A {list(a.shape)} "
                "do not multiply",
            )
        s = scaling
        short = module.rsplit(".", 1)[-1]
        if module in patterns or short in patterns:
            rank = rank_patterns.get(module, rank_patterns.get(short, a.shape[0]))
            s = float(patterns[module] if module in patterns else patterns[short]) / float(rank)
        shape = (b.shape[0], *a.shape[1:])
        pairs.append(LoraPair(module + ".weight", shape, a.name, b.name, s))
    extra = set(b_names) - set(a_names)
    if extra:
        raise WeightsError(wf.path, f"adapter module '{sorted(extra)[0]}' has lora_B but no lora_A")
    return pairs


def lora_delta(
    wf: WeightFile, pair: LoraPair, rows: np.ndarray | None = None, cols: np.ndarray | None = None
) -> np.ndarray:
    """``scaling * B @ A`` for one module, optionally only at ``rows`` x ``cols`` (flattened inner dims)."""
    a = to_float32(wf.raw(pair.a), wf.tensors[pair.a].dtype)
    b = to_float32(wf.raw(pair.b), wf.tensors[pair.b].dtype)
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    if rows is not None:
        b = b[rows]
    if cols is not None:
        a = a[:, cols]
    return (b.astype("float64") @ a.astype("float64") * pair.scaling).astype("float32")


# ------------------------------------------------------------- dense state dicts (for bench)


def dense_state_dict(path: Path | str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A weight file as a float32 torch state dict, ready for ``load_state_dict``.

    Int8 tensors are dequantised. When ``path`` is a LoRA adapter, ``base`` is
    its base model's dense state dict, and the result is that state dict with
    ``(lora_alpha / r) · B · A`` added to each targeted weight.
    """
    import numpy as np
    import torch

    if not is_adapter(Path(path)):
        return {name: torch.from_numpy(np.array(values)) for name, values in iter_float32(path)}
    if base is None:
        raise WeightsError(path, "a LoRA adapter needs its base model's weights")
    state = dict(base)
    adapter = read_adapter(path)
    with open_weights(adapter.weights) as wf:
        for pair in adapter.pairs:
            if pair.target not in state:
                raise WeightsError(path, f"the adapter targets '{pair.target}', which its base does not have")
            target = state[pair.target]
            delta = torch.from_numpy(lora_delta(wf, pair)).reshape(target.shape)
            state[pair.target] = target.float() + delta
    return state
