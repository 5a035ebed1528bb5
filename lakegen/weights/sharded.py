"""Sharded checkpoints: a folder with one ``*.index.json`` and the shards it names, read as one file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakegen.artifacts.layout import ShardIndex
from lakegen.weights.base import WeightFile, WeightsError
from lakegen.weights.dequant import open_weights

if TYPE_CHECKING:
    import numpy as np


class ShardedWeights(WeightFile):
    """A checkpoint split over several files (Hugging Face layout), read as one.

    Every shard is opened with its own reader, so the same checks apply to each;
    the index must match the shards exactly: each tensor lies in the shard the
    index names, and in no other. A library's quantised tensor is read back
    within its shard, so its parts must share one (bitsandbytes and quanto
    keep a module's tensors together).
    """

    def __init__(self, index: ShardIndex):
        super().__init__(index.path.parent)
        self.index = index
        self.shards: list[WeightFile] = []
        self._owner: dict[str, WeightFile] = {}
        try:
            for file in index.files:
                self.shards.append(open_weights(file))
            self._check()
        except BaseException:
            self.close()
            raise
        formats = sorted({s.format for s in self.shards})
        self.format = formats[0] if len(formats) == 1 else "+".join(formats)

    def _check(self) -> None:
        mapped = self.index.weight_map
        holder: dict[str, WeightFile] = {}
        for shard in self.shards:
            for name in shard.stored:
                if name in holder:
                    other = holder[name].path.name
                    raise WeightsError(
                        self.index.path, f"tensor '{name}' is in both '{other}' and '{shard.path.name}'"
                    )
                if mapped.get(name) != shard.path.name:
                    where = f"to '{mapped[name]}'" if name in mapped else "nowhere"
                    raise WeightsError(
                        self.index.path,
                        f"tensor '{name}' is in '{shard.path.name}' but the index maps it {where}",
                    )
                holder[name] = shard
            for name, info in shard.tensors.items():  # as read: a quantised group as one tensor
                self._owner[name] = shard
                self.tensors[name] = info
        for name, shard_name in mapped.items():
            if name not in holder:
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
