"""Sharded checkpoints: a folder with one ``*.index.json`` and the shards it names, read as one file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakegen.weights.base import MAX_MODEL_TENSORS, WeightFile, WeightsError, no_duplicates, refuse_count
from lakegen.weights.pytorch import TORCH_SUFFIXES
from lakegen.weights.registry import open_file

if TYPE_CHECKING:
    import numpy as np

INDEX_SUFFIX = ".index.json"  # model.safetensors.index.json, pytorch_model.bin.index.json, ...
MAX_INDEX = 16 * 1024 * 1024


@dataclass(frozen=True)
class ShardIndex:
    """A sharded checkpoint's index: which shard file holds each tensor."""

    path: Path
    weight_map: dict[str, str]

    @property
    def files(self) -> list[Path]:
        """The shard files, sorted by name."""
        return [self.path.parent / name for name in sorted(set(self.weight_map.values()))]


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
    refuse_count(path, len(weight_map), MAX_MODEL_TENSORS, "sharded model")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard:
            raise WeightsError(
                path, f"tensor '{name}' maps to {shard!r}; a shard is a file name in the same folder"
            )
        if Path(shard).suffix.lower() not in (".safetensors", ".npz", *TORCH_SUFFIXES):
            raise WeightsError(path, f"tensor '{name}' maps to '{shard}', which is not a weight file")
    index = ShardIndex(path, weight_map)
    for file in index.files:
        if not file.is_file():
            raise WeightsError(path, f"shard '{file.name}' named by the index is missing")
    return index


class ShardedWeights(WeightFile):
    """A checkpoint split over several files (Hugging Face layout), read as one.

    Every shard is opened with its own reader, so the same checks apply to each;
    the index must match the shards exactly: each tensor lies in the shard the
    index names, and in no other.
    """

    def __init__(self, index: ShardIndex):
        super().__init__(index.path.parent)
        self.index = index
        self.shards: list[WeightFile] = []
        self._owner: dict[str, WeightFile] = {}
        try:
            for file in index.files:
                self.shards.append(open_file(file))
            self._check()
        except BaseException:
            self.close()
            raise
        formats = sorted({s.format for s in self.shards})
        self.format = formats[0] if len(formats) == 1 else "+".join(formats)

    def _check(self) -> None:
        mapped = self.index.weight_map
        for shard in self.shards:
            for name, info in shard.tensors.items():
                if name in self._owner:
                    other = self._owner[name].path.name
                    raise WeightsError(
                        self.index.path, f"tensor '{name}' is in both '{other}' and '{shard.path.name}'"
                    )
                if mapped.get(name) != shard.path.name:
                    where = f"to '{mapped[name]}'" if name in mapped else "nowhere"
                    raise WeightsError(
                        self.index.path,
                        f"tensor '{name}' is in '{shard.path.name}' but the index maps it {where}",
                    )
                self._owner[name] = shard
                self.tensors[name] = info
        for name, shard_name in mapped.items():
            if name not in self._owner:
                raise WeightsError(
                    self.index.path, f"the index maps '{name}' to '{shard_name}', which does not hold it"
                )

    def raw(self, name: str) -> np.ndarray:
        return self._owner[name].raw(name)

    def offset(self, name: str) -> int | None:
        """The offset in the tensor's own shard, which :meth:`gather` reads from."""
        return self._owner[name].offset(name)

    def gather(self, name: str, flat: np.ndarray) -> np.ndarray:
        return self._owner[name].gather(name, flat)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
