"""File digests, and a memo of them keyed by each file's stat record.

Checking a manifest's sha256 reads its artifact whole; a lake of large weight
files cannot afford that on every build. Like git's index, the memo keeps, per
path, the stat record (size, modification and change times in nanoseconds,
inode) seen when the file was hashed, and trusts the recorded sha256 only while
all of them are unchanged. The change time cannot be set back from user space,
so rewriting a file and restoring its modification time still misses the memo.
A fresh clone (CI) has no memo and hashes everything. The fingerprint cache
keeps its per-path records in the same place, so a file hashed by validation is
known to attribution too, and the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from lakegen.atomicfile import write_atomic

CACHE_ENV = "LAKEGEN_CACHE"
MEMO_DIR = "paths"  # under a cache folder: the per-path records
MEMO_FROM = 1 << 20  # smaller files are hashed directly: reading them costs about what a record does
RACY_NS = 2_000_000_000  # a file modified this recently may change again within its mtime's tick


def default_cache_dir(root: Path | None) -> Path:
    """``$LAKEGEN_CACHE``, else ``<lake root>/.lakegen/cache``, else ``~/.cache/lakegen``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    if root is not None:
        return root / ".lakegen" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lakegen"


def sha256_file(path: Path) -> str:
    """Streamed sha256 of a file (fixed memory, any size)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stat_record(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Digests:
    """sha256 of files, remembered per path and stat record in a cache folder's ``paths/``."""

    def __init__(self, cache_folder: Path | str):
        self.folder = Path(cache_folder) / MEMO_DIR

    def _memo_path(self, file: Path) -> Path:
        name = hashlib.sha256(str(file.resolve()).encode()).hexdigest()
        return self.folder / name[:2] / f"{name}.json"

    def known(self, file: Path) -> str | None:
        """The sha256 recorded for ``file``, if the file has not changed since."""
        try:
            memo = json.loads(self._memo_path(file).read_text())
            st = file.stat()
        except (OSError, ValueError):
            return None
        if not isinstance(memo, dict) or memo.get("stat") != stat_record(st):
            return None
        digest = memo.get("sha256")
        return digest if isinstance(digest, str) else None

    def remember(self, file: Path, sha256: str, before: os.stat_result) -> None:
        """Record ``sha256`` for ``file`` as hashed when its stat was ``before``.

        Skipped when the file changed while being read, or was modified so recently
        that a second write in the same timestamp tick could go unseen (git's "racy"
        files): the next read records it. A memo that cannot be written (a read-only
        cache) only costs speed.
        """
        try:
            changed = stat_record(file.stat()) != stat_record(before)
            if changed or time.time_ns() - before.st_mtime_ns < RACY_NS:
                return
            memo = {"path": str(file.resolve()), "stat": stat_record(before), "sha256": sha256}
            write_atomic(self._memo_path(file), json.dumps(memo).encode())
        except OSError:
            pass

    def sha256(self, file: Path) -> str:
        """The file's sha256: remembered when unchanged, else read (and remembered).

        Files under ``MEMO_FROM`` bytes are always read: on a lake of 9,900 4 KiB
        artifacts, hashing them and reading their records both took about 1.2 s,
        and writing the records on the first run cost more.
        """
        before = file.stat()
        if before.st_size < MEMO_FROM:
            return sha256_file(file)
        known = self.known(file)
        if known is not None:
            return known
        digest = sha256_file(file)
        self.remember(file, digest, before)
        return digest
