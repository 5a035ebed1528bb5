"""What a pull request changes in the lake: entries added, modified, renamed and removed.

The head side is the lake on disk (so uncommitted work is checked too); the base
side is the merge base of the base ref and HEAD, read straight from git objects.
Only the manifests that differ are read at the base, so the cost follows the
size of the change, not of the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from lakegen.catalog.loader import OWNERS_FILE, POLICIES_FILE, Catalog
from lakegen.errors import Finding, LakeError
from lakegen.gitrepo import Commit, Repo
from lakegen.governance.history import MANIFEST_FOLDERS, field_changes, is_manifest_path, parse_blob, stem
from lakegen.model.index import FieldChange
from lakegen.model.manifest import KINDS, Code, Entry

Status = Literal["added", "modified", "renamed", "removed"]
_STATUS: dict[str, Status] = {"A": "added", "D": "removed", "R": "renamed"}


@dataclass
class EntryChange:
    """One manifest the pull request touches, with its base version when it had one."""

    status: Status
    entry: str
    path: str | None  # at head; None when removed
    base_path: str | None  # at base; None when added
    base_data: Any = None
    base_entry: Entry | None = None
    fields: list[FieldChange] = field(default_factory=list)


# What a changed file is, by where it lies; the first match wins (see classify()).
FILE_CLASSES: tuple[tuple[str, str], ...] = (
    (".lakegen/", "lakegen's cache"),
    ("site/", "built site"),
    ("catalog/results/", "results"),
    ("catalog/artifacts/", "artifact"),
    (".github/workflows/", "workflow"),
    (".github/", "repository settings"),
    ("mkdocs.yml", "site configuration"),
    ("site_templates/", "site templates"),
    ("overrides/", "site templates"),
    ("lakegen/site/templates/", "site templates"),
    ("pyproject.toml", "packaging"),
    ("requirements.lock", "packaging"),
    ("setup.py", "packaging"),
    ("setup.cfg", "packaging"),
    ("lakegen/", "lakegen's own code"),
    ("schemas/", "schemas"),
)


# lakegen's own working folders (caches, the built site): never part of a change, ignored or not.
OWN_FOLDERS = (".lakegen/", "site/")


@dataclass(frozen=True)
class FileChange:
    """A changed file that is not a manifest: what it is decides what the check does about it."""

    path: str
    status: Status
    what: str  # one of FILE_CLASSES' names, "code entry source", or "other"
    code_entries: tuple[str, ...] = ()  # for code entry source: the entries whose folder holds it


def code_folders(catalog: Catalog) -> dict[str, list[str]]:
    """Each code entry's source folder (lake path, no trailing slash) -> the entries it serves."""
    out: dict[str, list[str]] = {}
    for r in catalog.records.values():
        if isinstance(r.entry, Code) and r.entry.path:
            out.setdefault(r.entry.path.strip("/"), []).append(r.entry.id)
    return out


def classify(path: str, folders: dict[str, list[str]]) -> tuple[str, tuple[str, ...]]:
    """What the file at lake path ``path`` is, and which code entries' source it is part of
    (``folders``: :func:`code_folders` of the lake)."""
    owners = tuple(sorted(e for folder, ids in folders.items() if path.startswith(f"{folder}/") for e in ids))
    if owners:
        return "code entry source", owners
    for prefix, what in FILE_CLASSES:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return what, ()
    return "other", ()


def _is_manifest(path: str | None) -> bool:
    """A manifest: a YAML file in one of the catalog's manifest folders."""
    return path is not None and is_manifest_path(path) and path.startswith(_MANIFEST_PREFIXES)


_MANIFEST_PREFIXES = tuple(f"{folder}/" for folder in MANIFEST_FOLDERS)


@dataclass
class LakeChanges:
    """The difference between the lake on disk and the base of a pull request."""

    repo: Repo
    base_ref: str
    base_commit: str
    entries: list[EntryChange] = field(default_factory=list)
    config_changed: dict[str, Status] = field(default_factory=dict)  # policies.yaml, owners.yaml
    files: list[FileChange] = field(default_factory=list)  # every other changed file, classified
    _by_entry: dict[str, EntryChange] = field(default_factory=dict, repr=False)
    _released: dict[tuple[str, str], Commit | None] = field(default_factory=dict, repr=False)

    def of(self, entry_id: str) -> EntryChange | None:
        """The change of entry ``entry_id`` (its id at head, or at base when removed)."""
        if not self._by_entry:
            self._by_entry = {c.entry: c for c in self.entries}
        return self._by_entry.get(entry_id)

    def touched(self) -> set[str]:
        return {c.entry for c in self.entries}

    def is_new_reference(self, entry_id: str, ref: str) -> bool:
        """True when ``entry_id`` refers to ``ref`` at head but did not at base."""
        change = self.of(entry_id)
        if change is None:
            return False
        if change.base_data is None:
            return True
        return ref not in _references(change.base_data)

    def released_in(self, sha256: str, base_path: str) -> Commit | None:
        """The commit on the base branch that first put ``sha256`` into the manifest at ``base_path``."""
        key = (sha256, base_path)
        if key not in self._released:
            self._released[key] = self.repo.first_commit_adding(sha256, base_path, self.base_commit)
        return self._released[key]


def _references(data: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(data, dict):
        for key in ("base_models", "datasets", "derived_from"):
            for item in data.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    refs.add(item["id"])
    return refs


def lake_changes(
    catalog: Catalog, base_ref: str, repo: Repo | None = None, folders: dict[str, list[str]] | None = None
) -> LakeChanges:
    """Compare the lake of ``catalog`` on disk with the merge base of ``base_ref`` and HEAD.

    ``catalog`` must hold every manifest that differs; ``folders``: the lake's code folders
    (:func:`code_folders`), when ``catalog`` holds part of the lake only."""
    repo = repo or Repo.find(catalog.root)
    if repo is None:
        message = "--base needs the lake to be in a git repository"
        raise LakeError(Finding(str(catalog.root), 1, "base", message))
    try:
        base_commit = repo.merge_base(repo.commit_of(base_ref))
    except LakeError:
        message = f"cannot find '{base_ref}' or its merge base with HEAD (fetch full history: fetch-depth 0)"
        raise LakeError(Finding(str(catalog.root), 1, "base", message)) from None
    changes = LakeChanges(repo, base_ref, base_commit)
    raw = repo.changes_since(base_commit, ".")
    # lakegen's working folders are never content: ignored, they are skipped; committed (to plant
    # cached results or fingerprints), each file is a change of its own kind.
    planted = set(repo.tracked(*OWN_FOLDERS))
    base_blobs = repo.blobs([c.old_blob for c in raw if c.old_blob and _is_manifest(c.old)])
    by_path = {r.path: r for r in catalog.records.values()}
    folders = code_folders(catalog) if folders is None else folders
    for ch in raw:
        if (ch.old or ch.new) in (POLICIES_FILE, OWNERS_FILE):
            changes.config_changed[ch.new or ch.old or ""] = _STATUS.get(ch.status, "modified")
            continue
        if not (_is_manifest(ch.old) or _is_manifest(ch.new)):
            for path in dict.fromkeys(p for p in (ch.old, ch.new) if p):
                if path.startswith(OWN_FOLDERS) and path not in planted:
                    continue
                what, code = classify(path, folders)
                changes.files.append(FileChange(path, _STATUS.get(ch.status, "modified"), what, code))
            continue
        base_data = parse_blob(base_blobs.get(ch.old_blob or ""))
        head = by_path.get(ch.new) if ch.new else None
        head_data = head.entry.model_dump(mode="json", exclude_defaults=True) if head else None
        base_entry = _validate(base_data)
        if ch.new is None:
            assert ch.old is not None
            entry_id = base_entry.id if base_entry else stem(ch.old)
        else:
            entry_id = head.entry.id if head else stem(ch.new)
        status: Status = _STATUS.get(ch.status, "modified")
        base_json = base_entry.model_dump(mode="json", exclude_defaults=True) if base_entry else base_data
        fields = field_changes(base_json, head_data) if base_json is not None and head_data else []
        if status == "renamed":
            fields.insert(0, FieldChange(field="file", old=ch.old, new=ch.new))
        changes.entries.append(EntryChange(status, entry_id, ch.new, ch.old, base_data, base_entry, fields))
    changes.entries.sort(key=lambda c: (c.status, c.entry))
    return changes


def _validate(data: Any) -> Entry | None:
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    try:
        return KINDS[data["kind"]].model_validate(data)
    except ValidationError:
        return None
