"""The audit trail from git: field-level changes with author, date, commit, PR, across renames."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitlake import GITHUB, GitLake, model, version, weights
from helpers import run_lakegen

from lakegen import gitrepo
from lakegen.catalog.loader import load_catalog
from lakegen.governance.changetext import as_text
from lakegen.governance.history import field_changes, lake_history, provenance

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


def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git subcommands lakegen runs from now on, in order."""
    calls: list[str] = []
    real = gitrepo.git

    def counting(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
        calls.append(args[0])
        return real(cwd, *args, stdin=stdin)

    monkeypatch.setattr(gitrepo, "git", counting)
    return calls


def test_history_reads_git_in_a_fixed_number_of_calls(lake: GitLake, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(25):
        lake.put(model(f"extra-{i}"))
    lake.commit("Add 25 more")
    calls = git_calls(monkeypatch)
    history = lake_history(lake.root)
    assert len([c for c in history if c.entry.startswith("extra-")]) == 25
    assert sorted(calls) == ["cat-file", "log", "log", "rev-parse", "rev-parse"]


def test_squash_merges_carry_their_pr_number(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.commit("Add a (#7)", by_github=True)
    lake.put(model("b"))
    lake.commit("Add b (#8)")  # typed by a person, not made by GitHub's squash button
    assert [(c.entry, c.pr) for c in lake_history(tmp_path)] == [("b", None), ("a", 7)]


def test_pr_numbers_come_only_from_github_s_own_merge_commits(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("seed"))
    lake.commit("Seed")
    for n, (branch, by_github) in enumerate([("real", True), ("forged", False)], start=1):
        lake.git("checkout", "-q", "-b", branch)
        lake.put(model(branch))
        lake.commit(f"Add {branch}")
        lake.git("checkout", "-q", "main")
        lake.merge(branch, f"Merge pull request #{n} from ada/{branch}", by_github=by_github)
    prs = {c.entry: c.pr for c in lake_history(tmp_path)}
    assert prs == {"seed": None, "real": 1, "forged": None}
    (real,) = [c for c in lake_history(tmp_path) if c.entry == "real"]
    assert (real.author, real.committer) == ("Ada Lovelace", "Ada Lovelace")  # the branch commit


def test_a_change_made_inside_a_merge_commit_leaves_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.commit("Add a")
    lake.git("checkout", "-q", "-b", "side")
    lake.put(model("b"))
    lake.commit("Add b")
    lake.git("checkout", "-q", "main")
    lake.git("merge", "-q", "--no-ff", "--no-commit", "side", env=GITHUB)
    lake.put(model("a", license="MIT"))  # slipped into the merge
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Merge pull request #4 from ada/side", env=GITHUB)
    calls = git_calls(monkeypatch)
    rows = lake_history(tmp_path)
    assert calls.count("log") == 2 and "diff-tree" not in calls  # merges cost no git call of their own
    monkeypatch.undo()
    (evil,) = [c for c in rows if c.in_merge]
    assert (evil.entry, evil.action, evil.pr) == ("a", "modified", 4)
    assert [(f.field, f.old, f.new) for f in evil.changes] == [("license", "Apache-2.0", "MIT")]
    assert provenance(evil)[:2] == [
        "made in the merge commit itself",
        f"committed by GitHub <noreply@github.com> {evil.committer_date[:10]}",
    ]
    out = run_lakegen("--root", str(tmp_path), "history", "a").stdout
    assert "[made in the merge commit itself] [committed by GitHub <noreply@github.com>" in out


def test_an_author_date_after_the_commit_date_is_flagged(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "From the future", env={"GIT_AUTHOR_DATE": "2030-01-01T00:00:00+00:00"})
    (row,) = lake_history(tmp_path)
    assert row.dates_disagree and row.date.startswith("2030-01-01")
    assert "author date 2030-01-01 is after the commit date" in provenance(row)[-1]


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


DESCRIPTION = "Trained on digits.\n\nIt reads 8x8 images and predicts the digit shown in them.\nNot for real handwriting.\n"
ACCURACY = {"dataset": "digits", "split": "test", "metric": "accuracy", "value": 0.9}


@pytest.fixture
def edited(tmp_path: Path) -> GitLake:
    """vision 1.0.0, then one commit: a word of the description, one claim changed and one added, 1.1.0."""
    lake = GitLake(tmp_path)
    lake.put(model("vision", description=DESCRIPTION, evaluations=[ACCURACY], tags=["demo"]))
    lake.commit("Add vision")
    claims = [{**ACCURACY, "value": 0.92}, {**ACCURACY, "metric": "macro-f1", "value": 0.91}]
    manifest = model(
        "vision",
        description=DESCRIPTION.replace("predicts", "names"),
        evaluations=claims,
        tags=["demo", "mlp"],
    )
    manifest["versions"].append(version("1.1.0", b"new weights", "vision", "2026-02-01"))
    lake.put(manifest)
    lake.commit("Release vision 1.1.0 \x1b[2J\x1b]0;owned\x07")
    return lake


def lakegen(root: Path, *args: str) -> str:
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(root), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_history_shows_yaml_items_and_a_word_diff_never_a_repr(edited: GitLake) -> None:
    sha, date = edited.git("log", "-1", "--format=%H %cI").split()
    first = edited.git("rev-parse", "HEAD~1")
    new_sha = hashlib.sha256(b"new weights").hexdigest()
    assert lakegen(edited.root, "history", "vision") == (
        f"{date[:10]} {sha[:12]} Ada Lovelace <ada@example.org> modified vision: "
        "Release vision 1.1.0 \\x1b[2J\\x1b]0;owned\\x07\n"
        "    description:\n"
        "      …\n"
        "      It reads 8x8 images and [-predicts-]{+names+} the digit shown in them.\n"
        "      Not for real handwriting.\n"
        "    versions[1.1.0]:\n"
        "      + version: 1.1.0\n"
        "      + released: '2026-02-01'\n"
        "      + artifact:\n"
        "      +   uri: ../artifacts/vision-1.1.0.safetensors\n"
        f"      +   sha256: {new_sha}\n"
        "      +   size: 11\n"
        "      +   format: safetensors\n"
        "    evaluations[digits/test/accuracy].value: 0.9 → 0.92\n"
        "    evaluations[digits/test/macro-f1]:\n"
        "      + {dataset: digits, split: test, metric: macro-f1, value: 0.91}\n"
        "    tags:\n"
        "      + - mlp\n"
        f"{date[:10]} {first[:12]} Ada Lovelace <ada@example.org> added vision: Add vision\n"
    )


def test_lists_without_keys_are_compared_item_by_item() -> None:
    claims = [ACCURACY, ACCURACY]  # the same key twice: no item can be matched by key
    change = field_changes({"evaluations": claims}, {"evaluations": [ACCURACY, {**ACCURACY, "value": 0.8}]})
    assert [line for c in change for line in as_text(c)] == [
        "evaluations:",
        "  - - {dataset: digits, split: test, metric: accuracy, value: 0.9}",
        "  + - {dataset: digits, split: test, metric: accuracy, value: 0.8}",
    ]
    (added,) = field_changes({}, {"evaluations": claims[:1]})
    assert as_text(added) == [
        "evaluations:",
        "  + - {dataset: digits, split: test, metric: accuracy, value: 0.9}",
    ]


def test_claims_are_matched_by_version_and_list_items_share_one_style() -> None:
    pinned = {**ACCURACY, "version": "1.0.0"}
    old = {"evaluations": [pinned, {**pinned, "version": "1.1.0"}]}
    new = {"evaluations": [pinned, {**pinned, "version": "1.1.0", "value": 0.95}]}
    assert [line for c in field_changes(old, new) for line in as_text(c)] == [
        "evaluations[digits/test/accuracy@1.1.0].value: 0.9 → 0.95"
    ]
    (added,) = field_changes({}, {"links": [{"title": "a"}, {"title": "b" * 130}]})
    assert as_text(added) == ["links:", "  + - title: a", f"  + - title: {'b' * 130}"]


def test_control_and_bidi_characters_are_shown_as_escapes() -> None:
    """Old blobs were never validated: what they hold must not drive a terminal or reorder a line."""
    old = {
        "risk": "high\x1b[8m",
        "name": "abc\u202edef",
        "limitations": "Old text with an escape \x1b]0;owned\x07 in the middle of a long line.",
    }
    new = {"name": "x", "limitations": "Old text with no escape in the middle of a long line."}
    assert [line for c in field_changes(old, new) for line in as_text(c)] == [
        "risk: - high\\x1b[8m",
        "name: abc\\u202edef → x",
        "limitations:",
        "  Old text with [-an-]{+no+} escape[- \\x1b]0;owned\\x07-] in the middle of a long line.",
    ]


def test_diff_prints_the_same_readable_fields(edited: GitLake) -> None:
    out = lakegen(edited.root, "diff", "vision", "1.0.0", "1.1.0", "--no-weights")
    old_sha = hashlib.sha256(weights("vision")).hexdigest()
    assert f"  artifact.sha256:\n    - {old_sha}\n" in out
    assert "    It reads 8x8 images and [-predicts-]{+names+} the digit shown in them.\n" in out
    assert "  evaluations[digits/test/macro-f1]:\n    + {dataset: digits" in out
    assert "weights: not compared (asked not to)\n" in out


def test_the_site_audit_trail_renders_the_same_parts_as_html(edited: GitLake) -> None:
    from lakegen.compile import compile_lake
    from lakegen.site import build_site

    text = DESCRIPTION.replace("predicts", "names") + "<script>alert(1)</script>\n"
    manifest = model("vision", description=text, evaluations=[ACCURACY], tags=["demo"])
    edited.put(manifest)
    edited.commit("Add a script to the description")
    site = build_site(edited.root, compile_lake(edited.root), pagefind=False).site
    page = (site / "models" / "vision.html").read_text(encoding="utf-8")
    trail = page.split('id="history"')[1]
    assert "It reads 8x8 images and <del>predicts</del><ins>names</ins> the digit" in trail
    yaml_lines = '<div class="lg-yaml"><ins><code>+ version: 1.1.0</code></ins><br><ins><code>+ released:'
    assert yaml_lines in trail and "<ins><code>+ \u00a0\u00a0uri: ../artifacts/vision-1.1.0" in trail
    assert "<code>evaluations[digits/test/accuracy].value</code>: <del>0.9</del> → <ins>0.92</ins>" in trail
    assert "<ins>&lt;script&gt;alert(1)&lt;/script&gt;</ins>" in trail and "<script>alert" not in trail
    assert "{…}" not in trail and "None" not in trail
    assert "Release vision 1.1.0 \\x1b[2J\\x1b]0;owned\\x07" in trail and "\x1b" not in trail


def test_text_inside_a_structure_stays_a_yaml_block() -> None:
    release = {"version": "1.1.0", "changelog": "Retrained.\n\nSame data, new seed.\n"}
    (added,) = field_changes(
        {"versions": [{"version": "1.0.0"}]}, {"versions": [{"version": "1.0.0"}, release]}
    )
    assert as_text(added) == [
        "versions[1.1.0]:",
        "  + version: 1.1.0",
        "  + changelog: |",
        "  +   Retrained.",
        "  +",
        "  +   Same data, new seed.",
    ]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gnupg is not installed (make test installs it)")
def test_a_kept_trail_follows_the_keyring_that_judges_its_signatures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git's verdict on a signed commit depends on the keyring, not only on the commit: a trail kept
    from a compile that knew the key is not shown once the key is gone (same HEAD, same files)."""
    import tempfile

    from lakegen.compile import compile_lake

    # gpg-agent's socket lives in GNUPGHOME, and a socket path may not exceed 107 bytes
    keys = Path(tempfile.mkdtemp(prefix="lg-gpg-", dir="/tmp"))
    empty = Path(tempfile.mkdtemp(prefix="lg-gpg-", dir="/tmp"))
    monkeypatch.setenv("GNUPGHOME", str(keys))
    try:
        key = ["--quick-gen-key", "Ada Lovelace <ada@example.org>", "ed25519"]
        made = subprocess.run(["gpg", "--batch", "--passphrase", "", *key], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        lake = GitLake(tmp_path / "lake")
        lake.put(model("vision"))
        lake.git("add", "-A")
        lake.git("commit", "-q", "-S", "-m", "Add vision, signed")

        def signatures() -> set[str]:
            return {c.signature for c in compile_lake(lake.root).history}

        assert signatures() == {"G"}
        monkeypatch.setenv("GNUPGHOME", str(empty))
        assert signatures() == {"E"}  # signed, but no key here to check it with
    finally:
        for home in (keys, empty):
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)})
            shutil.rmtree(home)
