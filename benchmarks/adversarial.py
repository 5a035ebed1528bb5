"""Attacks an informed contributor would make on attribution, and how often each succeeds.

    .venv/bin/python benchmarks/adversarial.py [--json]

Built on the demo lake's digits MLPs (real trained weights, 64-256-128-10, ReLU) and
scored with lakegen in process. For each attack it prints the success rate and what the
attacker paid (test accuracy on the demo's digits split, against the model the attack
starts from):

1. **sampled-coordinate spoofing**: an unrelated model (digits-mlp-alt, digits-mlp-alt-ft)
   with a claimed parent's values (plus 0, 2 or 5 % noise) at every coordinate a
   fingerprint samples. Success: the declared edge is verified (fingerprints and audit).
2. **manufactured lineage by copying**: a share of every matrix's entries copied from the
   claimed parent, the rest kept from the unrelated model. Prints the audit's verdict and
   lower bound by share, i.e. what "verified" proves.
3. **re-parametrisation**: a real fine-tune (digits-mlp-ft-small) with its hidden units
   permuted, positively rescaled per unit, or both: the same function. Success: attribution
   finds no edge from its parent, so the derivation is hidden. lakegen does not defend this
   yet (#16 item 2); the figure is reported as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from lakegen.attribution import attribute
from lakegen.fingerprint import compute, coordinates
from lakegen.lineage import audit

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "catalog/artifacts/models"
DATA = REPO / "catalog/artifacts/datasets/digits-1.0.0.npz"
Weights = dict[str, np.ndarray]


def load(name: str) -> Weights:
    return {k: v.astype(np.float32) for k, v in load_file(str(MODELS / f"{name}-1.0.0.safetensors")).items()}


def accuracy(w: Weights) -> float:
    data = np.load(DATA)
    x = data["x_test"].astype(np.float32)
    for i in (0, 2, 4):
        x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
        if i < 4:
            x = np.maximum(x, 0)
    return float(np.mean(x.argmax(1) == data["y_test"]))


def spoof(victim: Weights, claimed: Weights, noise: float, rng: np.random.Generator) -> Weights:
    out = {}
    for name, w in victim.items():
        w = w.copy()
        p = claimed[name] + noise * np.std(claimed[name]) * rng.normal(size=w.shape).astype(np.float32)
        rows, cols = coordinates(name, w.shape)
        if cols is None:
            w.reshape(-1)[rows] = p.reshape(-1)[rows]
        else:
            w.reshape(w.shape[0], -1)[np.ix_(rows, cols)] = p.reshape(p.shape[0], -1)[np.ix_(rows, cols)]
        out[name] = w
    return out


def copied(victim: Weights, claimed: Weights, share: float, rng: np.random.Generator) -> Weights:
    return {
        k: np.where(rng.random(v.shape) < share, claimed[k], v).astype(np.float32) for k, v in victim.items()
    }


def reparametrised(w: Weights, rng: np.random.Generator, permute: bool, scale: bool) -> Weights:
    """The same function: hidden units of layers 0 and 2 permuted and/or rescaled (ReLU commutes
    with a positive scale)."""
    out = {k: v.copy() for k, v in w.items()}
    for i, nxt in ((0, 2), (2, 4)):
        n = out[f"layers.{i}.weight"].shape[0]
        order = rng.permutation(n) if permute else np.arange(n)
        factor = rng.uniform(0.5, 2.0, n).astype(np.float32) if scale else np.ones(n, np.float32)
        out[f"layers.{i}.weight"] = out[f"layers.{i}.weight"][order] * factor[:, None]
        out[f"layers.{i}.bias"] = out[f"layers.{i}.bias"][order] * factor
        out[f"layers.{nxt}.weight"] = out[f"layers.{nxt}.weight"][:, order] / factor[None, :]
    return out


class Lab:
    """Weight files in a scratch folder, fingerprinted and compared the way the lake does."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.n = 0

    def save(self, w: Weights) -> Path:
        self.n += 1
        path = self.folder / f"m{self.n}.safetensors"
        save_file(w, str(path))
        return path

    def edge(self, parent: Path, child: Path) -> str | None:
        """The relation attribution finds from ``parent`` to ``child`` alone, or None."""
        lineage = attribute(
            {"parent": compute(parent), "child": compute(child)}, order={"parent": 0, "child": 1}
        )
        found = [e.relation for e in lineage.edges if (e.parent, e.child) == ("parent", "child")]
        return found[0] if found else None

    def audit(self, parent: Path, child: Path, relation: str) -> audit.Audit:
        return audit.audit_edge(child, compute(child).sha256, [(parent, 1.0)], relation)


def run() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp))
        # 1. spoofing at the public coordinates
        attempts, fooled, verified, kept = 0, 0, 0, []
        for victim_name in ("digits-mlp-alt", "digits-mlp-alt-ft"):
            victim = load(victim_name)
            for claimed_name in ("digits-mlp-base", "digits-mlp-ft-small", "digits-mlp-ft-noisy"):
                claimed_path = MODELS / f"{claimed_name}-1.0.0.safetensors"
                for noise in (0.0, 0.02, 0.05):
                    w = spoof(victim, load(claimed_name), noise, rng)
                    path = lab.save(w)
                    relation = lab.edge(claimed_path, path)
                    attempts += 1
                    fooled += relation is not None
                    if relation is not None and lab.audit(claimed_path, path, relation).status == "verified":
                        verified += 1
                    kept.append(accuracy(w) - accuracy(victim))
        report["spoofing"] = {
            "attempts": attempts,
            "fingerprints_fooled": fooled,
            "verified": verified,
            "accuracy_change_mean": round(float(np.mean(kept)), 4),
        }
        # 2. copying a share of the parent's entries
        victim, claimed = load("digits-mlp-alt"), load("digits-mlp-base")
        claimed_path = MODELS / "digits-mlp-base-1.0.0.safetensors"
        curve = []
        for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            w = copied(victim, claimed, share, rng)
            result = lab.audit(claimed_path, lab.save(w), "finetune")
            curve.append(
                {
                    "copied": share,
                    "audit": result.status,
                    "bound": round(result.share, 3),
                    "accuracy": accuracy(w),
                }
            )
        report["copying"] = curve
        # 3. re-parametrisation of a real fine-tune
        base_path = MODELS / "digits-mlp-base-1.0.0.safetensors"
        ft = load("digits-mlp-ft-small")
        rows = []
        for label, permute, scale in (
            ("none (control)", False, False),
            ("permuted units", True, False),
            ("rescaled units", False, True),
            ("both", True, True),
        ):
            w = reparametrised(ft, rng, permute, scale)
            relation = lab.edge(base_path, lab.save(w))
            rows.append(
                {
                    "transform": label,
                    "edge_found": relation,
                    "hidden": relation is None,
                    "accuracy_change": round(accuracy(w) - accuracy(ft), 4),
                }
            )
        report["reparametrisation"] = rows
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s = report["spoofing"]
    print(
        f"1. spoofing the public coordinates: {s['attempts']} attempts, fingerprints fooled "
        f"{s['fingerprints_fooled']}, verified {s['verified']} (success {s['verified'] / s['attempts']:.0%}); "
        f"the spoof's accuracy differs from the model it starts from by {s['accuracy_change_mean']:+.4f} on average"
    )
    print("2. copying a share of every matrix from the claimed parent (the rest unrelated):")
    for row in report["copying"]:
        print(
            f"   {row['copied']:.0%} copied: audit {row['audit']}, lower bound {row['bound']:.0%} near the parent, "
            f"accuracy {row['accuracy']:.4f}"
        )
    print("3. re-parametrising a real fine-tune (the same function):")
    for row in report["reparametrisation"]:
        what = "hidden (no edge)" if row["hidden"] else f"found ({row['edge_found']})"
        print(f"   {row['transform']}: {what}; accuracy change {row['accuracy_change']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
