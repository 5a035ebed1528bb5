"""Immutable releases: a version published on the base branch keeps its artifact forever.

A pull request may add versions, but not remove one the base branch has, nor
point one at a different sha256: consumers pin versions, and a version whose
bytes change under them is a supply-chain hole. The finding names the commit
that released the version, found with git's pickaxe (``log -S<sha256>``),
following renames of the manifest.

Releases are keyed by ``id@version`` for good. The ledger is every version the
base branch ever held on its first-parent line (merge commits included), so an
id renamed or deleted in one pull request and added again with other bytes in
the next is still caught, and renaming a released id away is refused like
deleting it. A released version may move only where its sha256 can be verified.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lakegen.artifacts import uris as artifacts
from lakegen.errors import Finding
from lakegen.gitrepo import Commit
from lakegen.governance.changes import EntryChange, LakeChanges
from lakegen.governance.history import MANIFEST_FOLDERS, is_manifest_path, parse_blob
from lakegen.governance.policies.registry import Context, violation
from lakegen.safeyaml import Document


@dataclass(frozen=True)
class Released:
    """One version as a manifest states it: read from plain data, so one that no longer validates
    still counts."""

    version: str
    sha256: str
    uri: str | None
    files: dict[str, str] = field(default_factory=dict)  # companion path -> sha256


def _released_versions(data: Any) -> Iterator[Released]:
    if not isinstance(data, dict):
        return
    for item in data.get("versions") or []:
        if not isinstance(item, dict):
            continue
        artifact = item.get("artifact")
        if not isinstance(artifact, dict) or not isinstance(item.get("version"), str):
            continue
        sha = artifact.get("sha256")
        files = artifact.get("files") or []
        companions = {
            str(f.get("path")): str(f.get("sha256")) for f in files if isinstance(f, dict) and f.get("path")
        }
        uri = artifact.get("uri")
        if isinstance(sha, str):
            yield Released(item["version"], sha, uri if isinstance(uri, str) else None, companions)


@dataclass(frozen=True)
class LedgerRow:
    sha256: str
    commit: Commit
    path: str


def ledger(
    changes: LakeChanges, parser: Callable[[str], Document] | None = None, ids: Collection[str] | None = None
) -> dict[tuple[str, str], LedgerRow]:
    """``(id, version)`` -> the first release of it on the base branch, over its whole history.

    ``parser`` parses a blob's text (default :func:`lakegen.safeyaml.parse`). ``ids``: only the
    releases of these ids are wanted, so a blob that cannot state one is not parsed (a PR
    touching one manifest of 10,000 need not parse the history of every other)."""
    commits = changes.repo.first_parent_changes(changes.base_commit, *MANIFEST_FOLDERS)
    wanted = [c.new_blob for k in commits for c in k.changes if c.new_blob and is_manifest_path(c.new)]
    blobs = changes.repo.blobs(wanted)
    out: dict[tuple[str, str], LedgerRow] = {}
    for commit in commits:
        for c in commit.changes:
            if not c.new_blob or not c.new or not is_manifest_path(c.new):
                continue
            raw = blobs.get(c.new_blob)
            if ids is not None and raw is not None and not _may_name(raw, ids):
                continue
            data = parse_blob(raw, parser)
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                continue
            for r in _released_versions(data):
                out.setdefault((data["id"], r.version), LedgerRow(r.sha256, commit, c.new))
    return out


def _may_name(raw: bytes, ids: Collection[str]) -> bool:
    """Whether YAML text ``raw`` can hold one of ``ids`` (slugs, with no space): written out, or
    through an escape of a double-quoted scalar."""
    return b"\\" in raw or any(i.encode() in raw for i in ids)


def _unverifiable_move(r: Released, uri: str, manifest: Any, root: Any) -> str | None:
    """Why the new location of a released version cannot be verified (None: unmoved, or local)."""
    if r.uri is None or uri == r.uri:
        return None
    try:
        where = artifacts.resolve(uri, manifest, root)
    except artifacts.ArtifactPathError as e:
        return str(e)
    if where.path is None:
        return "a remote location lakegen does not fetch, so the sha256 there is not verified"
    return None


def _released(changes: LakeChanges, change: EntryChange, sha: str) -> str:
    assert change.base_path is not None
    commit = changes.released_in(sha, change.base_path)
    if commit is None:
        return f"released on {changes.base_ref}"
    return _released_by(changes, commit)


def _released_by(changes: LakeChanges, commit: Commit, where: str = "") -> str:
    """``released in commit 3f2a9c1d4e5b ('subject' by author, date, PR #n[, where])``."""
    pr = changes.repo.pull_requests.get(commit.sha)
    via = f", PR #{pr}" if pr else ""
    who = f"'{commit.subject}' by {commit.author}, {commit.date[:10]}{via}{where}"
    return f"released in commit {commit.sha[:12]} ({who})"


class ImmutableReleases:
    name = "immutable-releases"
    description = (
        "A version released on the base branch is never removed, and its artifact sha256 never changes; "
        "a new artifact needs a new version."
    )

    def check(self, ctx: Context) -> Iterable[Finding]:
        if ctx.changes is None:
            return
        book: dict[tuple[str, str], LedgerRow] | None = None
        for change in ctx.changes.entries:
            released = list(_released_versions(change.base_data))
            if released:
                yield from _check_change(ctx, ctx.changes, change, released)
                yield from _renamed_away(ctx.changes, change, released)
            if change.path is not None:
                parser = ctx.catalog.parsed.parse if ctx.catalog.parsed is not None else None
                wanted = {c.entry for c in ctx.changes.entries if c.path is not None}
                book = ledger(ctx.changes, parser, wanted) if book is None else book
                yield from _reused(ctx, change, released, book)


def _renamed_away(changes: LakeChanges, change: EntryChange, released: list[Released]) -> Iterator[Finding]:
    """A released id renamed to another one: its releases would leave the lake."""
    old = change.base_data.get("id") if isinstance(change.base_data, dict) else None
    if change.path is None or not isinstance(old, str) or old == change.entry:
        return
    versions = ", ".join(r.version for r in released)
    when = _released(changes, change, released[0].sha256)
    yield violation(
        change.entry,
        ("id",),
        f"renames released entry '{old}' (versions {versions}; {released[0].version} {when}) to "
        f"'{change.entry}': ids of released entries are permanent; keep '{old}' (deprecated: true, with "
        f"a successor) and add '{change.entry}' as an entry of its own",
    )


def _reused(
    ctx: Context, change: EntryChange, released: list[Released], book: dict[tuple[str, str], LedgerRow]
) -> Iterator[Finding]:
    """A version at head whose id@version the base branch once released with other bytes."""
    record = ctx.catalog.records.get(change.entry)
    if record is None or record.path != change.path:
        return
    here = (
        {r.version for r in released}
        if change.base_data and change.base_data.get("id") == change.entry
        else set()
    )
    for i, v in enumerate(getattr(record.entry, "versions", [])):
        row = book.get((change.entry, v.version))
        if row is None or v.version in here or row.sha256 == v.artifact.sha256:
            continue  # new, or checked against the base manifest above, or the same bytes
        assert ctx.changes is not None
        yield violation(
            change.entry,
            ("versions", i, "artifact", "sha256"),
            f"{change.entry}@{v.version} was {_released_by(ctx.changes, row.commit, f', in {row.path}')} "
            f"with sha256 {row.sha256}; "
            "an id@version once released keeps its bytes for good, also after the entry was renamed or "
            "deleted: publish these bytes as a new version",
        )


def _check_change(
    ctx: Context, changes: LakeChanges, change: EntryChange, released: list[Released]
) -> Iterator[Finding]:
    if change.path is None:
        for r in released:
            version, sha = r.version, r.sha256
            when = _released(changes, change, sha)
            yield violation(
                change.entry,
                (),
                f"deleting the manifest removes version {version}, {when}; "
                "released versions stay: set deprecated: true instead",
                path=change.base_path,
                line=1,
            )
        return
    record = ctx.catalog.records.get(change.entry)
    if record is None or record.path != change.path:
        return  # the manifest does not load at head; validation reports why
    head = {v.version: (i, v) for i, v in enumerate(getattr(record.entry, "versions", []))}
    for r in released:
        version, sha, files = r.version, r.sha256, r.files
        if version not in head:
            when = _released(changes, change, sha)
            yield violation(
                change.entry,
                ("versions",),
                f"version {version} was {when}; released versions cannot be removed "
                "(withdraw it with yanked: <why> on the version; deprecated: true retires the entry)",
            )
            continue
        i, now = head[version]
        if now.artifact.sha256 != sha:
            when = _released(changes, change, sha)
            yield violation(
                change.entry,
                ("versions", i, "artifact", "sha256"),
                f"version {version} was {when} with sha256 {sha}; it now says {now.artifact.sha256}. "
                "Released artifacts are immutable: publish the new artifact as a new version",
            )
            continue
        moved = None if now.yanked else _unverifiable_move(r, now.artifact.uri, record.file, ctx.catalog.root)
        if moved is not None:
            when = _released(changes, change, sha)
            yield violation(
                change.entry,
                ("versions", i, "artifact", "uri"),
                f"version {version} was {when} at {r.uri}; it now points at {now.artifact.uri}, {moved}. "
                "A released version moves only where its sha256 is verified",
            )
        now_files = {f.path: f.sha256 for f in getattr(now.artifact, "files", [])}
        for path, file_sha in sorted(files.items()):
            if now_files.get(path) != file_sha:
                when = _released(changes, change, sha)
                what = "removes" if path not in now_files else "changes"
                yield violation(
                    change.entry,
                    ("versions", i, "artifact", "files"),
                    f"version {version} was {when} with companion file {path} (sha256 {file_sha}); this "
                    f"{what} it. Released artifacts are immutable: publish the change as a new version",
                )
