"""How bytes are read: http(s) (and gs, hf) through urllib3, s3 through s3fs."""

from __future__ import annotations

import fnmatch
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from lakegen.artifacts.remote.safety import check_host
from lakegen.artifacts.remote.settings import POLICIES_FILE, NotFound, Refused, RemoteError, StorageSettings
from lakegen.artifacts.remote.targets import Target

CHUNK = 1 << 20
POOL_SIZE = 16  # connections kept per host: the HEAD requests of a warm run go side by side
_REDIRECTS = (301, 302, 303, 307, 308)


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

    def range(self, target: Target, head: Head, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the version ``head`` saw; :class:`RemoteError` when the server
        will not serve exactly those (it ignores ranges, or the object changed)."""
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

    def range(self, target: Target, head: Head, start: int, end: int) -> bytes:
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"}
        # An hf URI pins a commit, so its bytes cannot change; and the CDN its redirect leads to
        # names them by another ETag than the Hub's X-Linked-Etag, which it would not match.
        if head.stamp and target.scheme != "hf":
            headers["If-Range"] = head.stamp
        response = self._request("GET", target, headers)
        try:
            self._raise_for(target, response)
            expected = f"bytes {start}-{end - 1}/"
            if response.status != 206 or not response.headers.get("Content-Range", "").startswith(expected):
                response.close()  # what follows may be the whole object: not read, the connection goes
                raise RemoteError(
                    f"{target.uri}: the server answered a range request with HTTP {response.status}, not "
                    "the bytes asked for (it ignores ranges, or the object changed since it was hashed)"
                )
            return bytes(response.read(end - start, decode_content=False))
        finally:
            response.release_conn()


class S3Backend:
    """s3 through s3fs, at the endpoint botocore resolves (``AWS_ENDPOINT_URL``, the profile, AWS)."""

    def __init__(self, settings: StorageSettings):
        try:
            import botocore.exceptions
            import botocore.session
            import s3fs
        except ImportError:
            raise RemoteError("s3:// needs s3fs: pip install 'lakegen[remote]'") from None
        try:
            client = botocore.session.get_session().create_client("s3")
        except botocore.exceptions.BotoCoreError as e:
            raise RemoteError(f"S3 is not set up here: {e}") from None
        self.endpoint = str(client.meta.endpoint_url)
        parts = urlsplit(self.endpoint)
        check_host(parts.hostname or "", parts.port, settings)

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

    def range(self, target: Target, head: Head, start: int, end: int) -> bytes:
        from fsspec.asyn import sync

        bucket, key = target.location.split("/", 1)
        etag, _, version = head.stamp.partition(" ")
        kwargs = {"Bucket": bucket, "Key": key, "IfMatch": etag, "Range": f"bytes={start}-{end - 1}"}
        if version:
            kwargs["VersionId"] = version
        response = self.fs.call_s3("get_object", **kwargs)
        body = response["Body"]
        try:
            if not str(response.get("ContentRange", "")).startswith(f"bytes {start}-{end - 1}/"):
                raise RemoteError(f"{target.uri}: the server answered a range request with other bytes")
            return bytes(sync(self.fs.loop, body.read))
        finally:
            body.close()


class _Transient(RemoteError):
    """A failure worth a retry (a server error, a cut-off body, a timeout)."""


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
    if isinstance(e, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
        errno = re.search(r"\[Errno [^\]]+\][^'\"]*", str(e))
        return f"cannot connect ({errno.group(0).strip()})" if errno else "cannot connect"
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
