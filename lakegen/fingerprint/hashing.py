"""The sha256 of a fingerprinted file, computed in a thread alongside the sampling."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from lakegen.weights import RangedSafetensors, SafetensorsFile

WINDOW = 8 << 20  # bytes hashed between page releases


class Hasher(threading.Thread):
    """Hash files (or memory maps of them) one after another in a thread; hashlib releases the GIL."""

    def __init__(self, sources: list[tuple[Path, SafetensorsFile | RangedSafetensors | None]]):
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
