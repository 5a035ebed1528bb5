"""The few git operations governance needs, through the ``git`` command line.

Everything is read in bulk: one ``git log`` for a whole history, one
``git cat-file --batch`` for any number of blobs, so a lake of thousands of
manifests costs a handful of processes, not one per file. Output is read with
``-z`` (NUL-separated) wherever git offers it, so no file name needs unquoting.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from lakegen.errors import Finding, LakeError

_SHA = re.compile(r"^[0-9a-f]{40}$")
_PR_MERGE = re.compile(r"^Merge pull request #(\d+) ")
_PR_SQUASH = re.compile(r"\(#(\d+)\)\s*$")


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run ``git args`` in ``cwd`` and return its stdout; a failure raises :class:`LakeError`."""
    try:
        done = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise LakeError(Finding(str(cwd), 1, "git", "git is not installed")) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LakeError(Finding(str(cwd), 1, "git", f"git {args[0]}: {message[-1] if message else 'failed'}"))
    return done.stdout


@dataclass(frozen=True)
class PathChange:
    """One file's change between two trees: status A, M, D or R, with the old and new paths."""

    status: str
    old: str | None
    new: str | None
    old_blob: str | None = None
    new_blob: str | None = None


@dataclass(frozen=True)
class Commit:
    """A commit as git stores it: author and committer apart, as given; ``signature`` is git's
    ``%G?`` (G good, B bad, U good but untrusted, X/Y expired, R revoked, E cannot be checked,
    N none)."""

    sha: str
    parents: tuple[str, ...]
    author: str
    email: str
    date: str
    subject: str
    changes: tuple[PathChange, ...] = ()
    committer: str = ""
    committer_email: str = ""
    committer_date: str = ""
    signature: str = "N"
    merge_changes: tuple[PathChange, ...] = ()  # what a merge commit changed itself (vs every parent)


GITHUB_EMAIL = "noreply@github.com"
_FORMAT = "--format=%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%G?%x1f%s"


def _commit(header: bytes, changes: tuple[PathChange, ...] = ()) -> Commit:
    fields = header.decode("utf-8", "replace").split("\x1f", 9)
    sha, parents, author, email, date, committer, committer_email, committer_date, signature, subject = fields
    return Commit(
        sha,
        tuple(parents.split()),
        author,
        email,
        date,
        subject,
        changes,
        committer,
        committer_email,
        committer_date,
        signature or "N",
    )


class Repo:
    """The git repository a lake lives in; paths are given relative to the lake root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        prefix = git(self.root, "rev-parse", "--show-prefix").decode().strip()
        self.prefix = prefix  # the lake's folder inside the repository, '' or 'sub/'

    @staticmethod
    def find(root: Path) -> Repo | None:
        """The repository holding ``root``, or None when it is not in one (or git is missing)."""
        try:
            return Repo(root)
        except LakeError:
            return None

    def run(self, *args: str, stdin: bytes | None = None) -> bytes:
        return git(self.root, *args, stdin=stdin)

    def _lake_path(self, repo_path: str) -> str:
        return repo_path[len(self.prefix) :] if repo_path.startswith(self.prefix) else repo_path

    def commit_of(self, ref: str) -> str:
        """The full commit sha ``ref`` names; an unknown ref raises :class:`LakeError`."""
        out = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.decode().strip()

    def file_at(self, commit: str, path: str) -> bytes | None:
        """The content of the lake file ``path`` as committed at ``commit``; None when it has none."""
        try:
            return self.run("show", f"{commit}:{self.prefix}{path}")
        except LakeError:
            return None

    def merge_base(self, a: str, b: str = "HEAD") -> str:
        return self.run("merge-base", a, b).decode().strip()

    def tree(self, commit: str, *folders: str) -> dict[str, str]:
        """Lake path -> blob sha of every file under ``folders`` at ``commit``."""
        specs = [f"{self.prefix}{f}" for f in folders]
        out = self.run("ls-tree", "-r", "-z", "--full-tree", commit, "--", *specs)
        files = {}
        for item in out.split(b"\0"):
            if not item:
                continue
            meta, path = item.decode("utf-8", "surrogateescape").split("\t", 1)
            _mode, kind, sha = meta.split()
            if kind == "blob":
                files[self._lake_path(path)] = sha
        return files

    def blobs(self, shas: list[str]) -> dict[str, bytes]:
        """The content of each blob, read through one ``git cat-file --batch``."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        out = self.run("cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
        found: dict[str, bytes] = {}
        pos = 0
        for sha in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) < 3 or header[1] == b"missing":
                continue
            size = int(header[2])
            found[sha] = out[pos : pos + size]
            pos += size + 1
        return found

    def config(self, pattern: str) -> str:
        """The settings whose names match the regex ``pattern``, one ``name value`` per line (names in
        lower case, as ``git config --get-regexp`` lists them); '' when none is set."""
        try:
            return self.run("config", "--get-regexp", pattern).decode("utf-8", "replace")
        except LakeError:
            return ""

    def tracked(self, *folders: str) -> list[str]:
        """Lake paths of the files git tracks under ``folders`` (in the index)."""
        specs = [f"{self.prefix}{f}" for f in folders]
        out = self.run("ls-files", "-z", "--", *specs)
        return [self._lake_path(p.decode("utf-8", "surrogateescape")) for p in out.split(b"\0") if p]

    def changes_since(self, commit: str, *folders: str) -> list[PathChange]:
        """What differs under ``folders`` between ``commit`` and the working tree (untracked files too)."""
        specs = [f"{self.prefix}{f}" for f in folders]
        out = self.run("diff", "-z", "--raw", "-M", "--no-abbrev", commit, "--", *specs)
        changes = _raw_changes(out.split(b"\0"), self._lake_path)
        untracked = self.run("ls-files", "-z", "--others", "--exclude-standard", "--", *specs)
        for item in untracked.split(b"\0"):
            if item:
                path = self._lake_path(item.decode("utf-8", "surrogateescape"))
                changes.append(PathChange("A", None, path))
        return changes

    def log(self, *folders: str, rev: str = "HEAD") -> list[Commit]:
        """Every commit of ``rev`` that touches ``folders``, newest first, with its raw changes (and a
        merge commit's own, in ``merge_changes``)."""
        specs = [f"{self.prefix}{f}" for f in folders]
        commits = []
        # -c lists, for a merge, only the files it changed itself (against every parent): a conflict
        # resolution or an edit slipped into it; git log shows merges no diff otherwise.
        for commit in self._raw_log(["-M", "-c"], rev, specs):
            if len(commit.parents) > 1:
                commit = replace(commit, changes=(), merge_changes=commit.changes)
            commits.append(commit)
        return commits

    def _raw_log(self, options: list[str], rev: str, specs: list[str]) -> list[Commit]:
        out = self.run("log", "-z", "--raw", "--no-abbrev", *options, _FORMAT, rev, "--", *specs)
        commits = []
        for chunk in _commit_chunks(out):
            header, _, rest = chunk.partition(b"\0")
            changes = _raw_changes(rest.lstrip(b"\n").split(b"\0"), self._lake_path)
            commits.append(_commit(header, tuple(changes)))
        return commits

    def first_parent_changes(self, rev: str, *folders: str) -> list[Commit]:
        """Every state ``folders`` had on ``rev``'s first-parent line, oldest first: a merge commit's
        changes are taken against its first parent, so nothing a merge brought in is missed."""
        specs = [f"{self.prefix}{f}" for f in folders]
        return self._raw_log(["--first-parent", "-m", "--no-renames", "--reverse"], rev, specs)

    @cached_property
    def pull_requests(self) -> dict[str, int]:
        """Commit sha -> number of the pull request that brought it into HEAD's first-parent line.

        A merge commit whose subject GitHub wrote ("Merge pull request #12 from ...")
        carries the number to every commit it merged; a squash merge carries it in its
        own subject ("Title (#12)"). Only commits GitHub committed count (committer
        ``noreply@github.com``): anyone can type such a subject.
        """
        out = self.run("log", "-z", "--format=%H%x1f%P%x1f%ce%x1f%s", "HEAD")
        parents: dict[str, list[str]] = {}
        subjects: dict[str, str] = {}
        committers: dict[str, str] = {}
        for item in out.split(b"\0"):
            if not item:
                continue
            sha, ps, committer, subject = item.decode("utf-8", "replace").strip("\n").split("\x1f", 3)
            parents[sha], subjects[sha], committers[sha] = ps.split(), subject, committer
        mainline: list[str] = []
        commit: str | None = self.commit_of("HEAD")
        while commit is not None:
            mainline.append(commit)
            commit = parents.get(commit, [None])[0] if parents.get(commit) else None
        on_mainline = set(mainline)
        numbers: dict[str, int] = {}
        for sha in reversed(mainline):
            if committers.get(sha) != GITHUB_EMAIL:
                continue  # anyone can type "(#12)" or "Merge pull request #12" into a subject
            merged = _PR_MERGE.match(subjects.get(sha, ""))
            squashed = _PR_SQUASH.search(subjects.get(sha, ""))
            if squashed and len(parents.get(sha, [])) < 2:
                numbers[sha] = int(squashed.group(1))
            if not merged or len(parents[sha]) < 2:
                continue
            number = int(merged.group(1))
            numbers[sha] = number
            stack = list(parents[sha][1:])
            while stack:
                merged_commit = stack.pop()
                if merged_commit in on_mainline or merged_commit in numbers or merged_commit not in parents:
                    continue
                numbers[merged_commit] = number
                stack.extend(parents[merged_commit])
        return numbers

    def first_commit_adding(self, text: str, path: str, rev: str) -> Commit | None:
        """The oldest commit of ``rev`` whose change to ``path`` (followed through renames) added ``text``."""
        out = self.run(
            "log",
            "-z",
            "--follow",
            "-M",
            f"-S{text}",
            _FORMAT,
            rev,
            "--",
            f"{self.prefix}{path}",
        )
        commits = []
        for chunk in _commit_chunks(out):
            header = chunk.partition(b"\0")[0]
            commits.append(_commit(header))
        return commits[-1] if commits else None


def pr_number(repo: Repo, commit: Commit) -> int | None:
    """The pull request a commit came in with, when the history says."""
    return repo.pull_requests.get(commit.sha)


def _commit_chunks(out: bytes) -> list[bytes]:
    """Split ``git log`` output on the record separator, rejoining any a commit subject contained."""
    chunks: list[bytes] = []
    for chunk in out.split(b"\x1e"):
        if not chunk.strip(b"\0\n"):
            continue
        if _SHA.match(chunk[:40].decode("ascii", "replace")) and chunk[40:41] == b"\x1f":
            chunks.append(chunk)
        elif chunks:
            chunks[-1] += b"\x1e" + chunk
    return chunks


def _raw_changes(tokens: list[bytes], to_lake: Callable[[str], str]) -> list[PathChange]:
    """Parse ``--raw -z`` output: ``:mode mode sha sha STATUS`` then one or two paths; a merge's
    combined line (``-c``: ``::mode mode mode sha sha sha MM``, one path) is read against its first
    parent."""
    changes = []
    i = 0
    while i < len(tokens):
        token = tokens[i].strip(b"\n")
        i += 1
        if not token.startswith(b":"):
            continue
        colons = len(token) - len(token.lstrip(b":"))  # one per parent
        fields = token[colons:].decode().split()
        shas = fields[colons + 1 : 2 * colons + 2]
        old_blob, new_blob, letter = shas[0], shas[-1], fields[-1][0]
        old = new = None
        if letter in "RC":
            old, new = (t.decode("utf-8", "surrogateescape") for t in tokens[i : i + 2])
            i += 2
        else:
            path = tokens[i].decode("utf-8", "surrogateescape")
            i += 1
            old = None if letter == "A" else path
            new = None if letter == "D" else path
        zero = "0" * 40
        changes.append(
            PathChange(
                "R" if letter in "RC" else letter,
                to_lake(old) if old else None,
                to_lake(new) if new else None,
                None if old_blob == zero else old_blob,
                None if new_blob == zero else new_blob,
            )
        )
    return changes
