"""A model artifact as one :class:`WeightFile`: a file, a sharded checkpoint, or an adapter folder."""

from __future__ import annotations

from pathlib import Path

from lakegen.weights.adapters import ADAPTER_CONFIG, adapter_weights_file
from lakegen.weights.base import WeightFile, WeightsError
from lakegen.weights.registry import open_file as open_weights
from lakegen.weights.sharded import INDEX_SUFFIX, ShardedWeights, find_shard_index, read_shard_index


def model_location(artifact: Path) -> Path:
    """What to read for a model artifact file: its folder when the file is an adapter's weights
    (next to ``adapter_config.json``) or a sharded checkpoint's index, else the file itself."""
    folder = artifact.parent
    if (folder / ADAPTER_CONFIG).is_file() or artifact.name.endswith(INDEX_SUFFIX):
        return folder
    return artifact


def open_model(path: Path | str) -> WeightFile:
    """A model's weights: one file (see :func:`open_weights`), a folder holding a sharded checkpoint,
    or an adapter folder (its weights file as stored: the LoRA tensors)."""
    path = Path(path)
    if path.is_dir():
        adapter = adapter_weights_file(path)
        if adapter is not None:
            return open_weights(adapter)
        index = find_shard_index(path)
        if index is None:
            raise WeightsError(
                path, f"a model folder needs a sharded checkpoint's *{INDEX_SUFFIX} or an {ADAPTER_CONFIG}"
            )
        return ShardedWeights(read_shard_index(index))
    return open_weights(path)
