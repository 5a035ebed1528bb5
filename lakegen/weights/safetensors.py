"""safetensors: the header checked strictly (sizes, offsets, overlaps), the data memory-mapped, or
read by range requests from a remote object (:class:`RangedSafetensors`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import mmap
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lakegen.artifacts.layout import no_duplicates
from lakegen.weights.base import (
    SAFETENSORS_DTYPES,
    STORAGE,
    TensorInfo,
    WeightFile,
    WeightsError,
    refuse_count,
    refuse_name,
)

if TYPE_CHECKING:
    import numpy as np

MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
# Requests cost a round trip each, bytes little: sampled entries closer than this are read together.
RANGE_GAP = 1 << 16


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
    refuse_count(path, head.count(b'"data_offsets"', 8, 8 + length))
    try:
        header = json.loads(head[8 : 8 + length].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsError(path, f"corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "corrupt safetensors header: not a JSON object")
    refuse_count(path, len(header) - ("__metadata__" in header))
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


def _safetensors_entry(path: Path, name: str, entry: Any, data_size: int) -> tuple[TensorInfo, Span]:
    refuse_name(path, name, entry.get("shape") if isinstance(entry, dict) else ())
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
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
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


class RangeSource(Protocol):
    """A file's bytes read in parts (:class:`lakegen.artifacts.remote.RangeSource`); every byte of it
    hashed to ``sha256``."""

    size: int
    sha256: str

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]: ...


class RangedSafetensors(WeightFile):
    """A safetensors file read in parts: the header, then only what is asked for, by range requests.

    Values are the bytes a local copy holds at the same offsets, so a fingerprint or an audit of
    it equals one of the local copy. ``sha256`` is known without reading the file again.
    """

    format = "safetensors"
    map = None

    def __init__(self, path: Path, source: RangeSource):
        super().__init__(path)
        self.source, self.size, self.sha256 = source, source.size, source.sha256
        head = self._read([(0, min(self.size, 8))])[0]
        if len(head) == 8:
            (length,) = struct.unpack("<Q", head)
            if 8 + length <= self.size and length <= MAX_HEADER:
                head += self._read([(8, 8 + length)])[0]
        self.tensors, self.spans = read_safetensors_header(path, head, self.size)

    def raw(self, name: str) -> np.ndarray:
        import numpy as np

        info, span = self.tensors[name], self.spans[name]
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        if info.numel == 0:
            return np.zeros(info.shape, dtype=storage)
        data = self._read([(span.start, span.end)])[0]
        return np.frombuffer(data, dtype=storage, count=info.numel).reshape(info.shape)

    def offset(self, name: str) -> int | None:
        return self.spans[name].start

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        import numpy as np

        info = self.tensors[name]
        storage = np.dtype(STORAGE.get(info.dtype, info.dtype)).newbyteorder("<")
        size = storage.itemsize
        offsets = self.spans[name].start + np.asarray(flat, dtype=np.int64) * size
        if offsets.size == 0:
            return np.zeros(0, dtype=storage)
        caught = getattr(self.source, "elements", None)  # a capture of the stream that hashed the file
        held = caught(offsets, size) if caught is not None else None
        if held is not None:
            return held.view(storage)
        cuts = np.flatnonzero(np.diff(offsets) > RANGE_GAP) + 1
        firsts, lasts = np.split(offsets, cuts), [run[-1] + size for run in np.split(offsets, cuts)]
        runs = [(int(run[0]), int(last)) for run, last in zip(firsts, lasts, strict=True)]
        out = np.empty(len(offsets) * size, dtype=np.uint8)
        at = 0
        for run, (lo, _), data in zip(firsts, runs, self._read(runs), strict=True):
            local = (run - lo)[:, None] + np.arange(size)
            out[at : at + run.size * size] = np.frombuffer(data, dtype=np.uint8)[local].reshape(-1)
            at += run.size * size
        return out.view(storage)

    def _read(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        from lakegen.artifacts.remote import RemoteError

        try:
            return self.source.read(ranges)
        except RemoteError as e:
            raise WeightsError(self.path, str(e)) from None


class SafetensorsReader:
    """Files named ``*.safetensors``."""

    name = "safetensors"
    suffixes: tuple[str, ...] = (".safetensors",)

    def detect(self, path: Path, head: bytes) -> bool:
        return path.suffix.lower() in self.suffixes

    def open(self, path: Path) -> WeightFile:
        return SafetensorsFile(path)


READER = SafetensorsReader()
