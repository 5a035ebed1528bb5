"""Fingerprints cached by content, and the cached-or-computed :func:`fingerprint`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.artifacts.digests import MEMO_FROM, Digests, sha256_file
from lakegen.atomicfile import write_atomic
from lakegen.fingerprint.prints import MAGIC, PREFIX, SIGNATURE, Fingerprint
from lakegen.fingerprint.reading import compute, content_sha256, weight_files
from lakegen.weights import ADAPTER_CONFIG, WeightsError, is_adapter

if TYPE_CHECKING:
    import numpy as np


class Cache:
    """Fingerprints on disk, keyed by content; each write is atomic (write, then rename)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.digests = Digests(self.folder)

    def path_of(self, key: str) -> Path:
        return self._fp_path(key)

    def _fp_path(self, key: str) -> Path:
        return self.folder / "fingerprints" / key[:2] / f"{key}.lgfp"

    def _known(self, file: Path) -> str | None:
        found = self.digests.known(file)
        if found is None and file.stat().st_size < MEMO_FROM:
            return sha256_file(file)  # no memo of a small file is kept (see :func:`fresh`)
        return found

    def get(self, key: str) -> Fingerprint | None:
        try:
            return Fingerprint.from_bytes(self._fp_path(key).read_bytes())
        except (OSError, ValueError, KeyError, struct.error):
            return None

    def put(self, key: str, fp: Fingerprint) -> None:
        write_atomic(self._fp_path(key), fp.to_bytes())

    def keys(self) -> list[str]:
        """Every cached fingerprint's key."""
        base = self.folder / "fingerprints"
        return sorted(p.stem for p in base.glob("*/*.lgfp")) if base.is_dir() else []

    def known_key(self, path: Path) -> str | None:
        """The cache key of a weight file or adapter folder whose weights have not changed since
        they were last hashed (see :mod:`lakegen.artifacts.digests`)."""
        try:
            files = weight_files(path)
            digests = [self._known(f) for f in files]
            if any(d is None for d in digests):
                return None
            return cache_key(path, content_sha256(path, files, digests))  # type: ignore[arg-type]
        except (OSError, WeightsError):
            return None


def read_signature(path: Path) -> np.ndarray | None:
    """The signature of a stored fingerprint, read from its first few kilobytes."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            head = f.read(PREFIX)
    except OSError:
        return None
    if len(head) < PREFIX or not head.startswith(MAGIC):
        return None
    return np.frombuffer(head, dtype="<f4", count=SIGNATURE, offset=len(MAGIC) + 4)


class Cached(Mapping[str, Fingerprint]):
    """Model id -> fingerprint, loaded from the cache only when asked for.

    :meth:`signatures` reads just the signatures, so one new model can be ranked
    against many cached ones without loading them all.
    """

    def __init__(self, cache: Cache, keys: Mapping[str, str]):
        self.cache, self.keys_of = cache, dict(keys)
        self._loaded: dict[str, Fingerprint] = {}

    def __getitem__(self, model_id: str) -> Fingerprint:
        if model_id not in self._loaded:
            fp = self.cache.get(self.keys_of[model_id])
            if fp is None:
                raise KeyError(model_id)
            self._loaded[model_id] = fp
        return self._loaded[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_of)

    def __len__(self) -> int:
        return len(self.keys_of)

    def signatures(self, ids: Sequence[str]) -> np.ndarray:
        import numpy as np

        rows = np.zeros((len(ids), SIGNATURE), dtype=np.float32)
        for i, model_id in enumerate(ids):
            sig = read_signature(self.cache.path_of(self.keys_of[model_id]))
            if sig is not None:
                rows[i] = sig
        return rows


def cache_key(path: Path, sha256: str) -> str:
    """The cache key of a weight file: its sha256, plus the adapter config's hash for adapters."""
    if is_adapter(path):
        folder = path if path.is_dir() else path.parent
        config = hashlib.sha256((folder / ADAPTER_CONFIG).read_bytes()).hexdigest()[:16]
        return f"{sha256}-{config}"
    return sha256


def fingerprint(path: Path | str, cache: Cache | None = None) -> Fingerprint:
    """The fingerprint of a weight file or adapter folder, from the cache when the file is unchanged."""
    path = Path(path)
    if cache is not None:
        key = cache.known_key(path)
        found = cache.get(key) if key is not None else None
        if found is not None:
            return found
    return fresh(path, cache)


def fresh(path: Path, cache: Cache | None = None) -> Fingerprint:
    """:func:`fingerprint` computed from the file, which the caller knows is not cached; the result
    is cached."""
    fp, read = computed(path, cache)
    if cache is not None:
        remember(cache, read)
    return fp


Read = list[tuple[Path, str, os.stat_result]]


def computed(path: Path, cache: Cache | None = None) -> tuple[Fingerprint, Read]:
    """:func:`fresh`'s work, which a forked process may do: the fingerprint, written into the cache,
    and what :func:`remember` keeps of the files read (in the process whose cache lives on)."""
    files = weight_files(path)
    try:
        before = [f.stat() for f in files]
    except OSError as e:
        raise WeightsError(path, f"cannot read: {e.strerror or e}") from None
    fp = compute(path)
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            cache.put(cache_key(path, fp.sha256), fp)
    return fp, list(zip(files, fp.file_digests(), before, strict=True))


def remember(cache: Cache, read: Read) -> None:
    """The digests of files just fingerprinted, each with its stat record from before the read."""
    for file, digest, stat in read:
        # a small file is hashed again when asked for (:meth:`Cache.known_key`): writing its
        # memo cost a third of fingerprinting a 1 KiB file
        if stat.st_size >= MEMO_FROM:
            cache.digests.remember(file, digest, stat)
