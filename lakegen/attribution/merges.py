"""Merges: a model that is a non-negative mix of two or more others."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakegen.attribution.views import Key, View, shared_keys, spacing

if TYPE_CHECKING:
    import numpy as np

MERGE_RESIDUAL = 0.1  # merge residual / distance to the nearest single model
MERGE_MIN_WEIGHT = 0.03
MERGE_POOL = 12  # candidates a merge's parents are sought among


def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson): argmin |a x - b| with x >= 0."""
    import numpy as np

    m = a.shape[1]
    x = np.zeros(m)
    passive = np.zeros(m, dtype=bool)
    for _ in range(min(iterations, 3 * m)):
        w = a.T @ (b - a @ x)
        candidates = ~passive & (w > 1e-12 * max(1.0, float(np.abs(w).max(initial=0))))
        if not candidates.any():
            break
        passive[int(np.argmax(np.where(candidates, w, -np.inf)))] = True
        while True:
            s = np.zeros(m)
            s[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (s[passive] > 0).all():
                x = s
                break
            bad = passive & (s <= 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                alpha = np.min(np.where(bad, x / (x - s), np.inf))
            x = x + alpha * (s - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
    return x


def _rounding(v: View, x: np.ndarray, scale: np.ndarray) -> float:
    """The expected squared rounding error in ``x * scale`` (``x``: ``v``'s samples), when ``v`` was
    saved in a float format less precise than float32: each value's ulp² / 12, the ulp read off the
    value."""
    import numpy as np

    if v.precision >= 24 or not all(t.dtype.startswith(("float", "bfloat")) for t in v.mats):
        return 0.0
    with np.errstate(divide="ignore"):
        ulp = np.exp2(np.floor(np.log2(np.abs(x))) + 1 - v.precision) * scale
    return float(np.sum(ulp * ulp)) / 12


def _half_steps(v: View, keys: Sequence[Key] | None = None) -> np.ndarray | None:
    """Half the distance between neighbouring values at each of ``v``'s samples of ``keys``
    (default: all of them) when every one of those matrices is bfloat16 or float16, else None."""
    import numpy as np

    steps = [spacing(v.segment(k), v.mats[v.index[k]].dtype) for k in (v.keys if keys is None else keys)]
    if not steps or any(s is None for s in steps):
        return None
    return np.concatenate(steps) / 2  # type: ignore[arg-type]


@dataclass(frozen=True)
class Merge:
    parents: tuple[int, ...]
    weights: tuple[float, ...]
    residual: float  # relative to the distance to the nearest single model


def merge_test(target: int, views: Sequence[View], pool: Sequence[int]) -> Merge | None:
    """Is ``views[target]`` a non-negative mix (summing to ~1) of two or more models of ``pool``?"""
    import numpy as np

    t = views[target]
    pool = [i for i in pool if i != target and views[i].keys and shared_keys(t, views[i]) == t.keys]
    if len(pool) < 2 or not t.keys or not t.finite:
        return None
    if len(pool) > MERGE_POOL:  # a merge's parents are among its nearest relatives
        near = [(float(np.linalg.norm(np.nan_to_num(views[i].x - t.x))), i) for i in pool]
        pool = [i for _, i in sorted(near)[:MERGE_POOL]]
    weights = []
    for k in t.keys:  # each matrix counts the same, whatever its size
        seg = t.segment(k)
        weights.append(np.full(len(seg), 1.0 / max(float(np.sqrt(np.mean(seg * seg))), 1e-12)))
    scale = np.concatenate(weights) / math.sqrt(len(t.keys))
    b = t.x * scale
    cols, noise, halves = [], [], []
    for i in pool:
        v = views[i]
        x = v.x if v.keys == t.keys else np.concatenate([v.segment(k) for k in t.keys])
        x = np.where(np.isfinite(x), x, 0.0)
        cols.append(x * scale)
        h = _half_steps(v, t.keys)
        halves.append(None if h is None else h * scale)
        noise.append(0.0 if h is not None else _rounding(v, x, scale))
    a = np.stack(cols, axis=1)
    half = _half_steps(t)
    own = 0.0 if half is not None else _rounding(t, t.x, scale)

    def misfit(d: np.ndarray, slack: np.ndarray | float = 0.0) -> float:
        """Squared norm of a difference from the target, past the target's own rounding when it
        was saved in bfloat16/float16 and past ``slack``: only what falls outside the interval that
        rounds to each of its values counts (a parent sharing that rounding, a release of the same
        master, fits no better than the master)."""
        if half is not None:
            slack = slack + half * scale
        d = np.maximum(np.abs(d) - slack, 0.0)
        return float(np.sum(d * d))

    # the target's own rounding only: a bf16 candidate within its rounding of the target is not
    # the target (a bf16-saved sibling of a merge's parents sits that close to the merge)
    nearest = math.sqrt(max(0.0, min(misfit(a[:, i] - b) for i in range(len(pool))) - own))
    if nearest == 0:
        return None
    # nothing saved below float32, so no rounding is forgiven: most targets are settled by one
    # lstsq instead of a few dozen NNLS solves
    plain = half is None and own == 0 and not any(noise) and all(h is None for h in halves)
    if plain and _beyond_any_fit(a, b, nearest):
        return None

    def fit(used: np.ndarray) -> tuple[np.ndarray, float]:
        """The weights on ``used`` and the residual past the rounding the models were saved with:
        parents published at a lower precision than the masters they were merged from (or a merge
        saved so) leave their rounding in the residual, uniform, independent, of known energy."""
        w = nnls(a[:, used], b)
        picked = list(zip(w.tolist(), np.flatnonzero(used).tolist(), strict=True))
        rounding = own + sum(wi * wi * noise[i] for wi, i in picked)
        # a bfloat16/float16 parent's rounding is bounded: each master value lay within half a step
        # of the value saved, so each sample of the mix may miss by at most the weighted half steps;
        # an update smaller than the step on average but larger at small weights is not forgiven
        slack = sum((wi * halves[i] for wi, i in picked if halves[i] is not None), np.zeros_like(b))
        return w, math.sqrt(max(misfit(a[:, used] @ w - b, slack) - rounding, 0.0)) / nearest

    used = nnls(a, b) >= MERGE_MIN_WEIGHT
    if used.sum() < 2:
        return None
    refit, residual = fit(used)
    # a model fitted to that rounding stands in for part of a parent: fewer parents that fit as well win
    while used.sum() > 2:
        trials = []
        for col in np.flatnonzero(used).tolist():
            fewer = used.copy()
            fewer[col] = False
            trials.append((fit(fewer)[1], col))
        best, drop = min(trials)
        if best > residual:
            break
        used[drop] = False
        refit, residual = fit(used)
    total = float(refit.sum())
    if residual > MERGE_RESIDUAL or not 0.9 <= total <= 1.1 or (refit < MERGE_MIN_WEIGHT).any():
        return None
    parents = tuple(pool[i] for i in np.flatnonzero(used))
    return Merge(parents, tuple(float(w) for w in refit), residual)


def _beyond_any_fit(a: np.ndarray, b: np.ndarray, nearest: float) -> bool:
    """Whether ``b`` lies further from the span of ``a``'s columns than a merge's residual allows.

    With no rounding forgiven, every fit :func:`merge_test` makes is a least-squares fit over some
    of ``a``'s columns, whose residual is never below the unconstrained one over all of them. The
    margin covers lstsq's cut of singular values under its rcond, at the weights a merge has.
    """
    import numpy as np

    coef = np.linalg.lstsq(a, b, rcond=None)[0]
    r = a @ coef - b
    bound = MERGE_RESIDUAL * nearest * (1 + 1e-6) + 1e-9 * float(np.linalg.norm(b))
    return math.sqrt(float(r @ r)) > bound


# how far a merge's child may carry a parent's own update from the merge's weight for it, as a
# share of that weight: its own training adds to each (a barely changed fine-tune of a merge carries
# the weights to within 0.01)
CARRIED_SLACK = 0.5


def carries_merge(child: View, merge: Merge, views: Sequence[View], base: View) -> bool:
    """Does ``child`` carry each of ``merge``'s parents' own updates from ``base`` (the part of
    each that the other parents' updates do not explain) in the merge's proportions, as a model
    trained from the merge does?

    Nearness alone cannot say: fine-tunes of one base with like objectives share most of their
    update, and a mix of two of them averages away what is their own, so a third sits nearer
    their merge than their base (held-out SmolLM2 seed 6203: a bfloat16-saved fine-tune 0.9 as
    near the mergekit merge of two siblings; it carried 0.44 and 1.04 of their own updates, which
    the merge holds at 0.59 and 0.41).
    """
    import numpy as np

    parents = [views[p] for p in merge.parents]
    keys = [
        k
        for k in child.keys
        if k in base.index
        and all(k in p.index and len(p.segment(k)) == len(child.segment(k)) for p in parents)
        and len(base.segment(k)) == len(child.segment(k))
    ]
    if not keys:
        return False

    def values(v: View) -> np.ndarray:
        return np.nan_to_num(np.concatenate([v.segment(k) for k in keys]).astype(np.float64))

    origin = values(base)
    updates = [values(p) - origin for p in parents]
    moved = values(child) - origin
    for i, w in enumerate(merge.weights):
        others = np.stack([u for j, u in enumerate(updates) if j != i], axis=1)
        coef, *_ = np.linalg.lstsq(others, updates[i], rcond=None)
        own = updates[i] - others @ coef
        size = float(own @ own)
        if size <= 0 or abs(float(moved @ own) / size - w) > CARRIED_SLACK * w:
            return False
    return True
