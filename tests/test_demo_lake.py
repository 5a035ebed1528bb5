"""The demo lake under catalog/: it validates, and it is what its manifests say it is."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lakegen.catalog.loader import load_catalog
from lakegen.model.manifest import Dataset, Model, Relation

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "catalog"
ARTIFACTS = CATALOG / "artifacts"
MAX_ARTIFACT_BYTES = 20 * 1024 * 1024

if str(CATALOG / "src") not in sys.path:
    sys.path.insert(0, str(CATALOG / "src"))

from lakedemo import evaluate as ev  # noqa: E402
from lakedemo.nets import build_mlp  # noqa: E402


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT)


@pytest.fixture(scope="module")
def models(catalog) -> dict[str, Model]:
    return {m.id: m for m in catalog.models()}


def artifact_path(catalog, entry_id: str, version: str | None = None) -> Path:
    record = catalog.records[entry_id]
    versions = record.entry.versions
    chosen = versions[-1] if version is None else next(v for v in versions if v.version == version)
    return (record.file.parent / chosen.artifact.uri).resolve()


def base_path(catalog, model: Model) -> Path:
    (base,) = model.base_models
    return artifact_path(catalog, base.id, base.version)


def models_with(models: dict[str, Model], relation: str) -> list[Model]:
    return [m for m in models.values() if any(b.relation == relation for b in m.base_models)]


# ------------------------------------------------------------------------ the lake as a whole


def test_demo_lake_validates_with_zero_problems(catalog):
    assert [str(p) for p in catalog.problems] == []
    versions = sum(len(e.versions) for e in catalog.entries() if isinstance(e, Model | Dataset))
    assert len(catalog.artifacts) == versions
    assert set(catalog.artifacts.values()) == {"verified"}


def test_artifacts_stay_under_20_mb():
    total = sum(p.stat().st_size for p in ARTIFACTS.rglob("*") if p.is_file())
    assert 0 < total <= MAX_ARTIFACT_BYTES


def test_every_manifest_points_at_its_json_schema():
    for kind, folder in (("model", "models"), ("dataset", "datasets"), ("code", "code")):
        files = sorted((CATALOG / folder).glob("*.yaml"))
        assert files, folder
        for file in files:
            first = file.read_text(encoding="utf-8").splitlines()[0]
            assert first == f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json", file


def test_at_least_12_models_in_at_least_2_families(models):
    assert len(models) >= 12
    assert len({m.architecture.family for m in models.values()}) >= 2


def test_every_relation_is_present(models):
    relations = {b.relation for m in models.values() for b in m.base_models}
    assert relations == {r.value for r in Relation}


def test_a_family_has_two_unrelated_roots(models):
    roots = defaultdict(list)
    for m in models.values():
        if not m.base_models:
            roots[m.architecture.family].append(m.id)
    assert max(len(ids) for ids in roots.values()) >= 2, dict(roots)


def test_every_model_declares_lineage_data_code_and_evaluations(models):
    for m in models.values():
        assert m.versions, m.id
        assert m.datasets, m.id
        assert m.code, m.id
        assert m.evaluations, m.id
        assert m.architecture.code and m.architecture.entrypoint, m.id
        assert m.license == "Apache-2.0" and m.owners and m.risk == "minimal", m.id
        if not m.base_models:  # a root was trained from scratch on something
            assert any(d.role == "train" for d in m.datasets), m.id
        for base in m.base_models:
            assert base.id in models, (m.id, base.id)
            assert base.version in [v.version for v in models[base.id].versions], (m.id, base.id)
            assert models[base.id].architecture.family == m.architecture.family, (m.id, base.id)


def test_a_merge_has_weighted_parents(models):
    for m in models_with(models, "merge"):
        parents = [b for b in m.base_models if b.relation == "merge"]
        assert len(parents) >= 2
        assert sum(b.weight for b in parents) == pytest.approx(1.0)


def test_datasets_state_licence_source_and_splits(catalog):
    datasets = [e for e in catalog.entries("dataset") if isinstance(e, Dataset)]
    assert len(datasets) >= 2
    assert any(d.derived_from for d in datasets)
    for d in datasets:
        assert d.license == "CC-BY-4.0" and d.source.url and d.source.citation and not d.personal_data
        with np.load(artifact_path(catalog, d.id), allow_pickle=False) as data:
            for split in d.splits:
                x, y = data[f"x_{split.name}"], data[f"y_{split.name}"]
                assert x.dtype == np.float32 and y.dtype == np.int64
                assert len(x) == len(y) == split.rows


# ------------------------------------------------------------------------ weight conventions


def test_full_models_use_plain_state_dict_names(catalog, models):
    for m in models.values():
        if any(b.relation in ("adapter", "quantized") for b in m.base_models):
            continue
        expected = build_mlp(**m.architecture.config).state_dict()
        for version in m.versions:
            tensors = ev.load_state_dict(artifact_path(catalog, m.id, version.version))  # a file, or an index
            assert {k: tuple(t.shape) for k, t in tensors.items()} == {
                k: tuple(t.shape) for k, t in expected.items()
            }, m.id
            assert all(t.dtype == torch.float32 for t in tensors.values()), m.id


def test_the_sharded_release_holds_the_tensors_of_the_one_before(catalog, models):
    """digits-mlp-merge 1.1.0 re-publishes 1.0.0 as a Hugging Face sharded checkpoint."""
    index = artifact_path(catalog, "digits-mlp-merge", "1.1.0")
    assert index.name == "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    (version,) = [v for v in models["digits-mlp-merge"].versions if v.version == "1.1.0"]
    assert (
        sorted(f.path for f in version.artifact.files)
        == sorted(set(weight_map.values()))
        == [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
    )
    sharded = ev.load_state_dict(index)
    single = load_file(str(artifact_path(catalog, "digits-mlp-merge", "1.0.0")))
    assert sharded.keys() == single.keys() and all(torch.equal(sharded[k], single[k]) for k in single)


def test_int8_files_hold_int8_weights_with_scales(catalog, models):
    quantized = models_with(models, "quantized")
    assert quantized
    for m in quantized:
        path = artifact_path(catalog, m.id)
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in names}
        weights = [k for k in names if k.endswith(".weight")]
        assert weights, m.id
        for name in weights:
            w, scale = tensors[name], tensors.get(name + "_scale")
            assert w.dtype == torch.int8 and w.dim() == 2, (m.id, name)
            assert scale is not None and scale.dtype == torch.float32, (m.id, name)
            assert tuple(scale.shape) == (w.shape[0],), (m.id, name)
            assert int(w.abs().max()) <= 127
        for name in names - set(weights):
            assert name.endswith(".bias") or name.endswith(".weight_scale"), (m.id, name)
            if name.endswith(".bias"):
                assert tensors[name].dtype == torch.float32
        # dequantised weights are the base's, up to half a quantisation step
        base = ev.load_state_dict(base_path(catalog, m))
        deq = ev.load_state_dict(path)
        for name in weights:
            step = tensors[name + "_scale"][:, None]
            assert torch.all((deq[name] - base[name]).abs() <= step / 2 + 1e-6), (m.id, name)


def test_adapter_is_a_peft_folder(catalog, models):
    adapters = models_with(models, "adapter")
    assert adapters
    for m in adapters:
        weights_file = artifact_path(catalog, m.id)
        folder = weights_file.parent
        assert weights_file.name == "adapter_model.safetensors"
        assert folder.name == f"{m.id}-{m.versions[-1].version}"
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        (base,) = m.base_models
        assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == base.id
        r, targets = config["r"], config["target_modules"]
        assert config["lora_alpha"] > 0 and targets
        base_state = ev.load_state_dict(base_path(catalog, m))
        tensors = load_file(str(weights_file))
        assert len(tensors) == 2 * len(targets)
        for module in targets:
            out_f, in_f = base_state[f"{module}.weight"].shape
            a = tensors[f"base_model.model.{module}.lora_A.weight"]
            b = tensors[f"base_model.model.{module}.lora_B.weight"]
            assert tuple(a.shape) == (r, in_f) and tuple(b.shape) == (out_f, r)
            assert b.abs().max() > 0  # trained, not PEFT's zero initialisation


def test_pruned_models_zero_half_of_each_matrix_and_keep_the_rest(catalog, models):
    pruned = models_with(models, "pruned")
    assert pruned
    for m in pruned:
        state = load_file(str(artifact_path(catalog, m.id)))
        base = ev.load_state_dict(base_path(catalog, m))
        for name, t in state.items():
            if name.endswith(".weight"):
                assert (t == 0).float().mean() >= 0.5, (m.id, name)
                kept = t != 0
                assert torch.equal(t[kept], base[name][kept]), (m.id, name)
            else:
                assert torch.equal(t, base[name]), (m.id, name)


def test_merge_is_the_weighted_average_of_its_parents(catalog, models):
    for m in models_with(models, "merge"):
        merged = ev.load_state_dict(artifact_path(catalog, m.id))  # the latest release: sharded
        parents = [
            (b.weight, ev.load_state_dict(artifact_path(catalog, b.id, b.version))) for b in m.base_models
        ]
        for name, t in merged.items():
            expected = sum(w * s[name] for w, s in parents)
            torch.testing.assert_close(t, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------ claimed numbers


def test_claimed_evaluations_reproduce(catalog, models):
    for m in models.values():
        for claim in m.evaluations:
            version = claim.version or m.versions[-1].version
            net = build_mlp(**m.architecture.config)
            base = None
            if any(b.relation == "adapter" for b in m.base_models):
                base = base_path(catalog, m)
            ev.load_weights(net, artifact_path(catalog, m.id, version), base=base)
            result = ev.evaluate(net, artifact_path(catalog, claim.dataset), claim.split, [claim.metric])
            assert result[claim.metric] == pytest.approx(claim.value, abs=claim.tolerance), (m.id, claim)


@pytest.mark.skipif(
    os.environ.get("LAKEDEMO_REBUILD") != "1",
    reason="set LAKEDEMO_REBUILD=1 to rebuild the demo lake and compare bytes (same-machine check)",
)
def test_build_demo_reproduces_the_committed_files(tmp_path):
    from lakedemo.build_demo import build

    shutil.copytree(ARTIFACTS / "datasets", tmp_path / "catalog" / "artifacts" / "datasets")
    build(tmp_path, quiet=True)
    for folder in ("models", "datasets", "code", "artifacts/models"):
        for built in (tmp_path / "catalog" / folder).rglob("*"):
            if built.is_file():
                committed = CATALOG / folder / built.relative_to(tmp_path / "catalog" / folder)
                assert built.read_bytes() == committed.read_bytes(), committed
