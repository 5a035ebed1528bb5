"""The audit trail of every entry, read from git: who changed which field, when, and in which PR.

One ``git log --raw -M`` over the manifest folders gives every commit with the
blobs it changed (renames included), one ``git cat-file --batch`` gives those
blobs, and each pair of versions is compared field by field. Lists of keyed
items (versions, base models, datasets, evaluations...) are matched by key, so a
new version reads as ``versions[1.1.0]`` added rather than a whole list replaced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakegen import gitrepo
from lakegen.atomicfile import write_atomic
from lakegen.catalog.loader import CATALOG_DIR, Catalog
from lakegen.errors import LakeError
from lakegen.gitrepo import Repo
from lakegen.model.index import Change, FieldChange, LakeIndex
from lakegen.model.manifest import FOLDERS
from lakegen.safeyaml import Document, parse
from lakegen.safeyaml import _Refused as Refused
from lakegen.version import __version__

MANIFEST_FOLDERS = tuple(f"{CATALOG_DIR}/{folder}" for folder in FOLDERS.values())
_KEYS = ("version", "id", "name")


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every field that differs between two manifests (plain data), as dotted paths."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            out.extend(field_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(old, list) and isinstance(new, list):
        keyed_old, keyed_new = _keyed(old), _keyed(new)
        if keyed_old is not None and keyed_new is not None:
            out = []
            for key in [*keyed_old, *(k for k in keyed_new if k not in keyed_old)]:
                out.extend(field_changes(keyed_old.get(key), keyed_new.get(key), f"{path}[{key}]"))
            return out
    return [FieldChange(field=path, old=_plain(old), new=_plain(new))]


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    """Items by their natural key, or None when the list has no unique one."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if all("metric" in i and "dataset" in i for i in items):  # evaluations, by version when they name one
        found = {_claim_key(i): i for i in items}
        return found if len(found) == len(items) else None
    for key in _KEYS:
        if all(isinstance(i.get(key), str) for i in items):
            found = {i[key]: i for i in items}
            if len(found) == len(items):
                return found
    return None


def _claim_key(claim: dict[str, Any]) -> str:
    key = f"{claim['dataset']}/{claim.get('split')}/{claim['metric']}"
    return f"{key}@{claim['version']}" if claim.get("version") else key


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def parse_blob(raw: bytes | None, parser: Callable[[str], Document] | None = None) -> Any:
    """A manifest's plain data from a git blob's bytes; None when absent or not a readable manifest."""
    if raw is None:
        return None
    try:
        return (parser or parse)(raw.decode("utf-8-sig")).data
    except (LakeError, UnicodeDecodeError, Refused):  # a committed manifest that was never valid
        return None


def is_manifest_path(path: str | None) -> bool:
    return path is not None and path.endswith((".yaml", ".yml"))


def lake_history(
    root: Path | str,
    catalog: Catalog | None = None,
    repo: Repo | None = None,
    parser: Callable[[str], Document] | None = None,
) -> list[Change]:
    """Every change to every manifest under ``root``, newest first; [] outside a git repository.

    ``parser`` parses a blob's text (default :func:`lakegen.safeyaml.parse`)."""
    root = Path(root)
    repo = repo or Repo.find(root)
    if repo is None:
        return []
    try:
        commits = repo.log(*MANIFEST_FOLDERS)
    except LakeError:
        return []  # a repository without commits yet
    blobs = repo.blobs(
        [
            b
            for c in commits
            for ch in (*c.changes, *c.merge_changes)
            for b in (ch.old_blob, ch.new_blob)
            if b is not None
        ]
    )
    parsed: dict[str, Any] = {}

    def data(blob: str | None) -> Any:
        if blob is None:
            return None
        if blob not in parsed:
            parsed[blob] = parse_blob(blobs.get(blob), parser)
        return parsed[blob]

    def entry_id(path: str, *blob: str | None) -> str:
        for b in blob:
            d = data(b)
            if isinstance(d, dict) and isinstance(d.get("id"), str):
                return str(d["id"])
        return stem(path)

    alias: dict[str, str] = {r.path: r.entry.id for r in catalog.records.values()} if catalog else {}
    history: list[Change] = []
    for commit in commits:
        merge_made = {id(ch) for ch in commit.merge_changes}
        for ch in (*commit.changes, *commit.merge_changes):
            if not (is_manifest_path(ch.old) or is_manifest_path(ch.new)):
                continue
            old, new = data(ch.old_blob), data(ch.new_blob)
            if ch.status == "R":
                assert ch.old is not None and ch.new is not None
                entry = alias.get(ch.new) or entry_id(ch.new, ch.new_blob)
                alias[ch.old] = entry
                fields = [FieldChange(field="file", old=ch.old, new=ch.new), *field_changes(old, new)]
                action, path = "renamed", ch.new
            elif ch.status == "A":
                assert ch.new is not None
                entry = alias.pop(ch.new, "") or entry_id(ch.new, ch.new_blob)
                fields, action, path = [], "added", ch.new
            elif ch.status == "D":
                assert ch.old is not None
                entry = alias.get(ch.old) or entry_id(ch.old, ch.old_blob)
                alias[ch.old] = entry
                fields, action, path = [], "deleted", ch.old
            else:
                path = ch.new or ch.old or ""
                entry = alias.get(path) or entry_id(path, ch.new_blob, ch.old_blob)
                alias[path] = entry
                fields, action = field_changes(old, new), "modified"
            history.append(
                Change(
                    entry=entry,
                    commit=commit.sha,
                    author=commit.author,
                    email=commit.email,
                    date=commit.date,
                    subject=commit.subject,
                    pr=repo.pull_requests.get(commit.sha),
                    path=path,
                    action=action,
                    changes=fields,
                    committer=commit.committer,
                    committer_email=commit.committer_email,
                    committer_date=commit.committer_date,
                    signature=commit.signature,
                    in_merge=id(ch) in merge_made,
                    dates_disagree=_later(commit.date, commit.committer_date),
                )
            )
    return history


SIGNATURES = {
    "G": "good signature",
    "B": "bad signature",
    "U": "good signature, untrusted key",
    "X": "good signature, expired",
    "Y": "good signature, expired key",
    "R": "good signature, revoked key",
    "E": "signed, not checkable here",
}


def provenance(c: Change) -> list[str]:
    """What git says of a change beyond its author, for people: committer, signature, oddities."""
    notes = []
    if c.in_merge:
        notes.append("made in the merge commit itself")
    if c.committer and (c.committer, c.committer_email) != (c.author, c.email):
        notes.append(f"committed by {c.committer} <{c.committer_email}> {c.committer_date[:10]}")
    if c.signature in SIGNATURES:
        notes.append(SIGNATURES[c.signature])
    if c.dates_disagree:
        notes.append(f"author date {c.date[:10]} is after the commit date {c.committer_date[:10]}")
    return notes


def _later(author_date: str, commit_date: str) -> bool:
    """True when the author date is more than a minute after the commit date: a date from the future."""
    import datetime as dt

    try:
        a, c = dt.datetime.fromisoformat(author_date), dt.datetime.fromisoformat(commit_date)
    except ValueError:
        return False
    return (a - c).total_seconds() > 60


def entry_history(history: list[Change], entry: str) -> list[Change]:
    """The changes of one entry, newest first."""
    return [c for c in history if c.entry == entry]


def history_stage(catalog: Catalog, index: LakeIndex) -> LakeIndex:
    """The compile stage: the lake's audit trail into ``index.history``.

    The trail is a function of the commit HEAD names and of which file holds which entry; it is
    kept in ``.lakegen/cache/history.json`` under those, so a compile of the same commit (a working
    tree edit, a no-op) reads it back instead of walking git again.
    """
    from lakegen.artifacts.digests import default_cache_dir

    repo = Repo.find(catalog.root)
    if repo is None:
        index.stages["history"] = "skipped: the lake is not in a git repository"
        return index
    folder = default_cache_dir(catalog.root)
    key = _history_key(repo, sorted((r.path, r.entry.id) for r in catalog.records.values()))
    found = _kept(folder / HISTORY_FILE, key) if key else None
    if found is None:
        parser = catalog.parsed.parse if catalog.parsed is not None else None
        found = lake_history(catalog.root, catalog, repo, parser)
        if key:
            rows = [c.model_dump(mode="json") for c in found]
            with contextlib.suppress(OSError):  # a read-only cache only costs speed
                write_atomic(folder / HISTORY_FILE, json.dumps({"key": key, "changes": rows}))
    index.history = found
    index.stages["history"] = f"ran ({len(index.history)} changes)"
    return index


HISTORY_FILE = "history.json"


def kept_for(root: Path, files: list[tuple[str, str]]) -> bool:
    """Whether the trail kept in the cache is the one :func:`history_stage` would give for the lake at
    ``root`` whose manifests are ``files`` (sorted ``(path, entry id)``), telling from its key alone."""
    from lakegen.artifacts.digests import default_cache_dir

    repo = Repo.find(root)
    key = _history_key(repo, files) if repo is not None else None
    if key is None:
        return False
    try:
        with (default_cache_dir(root) / HISTORY_FILE).open("rb") as f:
            head = f.read(100)
    except OSError:
        return False
    return head.startswith(json.dumps({"key": key})[:-1].encode() + b",")  # as history_stage writes it


def _history_key(repo: Repo, files: list[tuple[str, str]]) -> str | None:
    try:
        head = repo.commit_of("HEAD")
    except LakeError:
        return None  # no commit yet
    code = b"".join(Path(m.__file__ or "").read_bytes() for m in (sys.modules[__name__], gitrepo))
    text = json.dumps([__version__, hashlib.sha256(code).hexdigest(), head, files, _keyring(repo)])
    return hashlib.sha256(text.encode()).hexdigest()


# What git's verdict on a commit signature (%G?) depends on besides the commit: the GnuPG keyring and
# trust database, and for SSH signatures the allowed-signers file git is configured with.
_GNUPG_FILES = ("pubring.kbx", "pubring.gpg", "trustdb.gpg")


def _keyring(repo: Repo) -> str:
    home = Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")
    files = [home / name for name in _GNUPG_FILES]
    settings = repo.config(r"^gpg\.")
    for line in settings.splitlines():
        name, _, value = line.partition(" ")
        if name == "gpg.ssh.allowedsignersfile" and value:
            files.append(Path(value).expanduser())
    digest = hashlib.sha256(settings.encode())
    for file in files:
        with contextlib.suppress(OSError):
            digest.update(str(file).encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _kept(path: Path, key: str) -> list[Change] | None:
    try:
        data = json.loads(path.read_bytes())
        if data.get("key") != key:
            return None
        return [Change.model_validate(row) for row in data["changes"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
