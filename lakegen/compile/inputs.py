"""What a compiled lake was compiled from, and whether the working tree still holds it.

``lakegen search`` answers from ``.lakegen/lake.json``, the last compile; it must
not answer for another branch or an older state. The compile records a digest of
its inputs (lakegen's version, git HEAD, and every file it reads: everything
under ``catalog/`` — manifests, results, policies, owners, artifacts — plus the
artifacts and code folders its manifests name elsewhere in the lake) in the
index, and beside it, in ``.lakegen/lake.inputs.json``, each file's stat record
and sha256. Checking is then one stat per file; only a file whose stat changed
(a checkout rewrites files it leaves identical) is read again, and the index is
stale only when some content, HEAD or the version differs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen import fastjson
from lakegen.artifacts.digests import RACY_NS, Digests, default_cache_dir, stat_record
from lakegen.atomicfile import write_atomic
from lakegen.version import __version__

INPUTS_FILE = ".lakegen/lake.inputs.json"
FORMAT = 1
_SKIP_DIRS = {"__pycache__", ".git"}  # written by running code or git, never read by a compile
_TEXT = (".yaml", ".yml", ".json", ".jsonl", ".csv", ".toml")


def git_head(root: Path) -> str | None:
    """The commit HEAD names, or None outside a repository (or before its first commit)."""
    from lakegen.errors import LakeError
    from lakegen.gitrepo import git

    try:
        return git(root, "rev-parse", "--verify", "--quiet", "HEAD").decode().strip() or None
    except LakeError:
        return None


def lake_time(root: Path) -> str:
    """When the lake was as it is compiled: ``SOURCE_DATE_EPOCH`` when set, else HEAD's commit time
    (UTC), else now (outside git).

    Not the wall clock of the compile: every export and page that names it would then differ from
    the previous build's, so a one-manifest change could keep none of them, and two compiles of
    one commit would not give the same bytes.
    """
    from lakegen.errors import LakeError
    from lakegen.gitrepo import git

    seconds: float | None = None
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        seconds = int(epoch)
    else:
        try:
            stamp = git(root, "log", "-1", "--format=%ct", "HEAD").decode().strip()
            seconds = int(stamp) if stamp.isdigit() else None
        except LakeError:
            seconds = None
    when = dt.datetime.now(dt.UTC) if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)
    return when.isoformat(timespec="seconds")


@functools.cache
def code_digest() -> str:
    """sha256 of lakegen's own code: what a compile that starts from the previous one
    (:mod:`lakegen.compile.delta`) must share with it, beyond the version."""
    top = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    for file in sorted(top.rglob("*.py")):
        h.update(file.relative_to(top).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def _walk(root: Path, folder: str) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root / folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            yield f"{rel}/{name}"


@dataclass
class Inputs:
    """Every input of one compile: folders walked, single files, and per file [stat..., sha256]."""

    head: str | None
    folders: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    files: dict[str, list[Any]] = field(default_factory=dict)
    taken_ns: int = 0
    version: str = __version__
    recorded_digest: str = ""  # the digest as read back, checked once
    index: dict[str, Any] = field(default_factory=dict)  # the saved index's options and generated_at
    _digest: str = field(default="", repr=False, compare=False)  # computed once per add()

    @classmethod
    def take(
        cls, root: Path, folders: Iterable[str], extra: Iterable[str] = (), digests: Digests | None = None
    ) -> Inputs:
        """Stat and hash every file under ``folders`` (paths relative to ``root``) and ``extra``
        (through ``digests``: :class:`Recorded` to trust an earlier record)."""
        out = cls(git_head(root), taken_ns=time.time_ns())
        out.add(root, folders, extra, digests)
        return out

    def add(
        self, root: Path, folders: Iterable[str], extra: Iterable[str] = (), digests: Digests | None = None
    ) -> None:
        digests = digests if digests is not None else Digests(default_cache_dir(root))
        self._digest = ""
        new_folders = [f for f in folders if f not in self.folders and (root / f).is_dir()]
        new_extra = [f for f in extra if f not in self.extra]
        self.folders += new_folders
        self.extra += new_extra
        top = os.path.join(os.path.abspath(root), "")  # as Recorded keys its records
        for rel in [*(p for f in new_folders for p in _walk(root, f)), *new_extra]:
            if rel in self.files:
                continue
            # strings and one stat a file: this runs for every file of the lake, twice a compile
            full = top + rel
            try:
                record = stat_record(os.stat(full))
                sha = digests.trusted(full, record) if isinstance(digests, Recorded) else None
                self.files[rel] = [*record, sha if sha is not None else digests.sha256(Path(full))]
            except OSError:
                self.files[rel] = []  # a named file that is missing: its appearing makes the index stale

    @property
    def digest(self) -> str:
        """sha256 over lakegen's version, HEAD and every input file's path and content."""
        if not self._digest:  # a compile asks for it several times; 20,000 rows at 10,000 models
            rows = sorted((path, record[-1] if record else None) for path, record in self.files.items())
            self._digest = hashlib.sha256(fastjson.compact([self.version, self.head, rows])).hexdigest()
        return self._digest

    def changed(self, root: Path) -> str | None:
        """Why the working tree no longer holds these inputs, in a few words; None when it does."""
        if self.version != __version__:
            return f"compiled by lakegen {self.version}"
        if self.index.get("code") != code_digest():  # a development build shares the version
            return "compiled by other lakegen code"
        head = git_head(root)
        if head != self.head:
            return "git HEAD moved (another branch or commit)"
        # the recorded files first: an edited one ends the check before the folders are walked
        # for files added (at 100,000 models, a walk of 200,000 names)
        why = self._changed_file(root)
        if why is not None:
            return why
        now = set(self.extra)
        for folder in self.folders:
            now.update(_walk(root, folder))
        added = sorted(now - self.files.keys())
        return f"{added[0]} added" if added else None

    def _changed_file(self, root: Path) -> str | None:
        """Why a recorded file is no longer as recorded (changed, removed, or there now), or None."""
        digests = Digests(default_cache_dir(root))
        top = str(root)
        named = set(self.extra)
        # the text files (manifests, results, policies) first: they are what an edit changes, and
        # an artifact folder holds as many files as the lake has models, walked before them in order
        files = self.files.items()
        text = [item for item in files if item[0].endswith(_TEXT)]
        for rel, record in itertools.chain(text, (item for item in files if not item[0].endswith(_TEXT))):
            try:
                st = os.stat(os.path.join(top, rel))  # strings: pathlib cost as much as the stat itself
            except OSError:
                if record or rel not in named:  # a named file may be missing; a walked one was there
                    return f"{rel} removed"
                continue
            if not record:
                return f"{rel} added"
            # a file modified within a timestamp tick of the snapshot may have changed unseen
            settled = self.taken_ns - record[1] >= RACY_NS
            if settled and stat_record(st) == record[:-1]:
                continue
            try:
                if digests.sha256(root / rel) != record[-1]:
                    return f"{rel} changed"
            except OSError:
                return f"{rel} unreadable"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "digest": self.digest,
            "version": self.version,
            "head": self.head,
            "taken_ns": self.taken_ns,
            "folders": self.folders,
            "extra": self.extra,
            "files": self.files,
            "index": self.index,
        }

    @classmethod
    def from_json(cls, data: Any) -> Inputs | None:
        """The inputs recorded in ``data``; None when it is not a record of this format."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        try:
            out = cls(
                head=data["head"],
                folders=list(data["folders"]),
                extra=list(data["extra"]),
                files={str(k): list(v) for k, v in data["files"].items()},
                taken_ns=int(data["taken_ns"]),
                version=str(data["version"]),
                index=dict(data.get("index") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        out.recorded_digest = out.digest
        return out if out.recorded_digest == data.get("digest") else None


class Recorded(Digests):
    """:class:`Digests` that trust the sha256 an :class:`Inputs` record holds for a file whose stat
    record is the one recorded, and was settled when recorded (the test :meth:`Inputs.changed`
    makes). Without it every file under ``MEMO_FROM`` bytes is read again: at 10,000 models, each
    compile read the 20,000 manifests and small artifacts three times (about 3 s)."""

    def __init__(self, root: Path, *records: Inputs | None):
        super().__init__(default_cache_dir(root))
        top = os.path.join(os.path.abspath(root), "")  # joined as strings: 20,000 files a record
        self._known: dict[str, list[Any]] = {}
        for known in records:
            for rel, record in (known.files if known is not None else {}).items():
                if record and known is not None and known.taken_ns - record[1] >= RACY_NS:
                    self._known[top + rel] = record

    def trusted(self, full: str, record: list[int]) -> str | None:
        """The sha256 recorded for the file at absolute path ``full`` whose stat record is now
        ``record``, when it is the recorded one; else None."""
        known = self._known.get(full)
        return str(known[-1]) if known is not None and known[:-1] == record else None

    def sha256(self, file: Path) -> str:
        found = self._recorded(file)
        return found if found is not None else super().sha256(file)

    def known(self, file: Path) -> str | None:
        # the fingerprint cache asks this of every artifact: the record answers without reading a
        # memo file each (10,000 small reads, most of a PR check's first attribution at 10,000)
        found = self._recorded(file)
        return found if found is not None else super().known(file)

    def _recorded(self, file: Path) -> str | None:
        try:
            return self.trusted(os.path.abspath(file), stat_record(os.stat(file)))
        except OSError:
            return None


_TAKEN: dict[tuple[str, str], Inputs] = {}


def remember(root: Path, inputs: Inputs) -> None:
    """Keep the snapshot a compile of ``root`` took, for :func:`trusted` when that compile is saved."""
    _TAKEN.clear()  # one compile's worth: a process compiles one lake at a time
    _TAKEN[(os.path.abspath(root), inputs.digest)] = inputs


def trusted(root: Path, digest: str) -> Recorded:
    """Digests to re-check the inputs of the compile of ``digest`` with: that compile's own
    snapshot when this process took it (no need to read the record on disk again), else the record."""
    taken = _TAKEN.get((os.path.abspath(root), digest))
    return Recorded(root, taken if taken is not None else recorded(root))


def write(root: Path, inputs: Inputs) -> None:
    """Record ``inputs`` beside the saved index; :func:`recorded` gives them back unread while the
    file is this one (a build reads the record again once the compile saved it: 1 s at 100,000)."""
    path = os.path.abspath(root / INPUTS_FILE)
    write_atomic(Path(path), fastjson.compact(inputs.to_json()))
    inputs.recorded_digest = inputs.digest
    _READ.clear()
    with contextlib.suppress(OSError):
        _READ[path] = (_version(os.stat(path)), inputs)


def recorded_digest(root: Path) -> str:
    """The digest the inputs record beside the saved index holds; "" when there is none."""
    try:
        data = fastjson.loads((root / INPUTS_FILE).read_bytes())
    except (OSError, ValueError):
        return ""
    digest = data.get("digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else ""


_READ: dict[str, tuple[tuple[int, ...], Inputs | None]] = {}


def recorded(root: Path) -> Inputs | None:
    """The inputs recorded beside the saved index; None when there is no readable record.

    Read once per version of the file (it is replaced whole, never written in place): a build asks
    for it to tell a no-op, then again to compile (3 MB of JSON at 10,000 models)."""
    path = os.path.abspath(root / INPUTS_FILE)
    try:
        version = _version(os.stat(path))
        kept = _READ.get(path)
        if kept is not None and kept[0] == version:
            return kept[1]
        found = Inputs.from_json(fastjson.loads(Path(path).read_bytes()))
    except (OSError, ValueError):
        return None
    _READ.clear()
    _READ[path] = (version, found)
    return found


def _version(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stale(root: Path, digest: str) -> str | None:
    """Why an index of inputs ``digest`` no longer matches the lake at ``root``; None when it does."""
    found = recorded(root)
    if found is None or not digest or found.recorded_digest != digest:
        return "no record of what it was compiled from"
    return found.changed(root)
