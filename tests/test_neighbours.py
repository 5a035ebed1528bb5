"""Nearest signatures without comparing every pair (lakegen/attribution/neighbours.py)."""

from __future__ import annotations

import numpy as np

from lakegen.attribution.neighbours import EXACT_UP_TO, Neighbours


def _families(n: int, corr: float, dim: int = 512, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors in families of ``size``: members correlate with their family's root at ``corr``."""
    rng = np.random.default_rng(0)
    roots = rng.standard_normal((n // size + 1, dim))
    family = np.arange(n) // size
    x = corr * roots[family] + np.sqrt(1 - corr**2) * rng.standard_normal((n, dim))
    return x.astype(np.float32), family


def test_a_small_pool_is_ranked_exactly() -> None:
    x, _ = _families(300, 0.5)
    index = Neighbours(x)
    assert not index.hashed
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for a, near in index.each(5):
        scores = unit @ unit[a]
        scores[a] = -np.inf
        assert set(near.tolist()) == set(np.argsort(-scores)[:5].tolist())
    assert index.nearest(x[7], 3).tolist() == np.argsort(-(unit @ unit[7]))[:3].tolist()


def test_a_large_pool_finds_relatives_among_few_candidates() -> None:
    n = 3 * EXACT_UP_TO
    x, family = _families(n, 0.8)  # two members correlate at 0.64
    index = Neighbours(x)
    assert index.hashed
    found = [any(family[b] == family[a] for b in near) for a, near in index.each(16)]
    assert np.mean(found) > 0.98
    sizes = [len(index.candidates(x[a])) for a in range(0, n, 97)]
    # a query ranks about TABLES * (1 + bits) * 4 vectors, whatever the pool's size: here 700 of 6144
    assert np.mean(sizes) < 1000
    assert family[index.nearest(x[10], 1, allowed=np.arange(n) != 10)[0]] == family[10]


def test_a_small_group_in_a_large_pool_is_ranked_exactly() -> None:
    # weak relatives (two members correlate at 0.25) are left to chance by hashing, but not within
    # a small group
    n = 3 * EXACT_UP_TO
    x, family = _families(n, 0.5)
    groups = ["small" if f < 4 else "large" for f in family]
    near = dict(Neighbours(x, groups).each(4))
    assert all(any(family[b] == family[a] for b in near[a]) for a in range(32))
