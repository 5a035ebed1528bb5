"""The sha256 of a fingerprinted file, computed in a thread alongside the sampling."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from lakegen.weights import RangedSafetensors, SafetensorsFile

WINDOW = 8 << 20  # bytes hashed between page releases
# Below this many bytes in all, the files are hashed in the caller's thread after sampling: a
# thread's start and its turns at the GIL cost more than the overlap saves (at 10,000 files of
# 1 KiB, 1.5 ms a file of a cold build's 3 ms, most of it waiting for the thread's first turn).
THREAD_FROM = 1 << 20


class Hasher(threading.Thread):
    """Hash files (or memory maps of them) one after another in a thread; hashlib releases the GIL."""

    def __init__(self, sources: list[tuple[Path, SafetensorsFile | RangedSafetensors | None]]):
        super().__init__(daemon=True)
        self.sources = sources
        self.digests: list[str] = []
        self.sizes: list[int] = []
        self.error: BaseException | None = None

    def small(self) -> bool:
        """Whether the files are too small to be worth a thread (see :data:`THREAD_FROM`)."""
        total = 0
        for path, source in self.sources:
            if isinstance(source, RangedSafetensors):
                continue  # nothing is read: its sha256 is known
            try:
                total += source.size if isinstance(source, SafetensorsFile) else path.stat().st_size
            except OSError:
                return False  # the thread reports it, as for any file it cannot read
            if total >= THREAD_FROM:
                return False
        return True

    def run(self) -> None:
        try:
            for path, source in self.sources:
                digest, size = self._hash(path, source)
                self.digests.append(digest)
                self.sizes.append(size)
        except BaseException as e:  # re-raised in the caller's thread
            self.error = e

    @staticmethod
    def _hash(path: Path, source: SafetensorsFile | RangedSafetensors | None) -> tuple[str, int]:
        if isinstance(source, RangedSafetensors):  # a remote file, hashed whole as it was verified
            return source.sha256, source.size
        h = hashlib.sha256()
        if isinstance(source, SafetensorsFile) and source.map is not None:
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
