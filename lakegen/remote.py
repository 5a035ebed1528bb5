"""Remote artifacts (``https``, ``http``, ``s3``, ``gs``, ``hf``): fetched safely, hashed over every byte.

A server's ETag or self-reported hash is no evidence, so an artifact's sha256 is
computed over the bytes as they arrive, in one streaming pass that writes them
into a content-addressed cache (``<cache>/blobs/``, capped in size, least
recently used first out). Attribution and bench then read the cached file, so a
content is fetched once across validate, attribute and bench. What a warm run
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
import fnmatch
import hashlib
import ipaddress
import json
import os
import posixpath
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lakegen.atomicfile import write_atomic
from lakegen.digests import Digests, default_cache_dir

SCHEMES = ("https", "http", "s3", "gs", "hf")
OFFLINE_ENV = "LAKEGEN_OFFLINE"  # set: remote artifacts stay unchecked and nothing is fetched
POLICIES_FILE = "catalog/policies.yaml"
HF_DEFAULT = "https://huggingface.co"
CHUNK = 1 << 20
POOL_SIZE = 16  # connections kept per host: the HEAD requests of a warm run go side by side
GIB = 1 << 30
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REDIRECTS = (301, 302, 303, 307, 308)


class StorageSettings(BaseModel):
    """``storage:`` in ``catalog/policies.yaml``: how lakegen may fetch remote artifacts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (name, IP, or host:port) that may be private or loopback, e.g. a MinIO "
        "server on the lake's network; nothing else may resolve to a non-global address.",
    )
    redirect_hosts: list[str] = Field(
        default_factory=lambda: ["*.hf.co", "*.huggingface.co"],
        description="Hosts (shell patterns) a redirect may lead to besides the URI's own host.",
    )
    max_bytes: int = Field(256 * GIB, gt=0, description="The largest object lakegen fetches.")
    timeout_s: float = Field(30.0, gt=0, description="Connecting, and the longest wait for the next bytes.")
    max_seconds: float = Field(6 * 3600.0, gt=0, description="The longest one object may take to fetch.")
    retries: int = Field(3, ge=0, le=10, description="Retries after a failed or cut-off transfer.")
    cache_bytes: int = Field(
        50 * GIB, ge=0, description="Size cap of the download cache; larger objects are hashed, not kept."
    )


class RemoteError(Exception):
    """Why a remote artifact could not be fetched; ``str()`` is one clear line."""


class Refused(RemoteError):
    """A fetch that the safety rules forbid."""


class NotFound(RemoteError):
    """The server says the object is not there."""


def load_settings(root: Path) -> StorageSettings:
    """The lake's storage settings; the strict defaults when it sets none or the file is broken
    (the governance check reports a broken ``policies.yaml``), so a bad file never loosens them."""
    path = root / POLICIES_FILE
    return settings_from(path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None)


def settings_at(root: Path, commit: str) -> StorageSettings:
    """The storage settings committed at ``commit`` (the strict defaults where there are none)."""
    done = subprocess.run(
        ["git", "-C", str(root), "show", f"{commit}:./{POLICIES_FILE}"], capture_output=True, check=False
    )
    return settings_from(done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None)


def settings_from(text: str | None) -> StorageSettings:
    from lakegen.errors import LakeError
    from lakegen.safeyaml import parse

    if text is None:
        return StorageSettings()
    try:
        data = parse(text).data
        section = data.get("storage") if isinstance(data, dict) else None
        return StorageSettings.model_validate(section or {})
    except (LakeError, ValidationError):
        return StorageSettings()


def fetch_under(root: Path, settings: StorageSettings) -> None:
    """Fetch for the lake at ``root`` under ``settings`` from now on in this process: a pull
    request's check uses its base's, so the request cannot loosen the rules for its own run."""
    key = root.resolve()
    _REMOTES[key] = Remote(key, settings)


# ---------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A parsed remote URI: for s3 ``bucket/key``, else the http(s) URL to GET (gs and hf too)."""

    uri: str
    scheme: str
    location: str
    auth: tuple[str, str] | None = None  # (host, Authorization header) sent to that host only

    @property
    def name(self) -> str:
        """The object's file name: cached blobs keep it, so readers detect formats by suffix."""
        base = self.location.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:120] or "blob"


def parse(uri: str) -> Target:
    """The target of ``uri``; :class:`Refused` for what lakegen does not fetch."""
    scheme, rest = uri.split(":", 1)
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        return Target(uri, scheme, uri)
    if scheme == "s3":
        bucket_key = rest.removeprefix("//")
        if "/" not in bucket_key.strip("/"):
            raise Refused(f"{uri}: an s3 URI names a bucket and a key (s3://bucket/path/to/file)")
        return Target(uri, scheme, bucket_key)
    if scheme == "hf":
        return _hf_target(uri, rest.removeprefix("//"))
    if scheme == "gs":
        return _gs_target(uri, rest.removeprefix("//"))
    raise Refused(f"{uri}: lakegen does not fetch {scheme}: URIs (https, http, s3, gs and hf it does)")


def _gs_target(uri: str, rest: str) -> Target:
    """Cloud Storage's XML API, at ``STORAGE_EMULATOR_HOST`` when set (as Google's libraries do)."""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise Refused(f"{uri}: a gs URI names a bucket and an object (gs://bucket/path/to/file)")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator and "://" not in emulator:
        emulator = f"http://{emulator}"
    endpoint = (emulator or "https://storage.googleapis.com").rstrip("/")
    token = _gcloud_token() if not emulator else None
    auth = (urlsplit(endpoint).netloc.lower(), f"Bearer {token}") if token else None
    return Target(uri, "gs", f"{endpoint}/{bucket}/{quote(key, safe='/')}", auth)


def _gcloud_token() -> str | None:
    """A token from Google's default credentials when google-auth is installed; else none (public
    objects only)."""
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError:
        return None
    try:
        scope = "https://www.googleapis.com/auth/devstorage.read_only"
        credentials, _ = google.auth.default(scopes=[scope])
        credentials.refresh(google.auth.transport.requests.Request())
    except Exception:  # no credentials configured: public objects still work
        return None
    return str(credentials.token) if credentials.token else None


def _hf_target(uri: str, rest: str) -> Target:
    kind = ""
    if rest.startswith(("datasets/", "spaces/")):
        kind, rest = rest.split("/", 1)
        kind += "/"
    m = re.match(r"^([^/@]+/[^/@]+)@([^/]+)/(.+)$", rest)
    if m is None:
        raise Refused(f"{uri}: an hf URI is hf://org/name@<commit>/path/in/repo")
    repo, revision, file = m.groups()
    if not _COMMIT.match(revision):
        raise Refused(
            f"{uri}: revision '{revision}' is a branch or tag, which can move; a released version "
            "pins the 40-character commit id"
        )
    endpoint = os.environ.get("HF_ENDPOINT", HF_DEFAULT).rstrip("/")
    url = f"{endpoint}/{kind}{repo}/resolve/{revision}/{file}"
    token = _hf_token()
    auth = (urlsplit(endpoint).netloc.lower(), f"Bearer {token}") if token else None
    return Target(uri, "hf", url, auth)


def _hf_token() -> str | None:
    try:
        from huggingface_hub import get_token
    except ImportError:
        return os.environ.get("HF_TOKEN") or None
    return get_token()


# --------------------------------------------------------------------------------------- safety


def check_host(host: str, port: int | None, settings: StorageSettings) -> list[str]:
    """The addresses ``host`` resolves to, after refusing any that is not global unless allowed."""
    host = host.strip("[]").lower()
    allowed = host in settings.allow_hosts or f"{host}:{port}" in settings.allow_hosts
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise RemoteError(f"cannot resolve host '{host}': {e}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allowed:
        for address in addresses:
            why = _not_global(address)
            if why:
                named = host if host == address else f"{host} ({address})"
                raise Refused(
                    f"refused: {named} is {why}; a lake that needs it lists '{host}' under "
                    f"storage.allow_hosts in {POLICIES_FILE}"
                )
    return addresses


def _not_global(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


# --------------------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Head:
    size: int | None
    stamp: str  # what identifies this version of the object ("" when the server gives nothing)


class Backend(Protocol):
    def head(self, target: Target) -> Head: ...

    def chunks(self, target: Target, head: Head, offset: int) -> Iterator[bytes]:
        """The object's bytes from ``offset`` on (raises :class:`_Restart` when it can only start
        again from byte 0)."""
        ...


class _Restart(Exception):
    """The server ignored a range request: the transfer starts again from byte 0."""


class HttpBackend:
    """http, https and hf through urllib3, connecting to the very addresses that were checked."""

    def __init__(self, settings: StorageSettings):
        import urllib3

        self.settings = settings
        self.timeout = urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s)
        self._pools: dict[tuple[str, str, int], Any] = {}

    def _pool(self, scheme: str, host: str, port: int) -> Any:
        import certifi
        import urllib3

        key = (scheme, host, port)
        if key not in self._pools:
            address = check_host(host, port, self.settings)[0]
            if scheme == "https":
                self._pools[key] = urllib3.HTTPSConnectionPool(
                    address,
                    port,
                    server_hostname=host,
                    assert_hostname=host,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=certifi.where(),
                    timeout=self.timeout,
                    retries=False,
                    maxsize=POOL_SIZE,
                )
            else:
                self._pools[key] = urllib3.HTTPConnectionPool(
                    address, port, timeout=self.timeout, retries=False, maxsize=POOL_SIZE
                )
        return self._pools[key]

    def _request(self, method: str, target: Target, headers: dict[str, str]) -> Any:
        url = target.location
        origin = urlsplit(url).hostname or ""
        for _ in range(6):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Refused(f"refused: {target.uri} leads to '{url}', not an http(s) URL")
            host = parts.hostname.lower()
            port = parts.port or (443 if parts.scheme == "https" else 80)
            sent = dict(headers, Host=parts.netloc)
            if target.auth is not None and target.auth[0] == parts.netloc.lower():
                sent["Authorization"] = target.auth[1]
            path = parts.path or "/"
            path += f"?{parts.query}" if parts.query else ""
            response = self._pool(parts.scheme, host, port).urlopen(
                method, path, headers=sent, redirect=False, preload_content=False, assert_same_host=False
            )
            if response.status not in _REDIRECTS:
                return response
            response.drain_conn()
            following = urljoin(url, response.headers.get("Location", ""))
            new = urlsplit(following)
            if parts.scheme == "https" and new.scheme != "https":
                raise Refused(f"refused: {target.uri} redirects from https to {new.scheme}")
            new_host = (new.hostname or "").lower()
            patterns = self.settings.redirect_hosts
            if new_host != origin and not any(fnmatch.fnmatch(new_host, p) for p in patterns):
                raise Refused(
                    f"refused: {target.uri} redirects to another host ({new_host}); a lake that trusts "
                    f"it lists it under storage.redirect_hosts in {POLICIES_FILE}"
                )
            url = following
        raise RemoteError(f"{target.uri}: too many redirects")

    def _raise_for(self, target: Target, response: Any) -> None:
        status = response.status
        if status in (404, 410):
            raise NotFound(f"not found at {target.uri} (HTTP {status})")
        if status in (401, 403):
            raise RemoteError(f"access denied to {target.uri} (HTTP {status}); check the credentials")
        if status >= 400:
            raise _Transient(f"{target.uri}: HTTP {status}")

    def head(self, target: Target) -> Head:
        response = self._request("HEAD", target, {"Accept-Encoding": "identity"})
        response.drain_conn()
        self._raise_for(target, response)
        h = response.headers
        size = h.get("X-Linked-Size") or h.get("Content-Length")
        stamp = h.get("X-Linked-Etag") or h.get("ETag") or h.get("Last-Modified") or ""
        return Head(int(size) if size and size.isdigit() else None, stamp)

    def chunks(self, target: Target, head: Head, offset: int) -> Iterator[bytes]:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if head.stamp:
                headers["If-Range"] = head.stamp
        response = self._request("GET", target, headers)
        try:
            self._raise_for(target, response)
            if offset and response.status != 206:
                raise _Restart
            if offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise _Restart
            # read1: what has arrived, so a slow trickle still meets the max_seconds check
            while chunk := response.read1(CHUNK, decode_content=False):
                yield chunk
        finally:
            response.release_conn()


class S3Backend:
    """s3 through s3fs, at the endpoint botocore resolves (``AWS_ENDPOINT_URL``, the profile, AWS)."""

    def __init__(self, settings: StorageSettings):
        import botocore.session

        client = botocore.session.get_session().create_client("s3")
        self.endpoint = str(client.meta.endpoint_url)
        parts = urlsplit(self.endpoint)
        check_host(parts.hostname or "", parts.port, settings)
        import s3fs

        self.fs = s3fs.S3FileSystem(
            skip_instance_cache=True,
            endpoint_url=self.endpoint,
            config_kwargs={
                "connect_timeout": settings.timeout_s,
                "read_timeout": settings.timeout_s,
                "retries": {"max_attempts": settings.retries + 1, "mode": "standard"},
            },
        )

    def head(self, target: Target) -> Head:
        try:
            info = self.fs.info(target.location)
        except FileNotFoundError:
            raise NotFound(f"not found at {target.uri}") from None
        except PermissionError:
            raise RemoteError(f"access denied to {target.uri}; check the AWS credentials") from None
        if info.get("type") != "file":
            raise NotFound(f"not found at {target.uri} (a prefix, not an object)")
        stamp = f"{info.get('ETag', '')} {info.get('VersionId') or ''}".strip()
        return Head(int(info["size"]), stamp)

    def chunks(self, target: Target, head: Head, offset: int) -> Iterator[bytes]:
        # One GetObject streamed (a range only to resume), pinned to the version that HEAD saw:
        # s3fs's file object would send a range request per block.
        from fsspec.asyn import sync

        bucket, key = target.location.split("/", 1)
        etag, _, version = head.stamp.partition(" ")
        kwargs = {"Bucket": bucket, "Key": key, "IfMatch": etag}
        if version:
            kwargs["VersionId"] = version
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        response = self.fs.call_s3("get_object", **kwargs)
        body = response["Body"]
        try:
            while chunk := sync(self.fs.loop, body.read, CHUNK):
                yield chunk
        finally:
            body.close()


class _Transient(RemoteError):
    """A failure worth a retry (a server error, a cut-off body, a timeout)."""


# --------------------------------------------------------------------------------------- fetching


@dataclass
class Fetched:
    sha256: str
    size: int
    blob: Path | None  # where the bytes were kept, if they fit the cache


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
        self._backends: dict[str, Backend] = {}
        self._heads: dict[str, Head] = {}
        self._cached_bytes: int | None = None  # the download cache's size, counted once per process

    def _head(self, target: Target) -> Head:
        return self.backend(target).head(target)

    def prefetch_heads(self, uris: list[str], workers: int = POOL_SIZE) -> None:
        """Send the HEAD requests of ``uris`` side by side, for :meth:`verify` to use: a warm run
        over many remote artifacts waits for one round trip per batch, not per artifact. A URI
        whose HEAD fails is left for :meth:`verify` to try again and report."""
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
                self._heads[target.uri] = self._head(target)

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

    def verify(self, uri: str, size: int, sha256: str) -> str | None:
        """Why the object at ``uri`` does not match ``size`` and ``sha256``, or None when it does.

        Raises :class:`RemoteError` when the object cannot be checked (refused, unreachable).
        """
        target = parse(uri)
        try:
            head = self._heads.pop(uri, None) or self._head(target)
        except NotFound as e:
            return f"file not found: {e}"
        if head.size is not None and head.size != size:
            return f"size is {head.size:,} bytes; manifest says {size:,}"
        record = self._record(uri)
        if record is not None and head.stamp and record.get("stamp") == head.stamp:
            actual = record.get("sha256")
            if record.get("size") == size and isinstance(actual, str):
                return None if actual == sha256 else _mismatch(sha256, actual)
        fetched = self._fetch(target, head, size, sha256)
        if fetched.size > size:
            return f"size is over {size:,} bytes, the manifest's (the transfer was stopped there)"
        if fetched.size != size:
            return f"size is {fetched.size:,} bytes; manifest says {size:,}"
        return None if fetched.sha256 == sha256 else _mismatch(sha256, fetched.sha256)

    def local_copy(self, uri: str, size: int, sha256: str) -> Path:
        """A local file holding exactly the content ``sha256`` of ``uri``: the cached one, or fetched
        now. Raises :class:`RemoteError` when it cannot be had, or the object is not that content."""
        found = self.blob(sha256)
        if found is not None:
            return found
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
        fetched = self._fetch(target, head, size, sha256)
        if fetched.sha256 != sha256 or fetched.blob is None:
            raise RemoteError(f"{uri}: {_mismatch(sha256, fetched.sha256)}")
        return fetched.blob

    # -- one streaming pass

    def _fetch(self, target: Target, head: Head, size: int, sha256: str) -> Fetched:
        limit = min(size, self.settings.max_bytes)
        if size > self.settings.max_bytes:
            raise Refused(
                f"refused: {target.uri} is {size:,} bytes, over storage.max_bytes "
                f"({self.settings.max_bytes:,})"
            )
        keep = size <= self.settings.cache_bytes
        tmp_dir = self.folder / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{os.getpid()}-{sha256[:16]}-{time.monotonic_ns()}"
        deadline = time.monotonic() + self.settings.max_seconds
        done = 0
        retryable: tuple[type[BaseException], ...] = (_Transient, OSError, *_transport_errors())
        try:
            with open(tmp, "wb") if keep else open(os.devnull, "wb") as out:
                sink = _Sink(out)
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

    def __init__(self, out: Any):
        self.out = out
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
                except OSError as e:
                    self.error = e
            self.chunks.task_done()

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


@cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions

    errors: list[type[BaseException]] = [urllib3.exceptions.HTTPError]
    try:
        import botocore.exceptions

        errors += [botocore.exceptions.BotoCoreError]
    except ImportError:
        pass
    return tuple(errors)


def _describe(e: BaseException) -> str:
    """A short reason, never the request's headers (they may hold a token)."""
    import urllib3.exceptions

    if isinstance(e, urllib3.exceptions.ReadTimeoutError | TimeoutError | socket.timeout):
        return "timed out waiting for data (storage.timeout_s)"
    if isinstance(e, urllib3.exceptions.ProtocolError):
        return "the connection broke off before the whole object arrived"
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


_REMOTES: dict[Path, Remote] = {}


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


def check(remote: Remote, art: Any, add: Callable[[tuple[str | int, ...], str], None]) -> str:
    """Verify a remote artifact and its companions; each problem goes to ``add(field, message)``.

    Returns the artifact's state: ``verified``; ``contradicted`` when an object differs from its pin
    or is missing; ``unchecked`` when one could not be checked (refused, unreachable, offline).
    """
    if remote.offline():
        return "unchecked"
    state = "verified"
    for loc, uri, size, sha256 in pinned(art.uri, art.size, art.sha256, art.files):
        where = "path" if loc else "uri"
        try:
            problem = remote.verify(uri, size, sha256)
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
    names = [parse(art.uri).name, *(posixpath.normpath(f.path) for f in art.files)]
    outside = next((n for n in names[1:] if n == ".." or n.startswith("../")), None)
    if outside is not None:
        return f"remote artifact {art.uri}: pinned file '{outside}' leaves the artifact's folder"
    try:
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
