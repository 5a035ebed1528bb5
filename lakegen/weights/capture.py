"""What a fingerprint reads of a safetensors file, caught from the stream that hashes it.

Validation streams a remote file once, for its sha256. :class:`Capture` sees the
same chunks: it parses the header from the first bytes, then keeps the entries at
every tensor's sample coordinates (:mod:`.coordinates`) and small tensors whole
(int8 scales, biases, a quantisation state), nothing else, and saves them as a
small ``.npz`` once the whole file hashed to its pin. :class:`CaughtSource`
answers reads from it, and sends a range request for anything it does not hold
(an audit's coordinates, drawn from the sha256; a library's quantised weights).
:class:`RemoteViewReader` opens a remote file's view so, for the weight registry.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.atomicfile import write_atomic
from lakegen.weights.base import STORAGE, WeightFile, WeightsError
from lakegen.weights.coordinates import coordinates
from lakegen.weights.safetensors import MAX_HEADER, RangedSafetensors, RangeSource, read_safetensors_header

if TYPE_CHECKING:
    import numpy as np

WHOLE = 1 << 18  # tensors up to this many bytes are kept whole
WHOLE_BUDGET = 64 << 20  # bytes kept whole at most; larger files read the rest by range requests
MAX_ENTRIES = 8 << 20  # sampled entries kept at most (4,096 per matrix: 2,048 matrices)


class Capture:
    """Catches a fingerprint's reads from the chunks of a ``size``-byte safetensors file, in order.

    A header that is not sound stops the capture, never the hashing: the readers report it later.
    """

    def __init__(self, size: int):
        self.size = size
        self.restart()

    def restart(self) -> None:
        """Forget every chunk so far: the transfer starts again from byte 0."""
        import numpy as np

        self.pos = 0
        self.error: str | None = None
        self.header = b""
        self._head = bytearray()
        self._tail = b""
        self._width = 1
        self._offsets = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)
        self._values = np.zeros((0, 1), np.uint8)
        self._next = 0
        self._regions: list[tuple[int, bytearray]] = []
        self._region = 0

    def feed(self, chunk: bytes) -> None:
        start, self.pos = self.pos, self.pos + len(chunk)
        if self.error is not None:
            return
        try:
            if self.header:
                self._take(start, chunk)
                return
            self._head += chunk
            if len(self._head) < 8:
                return
            (length,) = struct.unpack("<Q", self._head[:8])
            if length <= MAX_HEADER and len(self._head) < 8 + length <= self.size:
                return
            self._plan(bytes(self._head[: 8 + length]) if length <= MAX_HEADER else bytes(self._head))
            head, self._head = bytes(self._head), bytearray()
            self._take(0, head)
        except (WeightsError, ValueError, MemoryError) as e:
            self.error = str(e)

    def _plan(self, head: bytes) -> None:
        import numpy as np

        infos, spans = read_safetensors_header(Path("stream"), head, self.size)
        self.header = head
        offsets, whole, entries = [], 0, 0
        for name in sorted(infos, key=lambda n: spans[n].start):
            info, span = infos[name], spans[name]
            if span.end == span.start:
                continue
            if span.end - span.start <= WHOLE and whole + span.end - span.start <= WHOLE_BUDGET:
                self._regions.append((span.start, bytearray(span.end - span.start)))
                whole += span.end - span.start
                continue
            if info.dtype == "bool" or entries > MAX_ENTRIES:
                continue
            size = np.dtype(STORAGE.get(info.dtype, info.dtype)).itemsize
            rows, cols = coordinates(name, info.shape)
            inner = math.prod(info.shape) // info.shape[0] if cols is not None else 1
            flat = (rows[:, None] * inner + cols[None, :]).reshape(-1) if cols is not None else rows
            offsets.append((span.start + flat.astype(np.int64) * size, size))
            entries += len(flat)
            self._width = max(self._width, size)
        if offsets:
            self._offsets = np.concatenate([o for o, _ in offsets])
            self._ends = np.concatenate([o + size for o, size in offsets])
        self._values = np.zeros((len(self._offsets), self._width), np.uint8)

    def _take(self, start: int, chunk: bytes) -> None:
        import numpy as np

        end = start + len(chunk)
        last = int(np.searchsorted(self._ends, end, side="right"))
        if last > self._next:
            offsets = self._offsets[self._next : last]
            before = int(np.searchsorted(offsets, start))  # entries that began in the last chunk
            for i, (data, base) in enumerate(
                [(self._tail + chunk[: self._width], start - len(self._tail)), (chunk, start)]
            ):
                part = offsets[:before] if i == 0 else offsets[before:]
                if part.size:
                    local = (part - base)[:, None] + np.arange(self._width)
                    np.minimum(local, len(data) - 1, out=local)  # past a narrow entry: never returned
                    at = self._next + (0 if i == 0 else before)
                    self._values[at : at + part.size] = np.frombuffer(data, np.uint8)[local]
            self._next = last
        while self._region < len(self._regions):
            at, buf = self._regions[self._region]
            lo, hi = max(at, start), min(at + len(buf), end)
            if lo < hi:
                buf[lo - at : hi - at] = chunk[lo - start : hi - start]
            if at + len(buf) > end:
                break
            self._region += 1
        self._tail = (
            (self._tail + chunk)[-self._width :] if len(chunk) < self._width else chunk[-self._width :]
        )

    def save(self, path: Path) -> None:
        """Write what was caught to ``path`` (nothing unless the whole file went by, soundly)."""
        import numpy as np

        if self.error is not None or not self.header or self.pos != self.size:
            return
        regions = [(0, bytearray(self.header)), *self._regions]
        out = io.BytesIO()
        np.savez(
            out,
            offsets=self._offsets,
            values=self._values,
            starts=np.array([at for at, _ in regions], np.int64),
            lengths=np.array([len(buf) for _, buf in regions], np.int64),
            data=np.frombuffer(b"".join(bytes(buf) for _, buf in regions), np.uint8),
        )
        write_atomic(path, out.getvalue())


class CaughtSource:
    """A remote file's reads answered from what :class:`Capture` kept, the rest by ``inner``."""

    def __init__(self, inner: RangeSource, path: Path):
        import numpy as np

        with np.load(path, allow_pickle=False) as saved:
            arrays: dict[str, Any] = {k: saved[k] for k in ("offsets", "values", "starts", "lengths", "data")}
        self.inner, self.size, self.sha256 = inner, inner.size, inner.sha256
        self._offsets, self._values = arrays["offsets"], arrays["values"]
        self._starts, self._lengths = arrays["starts"], arrays["lengths"]
        self._at = np.concatenate([[0], np.cumsum(self._lengths)])
        self._data = arrays["data"].tobytes()
        sound = (
            self._offsets.ndim == 1
            and self._values.ndim == 2
            and len(self._values) == len(self._offsets)
            and self._starts.shape == self._lengths.shape
            and int(self._at[-1]) == len(self._data)
            and bool(np.all(np.diff(self._offsets) > 0))
            and bool(np.all(np.diff(self._starts) > 0))
        )
        if not sound:  # not one Capture.save wrote
            raise ValueError(f"{path}: not a capture")

    def _held(self, start: int, end: int) -> bytes | None:
        import numpy as np

        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        if k < 0 or end > self._starts[k] + self._lengths[k]:
            return None
        lo = int(self._at[k] + start - self._starts[k])
        return self._data[lo : lo + end - start]

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        held = [self._held(s, e) for s, e in ranges]
        missing = [r for r, h in zip(ranges, held, strict=True) if h is None]
        fetched = iter(self.inner.read(missing) if missing else [])
        return [h if h is not None else next(fetched) for h in held]

    def elements(self, offsets: np.ndarray, size: int) -> np.ndarray | None:
        """The ``size`` bytes at each of the sorted byte ``offsets``, if all were caught."""
        import numpy as np

        whole = self._held(int(offsets[0]), int(offsets[-1]) + size)
        if whole is not None:
            local = (offsets - offsets[0])[:, None] + np.arange(size)
            return np.frombuffer(whole, np.uint8)[local].reshape(-1)
        if size > self._values.shape[1]:
            return None
        idx = np.searchsorted(self._offsets, offsets)
        if idx.size and (idx[-1] >= len(self._offsets) or not np.array_equal(self._offsets[idx], offsets)):
            return None
        return np.ascontiguousarray(self._values[idx, :size]).reshape(-1)


class RemoteViewReader:
    """A view of a remote safetensors file (made in the lake's cache by
    :func:`lakegen.artifacts.remote.readable_weights`, named as the file), read by range requests
    and from what the pass that hashed it caught. Known by its first bytes, which no safetensors
    file can start with (they would give its header an implausible length)."""

    name = "remote safetensors"
    suffixes: tuple[str, ...] = ()

    def detect(self, path: Path, head: bytes) -> bool:
        from lakegen.artifacts.viewmagic import VIEW_MAGIC

        return head.startswith(VIEW_MAGIC)

    def open(self, path: Path) -> WeightFile:
        from lakegen.artifacts import remote

        try:
            source: RangeSource = remote.open_view(path)
        except remote.RemoteError as e:
            raise WeightsError(path, str(e)) from None
        caught = getattr(source, "caught", None)
        if caught is not None and caught.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                # not a capture Capture.save wrote: everything is read by range requests instead
                source = CaughtSource(source, caught)
        return RangedSafetensors(path, source)


REMOTE_READER = RemoteViewReader()
