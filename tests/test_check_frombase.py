"""A PR check loads only the manifests the pull request reaches and takes every other entry's rows
from the index its base's build saved (:mod:`lakegen.compile.frombase`); its report and index are
those of a check with no cache at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from gitlake import GitLake
from test_check_partial import _cold, _commit_fine_tune, _nudged, _same, _weights, lake

from lakegen.check.report import CheckReport, run_check

__all__ = ["lake"]  # the fixture, shared with test_check_partial


def _edit(lake: GitLake, path: str, change: dict[str, object], message: str) -> None:
    """The manifest at ``path`` with the fields of ``change`` set, committed."""
    data = yaml.safe_load((lake.root / path).read_text())
    data.update(change)
    (lake.root / path).write_text(yaml.safe_dump(data, sort_keys=False))
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", message)


def _fast(lake: GitLake) -> CheckReport:
    """The check, asserting it loaded part of the lake only."""
    report = run_check(lake.root, "main", run_evaluations=False)
    assert len(report.catalog.records) < len(report.index.entries), "the whole lake was loaded"
    return report


def test_a_fine_tune_added_is_checked_from_the_base_index(lake: GitLake, tmp_path: Path) -> None:
    _commit_fine_tune(lake, "wine-mlp-ft", "wine-mlp-ft2", _nudged(_weights(lake, "wine-mlp-ft"), 1))
    fast = _fast(lake)
    assert [(c.entry, c.status) for c in fast.changes.entries] == [("wine-mlp-ft2", "added")]  # type: ignore[union-attr]
    assert fast.index.stages["attribution"] == "ran: 1 models, 1 edges (1 verified by weights)"
    _same(fast, _cold(lake, tmp_path))
    _same(_fast(lake), fast)  # again, with the check's own attribution read back


def test_a_licence_change_reaches_every_derivative(lake: GitLake, tmp_path: Path) -> None:
    _edit(lake, "catalog/models/wine-mlp-base.yaml", {"license": "CC-BY-NC-4.0"}, "Relicense the base")
    fast = _fast(lake)
    flagged = {f.entry for f in fast.errors if f.rule == "licence-propagation"}
    assert {"wine-mlp-ft", "wine-mlp-int8", "wine-mlp-pruned"} <= flagged, flagged
    _same(fast, _cold(lake, tmp_path))


def test_a_deleted_model_leaves_the_index_and_its_release_is_kept(lake: GitLake, tmp_path: Path) -> None:
    (lake.root / "catalog/models/wine-mlp-pruned.yaml").unlink()
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Remove a model")
    fast = _fast(lake)
    assert "wine-mlp-pruned" not in {e.id for e in fast.index.entries}
    assert any(f.rule == "immutable-releases" and f.entry == "wine-mlp-pruned" for f in fast.errors)
    _same(fast, _cold(lake, tmp_path))


def test_an_owner_edited_is_held_to_the_owners_file(lake: GitLake, tmp_path: Path) -> None:
    _edit(lake, "catalog/models/wine-mlp-pruned.yaml", {"owners": ["@nobody"]}, "Hand a model over")
    fast = _fast(lake)
    assert [f.entry for f in fast.errors if f.rule == "owners"] == ["wine-mlp-pruned"]
    _same(fast, _cold(lake, tmp_path))


def test_a_dataset_added_is_checked_from_the_base_index(lake: GitLake, tmp_path: Path) -> None:
    data = yaml.safe_load((lake.root / "catalog/datasets/wine.yaml").read_text())
    data.update(id="wine-extra", name="More wine", derived_from=[{"id": "wine"}])
    (lake.root / "catalog/datasets/wine-extra.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Add a dataset")
    fast = _fast(lake)
    assert fast.index.stages["attribution"] == "not run: the pull request adds or changes no model"
    assert "wine-extra" in {e.id for e in fast.index.entries}
    _same(fast, _cold(lake, tmp_path))


def test_an_edit_naming_no_entry_is_checked_whole(lake: GitLake, tmp_path: Path) -> None:
    # a reference to no entry suggests the closest id of the whole lake: the part cannot say it
    bases = [{"id": "wine-mlp-bse", "version": "1.0.0", "relation": "finetune"}]
    _edit(lake, "catalog/models/wine-mlp-pruned.yaml", {"base_models": bases}, "A typo")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert len(report.catalog.records) == len(report.index.entries)
    assert any("did you mean 'wine-mlp-base'" in f.message for f in report.errors)
    _same(report, _cold(lake, tmp_path))


def test_a_pull_request_committing_the_cache_loads_the_whole_lake(lake: GitLake) -> None:
    _edit(lake, "catalog/models/wine-mlp-pruned.yaml", {"owners": ["@nobody"]}, "Hand a model over")
    shutil.copy(lake.root / ".lakegen/lake.json", lake.root / ".lakegen/planted.json")
    lake.git("add", "-f", ".lakegen")
    lake.git("commit", "-q", "-m", "Plant the saved index")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert len(report.catalog.records) == len(report.index.entries)
    assert [f.entry for f in report.errors if f.rule == "owners"] == ["wine-mlp-pruned"]
