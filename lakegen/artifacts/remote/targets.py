"""Remote URIs parsed into what to fetch: s3 bucket and key, or the http(s) URL (gs and hf too)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from lakegen.artifacts.remote.settings import Refused

HF_DEFAULT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


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
