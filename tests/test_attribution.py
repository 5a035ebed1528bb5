"""Lineage from weights: typed directed edges, unrelated models apart, the lake checked against its manifests."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from lakegen import attribution
from lakegen.attribution import attribute, closest
from lakegen.fingerprint import compute

LAKEGEN = Path(sys.executable).with_name("lakegen")
REPO = Path(__file__).resolve().parents[1]
SHAPES = {
    "layers.0.weight": (96, 40),
    "layers.0.bias": (96,),
    "layers.2.weight": (80, 96),
    "layers.4.weight": (10, 80),
}


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAKEGEN, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def trained(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights with the spectrum of a trained net: a few strong directions over a decaying tail."""
    out = {}
    for name, shape in SHAPES.items():
        if len(shape) == 2:
            k = min(shape)
            u, _ = np.linalg.qr(rng.normal(size=(shape[0], k)))
            v, _ = np.linalg.qr(rng.normal(size=(shape[1], k)))
            w = (u * (1.0 / np.arange(1, k + 1))) @ v.T
        else:
            w = rng.normal(0, 0.1, shape)
        out[name] = w.astype(np.float32)
    return out


def finetune(
    rng: np.random.Generator, parent: dict[str, np.ndarray], size: float = 0.08
) -> dict[str, np.ndarray]:
    """The parent moved along a dozen directions per matrix, as a short fine-tune moves it."""
    out = {}
    for name, w in parent.items():
        if w.ndim == 2:
            u, v = rng.normal(size=(w.shape[0], 12)), rng.normal(size=(12, w.shape[1]))
            noise = rng.normal(size=w.shape)  # fine-tuning also spreads the spectrum a little
            delta = u @ v / np.linalg.norm(u @ v) + 0.5 * noise / np.linalg.norm(noise)
            out[name] = (w + size * np.linalg.norm(w) * delta / np.linalg.norm(delta)).astype(np.float32)
        else:
            out[name] = (w + 0.01 * rng.normal(size=w.shape)).astype(np.float32)
    return out


def int8(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, w in sd.items():
        if w.ndim == 2:
            scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
            out[name] = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
            out[name + "_scale"] = scale
        else:
            out[name] = w
    return out


def pruned(sd: dict[str, np.ndarray], amount: float = 0.5) -> dict[str, np.ndarray]:
    out = {}
    for name, w in sd.items():
        w = w.copy()
        if w.ndim == 2:
            w[np.abs(w) <= np.quantile(np.abs(w), amount)] = 0
        out[name] = w
    return out


def write_adapter(folder: Path, base: str, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    tensors = {}
    for name in ("layers.0", "layers.2"):
        out_f, in_f = SHAPES[name + ".weight"]
        tensors[f"base_model.model.{name}.lora_A.weight"] = rng.normal(size=(4, in_f)).astype(np.float32)
        tensors[f"base_model.model.{name}.lora_B.weight"] = (0.01 * rng.normal(size=(out_f, 4))).astype(
            np.float32
        )
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "base_model_name_or_path": base, "r": 4, "lora_alpha": 8}
    (folder / "adapter_config.json").write_text(json.dumps(config))


EXPECTED = {
    ("root", "ft-a", "finetune"),
    ("root", "ft-b", "finetune"),
    ("root", "ft-c", "finetune"),
    ("ft-a", "ft-a1", "finetune"),
    ("ft-a1", "ft-a1-int8", "quantized"),
    ("root", "root-bf16", "quantized"),
    ("root", "root-pruned", "pruned"),
    ("ft-b", "soup", "merge"),
    ("ft-c", "soup", "merge"),
    ("root", "adapter", "adapter"),
    ("other", "other-ft", "finetune"),
    ("other", "other-ft2", "finetune"),
    ("other", "other-int8", "quantized"),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One family (root, three fine-tunes, a grandchild, copies, a merge, an adapter), an unrelated
    root of the same architecture with two fine-tunes and an int8 copy, and a model of another
    architecture."""
    out = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(11)
    models: dict[str, dict[str, np.ndarray]] = {"root": trained(rng)}
    for name in ("ft-a", "ft-b", "ft-c"):
        models[name] = finetune(rng, models["root"])
    models["ft-a1"] = finetune(rng, models["ft-a"])
    models["ft-a1-int8"] = int8(models["ft-a1"])
    models["root-pruned"] = pruned(models["root"])
    models["soup"] = {
        k: (0.3 * models["ft-b"][k] + 0.7 * models["ft-c"][k]).astype(np.float32) for k in SHAPES
    }
    models["other"] = trained(rng)
    models["other-ft"] = finetune(rng, models["other"])
    models["other-ft2"] = finetune(rng, models["other"])
    models["other-ft2"]["layers.2.weight"][5, :] = np.nan  # a few NaN weights: compared as missing
    models["other-int8"] = int8(models["other"])
    models["wide"] = {"w": rng.normal(size=(50, 50)).astype(np.float32)}
    for name, sd in models.items():
        save_file(sd, str(out / f"{name}.safetensors"))
    bf16 = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in models["root"].items()}
    torch.save(bf16, out / "root-bf16.pt")
    write_adapter(out / "adapter", "root", rng)
    return out


def test_attribute_recovers_typed_directed_edges(zoo: Path, tmp_path: Path) -> None:
    paths = sorted(str(p) for p in zoo.iterdir())
    result = run("attribute", *paths, "--json", cwd=tmp_path, env={"LAKEGEN_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"models", "edges", "roots"}
    assert len(out["models"]) == 15
    assert {(e["parent"], e["child"], e["relation"]) for e in out["edges"]} == EXPECTED
    assert sorted(out["roots"]) == ["other", "root", "wide"]
    weights = {e["parent"]: e["weight"] for e in out["edges"] if e["relation"] == "merge"}
    assert weights == pytest.approx({"ft-b": 0.3, "ft-c": 0.7}, abs=0.01)
    assert all(0.5 <= e["confidence"] <= 1 for e in out["edges"])


def test_independent_models_of_one_architecture_stay_unconnected(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fps = {}
    for i in range(12):
        path = tmp_path / f"m{i}.safetensors"
        save_file(trained(rng), str(path))
        fps[f"m{i}"] = compute(path)
    lineage = attribute(fps)
    assert lineage.edges == []
    assert sorted(lineage.roots) == sorted(fps)


def test_search_like_names_the_parent_and_relation(zoo: Path) -> None:
    fps = {p.stem: compute(p) for p in zoo.glob("*.safetensors") if p.stem != "ft-a1-int8"}
    matches = closest(compute(zoo / "ft-a1-int8.safetensors"), fps)
    assert (matches[0].id, matches[0].relation) == ("ft-a1", "quantized")
    matches = closest(compute(zoo / "soup.safetensors"), {k: v for k, v in fps.items() if k != "soup"})
    assert {m.id: m.weight for m in matches if m.relation == "merge"} == pytest.approx(
        {"ft-b": 0.3, "ft-c": 0.7}, abs=0.01
    )


# ---------------------------------------------------------------------------------- lake


def manifest(model_id: str, uri: str, data: bytes, released: str, bases: list[str]) -> str:
    digest = hashlib.sha256(data).hexdigest()
    lines = [
        "kind: model",
        f"id: {model_id}",
        f"name: {model_id}",
        "description: A test model.",
        "owners: ['@ada']",
        "license: MIT",
        "task: tabular-classification",
        "framework: pytorch",
        "architecture: {family: toy}",
        "versions:",
        "  - version: 1.0.0",
        f"    released: {released}",
        f"    artifact: {{uri: '{uri}', sha256: {digest}, size: {len(data)}, format: safetensors}}",
        "risk: minimal",
    ]
    if bases:
        lines.append("base_models:")
        lines += [f"  - {b}" for b in bases]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def lake(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake of some zoo models whose manifests get some lineage wrong."""
    root = tmp_path_factory.mktemp("lake")
    (root / "catalog" / "models").mkdir(parents=True)
    art = root / "catalog" / "artifacts"
    art.mkdir()
    declared = {
        "root": ("2026-01-01", []),
        "ft-a": ("2026-02-01", ["{id: root, version: 1.0.0, relation: finetune}"]),
        "ft-b": ("2026-02-01", ["{id: root, relation: quantized}"]),  # wrong relation
        "ft-c": ("2026-02-01", []),  # undeclared parent
        "other": (
            "2026-01-01",
            ["{id: ft-a, relation: finetune}", "{id: 'hf:org/base', relation: finetune}"],
        ),
        "root-pruned": ("2026-03-01", ["{id: root, relation: pruned}"]),
    }
    for model_id, (released, bases) in declared.items():
        data = (zoo / f"{model_id}.safetensors").read_bytes()
        (art / f"{model_id}-1.0.0.safetensors").write_bytes(data)
        text = manifest(model_id, f"../artifacts/{model_id}-1.0.0.safetensors", data, released, bases)
        (root / "catalog" / "models" / f"{model_id}.yaml").write_text(text)
    return root


@pytest.mark.slow
def test_lake_mode_checks_declared_lineage(lake: Path, zoo: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LAKEGEN_CACHE": str(tmp_path / "cache")}
    result = run("--root", str(lake), "attribute", "--json", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    status = {(d["model"], d["base"]): d["status"] for d in out["declared"]}
    assert status == {
        ("ft-a", "root"): "verified",
        ("ft-b", "root"): "contradicted",
        ("other", "ft-a"): "contradicted",
        ("other", "hf:org/base"): "unchecked",
        ("root-pruned", "root"): "verified",
    }
    findings = {(f["entry"], f["rule"], f["line"]) for f in out["findings"]}
    assert findings == {
        ("ft-b", "wrong-relation", 16),
        ("ft-c", "undeclared-derivation", 2),
        ("other", "unsupported-claim", 16),
    }
    assert all(f["path"].startswith("catalog/models/") for f in out["findings"])
    strict = run("--root", str(lake), "attribute", "--strict", env=env)
    assert strict.returncode == 1
    assert "catalog/models/ft-c.yaml:2: undeclared-derivation" in strict.stdout
    like = run("--root", str(lake), "search", "--like", str(zoo / "root-bf16.pt"), "--json", env=env)
    assert like.returncode == 0, like.stderr
    assert json.loads(like.stdout)["sentence"] == "this file is a quantized copy of root 1.0.0"
    # the same weights saved another way are named as such, not as a fine-tune at distance 0
    again = tmp_path / "root-again.pt"
    torch.save({k: torch.from_numpy(v) for k, v in load_file(str(zoo / "root.safetensors")).items()}, again)
    like = run("--root", str(lake), "search", "--like", str(again), "--json", env=env)
    out = json.loads(like.stdout)
    assert out["sentence"].startswith("this file holds the same weights as root 1.0.0")
    assert (out["matches"][0]["id"], out["matches"][0]["relation"]) == ("root@1.0.0", "same-weights")


@pytest.mark.parametrize(
    ("declares", "expected"),
    [
        ({}, {("a", "undeclared-derivation", 2), ("b", "undeclared-derivation", 2)}),
        ({"b": "a"}, set()),
        ({"a": "b"}, set()),
    ],
)
def test_an_undated_twin_is_judged_the_same_whichever_way_it_is_declared(
    declares: dict[str, str], expected: set[tuple[str, str, int]], tmp_path: Path
) -> None:
    """Two files with the same weights and the same release date: the weights cannot tell which came
    first, so neither declaration direction is refused, and with none the finding goes to both
    manifests (a pull request adding either one must see it, whichever the name order called child)."""
    root = tmp_path / "lake"
    (root / "catalog" / "models").mkdir(parents=True)
    art = root / "catalog" / "artifacts"
    art.mkdir()
    weights = trained(np.random.default_rng(5))
    for model_id in ("a", "b"):
        save_file(weights, str(art / f"{model_id}.safetensors"), metadata={"saved_by": model_id})
        data = (art / f"{model_id}.safetensors").read_bytes()
        bases = [f"{{id: {declares[model_id]}, relation: quantized}}"] if model_id in declares else []
        text = manifest(model_id, f"../artifacts/{model_id}.safetensors", data, "2026-02-01", bases)
        (root / "catalog" / "models" / f"{model_id}.yaml").write_text(text)
    env = {"PATH": "/usr/bin:/bin", "LAKEGEN_CACHE": str(tmp_path / "cache")}
    result = run("--root", str(root), "attribute", "--json", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {(f["entry"], f["rule"], f["line"]) for f in out["findings"]} == expected
    assert [d["status"] for d in out["declared"]] == ["verified"] * len(declares)
    assert all("cannot tell" in d["detail"] for d in out["declared"])
    # the compiled lake shows one edge between them: the declared one, verified, or one undeclared
    from lakegen.compile import compile_lake

    edges = [(e.declared, e.status) for e in compile_lake(root, reuse=False).edges]
    assert edges == ([(True, "verified")] if declares else [(False, "undeclared")])


@pytest.mark.skipif(not any((REPO / "catalog" / "models").glob("*.yaml")), reason="no demo lake yet")
def test_demo_lake_attributes_with_zero_findings(tmp_path: Path) -> None:
    result = run("--root", str(REPO), "attribute", "--json", "--strict", env={"LAKEGEN_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["findings"] == []
    assert out["declared"] and all(d["status"] == "verified" for d in out["declared"])


def test_large_lakes_are_split_into_families_with_the_same_result(
    zoo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen import attribution
    from lakegen.fingerprint import fingerprint

    fps = {p.stem if p.is_file() else p.name: fingerprint(p, None) for p in sorted(zoo.iterdir())}
    whole = attribution.attribute(fps)
    monkeypatch.setattr(attribution.recover, "PARTITION_FROM", 2)
    families = attribution.families_by_signature(fps, attribution.adapters.default_adapter_base(sorted(fps)))
    assert sorted(map(tuple, families)) == sorted(
        [
            (
                "adapter",
                "ft-a",
                "ft-a1",
                "ft-a1-int8",
                "ft-b",
                "ft-c",
                "root",
                "root-bf16",
                "root-pruned",
                "soup",
            ),
            ("other", "other-ft", "other-ft2", "other-int8"),
            ("wide",),
        ]
    )
    split = attribution.attribute(fps)
    assert split.to_json()["edges"] == whole.to_json()["edges"]
    assert split.roots == whole.roots


def _moved(rng: np.random.Generator, w: np.ndarray, signal: np.ndarray, bulk: float) -> np.ndarray:
    noise = rng.normal(size=w.shape)
    return (w + signal + bulk * np.linalg.norm(w) * noise / np.linalg.norm(noise)).astype(np.float32)


def _reverting_family(tmp_path: Path) -> dict:
    """P; C, a fine-tune of P; G, a small fine-tune of C that undoes most of C's task update; S, a
    sibling of C whose task update is much like C's."""
    rng = np.random.default_rng(11)
    p = trained(rng)
    c, g, s = {}, {}, {}
    for name, w in p.items():
        if w.ndim != 2:
            c[name] = g[name] = s[name] = w
            continue
        u, v = rng.normal(size=(w.shape[0], 6)), rng.normal(size=(6, w.shape[1]))
        task = 0.3 * np.linalg.norm(w) * (u @ v) / np.linalg.norm(u @ v)
        c[name] = _moved(rng, w, task, 0.05)
        g[name] = _moved(rng, c[name], -0.85 * task, 0.015)
        u2, v2 = rng.normal(size=(w.shape[0], 6)), rng.normal(size=(6, w.shape[1]))
        own = np.linalg.norm(task) * (u2 @ v2) / np.linalg.norm(u2 @ v2)
        s[name] = _moved(rng, w, 0.7 * task + 0.7 * own, 0.05)
    fps = {}
    for name, sd in {"p": p, "c": c, "g": g, "s": s}.items():
        save_file(sd, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    return fps


def test_release_order_places_each_model_under_its_nearest_earlier_relative(tmp_path: Path) -> None:
    """G sits between P and C; with release dates the direction is known and the bulk places G under C.
    When two relatives share a date, the spanning tree decides as without dates."""
    fps = _reverting_family(tmp_path)
    dated = {"p": "2026-01-01", "c": "2026-02-01", "s": "2026-03-01", "g": "2026-04-01"}
    edges = {(e.parent, e.child, e.relation) for e in attribute(fps, order=dated).edges}
    assert edges == {("p", "c", "finetune"), ("c", "g", "finetune"), ("p", "s", "finetune")}
    same_day = {**dated, "s": dated["c"]}
    lineage = attribute(fps, order=same_day)
    assert len(lineage.edges) == 3 and lineage.roots == ["p"]
    assert all(e.relation == "finetune" and 0.5 <= e.confidence <= 0.95 for e in lineage.edges)


def test_lineage_distance_reads_the_bulk_a_descendant_inherits(tmp_path: Path) -> None:
    """G undoes most of C's task update, so G is nearer P than C in Euclidean terms, yet it keeps C's
    own full-rank bulk: the lineage distance puts it nearer C. A sibling S whose task update is much
    like C's stays nearer their parent P, which the spectral distance alone gets wrong."""
    from lakegen.attribution import View, compare, lineage_distance

    fps = _reverting_family(tmp_path)
    views = {k: View(fp) for k, fp in fps.items()}

    def dist(a: str, b: str) -> tuple[float, float]:
        pair = compare(views[a], views[b])
        assert pair is not None and pair.related
        return pair.distance, lineage_distance(views[a], views[b], pair.shared)

    assert dist("p", "g")[0] < dist("c", "g")[0]  # Euclidean: G looks like P's child
    assert dist("c", "g")[1] < dist("p", "g")[1]  # the bulk G inherited from C says otherwise
    assert dist("p", "s")[1] < dist("c", "s")[1]  # and the sibling's shared task update does not fool it


def _save_all(tmp_path: Path, models: dict[str, dict[str, np.ndarray]]) -> dict:
    fps = {}
    for name, sd in models.items():
        save_file(sd, str(tmp_path / f"{name}.safetensors"))
        fps[name] = compute(tmp_path / f"{name}.safetensors")
    return fps


def _edges(fps: dict, order: dict | None = None) -> set[tuple[str, str, str]]:
    return {(e.parent, e.child, e.relation) for e in attribute(fps, order=order).edges}


def test_a_soups_parents_are_siblings_even_beside_a_barely_changed_fine_tune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C barely moved from P along the task S learned, so S looks like C's child and C like the
    root; the merge of C and S (a model soup of two fine-tunes of one base) says they are siblings."""
    rng = np.random.default_rng(22)
    p = trained(rng)
    c, s = {}, {}
    for name, w in p.items():
        if w.ndim != 2:
            c[name] = s[name] = w
            continue
        u, v = rng.normal(size=(w.shape[0], 6)), rng.normal(size=(6, w.shape[1]))
        task = np.linalg.norm(w) * (u @ v) / np.linalg.norm(u @ v)
        c[name] = _moved(rng, w, 0.02 * task, 0.004)
        u2, v2 = rng.normal(size=(w.shape[0], 6)), rng.normal(size=(6, w.shape[1]))
        own = np.linalg.norm(task) * (u2 @ v2) / np.linalg.norm(u2 @ v2)
        s[name] = _moved(rng, w, 0.2 * task + 0.1 * own, 0.05)
    m = {k: (0.5 * c[k] + 0.5 * s[k]).astype(np.float32) for k in p}
    fps = _save_all(tmp_path, {"p": p, "c": c, "s": s, "m": m})
    right = {("p", "c", "finetune"), ("p", "s", "finetune"), ("c", "m", "merge"), ("s", "m", "merge")}
    dated = {"p": 1, "c": 2, "s": 3, "m": 4}  # lake mode: release dates settle direction, not placement
    assert _edges(fps) == right
    assert _edges(fps, dated) == right
    monkeypatch.setattr(attribution.trees, "SIBLING_TOLERANCE", 0.0)  # the merge's evidence ignored
    assert _edges(fps) != right
    assert _edges(fps, dated) != right


def test_a_merge_of_a_model_with_its_own_fine_tune_keeps_them_parent_and_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WiSE-FT interpolates a fine-tune with its base: that merge's parents are not siblings, and
    making them siblings would cost the tree far more than the tolerance allows."""
    rng = np.random.default_rng(21)
    g = trained(rng)
    p = finetune(rng, g)
    c, q = finetune(rng, p), finetune(rng, g)
    m = {k: (0.5 * p[k] + 0.5 * c[k]).astype(np.float32) for k in g}
    fps = _save_all(tmp_path, {"g": g, "p": p, "c": c, "q": q, "m": m})
    right = {
        ("g", "p", "finetune"),
        ("p", "c", "finetune"),
        ("g", "q", "finetune"),
        ("p", "m", "merge"),
        ("c", "m", "merge"),
    }
    assert _edges(fps) == right
    assert _edges(fps, {"g": 1, "p": 2, "q": 3, "c": 4, "m": 5}) == right
    monkeypatch.setattr(attribution.trees, "SIBLING_TOLERANCE", 1.0)  # a tolerance that lets cost be ignored
    assert _edges(fps) != right


def test_the_same_weights_saved_again_are_a_lossless_copy_and_leave_a_merge_alone(tmp_path: Path) -> None:
    """A re-upload (here: a merge saved again as a PyTorch file) has every tensor of the original.
    It is a lossless copy of the earlier release, and the merge is still found from its parents,
    instead of being explained by its twin. A model whose biases alone moved is no copy."""
    rng = np.random.default_rng(23)
    g = trained(rng)
    a, b = finetune(rng, g), finetune(rng, g)
    m = {k: (0.5 * a[k] + 0.5 * b[k]).astype(np.float32) for k in g}
    bitfit = {
        k: (w + 0.01 * rng.normal(size=w.shape)).astype(np.float32) if w.ndim == 1 else w
        for k, w in g.items()
    }
    fps = _save_all(tmp_path, {"g": g, "a": a, "b": b, "m": m, "bitfit": bitfit})
    torch.save({k: torch.from_numpy(v) for k, v in m.items()}, tmp_path / "m-again.pt")
    fps["m-again"] = compute(tmp_path / "m-again.pt")
    assert fps["m-again"].sha256 != fps["m"].sha256 and attribution.same_weights(fps["m"], fps["m-again"])
    assert not attribution.same_weights(fps["g"], fps["bitfit"])
    found = _edges(fps)
    assert {("a", "m", "merge"), ("b", "m", "merge"), ("m", "m-again", "quantized")} <= found
    assert "m-again has the same weights as m (every tensor equal)" in " ".join(attribute(fps).notes)
    # bitfit is joined to g by a fine-tune edge, not a copy (its direction rests on biases alone)
    assert {(x, y, r) for x, y, r in found if {x, y} == {"g", "bitfit"}} in (
        {("g", "bitfit", "finetune")},
        {("bitfit", "g", "finetune")},
    )
    # with release dates, the earliest of the twins is the original, whatever its name
    np.savez(tmp_path / "m-third.npz", **m)
    fps["m-third"] = compute(tmp_path / "m-third.npz")
    dated = _edges(fps, {"g": 1, "a": 2, "b": 3, "m-again": 4, "m": 5, "bitfit": 6, "m-third": 7})
    assert {("a", "m-again", "merge"), ("b", "m-again", "merge")} <= dated
    assert {(x, y) for x, y, r in dated if "m" in (x, y) or "m-third" in (x, y)} == {
        ("m-again", "m"),
        ("m-again", "m-third"),
    }
    assert {("m-again", "m", "quantized"), ("m-again", "m-third", "quantized")} <= dated


@pytest.mark.parametrize(
    "named",
    ["acme/Mini-Base", "someone/mini-base", "LOCAL"],
    ids=["hub-id-through-links", "hub-id-by-name", "local-path"],
)
def test_an_adapter_base_named_by_hub_id_or_local_path_is_found(tmp_path: Path, named: str) -> None:
    # Real adapter_config.json files name their base by Hub id or by the folder it was trained on,
    # not by lake id; a declared adapter edge must still verify (#15, class 8).
    from helpers import run_lakegen

    rng = np.random.default_rng(5)
    root = tmp_path / "lake"
    art = root / "catalog" / "artifacts"
    (root / "catalog" / "models").mkdir(parents=True)
    art.mkdir()
    save_file(trained(rng), str(art / "base.safetensors"))
    data = (art / "base.safetensors").read_bytes()
    text = manifest("mini-base", "../artifacts/base.safetensors", data, "2026-01-01", [])
    text += "links: [{title: Hub, url: 'https://huggingface.co/acme/Mini-Base'}]\n"
    (root / "catalog" / "models" / "mini-base.yaml").write_text(text)
    write_adapter(art / "lora", str(art) if named == "LOCAL" else named, rng)
    if named == "LOCAL":  # the folder it was trained on: the base's weights file, by path
        config = json.loads((art / "lora" / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = str(art / "base.safetensors")
        (art / "lora" / "adapter_config.json").write_text(json.dumps(config))
    made = run_lakegen("--root", str(root), "new", "model", "lora", "--artifact", str(art / "lora"))
    assert made.returncode == 0, made.stderr
    path = root / "catalog" / "models" / "lora.yaml"
    text = re.sub(
        r"^base_models: \[\].*$",
        "base_models: [{id: mini-base, relation: adapter}]",
        path.read_text(),
        flags=re.M,
    )
    path.write_text(text)
    out = json.loads(run_lakegen("--root", str(root), "attribute", "--json").stdout)
    assert [(d["model"], d["base"], d["status"]) for d in out["declared"]] == [
        ("lora", "mini-base", "verified")
    ]
    assert out["findings"] == []


def test_a_bf16_saved_fine_tune_of_a_child_is_not_taken_for_a_release_before_it() -> None:
    # generated-MLP benchmark seed 9001 (benchmarks/attribution.py, family root1): ft-069 is a
    # fine-tune of ft-065 saved in bfloat16; the rule placing a bf16 release between its parent
    # and a child of its float32 master put it between root1-063 and ft-065 (ft-069 -> ft-065 at
    # confidence 0.947). It carries all of ft-065's update: a leaf beyond it
    folder = Path(__file__).parent / "fixtures" / "bf16-leaf"
    fps = {p.stem: compute(p) for p in sorted(folder.glob("*.safetensors"))}
    found = {(e.parent, e.child) for e in attribute(fps).edges}
    assert found == {("root1-063", "ft-064"), ("root1-063", "ft-065"), ("ft-065", "ft-069")}
