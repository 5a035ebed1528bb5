"""Where a fingerprint samples each tensor: fixed by the tensor's name and shape alone.

They live with the weight readers, below :mod:`lakegen.fingerprint`, so a remote file's sampled
entries can be caught from the stream that hashes it (:mod:`lakegen.weights.capture`).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

GRID = 64  # rows and columns sampled from every matrix
VECTOR = 1024  # entries sampled from every other tensor


def seed(name: str, shape: tuple[int, ...]) -> int:
    digest = hashlib.sha256(f"{sampling_name(name)}|{list(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sampling_name(name: str) -> str:
    """The part of a tensor's name its sampling coordinates depend on: from the container of its
    first numbered block on (``layer.0.attention.self.query.weight``), or its last two parts.

    Wrappers put the same network under a prefix: a task model under ``bert.`` or
    ``model.`` beside its head, a PEFT model under ``base_model.model.``. Without
    the prefix, the same tensor is sampled at the same coordinates, so a task
    model compares with its base.
    """
    parts = name.split(".")
    first = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    keep = max(first - 1, 0) if first is not None else max(len(parts) - 2, 0)
    return ".".join(parts[keep:])


def coordinates(name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """The sampled coordinates of a tensor: (rows, columns) of a matrix, or (flat indices, None)."""
    import numpy as np

    rng = np.random.default_rng(seed(name, shape))
    n = math.prod(shape)
    if len(shape) >= 2 and shape[0] >= 2 and n // shape[0] >= 2:
        inner = n // shape[0]
        rows = np.sort(rng.choice(shape[0], size=min(shape[0], GRID), replace=False))
        cols = np.sort(rng.choice(inner, size=min(inner, GRID), replace=False))
        return rows, cols
    return np.sort(rng.choice(n, size=min(n, VECTOR), replace=False)), None
