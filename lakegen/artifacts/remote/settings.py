"""The lake's storage settings (``storage:`` in ``catalog/policies.yaml``) and the errors of fetching."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMES = ("https", "http", "s3", "gs", "hf")
OFFLINE_ENV = "LAKEGEN_OFFLINE"  # set: remote artifacts stay unchecked and nothing is fetched
POLICIES_FILE = "catalog/policies.yaml"
GIB = 1 << 30


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
    from lakegen.gitrepo import Repo

    repo = Repo.find(root)
    text = repo.file_at(commit, POLICIES_FILE) if repo is not None else None
    return settings_from(text.decode("utf-8", "replace") if text is not None else None)


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
