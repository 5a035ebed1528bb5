"""The audit trail from git: field-level changes with author, date, commit, PR, across renames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gitlake import GitLake, model, version

from lakegen import gitrepo
from lakegen.catalog import load_catalog
from lakegen.history import field_changes, lake_history

LAKEGEN = Path(sys.executable).with_name("lakegen")
GRACE = ("Grace Hopper", "grace@example.org")


@pytest.fixture
def lake(tmp_path: Path) -> GitLake:
    """main: add (Ada); PR #12 on a branch: licence (Grace), rename (Grace); merge; then a description edit."""
    lake = GitLake(tmp_path)
    lake.put(model("vision", license="Apache-2.0"))
    lake.put(model("other"))
    lake.commit("Add vision")
    lake.git("checkout", "-q", "-b", "grace/rename")
    lake.put(model("vision", license="MIT"))
    lake.commit("Relicense vision", author=GRACE)
    lake.git("mv", "catalog/models/vision.yaml", "catalog/models/vision-v2.yaml")
    text = (tmp_path / "catalog/models/vision-v2.yaml").read_text()
    lake.write("catalog/models/vision-v2.yaml", text.replace("id: vision\n", "id: vision-v2\n"))
    lake.commit("Rename vision to vision-v2", author=GRACE)
    lake.git("checkout", "-q", "main")
    lake.merge("grace/rename", "Merge pull request #12 from grace/rename\n\nRename vision")
    manifest = model("vision-v2", license="MIT", description="Sharper.")
    manifest["versions"].append(version("1.1.0", b"new weights", "vision-v2", "2026-02-01"))
    lake.put(manifest)
    lake.commit("Describe vision-v2, release 1.1.0")
    return lake


def test_every_field_change_is_listed_with_its_author_and_pr(lake: GitLake) -> None:
    history = [c for c in lake_history(lake.root, load_catalog(lake.root)) if c.entry == "vision-v2"]
    assert [(c.action, c.author, c.pr, c.subject) for c in history] == [
        ("modified", "Ada Lovelace", None, "Describe vision-v2, release 1.1.0"),
        ("renamed", "Grace Hopper", 12, "Rename vision to vision-v2"),
        ("modified", "Grace Hopper", 12, "Relicense vision"),
        ("added", "Ada Lovelace", None, "Add vision"),
    ]
    latest, rename, relicense, _added = history
    assert [(f.field, f.old, f.new) for f in relicense.changes] == [("license", "Apache-2.0", "MIT")]
    assert relicense.email == "grace@example.org" and relicense.date[:4].isdigit()
    assert relicense.path == "catalog/models/vision.yaml"
    assert [(f.field, f.old, f.new) for f in rename.changes] == [
        ("file", "catalog/models/vision.yaml", "catalog/models/vision-v2.yaml"),
        ("id", "vision", "vision-v2"),
    ]
    fields = {f.field: f for f in latest.changes}
    assert (fields["name"].old, fields["name"].new) == ("Model vision", "Model vision-v2")
    assert fields["description"].old == "A test model." and fields["description"].new == "Sharper."
    assert fields["versions[1.1.0]"].old is None
    assert fields["versions[1.1.0]"].new["artifact"]["size"] == len(b"new weights")
    assert len(relicense.commit) == 40 and relicense.commit != rename.commit


def test_untouched_entries_keep_their_own_history(lake: GitLake) -> None:
    history = lake_history(lake.root)
    assert [(c.entry, c.action) for c in history if c.entry == "other"] == [("other", "added")]


def test_history_reads_git_in_a_fixed_number_of_calls(lake: GitLake, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(25):
        lake.put(model(f"extra-{i}"))
    lake.commit("Add 25 more")
    calls: list[str] = []
    real = gitrepo.git

    def counting(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
        calls.append(args[0])
        return real(cwd, *args, stdin=stdin)

    monkeypatch.setattr(gitrepo, "git", counting)
    history = lake_history(lake.root)
    assert len([c for c in history if c.entry.startswith("extra-")]) == 25
    assert sorted(calls) == ["cat-file", "log", "log", "rev-parse", "rev-parse"]


def test_squash_merges_carry_their_pr_number(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.commit("Add a (#7)")
    assert [c.pr for c in lake_history(tmp_path)] == [7]


def test_deleted_entries_stay_in_the_trail(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("gone"))
    lake.commit("Add gone")
    lake.git("rm", "-q", "catalog/models/gone.yaml")
    lake.commit("Remove gone")
    assert [(c.entry, c.action) for c in lake_history(tmp_path)] == [("gone", "deleted"), ("gone", "added")]


def test_field_changes_match_list_items_by_key() -> None:
    old = {"base_models": [{"id": "a", "relation": "finetune"}], "tags": ["x"], "risk": "high"}
    new = {
        "base_models": [{"id": "a", "relation": "adapter"}, {"id": "b", "relation": "merge"}],
        "tags": ["y"],
    }
    assert [(f.field, f.old, f.new) for f in field_changes(old, new)] == [
        ("base_models[a].relation", "finetune", "adapter"),
        ("base_models[b]", None, {"id": "b", "relation": "merge"}),
        ("tags", ["x"], ["y"]),
        ("risk", "high", None),
    ]


def test_outside_git_there_is_no_history(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    assert lake_history(tmp_path) == []


def test_cli_history_of_one_entry(lake: GitLake) -> None:
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(lake.root), "history", "vision-v2", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["action"] for r in rows] == ["modified", "renamed", "modified", "added"]
    assert rows[2]["changes"] == [{"field": "license", "old": "Apache-2.0", "new": "MIT"}]


def test_diff_shows_manifest_and_per_tensor_changes_between_versions(tmp_path: Path) -> None:
    pytest.importorskip("lakegen.weights", reason="the weight loader belongs to the attribution work")
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    first = save({"layer.weight": weight, "layer.bias": bias})
    second = save({"layer.weight": weight, "layer.bias": bias * 1.5})
    lake = GitLake(tmp_path)
    lake.put(model("net", versions=[version("1.0.0", first, "net")]))
    released = lake.commit("Release net 1.0.0")
    manifest = model("net", description="Now with a stronger bias.")
    manifest["versions"] = [version("1.0.0", first, "net"), version("1.1.0", second, "net", "2026-03-01")]
    lake.put(manifest)
    lake.commit("Release net 1.1.0")
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(tmp_path), "diff", "net", "1.0.0", "1.1.0", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout)
    record = {f["field"]: (f["old"], f["new"]) for f in diff["record"]}
    assert record["released"] == ("2026-01-01", "2026-03-01") and "artifact.sha256" in record
    assert diff["manifest"] == [
        {"field": "description", "old": "A test model.", "new": "Now with a stronger bias."}
    ]
    assert diff["manifest_source"].startswith(f"at {released[:12]}, which released 1.0.0")
    tensors = {t["name"]: t for t in diff["weights"]["tensors"]}
    assert tensors["layer.weight"]["status"] == "same" and tensors["layer.weight"]["relative_change"] == 0
    assert tensors["layer.bias"]["status"] == "changed"
    assert tensors["layer.bias"]["relative_change"] == pytest.approx(0.5, rel=1e-6)
    assert diff["weights"]["summary"] == {"same": 1, "changed": 1, "added": 0, "removed": 0, "reshaped": 0}
