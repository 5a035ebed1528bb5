"""Immutable releases: a version published on the base branch keeps its artifact forever.

A pull request may add versions, but not remove one the base branch has, nor
point one at a different sha256: consumers pin versions, and a version whose
bytes change under them is a supply-chain hole. The finding names the commit
that released the version, found with git's pickaxe (``log -S<sha256>``),
following renames of the manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lakegen.changes import EntryChange, LakeChanges
from lakegen.policies import Context, Violation


def _released_versions(data: Any) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(version, sha256, companion path -> sha256) of each version in a base manifest.

    Read from plain data, so a base manifest that no longer validates still counts.
    """
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
        if isinstance(sha, str):
            yield item["version"], sha, companions


def _released(changes: LakeChanges, change: EntryChange, sha: str) -> str:
    assert change.base_path is not None
    commit = changes.released_in(sha, change.base_path)
    if commit is None:
        return f"released on {changes.base_ref}"
    pr = changes.repo.pull_requests.get(commit.sha)
    via = f", PR #{pr}" if pr else ""
    who = f"'{commit.subject}' by {commit.author}, {commit.date[:10]}{via}"
    return f"released in commit {commit.sha[:12]} ({who})"


class ImmutableReleases:
    name = "immutable-releases"
    description = (
        "A version released on the base branch is never removed, and its artifact sha256 never changes; "
        "a new artifact needs a new version."
    )

    def check(self, ctx: Context) -> Iterable[Violation]:
        if ctx.changes is None:
            return
        for change in ctx.changes.entries:
            released = list(_released_versions(change.base_data))
            if released:
                yield from _check_change(ctx, ctx.changes, change, released)


def _check_change(
    ctx: Context, changes: LakeChanges, change: EntryChange, released: list[tuple[str, str, dict[str, str]]]
) -> Iterator[Violation]:
    if change.path is None:
        for version, sha, _files in released:
            when = _released(changes, change, sha)
            yield Violation(
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
    for version, sha, files in released:
        if version not in head:
            when = _released(changes, change, sha)
            yield Violation(
                change.entry,
                ("versions",),
                f"version {version} was {when}; released versions cannot be removed "
                "(set deprecated: true to retire the entry)",
            )
            continue
        i, now = head[version]
        if now.artifact.sha256 != sha:
            when = _released(changes, change, sha)
            yield Violation(
                change.entry,
                ("versions", i, "artifact", "sha256"),
                f"version {version} was {when} with sha256 {sha}; it now says {now.artifact.sha256}. "
                "Released artifacts are immutable: publish the new artifact as a new version",
            )
            continue
        now_files = {f.path: f.sha256 for f in getattr(now.artifact, "files", [])}
        for path, file_sha in sorted(files.items()):
            if now_files.get(path) != file_sha:
                when = _released(changes, change, sha)
                what = "removes" if path not in now_files else "changes"
                yield Violation(
                    change.entry,
                    ("versions", i, "artifact", "files"),
                    f"version {version} was {when} with companion file {path} (sha256 {file_sha}); this "
                    f"{what} it. Released artifacts are immutable: publish the change as a new version",
                )
