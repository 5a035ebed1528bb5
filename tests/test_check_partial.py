"""A PR check attributes again only what the changed models reach, from its base's results
(:mod:`lakegen.lineage.partial`), and reports what a check with no cache at all reports."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gitlake import GitLake
from safetensors.numpy import load_file, save

from lakegen.attribution import recover
from lakegen.check.report import CheckReport, run_check
from lakegen.compile import compile_or_reuse
from lakegen.compile.store import save as save_index
from lakegen.lineage import partial

DEMO = Path(__file__).resolve().parents[1] / "catalog"
MODELS = "catalog/models"
ARTIFACTS = "catalog/artifacts/models"


def _reparametrised(w: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The digits MLP (64-256-128-10, ReLU) with its hidden units permuted and rescaled: the same
    function, other weights (see tests/test_symmetry.py)."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in w.items()}
    for i, nxt in ((0, 2), (2, 4)):
        n = out[f"layers.{i}.weight"].shape[0]
        order = rng.permutation(n)
        s = rng.uniform(0.25, 4.0, n).astype(np.float32)
        out[f"layers.{i}.weight"] = out[f"layers.{i}.weight"][order] * s[:, None]
        out[f"layers.{i}.bias"] = out[f"layers.{i}.bias"][order] * s
        out[f"layers.{nxt}.weight"] = np.ascontiguousarray(out[f"layers.{nxt}.weight"][:, order] / s[None, :])
    return out


def _nudged(w: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (v + 0.02 * v.std() * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in w.items()}


def _add(lake: GitLake, like: str, new_id: str, tensors: dict[str, np.ndarray], bases: list[Any]) -> None:
    """A model ``new_id`` made from ``like``'s manifest, with ``tensors`` as its weights."""
    data = yaml.safe_load((lake.root / MODELS / f"{like}.yaml").read_text())
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    (lake.root / ARTIFACTS / f"{new_id}-1.0.0.safetensors").write_bytes(blob)
    data["id"], data["name"], data["base_models"] = new_id, f"Model {new_id}", bases
    data.pop("evaluations", None)
    artifact = data["versions"][0]["artifact"]
    artifact["uri"] = f"../artifacts/models/{new_id}-1.0.0.safetensors"
    artifact["sha256"], artifact["size"] = hashlib.sha256(blob).hexdigest(), len(blob)
    data["versions"] = data["versions"][:1]
    data["versions"][0]["released"] = "2026-11-20"
    (lake.root / MODELS / f"{new_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _weights(lake: GitLake, model_id: str) -> dict[str, np.ndarray]:
    return load_file(lake.root / ARTIFACTS / f"{model_id}-1.0.0.safetensors")


def _commit_fine_tune(
    lake: GitLake, parent: str, child: str, tensors: dict[str, np.ndarray], message: str = "Add a fine-tune"
) -> None:
    """``child``, declared a fine-tune of ``parent`` with ``tensors`` as its weights, committed."""
    _add(lake, parent, child, tensors, [{"id": parent, "version": "1.0.0", "relation": "finetune"}])
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", message)


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitLake:
    """The demo lake with a derivation hidden by re-parametrisation on main, built there (so the
    lake's cache holds the base's results), then a branch 'pr' checked out."""
    # the demo lake is small; attribute it family by family, as a large lake is (and as a check
    # attributes the part it re-runs), so that the fast path is taken
    monkeypatch.setattr(recover, "PARTITION_FROM", 2)
    lake = GitLake(tmp_path / "lake", owners=None)
    shutil.copytree(
        DEMO, lake.root / "catalog", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    _add(
        lake,
        "digits-mlp-ft-small",
        "digits-mlp-hidden",
        _reparametrised(_weights(lake, "digits-mlp-ft-small"), 3),
        [],
    )
    lake.write(".gitignore", ".lakegen/\nsite/\n")
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Demo lake, and a model whose derivation is hidden")
    index, _ = compile_or_reuse(lake.root)
    save_index(index, lake.root)
    hidden = [e for e in index.edges if e.child == "digits-mlp-hidden" or e.parent == "digits-mlp-hidden"]
    assert [(e.parent, e.status) for e in hidden] == [("digits-mlp-ft-small", "undeclared")]
    lake.git("checkout", "-q", "-b", "pr")
    return lake


def _cold(lake: GitLake, work: Path) -> CheckReport:
    """The same check on a copy of the tree (git history included) with no cache at all."""
    copy = work / "cold"
    shutil.copytree(lake.root, copy, ignore=shutil.ignore_patterns(".lakegen", "site"))
    return run_check(copy, "main", run_evaluations=False)


def _same(fast: CheckReport, cold: CheckReport) -> None:
    assert fast.to_json() == cold.to_json()
    assert fast.index.model_dump(mode="json", exclude={"root"}) == cold.index.model_dump(
        mode="json", exclude={"root"}
    )


def _spied(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The models each attribution of part of the lake covered."""
    parts: list[list[str]] = []
    real = partial.attribute_catalog

    def spy(*args: Any, **kwargs: Any) -> Any:
        parts.append(list(kwargs["models"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(partial, "attribute_catalog", spy)
    return parts


def test_a_declared_fine_tune_is_attributed_with_its_family_alone(
    lake: GitLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit_fine_tune(lake, "wine-mlp-ft", "wine-mlp-ft2", _nudged(_weights(lake, "wine-mlp-ft"), 1))
    parts = _spied(monkeypatch)
    fast = run_check(lake.root, "main", run_evaluations=False)
    assert parts and all(
        set(p) == {"wine-mlp-base", "wine-mlp-ft", "wine-mlp-ft2", "wine-mlp-int8", "wine-mlp-pruned"}
        for p in parts
    ), parts
    assert fast.index.stages["attribution"] == "ran: 1 models, 1 edges (1 verified by weights)"
    _same(fast, _cold(lake, tmp_path))
    again = run_check(lake.root, "main", run_evaluations=False)  # the check's own result, read back
    assert len(parts) == 1
    _same(again, fast)


def test_a_hidden_derivation_in_the_pull_request_is_found_from_the_base(
    lake: GitLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fine-tune of digits-mlp-alt-ft, its units permuted and rescaled, declaring nothing: only the
    # search for a hidden derivation, among the lake's invariant signatures, finds its parent
    tensors = _reparametrised(_nudged(_weights(lake, "digits-mlp-alt-ft"), 2), 5)
    _add(lake, "digits-mlp-alt-ft", "digits-mlp-secret", tensors, [])
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Add a model")
    parts = _spied(monkeypatch)
    fast = run_check(lake.root, "main", run_evaluations=False)
    assert parts and "digits-mlp-base" not in parts[-1], parts
    assert {"digits-mlp-alt", "digits-mlp-alt-ft", "digits-mlp-secret"} <= set(parts[-1])
    (finding,) = [f for f in fast.findings if f.entry == "digits-mlp-secret" and f.stage == "attribution"]
    assert finding.rule == "undeclared-derivation" and "digits-mlp-alt-ft" in finding.message
    _same(fast, _cold(lake, tmp_path))


def test_a_family_the_base_search_moved_is_attributed_with_the_whole_lake(
    lake: GitLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # digits-mlp-ft-small's family holds the hidden derivation the base's search found: its result
    # there depends on the rest of the lake, so the whole lake is attributed again
    _commit_fine_tune(
        lake, "digits-mlp-ft-small", "digits-mlp-ft-tiny", _nudged(_weights(lake, "digits-mlp-ft-small"), 3)
    )
    parts = _spied(monkeypatch)
    fast = run_check(lake.root, "main", run_evaluations=False)
    assert parts == []
    _same(fast, _cold(lake, tmp_path))


def test_a_pull_request_that_commits_the_cache_gets_no_result_from_it(lake: GitLake, tmp_path: Path) -> None:
    _commit_fine_tune(
        lake,
        "wine-mlp-ft",
        "wine-mlp-ft2",
        _weights(lake, "digits-mlp-base"),
        "Add a model that is no fine-tune of its base",
    )
    honest = run_check(lake.root, "main", run_evaluations=False)
    rules = sorted(f.rule for f in honest.errors if f.stage == "attribution")
    assert rules == ["undeclared-derivation", "unsupported-claim"]  # a copy of digits-mlp-base
    # the pull request plants results saying all is well where the next check would read them
    planted = 0
    for path in (lake.root / ".lakegen/cache/attribution-stage").glob("*.json"):
        data = json.loads(path.read_text())
        if "added" in data:
            data["added"]["findings"] = []
            path.write_text(json.dumps(data))
            planted += 1
    assert planted
    lake.git("add", "-f", ".lakegen")
    lake.git("commit", "-q", "-m", "Plant a cache")
    again = run_check(lake.root, "main", run_evaluations=False)
    assert sorted(f.rule for f in again.errors if f.stage == "attribution") == rules


def test_a_lake_too_small_to_partition_is_attributed_whole(
    lake: GitLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a whole run attributes a small lake in one piece, which a part attributed family by family
    # need not equal
    monkeypatch.setattr(recover, "PARTITION_FROM", 300)
    _commit_fine_tune(lake, "wine-mlp-ft", "wine-mlp-ft2", _nudged(_weights(lake, "wine-mlp-ft"), 1))
    parts = _spied(monkeypatch)
    fast = run_check(lake.root, "main", run_evaluations=False)
    assert parts == []
    _same(fast, _cold(lake, tmp_path))
