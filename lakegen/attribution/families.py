"""Families: groups of related models, found without comparing every pair in a large lake."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from lakegen.attribution.memo import Memo, key
from lakegen.attribution.neighbours import Neighbours
from lakegen.attribution.views import View, combine, compare
from lakegen.fingerprint import Fingerprint

# Past this many models, lineage is recovered family by family (see :func:`families_by_signature`).
PARTITION_FROM = 300
NEIGHBOURS = 16

N = TypeVar("N", bound=Hashable)


class UnionFind(Generic[N]):
    """Disjoint sets of nodes (path halving); :meth:`groups` lists them in the nodes' order."""

    def __init__(self, nodes: Iterable[N]):
        self.parent = {n: n for n in nodes}

    def find(self, n: N) -> N:
        parent = self.parent
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    def union(self, a: N, b: N) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list[N]]:
        out: dict[N, list[N]] = {}
        for n in self.parent:
            out.setdefault(self.find(n), []).append(n)
        return list(out.values())


def components(nodes: Sequence[N], links: Iterable[tuple[N, N]]) -> list[list[N]]:
    """The groups of ``nodes`` that ``links`` (pairs of nodes) connect."""
    sets = UnionFind(nodes)
    for a, b in links:
        sets.union(a, b)
    return sets.groups()


def families_by_signature(
    fingerprints: Mapping[str, Fingerprint],
    adapter_base: Callable[[str, Fingerprint], str | None],
    memo: Memo | None = None,
) -> list[list[str]]:
    """Groups of possibly related models, from each model's nearest signatures only.

    Each model is compared exactly with its :data:`NEIGHBOURS` nearest models by
    signature, never with all others, and those are found without ranking every
    pair (:class:`~lakegen.attribution.neighbours.Neighbours`: exact within an
    architecture of a few thousand models, hashed beyond); related pairs are
    joined into families. An adapter joins the family of its base.
    ``memo`` keeps each comparison's verdict by the two fingerprints' content.
    """
    import numpy as np

    ids = sorted(i for i, fp in fingerprints.items() if fp.kind == "model")
    views = {i: View(fingerprints[i]) for i in ids}
    sig = np.stack([fingerprints[i].signature for i in ids]) if ids else np.zeros((0, 1), np.float32)
    sets = UnionFind(range(len(ids)))
    for a, near in Neighbours(sig, [fingerprints[i].architecture for i in ids]).each(NEIGHBOURS):
        others = [views[ids[b]] for b in near.tolist()]
        alike = Alike(views[ids[a]], others)
        for b, view in zip(near.tolist(), others, strict=True):
            if sets.find(a) != sets.find(b) and related(views[ids[a]], view, memo, alike):
                sets.union(a, b)
    out = [[ids[n] for n in group] for group in sets.groups()]
    family_of = {m: members for members in out for m in members}
    for adapter_id, fp in sorted(fingerprints.items()):
        if fp.kind != "model":
            base = adapter_base(adapter_id, fp)
            if base in family_of:
                family_of[base].append(adapter_id)
            else:
                out.append([adapter_id])
    return [sorted(g) for g in out]


class Alike:
    """Whether ``model`` is related to each of ``others`` that has its tensor layout, all of them
    compared at once when the first is asked for (:func:`~lakegen.attribution.views.compare`
    one pair at a time was most of finding a lake's families): the same sums, row by row, so
    the same verdicts."""

    def __init__(self, model: View, others: Sequence[View]):
        self.model, self.others = model, others
        self.found: dict[int, bool] | None = None

    def get(self, other: View) -> bool | None:
        """The verdict on ``other``, or None when it is not compared here (another layout)."""
        if self.found is None:
            self.found = self._compare()
        return self.found.get(id(other))

    def _compare(self) -> dict[int, bool]:
        import numpy as np

        a = self.model
        same = list({id(o): o for o in self.others if o.keys == a.keys and o.finite}.values())
        if not a.keys or not a.finite or not same:
            return {}
        # as views._pair_stats sums one pair (every value finite; a product is the same either way)
        x = np.stack([o.x for o in same])
        n = np.add.reduceat(np.ones(len(a.x)), a.starts)
        sa, saa = np.add.reduceat(a.x, a.starts), np.add.reduceat(a.x * a.x, a.starts)
        sb, sbb = np.add.reduceat(x, a.starts, axis=1), np.add.reduceat(x * x, a.starts, axis=1)
        sab = np.add.reduceat(a.x * x, a.starts, axis=1)
        out = {}
        for i, o in enumerate(same):
            pair = combine(n, sa, sb[i], saa, sbb[i], sab[i], a.keys)
            out[id(o)] = pair is not None and pair.related
        return out


def related(a: View, b: View, memo: Memo | None, alike: Alike | None = None) -> bool:
    """Whether two models are related (:attr:`~lakegen.attribution.views.Pair.related`); ``alike``
    may hold the verdict already."""

    def verdict(x: View, y: View) -> bool:
        found = alike.get(b) if alike is not None else None
        if found is not None:
            return found
        pair = compare(x, y)
        return pair is not None and pair.related

    if memo is None:
        return verdict(a, b)
    ends = sorted((a.fp.sha256, b.fp.sha256))
    k = key("related", ends)
    found = memo.get(k)
    if found is None:
        # one layout compares the same either way round (Alike); others by their contents' order
        found = verdict(a, b) if ends == [a.fp.sha256, b.fp.sha256] else verdict(b, a)
        memo.put(k, found)
    return bool(found)
