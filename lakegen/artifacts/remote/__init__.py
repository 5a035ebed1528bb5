"""Remote artifacts (``https``, ``http``, ``s3``, ``gs``, ``hf``): fetched safely, hashed over every byte.

A server's ETag or self-reported hash is no evidence, so an artifact's sha256 is
computed over the bytes as they arrive, in one streaming pass. A safetensors
file (or a sharded checkpoint of them) is not kept: a :class:`Tap` fed the same
chunks (:class:`lakegen.weights.capture.Capture`) keeps what its fingerprint
reads, and attribution opens a small view file in its place
(:func:`readable_weights`) that reads from that catch and sends range requests,
pinned to the version that was hashed (:mod:`.ranges`), for the rest. Other
formats, adapters, and what the lake benchmarks (bench needs the whole file)
are written by that pass into a content-addressed cache (``<cache>/blobs/``,
capped in size, least recently used first out), which attribution and bench
read, so a content is fetched once across validate, attribute and bench. What a warm run
trusts: the record of that pass (``<cache>/remote/``), kept per URI with the
object's version stamp (S3 ETag and version id; HTTP ETag or Last-Modified), is
reused while a HEAD request returns the same stamp and size; a changed stamp
fetches again. A server that serves new bytes under an old stamp defeats this;
delete ``<cache>/remote/`` to fetch everything again.

Safe by default: a host that resolves to a private, loopback, link-local
(metadata service) or otherwise non-global address is refused unless the lake
allows it in ``catalog/policies.yaml`` under ``storage.allow_hosts``; redirects
may not leave the host (``storage.redirect_hosts`` names exceptions such as
Hugging Face's CDN) nor drop from https to http; every object has size and time
caps. Credentials come from the standard chains (botocore's for S3, ``HF_TOKEN``
or the stored token for ``hf``, Google's default credentials for ``gs`` when
google-auth is installed) and are never printed or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakegen.artifacts.layout import INDEX_SUFFIX
from lakegen.artifacts.remote.fetch import Remote, Tap, TapFactory, Unpinned
from lakegen.artifacts.remote.ranges import RangeSource
from lakegen.artifacts.remote.safety import check_host
from lakegen.artifacts.remote.settings import (
    OFFLINE_ENV,
    SCHEMES,
    NotFound,
    Refused,
    RemoteError,
    StorageSettings,
    load_settings,
    settings_at,
)
from lakegen.artifacts.remote.targets import parse
from lakegen.artifacts.viewmagic import VIEW_MAGIC
from lakegen.atomicfile import write_atomic

__all__ = [
    "OFFLINE_ENV",
    "VIEW_MAGIC",
    "NotFound",
    "RangeSource",
    "Refused",
    "Remote",
    "RemoteError",
    "StorageSettings",
    "Tap",
    "TapFactory",
    "check",
    "check_host",
    "fetch_under",
    "for_lake",
    "forget",
    "load_settings",
    "local_weights",
    "open_view",
    "parse",
    "prefetch",
    "readable_weights",
    "settings_at",
    "streamable",
]


_REMOTES: dict[Path, Remote] = {}


def fetch_under(root: Path, settings: StorageSettings) -> None:
    """Fetch for the lake at ``root`` under ``settings`` from now on in this process: a pull
    request's check uses its base's, so the request cannot loosen the rules for its own run."""
    key = root.resolve()
    _REMOTES[key] = Remote(key, settings)


def forget(root: Path) -> None:
    """Drop the lake's :class:`Remote` (its settings, its cache folder): the next :func:`for_lake`
    makes a new one, as a new process would."""
    _REMOTES.pop(root.resolve(), None)


def for_lake(root: Path) -> Remote:
    """The lake's :class:`Remote`, made once per process (its settings read once)."""
    key = root.resolve()
    if key not in _REMOTES:
        _REMOTES[key] = Remote(key)
    return _REMOTES[key]


def pinned(
    uri: str, size: int, sha256: str, files: list[Any]
) -> list[tuple[tuple[str | int, ...], str, int, str]]:
    """The artifact and the files pinned beside it (``files``), each as (field under the artifact,
    URI, size, sha256); a companion's URI is relative to the artifact's."""
    folder = uri.rsplit("/", 1)[0]
    return [((), uri, size, sha256)] + [
        (("files", j), f"{folder}/{f.path}", f.size, f.sha256) for j, f in enumerate(files)
    ]


def prefetch(remote: Remote, arts: list[Any]) -> None:
    """:meth:`Remote.prefetch_heads` for every remote URI of ``arts`` (companions included)."""
    if remote.offline():
        return
    uris = [pin[1] for art in arts for pin in pinned(art.uri, art.size, art.sha256, art.files)]
    remote.prefetch_heads([u for u in uris if u.split(":", 1)[0].lower() in SCHEMES])


def check(
    remote: Remote,
    art: Any,
    add: Callable[[tuple[str | int, ...], str], None],
    keep: bool = True,
    tap: TapFactory | None = None,
) -> str:
    """Verify a remote artifact and its companions; each problem goes to ``add(field, message)``.

    A :func:`streamable` artifact is kept in the download cache only with ``keep`` (the lake
    benchmarks it, and bench needs the whole file); the others always are, if they fit. When it is
    not kept, ``tap`` (:class:`lakegen.weights.capture.Capture`) keeps what its fingerprint reads
    from the same pass, so attribution sends no range request for it.

    Returns the artifact's state: ``verified``; ``contradicted`` when an object differs from its pin
    or is missing; ``unchecked`` when one could not be checked (refused, unreachable, offline).
    """
    if remote.offline():
        return "unchecked"
    state = "verified"
    for loc, uri, size, sha256 in pinned(art.uri, art.size, art.sha256, art.files):
        where = "path" if loc else "uri"
        try:
            ranged = streamable(art) and _ranged(uri)
            problem = remote.verify(uri, size, sha256, keep=keep or not ranged, tap=tap if ranged else None)
        except RemoteError as e:
            add((*loc, where), str(e))
            state = "unchecked" if state == "verified" else state
            continue
        if problem is not None:
            field = "size" if problem.startswith("size") else "sha256" if problem.startswith("sha") else where
            add((*loc, field), problem)
            state = "contradicted"
    return state


def local_weights(root: Path, art: Any) -> Path | str:
    """The cached local copy of a remote artifact (fetched now if need be), or why there is none.

    With pinned ``files`` (a sharded checkpoint's shards, an adapter's config), the artifact lies in
    a release folder of the cache, ``releases/<sha256>/``, beside hard links to its companions'
    cached copies, laid out as the manifest names them, so readers see the layout of a local folder.
    """
    fetcher = for_lake(root)
    try:
        names = [parse(art.uri).name, *(posixpath.normpath(f.path) for f in art.files)]
        outside = next((n for n in names[1:] if n == ".." or n.startswith("../")), None)
        if outside is not None:
            raise Refused(f"pinned file '{outside}' leaves the artifact's folder")
        blobs = [fetcher.local_copy(*pin[1:]) for pin in pinned(art.uri, art.size, art.sha256, art.files)]
    except RemoteError as e:
        return f"remote artifact {art.uri}: {e}"
    items = list(zip(names, blobs, strict=True))
    if not art.files:
        return items[0][1]
    listing = "".join(f"{rel}\0{blob.parent.name}\n" for rel, blob in items)
    folder = fetcher.folder / "releases" / hashlib.sha256(listing.encode()).hexdigest()
    for rel, blob in items:
        target = folder / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process linked it first
                os.link(blob, target)
    return folder / items[0][0]


def readable_weights(root: Path, art: Any) -> Path | str:
    """What attribution reads for a remote artifact, or why there is none.

    A :func:`streamable` one is read without a copy: a view file the weight readers open as the
    remote file read by range requests (:func:`open_view`), named as the file in a folder of
    ``<cache>/views/``; for a sharded checkpoint, beside its index (cached: it is small and read
    whole) and the views of its other shards. A view's digest is remembered as its object's, so a
    fingerprint cached by content answers for it and a warm run reads no byte (offline too). What
    is all in the cache already, and anything else, is :func:`local_weights`.
    """
    fetcher = for_lake(root)
    pins = pinned(art.uri, art.size, art.sha256, art.files)
    try:
        if not streamable(art) or all(fetcher.blob(sha) is not None for *_, sha in pins):
            return local_weights(root, art)
        names = [parse(art.uri).name, *(posixpath.normpath(f.path) for f in art.files)]
        if any(n == ".." or n.startswith(("../", "/")) for n in names[1:]):
            raise Refused(f"a pinned file leaves the artifact's folder ({art.uri})")
        listing = "".join(f"{name}\0{sha}\n" for name, (*_, sha) in zip(names, pins, strict=True))
        folder = fetcher.folder / "views" / hashlib.sha256(listing.encode()).hexdigest()
        if fetcher.offline() and all((folder / name).is_file() for name in names):
            return folder / names[0]  # made by an earlier run: a cached fingerprint answers for it
        for _, uri, size, sha256 in pins:
            if _ranged(uri):
                fetcher.ranged(uri, size, sha256)
        index = fetcher.local_copy(art.uri, art.size, art.sha256) if art.files else None
    except Unpinned:
        return local_weights(root, art)
    except RemoteError as e:
        return f"remote artifact {art.uri}: {e}"
    target = folder / names[0]
    if index is not None and not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process linked it first
            os.link(index, target)
    for name, (_, uri, size, sha256) in zip(names, pins, strict=True):
        if _ranged(uri):
            _view(fetcher, folder / name, root, uri, size, sha256)
    return target


def streamable(art: Any) -> bool:
    """Whether ``art`` is read by range requests, without a copy: a single safetensors file, or a
    sharded checkpoint of safetensors shards (its index the artifact, its shards the ``files``)."""
    if not art.files:
        return _ranged(art.uri)
    name = parse(art.uri).name.lower()
    return name.endswith(".safetensors" + INDEX_SUFFIX) and all(_ranged(f.path) for f in art.files)


def _ranged(uri: str) -> bool:
    return uri.lower().endswith(".safetensors")


def _view(fetcher: Remote, view: Path, root: Path, uri: str, size: int, sha256: str) -> Path:
    text = json.dumps(
        {"lakegen_view": 1, "root": str(root.resolve()), "uri": uri, "size": size, "sha256": sha256}
    )
    if not view.is_file() or view.read_text() != text:
        write_atomic(view, text.encode())
        now = time.time_ns()
        os.utime(view, ns=(now, now - 10**10))  # past the digest memo's racy window, as blobs are
    if fetcher.digests.known(view) != sha256:
        fetcher.digests.remember(view, sha256, view.stat())
    return view


def open_view(path: Path) -> RangeSource:
    """The remote object a view file made by :func:`readable_weights` stands for, to read in parts.

    The view only names the object: its bytes are read under the lake's own settings, only from
    a view inside the lake's cache, and only while a pass over every byte of the version the
    server holds found the pinned sha256."""
    try:
        data = json.loads(path.read_text())
        root, uri, size, sha256 = Path(data["root"]), data["uri"], data["size"], data["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RemoteError(f"{path}: not a view of a remote artifact") from None
    fetcher = for_lake(root)
    if not path.resolve().is_relative_to((fetcher.folder / "views").resolve()):
        raise Refused(f"refused: {path} is a view of {uri}, but not in the lake's cache")
    return fetcher.ranged(uri, size, sha256)
