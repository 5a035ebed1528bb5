"""merge_test's least-squares bound (merges._beyond_any_fit) never turns away a merge the full test finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lakegen.attribution import merges
from lakegen.attribution.merges import merge_test
from lakegen.attribution.views import View
from lakegen.fingerprint import compute

SHAPES = {"a.0.weight": (48, 40), "a.1.weight": (40, 32), "b.0.weight": (32, 24)}


def family(rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """A base, four fine-tunes of it, and mixes of two or three of them plus noise of every size
    around what a merge's residual allows, and models that are no mix at all."""
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    tunes = [
        {k: (w + 0.1 * rng.normal(size=w.shape)).astype(np.float32) for k, w in base.items()}
        for _ in range(4)
    ]
    out = [base, *tunes]
    for noise in (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1):
        picked = rng.choice(4, size=int(rng.integers(2, 4)), replace=False)
        w = rng.dirichlet(np.ones(len(picked)))
        mix = {
            k: (
                sum(wi * tunes[i][k] for wi, i in zip(w, picked, strict=True)) + noise * rng.normal(size=s)
            ).astype(np.float32)
            for k, s in SHAPES.items()
        }
        out.append(mix)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_bound_turns_away_only_what_the_full_test_rejects(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = []
    for i, sd in enumerate(family(np.random.default_rng(seed))):
        save_file(sd, str(tmp_path / f"m{i}.safetensors"))
        views.append(View(compute(tmp_path / f"m{i}.safetensors")))
    pool = list(range(len(views)))
    skipped = []
    real = merges._beyond_any_fit

    def counting(*args: object) -> bool:
        found = real(*args)  # type: ignore[arg-type]
        skipped.append(found)
        return found

    monkeypatch.setattr(merges, "_beyond_any_fit", counting)
    bounded = [merge_test(t, views, pool) for t in pool]
    monkeypatch.setattr(merges, "_beyond_any_fit", lambda *args: False)
    full = [merge_test(t, views, pool) for t in pool]
    assert bounded == full
    assert any(skipped) and any(m is not None for m in full)  # both outcomes were compared
