"""A model artifact as one :class:`WeightFile`: a file, a sharded checkpoint, or an adapter folder."""

from __future__ import annotations

from pathlib import Path

from lakegen.artifacts.layout import model_layout
from lakegen.weights.base import WeightFile
from lakegen.weights.dequant import open_weights
from lakegen.weights.sharded import ShardedWeights


def open_model(path: Path | str) -> WeightFile:
    """A model's weights: one file (see :func:`~lakegen.weights.open_weights`), a folder holding a
    sharded checkpoint, or an adapter folder (its weights file as stored: the LoRA tensors)."""
    layout = model_layout(Path(path))
    if layout.index is not None:
        return ShardedWeights(layout.index)
    return open_weights(layout.files[0])
