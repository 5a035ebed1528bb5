"""families.Alike: one model against its neighbours at once, with the verdicts views.compare gives pair by pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from lakegen.attribution.families import Alike
from lakegen.attribution.views import View, compare
from lakegen.fingerprint import compute


def test_alike_gives_the_verdicts_of_compare(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    shapes = {"l.0.weight": (40, 30), "l.1.weight": (30, 20), "l.2.weight": (20, 10)}
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    models = {"base": base}
    for i, size in enumerate((0.05, 0.5, 1.0, 2.0, 4.0, 8.0)):  # related, then less and less
        models[f"ft{i}"] = {
            k: (w + size * rng.normal(size=w.shape)).astype(np.float32) for k, w in base.items()
        }
    models["other"] = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    models["nan"] = {**models["ft0"], "l.1.weight": np.full((30, 20), np.nan, np.float32)}
    models["layout"] = {"l.0.weight": models["ft0"]["l.0.weight"]}  # another tensor layout
    views = {}
    for name, sd in models.items():
        save_file(sd, str(tmp_path / f"{name}.safetensors"))
        views[name] = View(compute(tmp_path / f"{name}.safetensors"))
    others = [v for name, v in views.items() if name != "base"]
    alike = Alike(views["base"], others)
    verdicts = {}
    for name, v in views.items():
        if name == "base":
            continue
        pair = compare(views["base"], v)
        found = alike.get(v)
        verdicts[name] = found
        if name in ("nan", "layout"):
            assert found is None  # left to compare
        else:
            assert found == (pair is not None and pair.related)
    assert True in verdicts.values() and False in verdicts.values()  # both verdicts were compared
