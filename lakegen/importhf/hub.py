"""Where an imported model is: a folder here, and the Hub repo (``hf://org/name``) it came from,
read through huggingface_hub and ``HF_ENDPOINT``; weights are pinned by the Hub's sha256, never fetched."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen import safeyaml
from lakegen.catalog.loader import CATALOG_DIR
from lakegen.errors import Finding, LakeError
from lakegen.importhf.card import _REPO, CARD, _list
from lakegen.model.manifest import HUB


@dataclass
class Source:
    """Where the model is: a folder here, and the Hub repo it came from when it came from one."""

    folder: Path
    repo: str | None = None
    revision: str | None = None
    hub_files: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (sha256, size)
    link: str | None = None  # the Hub repo a local folder is a copy of


def _hub_links(root: Path) -> dict[str, str]:
    """Hub URL -> the id of the lake entry (model or dataset) whose links name it."""
    out: dict[str, str] = {}
    for kind in ("models", "datasets"):
        for manifest in sorted((root / CATALOG_DIR / kind).glob("**/*.yaml")):
            try:
                data = safeyaml.load(manifest, str(manifest)).data
            except LakeError:
                continue  # `lakegen validate` reports it; here it only cannot be referred to
            links = data.get("links") if isinstance(data, dict) else None
            for link in _list(links):
                if isinstance(link, dict) and str(link.get("url", "")).startswith(HUB + "/"):
                    out.setdefault(str(link["url"]).rstrip("/"), str(data.get("id")))
    return out


def _hub_ref(links: dict[str, str], kind: str, repo: str) -> str:
    """The lake entry that links to ``repo`` on the Hub, else the external ``hf:repo``."""
    return links.get(f"{HUB}/{'datasets/' if kind == 'datasets' else ''}{repo}") or f"hf:{repo}"


def _hub_artifact(src: Source) -> dict[str, Any] | None:
    """The weights on the Hub, pinned by the sha256 the Hub records; unchecked until fetched."""
    files = src.hub_files
    base = f"hf://{src.repo}@{src.revision}"
    if "adapter_model.safetensors" in files and "adapter_config.json" in files:
        main, companions = "adapter_model.safetensors", ["adapter_config.json"]
    else:
        index = sorted(n for n in files if n.endswith(".safetensors.index.json"))
        if index:
            shards = json.loads((src.folder / index[0]).read_bytes()).get("weight_map", {}).values()
            main, companions = index[0], sorted(set(shards))
        else:
            main = next((n for n in ("model.safetensors", "pytorch_model.bin") if n in files), "")
            companions = []
    if not main or any(c not in files for c in companions):
        return None
    sha, size = files[main]
    fmt = "pytorch" if main.endswith(".bin") else "safetensors"
    pinned: dict[str, Any] = {"uri": f"{base}/{main}", "sha256": sha, "size": size, "format": fmt}
    if companions:
        pinned["files"] = [{"path": c, "sha256": files[c][0], "size": files[c][1]} for c in companions]
    return pinned


def _from_hub(source: str, into: Path) -> Source:
    """Fetch a Hub repo's card and configs (never its weights) into ``into``; ``HF_ENDPOINT``
    picks the hub."""
    spec = source.removeprefix("hf://")
    repo, _, revision = spec.partition("@")
    if not re.match(_REPO, repo):
        raise LakeError(Finding(source, 1, "", "not a Hub model id: write hf://org/name[@revision]"))
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        raise LakeError(Finding(source, 1, "", "needs huggingface_hub: pip install 'lakegen[hf]'")) from None
    try:
        info = HfApi().model_info(repo, revision=revision or None, files_metadata=True)
        files: dict[str, tuple[str, int]] = {}
        small = []
        for sibling in info.siblings or []:
            lfs = sibling.lfs
            if lfs is not None:
                files[sibling.rfilename] = (lfs.sha256, lfs.size)
            else:
                small.append(sibling.rfilename)
        wanted = [
            n for n in small if n in (CARD, "config.json", "adapter_config.json") or n.endswith(".index.json")
        ]
        for name in wanted:
            hf_hub_download(repo, name, revision=info.sha, local_dir=into)
        for name in wanted:  # small files are stored in git, not LFS: hash what was fetched
            from lakegen.artifacts.digests import sha256_file

            files[name] = (sha256_file(into / name), (into / name).stat().st_size)
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise LakeError(Finding(source, 1, "", f"not on the hub: {str(e).splitlines()[0]}")) from None
    except (HfHubHTTPError, OSError) as e:
        raise LakeError(
            Finding(source, 1, "", f"cannot read from the hub: {str(e).splitlines()[0]}")
        ) from None
    return Source(into, repo=repo, revision=info.sha, hub_files=files)
