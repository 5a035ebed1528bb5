"""One streaming pass per object: sha256 over every byte, written into the content-addressed cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lakegen.artifacts.digests import Digests, default_cache_dir
from lakegen.artifacts.remote.backends import (
    POOL_SIZE,
    Backend,
    Head,
    HttpBackend,
    S3Backend,
    _describe,
    _Restart,
    _Transient,
    _transport_errors,
)
from lakegen.artifacts.remote.ranges import RangeSource
from lakegen.artifacts.remote.settings import (
    OFFLINE_ENV,
    NotFound,
    Refused,
    RemoteError,
    StorageSettings,
    load_settings,
)
from lakegen.artifacts.remote.targets import Target, parse
from lakegen.atomicfile import write_atomic


@dataclass
class Fetched:
    sha256: str
    size: int
    blob: Path | None  # where the bytes were kept, if they fit the cache


class Tap(Protocol):
    """Sees an object's bytes as they stream by, to keep what a reader will ask for (a weight
    file's sampled entries): ``feed`` each chunk in order, ``restart`` from byte 0, ``save`` once
    the object hashed to its pin. Fed in the hashing thread; it must not raise."""

    def feed(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...

    def save(self, path: Path) -> None: ...


TapFactory = Callable[[int], Tap]  # the object's size -> a tap


class Unpinned(RemoteError):
    """The server names no version of an object, so it cannot be read in parts (only whole)."""


class Remote:
    """Checks and fetches remote artifacts for one lake; counts the bytes it downloads."""

    def __init__(
        self,
        root: Path,
        settings: StorageSettings | None = None,
        cache_dir: Path | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ):
        self.settings = settings if settings is not None else load_settings(root)
        self.folder = cache_dir if cache_dir is not None else default_cache_dir(root)
        self.digests = Digests(self.folder)
        self.progress = progress if progress is not None else (_Bar() if sys.stderr.isatty() else None)
        self.bytes_fetched = 0
        self.range_requests = 0  # of them, by range requests (see :meth:`ranged`)
        self._backends: dict[str, Backend] = {}
        self._heads: dict[str, Head | RemoteError] = {}  # HEAD answers sent ahead (prefetch_heads)
        self._cached_bytes: int | None = None  # the download cache's size, counted once per process
        self._hashed: dict[str, Head] = {}  # URIs whose bytes this process saw hash to their record

    def _head(self, target: Target) -> Head:
        """The object's HEAD answer, retried with backoff; :class:`RemoteError` when none came."""
        retryable: tuple[type[BaseException], ...] = (_Transient, OSError, *_transport_errors())
        for attempt in range(self.settings.retries + 1):
            try:
                return self.backend(target).head(target)
            except retryable as e:
                if attempt == self.settings.retries:
                    raise RemoteError(f"could not reach {target.uri}: {_describe(e)}") from None
                time.sleep(min(0.5 * 2**attempt, 8.0))
        raise AssertionError("unreachable")

    def prefetch_heads(self, uris: list[str], workers: int = POOL_SIZE) -> None:
        """Send the HEAD requests of ``uris`` side by side, for :meth:`verify` to use: a warm run
        over many remote artifacts waits for one round trip per batch, not per artifact. A URI
        whose HEAD fails keeps its error for :meth:`verify` to report."""
        from concurrent.futures import ThreadPoolExecutor

        targets = []
        for uri in dict.fromkeys(uris):
            try:
                targets.append(parse(uri))
            except RemoteError:
                continue
        for target in targets:  # backends are made here, once, not by racing threads
            with contextlib.suppress(RemoteError):
                self.backend(target)

        def one(target: Target) -> None:
            with contextlib.suppress(RemoteError, OSError, *_transport_errors()):
                try:
                    self._heads[target.uri] = self._head(target)
                except RemoteError as e:
                    self._heads[target.uri] = e

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, targets))

    @staticmethod
    def offline() -> bool:
        return bool(os.environ.get(OFFLINE_ENV))

    def backend(self, target: Target) -> Backend:
        kind = "s3" if target.scheme == "s3" else "http"
        if kind not in self._backends:
            self._backends[kind] = S3Backend(self.settings) if kind == "s3" else HttpBackend(self.settings)
        return self._backends[kind]

    # -- the record of what a URI held when it was last read whole

    def _record_path(self, uri: str) -> Path:
        name = hashlib.sha256(uri.encode()).hexdigest()
        return self.folder / "remote" / name[:2] / f"{name}.json"

    def _record(self, uri: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._record_path(uri).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def blob(self, sha256: str) -> Path | None:
        """The cached file holding the content ``sha256``, if any (and marks it used)."""
        folder = self.folder / "blobs" / sha256[:2] / sha256
        found = next((p for p in folder.glob("*") if p.is_file()), None) if folder.is_dir() else None
        if found is not None:
            os.utime(folder)  # least-recently-used order, kept on the folder: the file's stat stays put
        return found

    # -- the two questions callers ask

    def verify(
        self, uri: str, size: int, sha256: str, keep: bool = True, tap: TapFactory | None = None
    ) -> str | None:
        """Why the object at ``uri`` does not match ``size`` and ``sha256``, or None when it does.

        The bytes are kept in the download cache if they fit and ``keep`` (an object read later by
        range requests, see :meth:`ranged`, is hashed and not kept), and a ``tap`` made for the pass
        keeps what it wants under :meth:`caught` once the bytes hash to ``sha256``. Raises
        :class:`RemoteError` when the object cannot be checked (refused, unreachable).
        """
        target = parse(uri)
        try:
            ahead = self._heads.pop(uri, None)
            if isinstance(ahead, RemoteError):
                raise ahead
            head = ahead or self._head(target)
        except NotFound as e:
            return f"file not found: {e}"
        if head.size is not None and head.size != size:
            return f"size is {head.size:,} bytes; manifest says {size:,}"
        record = self._record(uri)
        if record is not None and head.stamp and record.get("stamp") == head.stamp:
            actual = record.get("sha256")
            if record.get("size") == size and isinstance(actual, str):
                self._hashed[uri] = head
                return None if actual == sha256 else _mismatch(sha256, actual)
        fetched = self._fetch(target, head, size, sha256, keep, tap(size) if tap is not None else None)
        if head.stamp:
            self._hashed[uri] = head
        if fetched.size > size:
            return f"size is over {size:,} bytes, the manifest's (the transfer was stopped there)"
        if fetched.size != size:
            return f"size is {fetched.size:,} bytes; manifest says {size:,}"
        return None if fetched.sha256 == sha256 else _mismatch(sha256, fetched.sha256)

    def local_copy(self, uri: str, size: int, sha256: str) -> Path:
        """A local file holding exactly the content ``sha256`` of ``uri``: the cached one, or fetched
        now. Raises :class:`RemoteError` when it cannot be had, or the object is not that content."""
        found = self.blob(sha256)
        # The stat memo answers for an untouched blob without reading it; one changed on disk
        # since it was fetched is dropped and fetched again.
        if found is not None and self.digests.sha256(found) == sha256:
            return found
        if found is not None:
            shutil.rmtree(found.parent, ignore_errors=True)
        if self.offline():
            raise RemoteError(f"{uri} is not in the cache, and {OFFLINE_ENV} is set")
        target = parse(uri)
        try:
            head = self._head(target)
        except NotFound as e:
            raise RemoteError(f"file not found: {e}") from None
        if size > self.settings.cache_bytes:
            raise RemoteError(
                f"{uri} ({size:,} bytes) is larger than the download cache "
                f"(storage.cache_bytes, {self.settings.cache_bytes:,} bytes)"
            )
        fetched = self._fetch(target, head, size, sha256, keep=True)
        if fetched.sha256 != sha256 or fetched.blob is None:
            raise RemoteError(f"{uri}: {_mismatch(sha256, fetched.sha256)}")
        return fetched.blob

    def ranged(self, uri: str, size: int, sha256: str) -> RangeSource:
        """The object at ``uri`` to read in parts, once a pass over every byte of the version the
        server holds now found ``size`` and ``sha256`` (this process's, or its record's). Raises
        :class:`RemoteError` when it is not that content, or the server names no version (no ETag
        or Last-Modified), so parts could not be tied to the bytes that were hashed."""
        if self.offline():
            raise RemoteError(f"{uri} is read by range requests, and {OFFLINE_ENV} is set")
        head = self._hashed.get(uri)
        if head is None:
            problem = self.verify(uri, size, sha256, keep=False)
            if problem is not None:
                raise RemoteError(f"{uri}: {problem}")
            head = self._hashed.get(uri)
        if head is None:
            raise Unpinned(f"{uri}: the server names no version of the object (no ETag or Last-Modified)")
        record = self._record(uri) or {}
        if record.get("stamp") != head.stamp or record.get("sha256") != sha256 or record.get("size") != size:
            raise RemoteError(f"{uri}: not the content the manifest pins")

        def count(n: int) -> None:
            self.bytes_fetched += n
            self.range_requests += 1

        source = RangeSource(parse(uri), head, size, sha256, self.backend(parse(uri)), self.settings, count)
        source.caught = self.caught(sha256)
        return source

    # -- one streaming pass

    def caught(self, sha256: str) -> Path:
        """Where a :class:`Tap` keeps what it caught of the content ``sha256``."""
        return self.folder / "caught" / f"{sha256}.npz"

    def _fetch(
        self, target: Target, head: Head, size: int, sha256: str, keep: bool, tap: Tap | None = None
    ) -> Fetched:
        limit = min(size, self.settings.max_bytes)
        if size > self.settings.max_bytes:
            raise Refused(
                f"refused: {target.uri} is {size:,} bytes, over storage.max_bytes "
                f"({self.settings.max_bytes:,})"
            )
        keep = keep and size <= self.settings.cache_bytes
        tap = None if keep else tap  # what is kept whole is read from the cache
        tmp_dir = self.folder / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{os.getpid()}-{sha256[:16]}-{time.monotonic_ns()}"
        deadline = time.monotonic() + self.settings.max_seconds
        done = 0
        retryable: tuple[type[BaseException], ...] = (_Transient, OSError, *_transport_errors())
        try:
            with open(tmp, "wb") if keep else open(os.devnull, "wb") as out:
                sink = _Sink(out, tap)
                try:
                    for attempt in range(self.settings.retries + 1):
                        try:
                            for chunk in self.backend(target).chunks(target, head, done):
                                done += len(chunk)
                                if done > limit:
                                    return Fetched("", done, None)  # longer than declared: stopped
                                sink.put(chunk)
                                self.bytes_fetched += len(chunk)
                                if self.progress is not None:
                                    self.progress(target.uri, done, size)
                                if time.monotonic() > deadline:
                                    raise RemoteError(
                                        f"{target.uri}: not fetched within storage.max_seconds "
                                        f"({self.settings.max_seconds:g} s)"
                                    )
                            break
                        except _Restart:
                            sink.restart()
                            done = 0
                        except retryable as e:
                            if attempt == self.settings.retries or time.monotonic() > deadline:
                                raise RemoteError(f"could not fetch {target.uri}: {_describe(e)}") from None
                            time.sleep(min(0.5 * 2**attempt, 8.0))
                    else:
                        raise RemoteError(
                            f"could not fetch {target.uri}: the server would not resume the transfer"
                        )
                finally:
                    actual = sink.close()
            if sink.error is not None:
                raise RemoteError(f"could not write {target.uri} into the download cache: {sink.error}")
            self._remember(target.uri, head, done, actual)
            if tap is not None and actual == sha256 and done == size:
                with contextlib.suppress(OSError):  # a cache it cannot write: reads go by range requests
                    tap.save(self.caught(sha256))
            blob = self._keep(tmp, actual, target.name) if keep and actual == sha256 else None
            return Fetched(actual, done, blob)
        finally:
            tmp.unlink(missing_ok=True)
            if self.progress is not None:
                self.progress(target.uri, size, size)  # done, or given up: either way the bar goes

    def _remember(self, uri: str, head: Head, size: int, sha256: str) -> None:
        if head.stamp:
            record = {"uri": uri, "stamp": head.stamp, "size": size, "sha256": sha256}
            write_atomic(self._record_path(uri), json.dumps(record).encode())

    def _keep(self, tmp: Path, sha256: str, name: str) -> Path:
        folder = self.folder / "blobs" / sha256[:2] / sha256
        folder.mkdir(parents=True, exist_ok=True)
        blob = folder / name
        os.replace(tmp, blob)
        blob.chmod(0o444)
        # Dated back past the digest memo's racy window: the blob is complete and never rewritten,
        # so attribution reads its sha256 from the memo instead of hashing the file again.
        now = time.time_ns()
        os.utime(blob, ns=(now, now - 10**10))
        self.digests.remember(blob, sha256, blob.stat())
        if self._cached_bytes is None:
            self._cached_bytes = sum(p.stat().st_size for p in (self.folder / "blobs").glob("??/*/*"))
        else:
            self._cached_bytes += blob.stat().st_size
        if self._cached_bytes > self.settings.cache_bytes:
            self._evict(keep=folder)
        return blob

    def _evict(self, keep: Path) -> None:
        """Least recently used blobs out until the cache is within ``storage.cache_bytes``."""
        folders = [f for f in (self.folder / "blobs").glob("??/*") if f.is_dir()]
        sized = [(f.stat().st_mtime_ns, f, sum(p.stat().st_size for p in f.iterdir())) for f in folders]
        total = sum(s for _, _, s in sized)
        for _, folder, bytes_ in sorted(sized):
            if total <= self.settings.cache_bytes:
                break
            if folder == keep:
                continue
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
            total -= bytes_
        self._cached_bytes = total
        # a release folder whose files lost their blob would hold the bytes outside the cap
        for release in (self.folder / "releases").glob("*"):
            files = [p for p in release.rglob("*") if p.is_file()]
            if any(p.stat().st_nlink < 2 for p in files):
                shutil.rmtree(release, ignore_errors=True)


class _Sink:
    """Hashes and writes a transfer's chunks in a thread of its own: hashlib and file writes release
    the GIL, so receiving the next chunk overlaps hashing and writing the last."""

    def __init__(self, out: Any, tap: Tap | None = None):
        self.out, self.tap = out, tap
        self.hasher = hashlib.sha256()
        self.error: OSError | None = None
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is None:
                try:
                    self.hasher.update(chunk)
                    self.out.write(chunk)
                    if self.tap is not None:
                        self._feed(chunk)
                except OSError as e:
                    self.error = e
            self.chunks.task_done()

    def _feed(self, chunk: bytes) -> None:
        try:
            self.tap.feed(chunk)  # type: ignore[union-attr]
        except Exception:  # a tap that fails loses its catch (reads go by range requests), never the hash
            self.tap = None

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.chunks.put(chunk)

    def restart(self) -> None:
        """Forget every chunk so far: the transfer starts again from byte 0."""
        self.chunks.join()
        self.hasher = hashlib.sha256()
        self.out.seek(0)
        self.out.truncate()
        if self.tap is not None:
            self.tap.restart()

    def close(self) -> str:
        """Wait for the chunks put so far; their sha256 (check ``error`` first)."""
        if self.thread.is_alive():
            self.chunks.put(None)
            self.thread.join()
        return self.hasher.hexdigest()


class _Bar:
    """Download bars on a terminal's stderr, one per object while it is fetched."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        self.bars = Progress(*columns, console=Console(stderr=True), transient=True)
        self.tasks: dict[str, Any] = {}

    def __call__(self, uri: str, done: int, total: int) -> None:
        if uri not in self.tasks:
            if done >= total:
                return
            self.bars.start()
            self.tasks[uri] = self.bars.add_task(uri, total=total)
        self.bars.update(self.tasks[uri], completed=done)
        if done >= total:
            self.bars.remove_task(self.tasks.pop(uri))
            if not self.tasks:
                self.bars.stop()


def _mismatch(declared: str, actual: str) -> str:
    return f"sha256 mismatch: manifest says {declared}, the remote object has {actual}"
