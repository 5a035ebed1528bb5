"""Nearest signatures without comparing every pair: random-projection hashing, exact on small pools.

A signature's cosine with another estimates how related the two models are, so a
new model's candidates are the signatures nearest it. Ranking every signature is
one product per model, and every model against every other a quadratic cost over
the lake. :class:`Neighbours` keeps that cost near the number of candidates:

- a pool of at most :data:`EXACT_UP_TO` vectors is ranked exactly (one product
  costs less than hashing would);
- a larger one is hashed once: :data:`TABLES` tables of about log2(pool) random
  hyperplanes each (SimHash: two vectors at angle θ share each bit with
  probability 1 − θ/π). A query gathers the vectors in its own bucket and in the
  buckets one bit away (multi-probe), in each table, and ranks only those exactly;
- ``groups`` (a model's architecture) name sub-pools ranked exactly whenever they
  are small, so the models most likely related (those of one architecture) are
  never left to chance while the lake's other models are reached by hashing.

Measured (``benchmarks/fingerprint.py --search 1000,10000,30000 --architectures 1``,
synthetic families of eight in one architecture, so hashing alone decides): a
member correlating with its root at 0.8 or more has a relative among its 16
nearest always, at 0.7 in 98 % (10,000 models) and 94 % (30,000), at 0.5 in 69 %
and 50 %. The cold lake's search grew 1.7 s → 5.9 s from 10,000 to 30,000
models, ranking every pair 3.4 s → 24 s.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EXACT_UP_TO = 2048  # pools (and groups) this small are ranked exactly
TABLES = 20
# Bits per table grow with the pool, so that an unrelated vector, which falls in the buckets probed
# with probability (1 + bits) / 2**bits, adds a bounded number of candidates per query however
# large the lake: about TABLES * (1 + bits) / 2 of them.
MIN_BITS, MAX_BITS = 10, 24
BLOCK = 256  # rows whose hashed candidates :meth:`Neighbours.each` gathers together
SHORTLIST = 64  # hashed candidates per row scored exactly, those sharing the most buckets


class Neighbours:
    """Approximate cosine nearest neighbours among the rows of ``vectors``."""

    def __init__(self, vectors: np.ndarray, groups: Sequence[Hashable] | None = None, seed: int = 0):
        import numpy as np

        x = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
        self.x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if x.size else x
        self.n = len(x)
        self.members: dict[Hashable, np.ndarray] = {}
        self.group_of: list[Hashable] = list(groups) if groups is not None else []
        if groups is not None:
            found: dict[Hashable, list[int]] = {}
            for i, g in enumerate(groups):
                found.setdefault(g, []).append(i)
            self.members = {g: np.array(m, dtype=np.int64) for g, m in found.items()}
        self.hashed = self.n > EXACT_UP_TO
        if self.hashed:
            self.bits = min(max(int(np.ceil(np.log2(self.n))) - 2, MIN_BITS), MAX_BITS)
            rng = np.random.default_rng(seed)
            self.planes = rng.standard_normal((TABLES * self.bits, x.shape[1]), dtype=np.float32)
            self.codes = self._codes(self.x)
            # per table (one contiguous row each: searchsorted copies a strided column)
            self.order = np.ascontiguousarray(np.argsort(self.codes, axis=0, kind="stable").T)
            self.sorted = np.ascontiguousarray(np.take_along_axis(self.codes.T, self.order, axis=1))

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """Each row's bucket in every table (rows x TABLES)."""
        import numpy as np

        bits = (x @ self.planes.T > 0).reshape(len(x), TABLES, self.bits)
        return (bits * (1 << np.arange(self.bits, dtype=np.int64))).sum(axis=2)

    def candidates(self, v: np.ndarray, group: Hashable | None = None) -> np.ndarray:
        """Rows worth ranking exactly for ``v``: all of a small pool; else the rows hashed near it,
        and every row of ``group`` when it is small."""
        import numpy as np

        if not self.hashed:
            return np.arange(self.n)
        probes = self._codes(v[None, :].astype(np.float32))[0][:, None] ^ np.array(
            [0, *(1 << b for b in range(self.bits))], dtype=np.int64
        )  # TABLES x (bits + 1): the bucket, and those one bit away
        parts: list[np.ndarray] = []
        for t in range(TABLES):
            lo = np.searchsorted(self.sorted[t], probes[t], "left")
            hi = np.searchsorted(self.sorted[t], probes[t], "right")
            parts.extend(self.order[t, a:b] for a, b in zip(lo, hi, strict=True) if b > a)
        members = self.members.get(group) if group is not None else None
        if members is not None and len(members) <= EXACT_UP_TO:
            parts.append(members)
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def nearest(
        self,
        v: np.ndarray,
        top: int,
        group: Hashable | None = None,
        allowed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Up to ``top`` rows by descending cosine with ``v`` (an ``allowed`` mask, if given, over rows)."""
        import numpy as np

        rows = self.candidates(v, group)
        if allowed is not None:
            rows = rows[allowed[rows]]
        if not len(rows) or top <= 0:
            return np.zeros(0, dtype=np.int64)
        q = np.nan_to_num(np.asarray(v, dtype=np.float32))
        scores = self.x[rows] @ (q / max(float(np.linalg.norm(q)), 1e-12))
        k = min(top, len(rows))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.lexsort((rows[best], -scores[best]))]
        return rows[best]

    def each(self, top: int) -> Iterator[tuple[int, np.ndarray]]:
        """Every row with (up to) its ``top`` nearest other rows: exactly within a small pool or
        group (one product per block), and from the hashed candidates beyond. Hashed pairs are
        first ranked by how many tables they share a probed bucket in (no arithmetic on the
        vectors), and only the :data:`SHORTLIST` best per row are scored exactly."""
        import numpy as np

        if not self.hashed:
            yield from self._exact(np.arange(self.n), top)
            return
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        small = [m for m in self.members.values() if len(m) <= EXACT_UP_TO]
        in_small = np.full(self.n, -1, dtype=np.int64)
        for g, m in enumerate(small):
            in_small[m] = g
            for a, rows in self._exact(m, top):
                found[a] = (rows, self.x[rows] @ self.x[a])
        masks = np.array([0, *(1 << b for b in range(self.bits))], dtype=np.int64)
        for lo in range(0, self.n, BLOCK):
            queries = np.arange(lo, min(lo + BLOCK, self.n))
            probes = self.codes[queries][:, :, None] ^ masks  # queries x TABLES x probes
            keys = []
            for t in range(TABLES):
                flat = probes[:, t, :].reshape(-1)
                start = np.searchsorted(self.sorted[t], flat, "left")
                counts = np.searchsorted(self.sorted[t], flat, "right") - start
                within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
                rows = self.order[t, np.repeat(start, counts) + within]
                keys.append(np.repeat(np.repeat(queries, len(masks)), counts) * self.n + rows)
            pairs, shared = np.unique(np.concatenate(keys), return_counts=True)
            q, r = pairs // self.n, pairs % self.n
            keep = (q != r) & ((in_small[q] < 0) | (in_small[q] != in_small[r]))  # not ranked already
            q, r, shared = q[keep], r[keep], shared[keep]
            ranked = np.argsort(
                q * (TABLES + 1) + (TABLES - shared), kind="stable"
            )  # by row, most shared first
            q, r = q[ranked], r[ranked]
            first, last = np.searchsorted(q, queries), np.searchsorted(q, queries, "right")
            for query, i, j in zip(queries.tolist(), first, last, strict=True):
                rows = r[i : min(j, i + SHORTLIST)]
                scores = self.x[rows] @ self.x[query]
                if query in found:
                    rows = np.concatenate([found[query][0], rows])
                    scores = np.concatenate([found[query][1], scores])
                yield query, rows[np.lexsort((rows, -scores))[:top]]

    def _exact(self, rows: np.ndarray, top: int) -> Iterator[tuple[int, np.ndarray]]:
        """Each of ``rows`` with its ``top`` nearest others among them, by blocks of one product."""
        import numpy as np

        k = min(top, len(rows) - 1)
        x = self.x[rows]
        for lo in range(0, len(rows), 1024):
            scores = x[lo : lo + 1024] @ x.T
            for i in range(len(scores)):
                scores[i, lo + i] = -np.inf
                best = np.argpartition(-scores[i], k - 1)[:k] if k > 0 else np.zeros(0, np.int64)
                yield int(rows[lo + i]), rows[best[np.lexsort((best, -scores[i, best]))]]
