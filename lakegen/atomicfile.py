"""Write a file so that readers see the old content or the new, never half of it; tell which files
a large folder holds without a stat call each."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 22  # characters of a text encoded at a time


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``. A text is
    encoded a chunk at a time: a lake's caches are JSON texts of hundreds of MB at 100,000 models,
    and their bytes whole beside them would double what the write holds."""
    with writing(path) as f:
        if isinstance(data, str):
            for start in range(0, len(data), CHUNK):
                f.write(data[start : start + CHUNK].encode("utf-8"))
        else:
            f.write(data)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s new content into, renamed over ``path`` when the block ends
    without an error: what :func:`write_atomic` does for content written a part at a time, so a
    file of hundreds of megabytes never sits in memory whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Listing:
    """Whether files exist under ``top``, each folder read once (one ``scandir`` rather than one
    stat a file: a rebuild of 100,000 models asks it of a few hundred thousand files in a handful
    of folders)."""

    def __init__(self, top: Path | str):
        self.top = str(top)
        self._folders: dict[str, frozenset[str]] = {}
        self._dirs: dict[str, frozenset[str]] = {}

    def is_file(self, rel: str) -> bool:
        """Whether ``rel`` (a ``/``-separated path under ``top``) is a regular file, or a link to one."""
        return self._listed(rel, self._folders, dirs=False)

    def is_dir(self, rel: str) -> bool:
        """Whether ``rel`` (a ``/``-separated path under ``top``) is a folder, or a link to one."""
        return self._listed(rel, self._dirs, dirs=True)

    def _listed(self, rel: str, read: dict[str, frozenset[str]], dirs: bool) -> bool:
        folder, _, name = rel.rpartition("/")
        found = read.get(folder)
        if found is None:
            found = read[folder] = self._read(f"{self.top}/{folder}" if folder else self.top, dirs)
        return name in found

    @staticmethod
    def _read(folder: str, dirs: bool = False) -> frozenset[str]:
        try:
            with os.scandir(folder) as entries:  # both follow links, as isfile and isdir
                return frozenset(e.name for e in entries if (e.is_dir() if dirs else e.is_file()))
        except OSError:
            return frozenset()
