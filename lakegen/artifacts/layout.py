"""What a model artifact is made of: the one place that knows model layouts.

A model is one of: a single weight file; a PEFT adapter folder
(``adapter_config.json`` beside ``adapter_model.safetensors``); a sharded
checkpoint (a folder with one ``*.index.json`` and the shards it names); a
Hugging Face model folder (one weight file beside ``config.json`` and the like,
or the same model saved twice as ``model.safetensors`` and
``pytorch_model.bin``); a Hugging Face cache snapshot
(``models--org--name/snapshots/<commit>/``, whose files link into ``blobs/``);
or an ONNX model whose tensors live in external data files. :func:`model_layout`
says which files hold the weights, which one a manifest's URI names, and which
must be pinned beside it. This module reads small indexes and ONNX headers,
never weights, and imports no weight reader.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakegen.artifacts.onnx import external_data_locations
from lakegen.errors import WeightsError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
INDEX_SUFFIX = ".index.json"  # model.safetensors.index.json, pytorch_model.bin.index.json, ...
MAX_INDEX = 16 * 1024 * 1024
MAX_MODEL_TENSORS = 262_144
# The files a weight reader of lakegen.weights may read (a test holds this to the registry).
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".npz", ".gguf", ".onnx")
# File names the libraries give every model (transformers, PEFT, diffusers): they name no model.
GENERIC_STEMS = {
    "model",
    "pytorch_model",
    "adapter_model",
    "diffusion_pytorch_model",
    "consolidated",
    "weights",
}

Kind = Literal["file", "adapter", "sharded"]


@dataclass(frozen=True)
class Layout:
    """A model's files. ``main`` is what a manifest's URI names; ``companions`` are pinned beside it."""

    kind: Kind
    path: Path  # what is opened: the file, or the folder
    main: Path
    files: list[Path]  # the weight files whose bytes a fingerprint hashes, in order
    companions: list[Path] = field(default_factory=list)
    index: ShardIndex | None = None  # a sharded checkpoint's, as read


@dataclass(frozen=True)
class ShardIndex:
    """A sharded checkpoint's index: which shard file holds each tensor."""

    path: Path
    weight_map: dict[str, str]

    @property
    def files(self) -> list[Path]:
        """The shard files, sorted by name."""
        return [self.path.parent / name for name in sorted(set(self.weight_map.values()))]


def adapter_weights_file(folder: Path) -> Path | None:
    """The adapter weights file in ``folder``, if the folder is a PEFT adapter."""
    if not (folder / ADAPTER_CONFIG).is_file():
        return None
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    return None


def is_adapter(path: Path) -> bool:
    """True for an adapter folder, or an adapter weights file next to its config."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (path.is_dir() or path.name in ADAPTER_WEIGHTS) and adapter_weights_file(folder) is not None


def is_sharded(path: Path) -> bool:
    """True for a folder holding a sharded checkpoint (not an adapter)."""
    return path.is_dir() and not is_adapter(path)


def find_shard_index(folder: Path) -> Path | None:
    """The ``*.index.json`` of a folder holding one sharded checkpoint (None without one)."""
    found = sorted(p for p in folder.glob("*" + INDEX_SUFFIX) if p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise WeightsError(
            folder, f"a folder must hold one sharded checkpoint: found {len(found)} indexes ({names})"
        )
    return found[0] if found else None


def read_shard_index(path: Path) -> ShardIndex:
    """Read and check an index: a JSON object whose ``weight_map`` maps tensor names to shard files
    of the same folder (plain file names, no path), each of them present."""
    try:
        if path.stat().st_size > MAX_INDEX:
            raise WeightsError(path, f"shard index over {MAX_INDEX >> 20} MiB")
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WeightsError(path, f"unreadable shard index: {e}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(
            path, "shard index needs a non-empty 'weight_map' object (tensor name -> shard file)"
        )
    if len(weight_map) > MAX_MODEL_TENSORS:
        raise WeightsError(
            path,
            f"refused: {len(weight_map):,} tensors; lakegen reads at most {MAX_MODEL_TENSORS:,} "
            "per sharded model",
        )
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard:
            raise WeightsError(
                path, f"tensor '{name}' maps to {shard!r}; a shard is a file name in the same folder"
            )
        if Path(shard).suffix.lower() not in WEIGHT_SUFFIXES:
            raise WeightsError(path, f"tensor '{name}' maps to '{shard}', which is not a weight file")
    index = ShardIndex(path, weight_map)
    for file in index.files:
        if not file.is_file():
            raise WeightsError(path, f"shard '{file.name}' named by the index is missing")
    return index


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` hook: a repeated key is an error, not a silent overwrite."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate tensor name '{key}'")
        out[key] = value
    return out


def model_location(artifact: Path) -> Path:
    """What to read for a model artifact file: its folder when the file is an adapter's weights
    (next to ``adapter_config.json``) or a sharded checkpoint's index, else the file itself."""
    folder = artifact.parent
    if (folder / ADAPTER_CONFIG).is_file() or artifact.name.endswith(INDEX_SUFFIX):
        return folder
    return artifact


def model_layout(path: Path) -> Layout:
    """The layout of a model file, adapter folder or sharded checkpoint's folder (see the module)."""
    if not path.is_dir():
        companions = onnx_external_files(path) if path.suffix.lower() == ".onnx" else []
        return Layout("file", path, path, [path], companions)
    adapter = adapter_weights_file(path)
    if adapter is not None:
        return Layout("adapter", path, adapter, [adapter], [path / ADAPTER_CONFIG])
    index = find_shard_index(path)
    if index is None:
        raise WeightsError(
            path,
            f"a folder must be a LoRA adapter ({ADAPTER_CONFIG} + adapter_model.*) "
            f"or a sharded checkpoint (*{INDEX_SUFFIX} + its shards)",
        )
    shards = read_shard_index(index)
    return Layout("sharded", path, index, shards.files, shards.files, shards)


def onnx_external_files(model: Path) -> list[Path]:
    """The external data files an ONNX model names, each inside the model's folder, sorted."""
    folder = model.parent
    top = os.path.realpath(folder)
    out = set()
    for location in external_data_locations(model):
        parts = location.replace("\\", "/").split("/")
        if location.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "\x00" in location:
            raise WeightsError(
                model, f"external data location {location[:200]!r} lies outside the model's folder"
            )
        target = folder / location
        real = os.path.realpath(target)
        if not real.startswith(top.rstrip(os.sep) + os.sep):
            raise WeightsError(
                model, f"external data location {location[:200]!r} resolves outside the model's folder"
            )
        if not target.is_file():
            raise WeightsError(model, f"external data file '{location[:200]}' named by the model is missing")
        out.add(target)
    return sorted(out)


def model_name(path: Path) -> str:
    """The id a model at ``path`` is shown under: its file's stem, or, where the libraries name every
    file alike (``model.safetensors``), its folder's; a Hugging Face cache snapshot
    (``models--org--name/snapshots/<commit>/``) is ``org/name``."""
    folder = path if path.is_dir() else path.parent
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return "/".join(folder.parent.parent.name.split("--")[1:])
    if path.is_dir() or path.stem.lower() in GENERIC_STEMS:
        return folder.name
    return path.stem


def model_input(path: Path) -> tuple[str, Path]:
    """A PATH argument as (model id, what to fingerprint): a weight file, or a folder of one model
    (an adapter, a sharded checkpoint, or a folder with one weight file; where a library saved the
    same model twice, as ``model.safetensors`` and ``pytorch_model.bin``, the safetensors file)."""
    if path.is_dir():
        if (path / ADAPTER_CONFIG).is_file() or find_shard_index(path) is not None:
            return model_name(path), path
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
        generic = [p for p in files if p.stem.lower() in GENERIC_STEMS]
        safetensors = [p for p in generic if p.suffix.lower() == ".safetensors"]
        if len(files) > 1 and len(generic) == len(files) and len(safetensors) == 1:
            files = safetensors
        if len(files) != 1:
            raise WeightsError(
                path,
                f"a folder must hold one model: found {len(files)} weight files"
                f" (a sharded checkpoint needs its *{INDEX_SUFFIX})",
            )
        return model_name(path), files[0]
    return model_name(path), path
