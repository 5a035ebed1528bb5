"""The compiled lake on disk: ``.lakegen/lake.json``, written atomically, and read back only while
it still matches the working tree it was compiled from (see :mod:`lakegen.compile.inputs`)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakegen import fastjson
from lakegen.atomicfile import write_atomic, writing
from lakegen.compile import inputs
from lakegen.compile.inputs import Inputs
from lakegen.executor import forked
from lakegen.model.index import LakeIndex, index_from_json, index_pieces, manifest_spans

INDEX_FILE = ".lakegen/lake.json"
SPANS_FILE = ".lakegen/lake.spans.json"
"""Where ``lake.json``'s manifests are (written with it, for that very file: its inode, size and
modification time), so that reading it back cuts them out rather than parsing and dumping them."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_atomic(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def save(index: LakeIndex, root: Path) -> Path:
    """Write ``index`` to ``.lakegen/lake.json``, and beside it the stat records of its inputs when
    the working tree still holds what it was compiled from (else the next reader compiles again)."""
    settle(root)  # a save begun aside must not land after this one
    _note(root, _save(index, root))
    return root / INDEX_FILE


_SAVING: dict[str, forked.Pending[_Written | None]] = {}
_WRITTEN: dict[str, _Written] = {}


@dataclass(frozen=True)
class _Written:
    """What a save of this process left: ``lake.json`` (its inode, size and modification time)
    holding the index of these inputs, with the inputs record beside it."""

    file: tuple[int, int, int]
    digest: str
    options: Any
    generated_at: str


def save_aside(index: LakeIndex, root: Path) -> None:
    """:func:`save`, begun in a fork so that this process goes on meanwhile (a build's site: at
    100,000 models the save is 3.5 s of a one-change rebuild, and the other core was idle then).
    :func:`settle` waits for it; :func:`saved_as` and :func:`save` settle first. Where no fork can
    be made, or the fork fails, the save is done here when settled."""
    settle(root)
    _note(root, None)  # what an earlier save left is about to be replaced
    _SAVING[os.path.abspath(root)] = forked.start(functools.partial(_save, index, root))


def settle(root: Path) -> None:
    """Wait for the save :func:`save_aside` began for ``root``, if any (raising what it raised)."""
    pending = _SAVING.pop(os.path.abspath(root), None)
    if pending is not None:
        _note(root, pending.result())


def _note(root: Path, written: _Written | None) -> None:
    """Keep what this process's last save of ``root`` wrote, for :func:`saved_as` (None: nothing)."""
    if written is None:
        _WRITTEN.pop(os.path.abspath(root), None)
    else:
        _WRITTEN[os.path.abspath(root)] = written


def _save(index: LakeIndex, root: Path) -> _Written | None:
    """:func:`save`, in this process or a fork (so it keeps no state here); what it wrote when it
    recorded the inputs too (the index is current)."""
    path = root / INDEX_FILE
    # serialised by pydantic itself, as bytes: a tenth of the time of model_dump and json.dumps
    pieces = index_pieces(index)
    _spans_path(path).unlink(missing_ok=True)
    with writing(path) as f:
        for piece in pieces:
            f.write(piece)
    _write_spans(path, manifest_spans(pieces))
    del pieces
    # what the compile read was recorded in the index only by digest: the previous record's hashes
    # are trusted for files whose stat is unchanged, as a staleness check would
    trust = inputs.trusted(root, index.inputs.digest)
    now = Inputs.take(root, index.inputs.folders, index.inputs.files, trust)
    now.index = {
        "options": index.inputs.options,
        "generated_at": index.generated_at,
        "code": inputs.code_digest(),
    }
    if index.inputs.digest and now.digest == index.inputs.digest:
        inputs.write(root, now)
        st = path.stat()
        return _Written(
            (st.st_ino, st.st_size, st.st_mtime_ns),
            index.inputs.digest,
            index.inputs.options,
            index.generated_at,
        )
    (root / inputs.INPUTS_FILE).unlink(missing_ok=True)
    return None


def load_index(path: Path) -> LakeIndex:
    """The index in ``path``; its manifests cut out as they were written where the record beside it
    says where they are (:func:`lakegen.model.index.index_from_json`)."""
    with path.open("rb") as f:
        data = f.read()
        st = os.fstat(f.fileno())
    return index_from_json(data, _spans(path, st))


def _spans_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name.removesuffix(".json") + ".spans.json")


def _write_spans(path: Path, spans: list[int]) -> None:
    st = path.stat()
    record = {"file": [st.st_ino, st.st_size, st.st_mtime_ns], "spans": spans}
    write_atomic(_spans_path(path), fastjson.compact(record))


def _spans(path: Path, st: os.stat_result) -> list[int] | None:
    """Where the manifests are in ``path`` (stat ``st``), when its writer's record is of that file."""
    try:
        record = fastjson.loads(_spans_path(path).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("file") != [st.st_ino, st.st_size, st.st_mtime_ns]:
        return None
    spans = record.get("spans")
    return spans if isinstance(spans, list) and all(type(s) is int for s in spans) else None


def load_current(root: Path) -> tuple[LakeIndex | None, str]:
    """The saved index of the lake at ``root`` when it still matches the working tree; else None and
    why not (none yet, unreadable, or what changed since it was compiled), as a sentence."""
    path = root / INDEX_FILE
    if not path.is_file():
        return None, f"no {INDEX_FILE} yet"
    # the inputs first: reading a large index only to find it stale would cost as much as the check
    digest = inputs.recorded_digest(root)
    why = inputs.stale(root, digest) if digest else None
    if why is not None:
        return None, f"{INDEX_FILE} is out of date ({why})"
    try:
        index = load_index(path)
    except (OSError, ValueError):
        return None, f"{INDEX_FILE} cannot be read"
    if not digest or index.inputs.digest != digest:
        return None, f"{INDEX_FILE} is out of date (no record of what it was compiled from)"
    return index, ""


@dataclass
class Saved:
    """The saved index of a lake whose working tree still holds what it was compiled from, known by
    what identifies it (read from its inputs record); the index itself is read only by :meth:`load`
    (for 10,000 models, validating ``lake.json`` takes seconds, most of a no-op build)."""

    root: Path
    digest: str
    options: dict[str, Any]
    generated_at: str

    def load(self) -> LakeIndex | None:
        """The index; None when ``lake.json`` is no longer the one the record describes."""
        try:
            index = load_index(self.root / INDEX_FILE)
        except (OSError, ValueError):
            return None
        same = (index.inputs.digest, index.inputs.options, index.generated_at)
        return index if same == (self.digest, self.options, self.generated_at) else None


def saved(root: Path) -> Saved | None:
    """The saved index of the lake at ``root`` while it matches the working tree, unread; else None."""
    found = inputs.recorded(root)
    if found is None or not (root / INDEX_FILE).is_file() or found.changed(root) is not None:
        return None
    options, generated_at = found.index.get("options"), found.index.get("generated_at")
    if not isinstance(options, dict) or not isinstance(generated_at, str):
        return None
    return Saved(root, found.recorded_digest, options, generated_at)


def saved_as(root: Path, index: LakeIndex) -> Path | None:
    """``.lakegen/lake.json`` when it holds ``index`` (as this process's save of that very file, or
    else its inputs record, says: the same inputs, compiled at the same time); else None. A copy of
    it costs a link, not a dump of the index."""
    settle(root)
    path = root / INDEX_FILE
    written = _WRITTEN.get(os.path.abspath(root))
    if written is not None:  # this process saved it: known without reading the record (32 MB at 100,000)
        with contextlib.suppress(OSError):
            st = path.stat()
            if (st.st_ino, st.st_size, st.st_mtime_ns) == written.file:
                made = (written.digest, written.options, written.generated_at)
                same = made == (index.inputs.digest, index.inputs.options, index.generated_at)
                return path if same and index.inputs.digest else None
    found = inputs.recorded(root)
    if found is None or not index.inputs.digest or found.recorded_digest != index.inputs.digest:
        return None
    same = (found.index.get("options"), found.index.get("generated_at")) == (
        index.inputs.options,
        index.generated_at,
    )
    return path if same and path.is_file() else None
