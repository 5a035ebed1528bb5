"""Parts of a hashed remote object, read by range requests pinned to the version that was hashed.

A remote safetensors file is fingerprinted and audited without a copy on disk: its header and the
sampled rows are read by range requests. Every request names the version whose bytes were hashed
(S3: ``IfMatch`` on the ETag and the version id; HTTP: ``If-Range`` on the stamp, and anything but
``206`` with exactly that range is refused), so the parts read are parts of the content the sha256
was computed over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lakegen.artifacts.remote.backends import (
    POOL_SIZE,
    Backend,
    Head,
    _describe,
    _Transient,
    _transport_errors,
)
from lakegen.artifacts.remote.settings import RemoteError, StorageSettings
from lakegen.artifacts.remote.targets import Target


class RangeSource:
    """A remote object whose every byte hashed to ``sha256``, read in parts."""

    def __init__(
        self,
        target: Target,
        head: Head,
        size: int,
        sha256: str,
        backend: Backend,
        settings: StorageSettings,
        count: Callable[[int], None],
    ):
        self.uri = target.uri
        self.target, self.head, self.backend, self.settings = target, head, backend, settings
        self.size, self.sha256 = size, sha256
        self._count = count
        self.requests = 0
        self.caught: Path | None = None  # what a tap kept of the pass that hashed it, if it did

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``[start, end)`` of ``ranges``, the requests sent side by side."""
        for start, end in ranges:
            if not 0 <= start <= end <= self.size:
                raise RemoteError(f"{self.uri}: bytes {start}-{end} lie outside its {self.size:,} bytes")
        todo = [(s, e) for s, e in ranges if e > s]
        if len(todo) <= 1:
            got = {r: self._one(*r) for r in todo}
        else:
            with ThreadPoolExecutor(max_workers=min(POOL_SIZE, len(todo))) as pool:
                got = dict(zip(todo, pool.map(lambda r: self._one(*r), todo), strict=True))
        return [got.get((s, e), b"") for s, e in ranges]

    def _one(self, start: int, end: int) -> bytes:
        retryable: tuple[type[BaseException], ...] = (_Transient, OSError, *_transport_errors())
        for attempt in range(self.settings.retries + 1):
            try:
                self.requests += 1
                data = self.backend.range(self.target, self.head, start, end)
                if len(data) != end - start:
                    raise _Transient(f"the server sent {len(data):,} of the {end - start:,} bytes asked for")
                self._count(len(data))
                return data
            except retryable as e:
                if attempt == self.settings.retries:
                    raise RemoteError(
                        f"could not read bytes {start:,}-{end - 1:,} of {self.uri}: {_describe(e)}"
                    ) from None
                time.sleep(min(0.5 * 2**attempt, 8.0))
        raise AssertionError("unreachable")
