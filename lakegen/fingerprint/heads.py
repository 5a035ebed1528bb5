"""Attention heads rotated back: a rotation inside each head (query and key by one, value and
output by another) leaves a BERT-style layer's function as it was; orthogonal Procrustes undoes it
before :mod:`lakegen.fingerprint.align` matches units."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

HEAD_DIMS = (32, 64, 128, 80, 96, 16)  # attention head sizes tried: the weights do not say which
SIGNED_PERMUTATION = 0.9  # a head rotation whose every row has an entry this large only permutes (a
# random rotation of 32 dimensions: about 0.5); scaled query/key pairs and fine-tuning keep it above
_BERT = re.compile(r"^(?P<p>.*\blayer\.\d+\.)attention\.self\.query\.weight$")


def attention_layer(name: str) -> tuple[str, str, str, str] | None:
    """A BERT-style layer's query, key, value and output projections (names without ``.weight``),
    when ``name`` is its query weight."""
    m = _BERT.match(name)
    if m is None:
        return None
    p = m["p"]
    return (
        f"{p}attention.self.query",
        f"{p}attention.self.key",
        f"{p}attention.self.value",
        f"{p}attention.output.dense",
    )


def rotate_heads(
    parent: Mapping[str, np.ndarray], child: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int, float] | None:
    """``child`` with each attention head's dimensions rotated onto its partner head in ``parent``.

    Rotating a head's query and key dimensions by one orthogonal ``R`` (``q' = R q``, ``k' = R k``)
    leaves every attention score as it was; so does rotating its value dimensions with the output
    projection's columns. No permutation, sign or scale undoes that. Heads are paired by linear
    assignment on their Procrustes similarity (``‖A Bᵀ‖_* / (‖A‖ ‖B‖)`` for a head's stacked
    weights ``A``, ``B``: 1 when one is a rotation of the other, whatever the rotation), the
    role linear CKA plays in AWM; each pair's rotation is the orthogonal Procrustes solution
    (``U Vᵀ`` from the SVD of ``A Bᵀ``), applied to the child. Returns the rotated child, the heads
    rotated, and the mean lead of each head's partner over its runner-up (near 0 for unrelated
    models, whose heads are all alike to a rotation); None without BERT-style attention, or when
    no head is rotated (permuted dimensions and sign flips are :func:`align`'s to undo)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    out = dict(child)
    leads: list[float] = []
    count = 0
    for name in sorted(child):
        layer = attention_layer(name)
        if layer is None:
            continue
        q, k, v, o = layer
        needed = [f"{n}.weight" for n in (q, k, v, o)]
        if not all(n in child and n in parent and parent[n].shape == child[n].shape for n in needed):
            continue
        width = child[f"{q}.weight"].shape[0]
        if child[f"{k}.weight"].shape[0] != width or child[f"{o}.weight"].shape[1] != width:
            continue
        # per stack (query and key rows side by side; value rows beside output columns): the products
        # of every parent row with every child row, and the rows' squared norms, shared by every size
        crosses, norms = [], []
        for pair in ((q, k), (v, o)):
            a, b = (_stack(w, *pair) for w in (parent, child))
            crosses.append(a @ b.T)
            norms.append((np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)))
        best: tuple[float, int, np.ndarray, list[np.ndarray]] | None = None
        for size in (h for h in HEAD_DIMS if width % h == 0 and width // h >= 2):
            heads = width // size
            blocks = [c.reshape(heads, size, heads, size).transpose(0, 2, 1, 3) for c in crosses]
            sim = (_procrustes(blocks[0], *norms[0]) + _procrustes(blocks[1], *norms[1])) / 2
            _, cols = linear_sum_assignment(-sim)
            matched = sim[np.arange(heads), cols]
            runner_up = np.sort(sim, axis=1)[:, -2]
            lead = float(np.mean(matched - np.minimum(runner_up, matched)))
            if best is None or lead > best[0]:
                best = (lead, size, cols, blocks)
        if best is None:
            continue
        lead, size, cols, blocks = best
        leads.append(lead)
        rotations = [[_rotation(x[i, j]) for i, j in enumerate(cols)] for x in blocks]
        count += sum(
            not all(np.abs(r).max(axis=1).min() > SIGNED_PERMUTATION for r in pair)
            for pair in zip(*rotations, strict=True)
        )
        order = np.concatenate([np.arange(j * size, (j + 1) * size) for j in cols])

        for n, which in ((q, 0), (k, 0), (v, 1)):
            for part in ("weight", "bias"):
                if f"{n}.{part}" in child:
                    out[f"{n}.{part}"] = _turned(child[f"{n}.{part}"], order, rotations[which], 0)
        out[f"{o}.weight"] = _turned(child[f"{o}.weight"], order, rotations[1], 1)
    if not count:  # heads permuted, dimensions permuted and flipped at most: align does that
        return None
    return out, count, float(np.mean(leads))


def _turned(x: np.ndarray, order: np.ndarray, rotations: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """``x`` with its head axis in the parent's head order (``order``), each head rotated."""
    import numpy as np

    y = np.moveaxis(np.take(x, order, axis=axis), axis, 0).astype(np.float64)
    blocks = y.reshape(len(rotations), rotations[0].shape[0], -1)
    turned = np.stack([r @ b for r, b in zip(rotations, blocks, strict=True)]).reshape(y.shape)
    return np.moveaxis(turned, 0, axis).astype(x.dtype)


def _stack(w: Mapping[str, np.ndarray], rows: str, other: str) -> np.ndarray:
    """A head group's weights, one row per head dimension: query beside key rows, or value rows
    beside output-projection columns (a rotation of the dimensions turns every such row alike)."""
    import numpy as np

    second = w[f"{other}.weight"]
    second = second.T if other.endswith("output.dense") else second
    return np.concatenate([w[f"{rows}.weight"], second], axis=1).astype(np.float64)


def _procrustes(blocks: np.ndarray, parent_norms: np.ndarray, child_norms: np.ndarray) -> np.ndarray:
    """heads x heads: how alike parent head i and child head j are up to a rotation (0 to 1), from
    the blocks of their rows' products and the rows' squared norms."""
    import numpy as np

    heads = len(blocks)
    a = np.sqrt(parent_norms.reshape(heads, -1).sum(axis=1))
    b = np.sqrt(child_norms.reshape(heads, -1).sum(axis=1))
    # the nuclear norm, from the eigenvalues of X Xᵀ: LAPACK's batched SVD is ten times slower at some sizes
    gram = blocks @ np.swapaxes(blocks, -1, -2)
    nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum(axis=-1)
    return nuclear / np.maximum(a[:, None] * b[None, :], 1e-30)


def _rotation(cross: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` nearest to taking a child head's rows onto its parent's, from the
    product ``cross`` of the parent's rows with the child's (orthogonal Procrustes: ``U Vᵀ``)."""
    import numpy as np

    u, _, vt = np.linalg.svd(cross)
    return u @ vt
