"""Where artifacts live, and whether they are what their manifest says.

A local artifact URI is a path relative to the manifest that names it; it must
stay inside the lake even after symlinks are followed. Remote URIs (https, http,
s3, gs, hf) resolve to a :class:`Location` without a path; :mod:`lakegen.artifacts.remote`
fetches and verifies them.
Hashing streams the file, so an artifact of any size costs a fixed amount of
memory, and a file unchanged since it was last hashed is not read again
(:mod:`lakegen.artifacts.digests`).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.artifacts.digests import Digests, sha256_file

if TYPE_CHECKING:
    from lakegen.model.manifest import Artifact, CompanionFile

REMOTE_SCHEMES = ("https", "http", "s3", "gs", "hf")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class ArtifactPathError(ValueError):
    """An artifact URI that lakegen refuses to follow."""


@dataclass(frozen=True)
class Location:
    """A resolved artifact: a local file inside the lake, or a remote URI."""

    uri: str
    path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None


def resolve(uri: str, manifest: Path, root: Path) -> Location:
    """Resolve ``uri`` as written in ``manifest``, a file of the lake rooted at ``root``."""
    scheme = _SCHEME.match(uri)
    if scheme and len(scheme.group(1)) > 1:  # one letter is a Windows drive, refused below
        name = scheme.group(1).lower()
        if name in REMOTE_SCHEMES:
            return Location(uri)
        supported = ", ".join(REMOTE_SCHEMES)
        raise ArtifactPathError(
            f"unsupported URI scheme '{name}:' (use a path relative to the manifest, or {supported})"
        )
    if uri.startswith(("/", "\\")) or scheme or "\\" in uri or "\x00" in uri:
        raise ArtifactPathError(f"'{uri}' is absolute; use a path relative to the manifest")
    # os.path on strings: this runs once per artifact of a 10,000-entry lake, and pathlib is slow.
    top = _realpath(str(root))
    lexical = os.path.normpath(os.path.join(_realpath(str(manifest.parent)), uri))
    if not _inside(lexical, top):
        raise ArtifactPathError(f"'{uri}' leaves the lake")
    real = os.path.realpath(lexical)
    if not _inside(real, top):
        raise ArtifactPathError(f"'{uri}' resolves outside the lake through a symlink")
    return Location(uri, Path(real))


@lru_cache(maxsize=4096)
def _realpath(folder: str) -> str:
    return os.path.realpath(folder)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def companions(
    art: Artifact, manifest: Path, root: Path
) -> Iterator[tuple[CompanionFile, str, Path | ArtifactPathError]]:
    """Each file pinned beside a local artifact (``files``, in order): its pin, its URI (relative to
    the artifact's folder), and its path in the lake, or why it cannot be followed."""
    for extra in art.files:
        uri = posixpath.join(posixpath.dirname(art.uri), extra.path)
        try:
            path = resolve(uri, manifest, root).path
        except ArtifactPathError as e:
            yield extra, uri, e
            continue
        assert path is not None  # beside a local artifact, never a remote URI
        yield extra, uri, path


def verify(path: Path, size: int, sha256: str, digests: Digests | None = None) -> str | None:
    """Why the file at ``path`` does not match ``size`` and ``sha256``, or None when it does.

    With ``digests``, a file unchanged since it was last hashed is not read again.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    if st.st_size != size:
        return f"size is {st.st_size:,} bytes; manifest says {size:,}"
    actual = digests.sha256(path) if digests is not None else sha256_file(path)
    if actual != sha256:
        return f"sha256 mismatch: manifest says {sha256}, file has {actual}"
    return None
