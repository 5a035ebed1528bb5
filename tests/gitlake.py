"""Real temporary git repositories holding small lakes, for the governance tests.

``GitLake`` runs the git command line (each repository with its own user.name
and user.email); the manifest helpers write entries that validate, with
artifacts that are real files carrying their real sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

OWNERS = """\
people:
  - {handle: '@ada', name: Ada}
  - {handle: '@grace', name: Grace}
teams:
  - {id: acme/vision, members: ['@ada']}
"""


GITHUB = {"GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com"}


class GitLake:
    """A lake in its own git repository."""

    def __init__(self, root: Path, *, owners: str | None = OWNERS, policies: str | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Ada Lovelace")
        self.git("config", "user.email", "ada@example.org")
        self.git("config", "commit.gpgsign", "false")
        (root / "catalog").mkdir(exist_ok=True)
        if owners is not None:
            self.write("catalog/owners.yaml", owners)
        if policies is not None:
            self.write("catalog/policies.yaml", policies)

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **(env or {})}
        done = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, env=env)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def write(self, rel: str, content: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def put(self, manifest: dict[str, Any]) -> Path:
        """Write a manifest dict to its folder, with its artifacts."""
        folder = {"model": "models", "dataset": "datasets", "code": "code"}[manifest["kind"]]
        for version in manifest.get("versions", []):
            data = version.pop("_bytes", None)
            if data is not None:
                self.write(f"catalog/artifacts/{manifest['id']}-{version['version']}.safetensors", data)
        return self.write(
            f"catalog/{folder}/{manifest['id']}.yaml", yaml.safe_dump(manifest, sort_keys=False)
        )

    def commit(self, message: str, author: tuple[str, str] | None = None, *, by_github: bool = False) -> str:
        """Commit everything; ``by_github``: as GitHub's squash button does (GitHub the committer)."""
        self.git("add", "-A")
        args = ["commit", "-q", "-m", message]
        if author:
            args += ["--author", f"{author[0]} <{author[1]}>"]
        self.git(*args, env=GITHUB if by_github else None)
        return self.git("rev-parse", "HEAD")

    def merge(self, branch: str, message: str, *, by_github: bool = True) -> str:
        """Merge ``branch`` as GitHub's merge button does (the author clicks, GitHub commits), or by hand."""
        self.git("merge", "-q", "--no-ff", branch, "-m", message, env=GITHUB if by_github else None)
        return self.git("rev-parse", "HEAD")


def weights(seed: str, shape: tuple[int, int] = (4, 4)) -> bytes:
    """A tiny real safetensors file, different for each ``seed``."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    return save({"layer.weight": rng.standard_normal(shape).astype(np.float32)})


def version(v: str, data: bytes, entry_id: str, released: str = "2026-01-01") -> dict[str, Any]:
    return {
        "version": v,
        "released": released,
        "artifact": {
            "uri": f"../artifacts/{entry_id}-{v}.safetensors",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "format": "safetensors",
        },
        "_bytes": data,
    }


def model(entry_id: str, **fields: Any) -> dict[str, Any]:
    """A model manifest that validates; ``fields`` override or add top-level fields."""
    data: dict[str, Any] = {
        "kind": "model",
        "id": entry_id,
        "name": f"Model {entry_id}",
        "description": "A test model.",
        "owners": ["@ada"],
        "license": "Apache-2.0",
        "task": "image-classification",
        "framework": "pytorch",
        "architecture": {"family": "toy"},
        "versions": [version("1.0.0", weights(entry_id), entry_id)],
        "intended_use": "Tests.",
        "limitations": "Only tests.",
        "risk": "minimal",
    }
    data.update(fields)
    return data


def dataset(entry_id: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "dataset",
        "id": entry_id,
        "name": f"Dataset {entry_id}",
        "description": "A test dataset.",
        "owners": ["@ada"],
        "license": "CC-BY-4.0",
        "task": "image-classification",
        "source": {"name": "Made up"},
        "personal_data": False,
        "splits": [{"name": "test", "rows": 10}],
    }
    data.update(fields)
    return data


def base(entry_id: str, relation: str = "finetune", **extra: Any) -> dict[str, Any]:
    return {"id": entry_id, "relation": relation, **extra}
