"""``lakegen check --base``: immutable releases, PR-only rules, the Markdown report and its escaping."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from gitlake import GitLake, base, model, version, weights

from lakegen.catalog.loader import latest_version, load_catalog
from lakegen.check.render import md, render_markdown
from lakegen.check.report import run_check
from lakegen.lineage.recover import artifact_paths

LAKEGEN = Path(sys.executable).with_name("lakegen")
LENIENT = "rules:\n  documentation: warn\n"


def lakegen(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAKEGEN), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def released(tmp_path: Path) -> tuple[GitLake, str]:
    """main: vision 1.0.0 released through PR #3 (a merge commit); then a branch 'pr' is checked out."""
    lake = GitLake(tmp_path, policies=LENIENT)
    lake.put(model("seed"))
    lake.commit("Seed the lake")
    lake.git("checkout", "-q", "-b", "ada/vision")
    lake.put(model("vision"))
    release = lake.commit("Release vision 1.0.0")
    lake.git("checkout", "-q", "main")
    lake.merge("ada/vision", "Merge pull request #3 from ada/vision")
    lake.git("checkout", "-q", "-b", "pr")
    return lake, release


def test_changing_a_released_sha256_fails_naming_the_releasing_commit(released: tuple[GitLake, str]) -> None:
    lake, release = released
    manifest = model("vision")
    manifest["versions"] = [version("1.0.0", weights("different weights"), "vision")]
    lake.put(manifest)
    lake.commit("Retrain vision in place")
    done = lakegen(lake.root, "check", "--base", "main", "--no-bench")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[governance/immutable-releases]" in done.stdout and release[:12] in done.stdout
    report = run_check(lake.root, "main", run_evaluations=False)
    (finding,) = [f for f in report.errors if f.rule == "immutable-releases"]
    assert finding.entry == "vision" and finding.field == "versions[0].artifact.sha256"
    assert f"released in commit {release[:12]} ('Release vision 1.0.0' by Ada Lovelace" in finding.message
    assert "PR #3" in finding.message and "publish the new artifact as a new version" in finding.message
    lines = (lake.root / "catalog/models/vision.yaml").read_text().splitlines()
    assert lines[finding.line - 1].strip().startswith("sha256:")


def test_uncommitted_edits_are_checked_too(released: tuple[GitLake, str]) -> None:
    lake, release = released
    manifest = model("vision")
    manifest["versions"] = [version("1.0.0", weights("edited, not committed"), "vision")]
    lake.put(manifest)
    report = run_check(lake.root, "main", run_evaluations=False)
    assert [f.rule for f in report.errors] == ["immutable-releases"]
    assert release[:12] in report.errors[0].message


def test_removing_a_released_version_or_its_manifest_fails(released: tuple[GitLake, str]) -> None:
    lake, release = released
    lake.put(model("vision", versions=[version("2.0.0", weights("v2"), "vision")]))
    lake.git("rm", "-q", "catalog/models/seed.yaml")
    lake.commit("Drop old things")
    report = run_check(lake.root, "main", run_evaluations=False)
    found = {f.entry: f for f in report.errors}
    assert sorted(found) == ["seed", "vision"]
    assert found["seed"].path == "catalog/models/seed.yaml"
    assert found["seed"].message.startswith("deleting the manifest removes version 1.0.0, released in commit")
    assert "'Seed the lake'" in found["seed"].message
    assert found["vision"].message.startswith(f"version 1.0.0 was released in commit {release[:12]}")
    assert "cannot be removed" in found["vision"].message


def test_a_new_version_and_moving_a_manifest_pass(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    manifest = model("vision")
    manifest["versions"].append(version("1.1.0", weights("better weights"), "vision"))
    lake.put(manifest)
    (lake.root / "catalog/models/team").mkdir()
    lake.git("mv", "catalog/models/seed.yaml", "catalog/models/team/seed.yaml")
    text = (lake.root / "catalog/models/team/seed.yaml").read_text()
    lake.write("catalog/models/team/seed.yaml", text.replace("../artifacts/", "../../artifacts/"))
    lake.commit("Release vision 1.1.0, move seed")
    done = lakegen(lake.root, "check", "--base", "main", "--no-bench")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  modified  vision  model  versions[1.1.0]: added" in re.sub(r"(\S)  +", r"\1  ", done.stdout)
    assert any(
        line.split()[:2] == ["renamed", "seed"]
        and "file: catalog/models/seed.yaml → catalog/models/team/seed.yaml" in line
        for line in done.stdout.splitlines()
    ), done.stdout
    markdown = lakegen(lake.root, "check", "--base", "main", "--no-bench", "--format", "markdown").stdout
    assert "| modified | vision | model | versions\\[1\\.1\\.0\\]: added" in markdown
    assert (
        "| renamed | seed | model | file: catalog/models/seed\\.yaml → catalog/models/team/seed\\.yaml"
        in markdown
    )


def _rename_seed(lake: GitLake) -> None:
    lake.git("mv", "catalog/models/seed.yaml", "catalog/models/seed2.yaml")
    text = (lake.root / "catalog/models/seed2.yaml").read_text().replace("id: seed\n", "id: seed2\n")
    lake.write("catalog/models/seed2.yaml", text)


def test_renaming_a_released_id_fails(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    _rename_seed(lake)
    lake.commit("Rename seed")
    report = run_check(lake.root, "main", run_evaluations=False)
    (finding,) = [f for f in report.errors if f.rule == "immutable-releases"]
    assert (finding.entry, finding.field) == ("seed2", "id")
    assert finding.message.startswith(
        "renames released entry 'seed' (versions 1.0.0; 1.0.0 released in commit"
    )
    assert "ids of released entries are permanent" in finding.message


def test_an_id_renamed_away_then_added_again_with_other_bytes_fails(released: tuple[GitLake, str]) -> None:
    # Two pull requests: the first (merged before this defence existed) renames 'seed' away, the
    # second adds 'seed' 1.0.0 again with other bytes. The base branch no longer has 'seed', but its
    # history does.
    lake, _ = released
    lake.git("checkout", "-q", "main")
    first = lake.git("log", "--format=%H", "--grep", "Seed the lake")
    _rename_seed(lake)
    lake.commit("Rename seed")
    lake.git("checkout", "-q", "-b", "readd")
    lake.put(model("seed", versions=[version("1.0.0", weights("other seed bytes"), "seed")]))
    lake.commit("Add seed")
    report = run_check(lake.root, "main", run_evaluations=False)
    (finding,) = [f for f in report.errors if f.rule == "immutable-releases" and f.entry == "seed"]
    assert finding.field == "versions[0].artifact.sha256"
    assert finding.message.startswith(f"seed@1.0.0 was released in commit {first[:12]} ('Seed the lake'")
    assert "keeps its bytes for good, also after the entry was renamed or deleted" in finding.message


def test_a_released_id_written_with_an_escape_is_still_in_the_ledger(released: tuple[GitLake, str]) -> None:
    # the ledger parses only the base's blobs that can state a changed id: one spelling it through a
    # double-quoted escape ("p\x69ne" is pine) counts as well as one writing it out
    lake, _ = released
    lake.git("checkout", "-q", "main")
    path = lake.put(model("pine"))
    lines = []
    for line in path.read_text().splitlines():
        if "pine" in line:  # the id, the name, the artifact's uri: each double-quoted, escaped
            key, value = line.split(": ", 1)
            line = f'{key}: "{value.strip(chr(39)).replace("pine", "p" + chr(92) + "x69ne")}"'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    assert "pine" not in path.read_text()
    lake.commit("Release pine, its id escaped")
    path.unlink()
    lake.commit("Remove pine")
    lake.git("checkout", "-q", "-b", "readd")
    lake.put(model("pine", versions=[version("1.0.0", weights("other pine bytes"), "pine")]))
    lake.commit("Add pine again")
    report = run_check(lake.root, "main", run_evaluations=False)
    (finding,) = [f for f in report.errors if f.rule == "immutable-releases" and f.entry == "pine"]
    assert "keeps its bytes for good" in finding.message


def test_moving_a_released_version_where_it_cannot_be_verified_fails(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    text = (lake.root / "catalog/models/vision.yaml").read_text()
    lake.write(
        "catalog/models/vision.yaml",
        text.replace("../artifacts/vision-1.0.0.safetensors", "https://example.org/vision.safetensors"),
    )
    lake.git("rm", "-q", "catalog/artifacts/vision-1.0.0.safetensors")
    lake.commit("Move vision's weights to a web server")
    report = run_check(lake.root, "main", run_evaluations=False)
    (finding,) = [f for f in report.errors if f.rule == "immutable-releases"]
    assert (finding.entry, finding.field) == ("vision", "versions[0].artifact.uri")
    assert (
        "it now points at https://example.org/vision.safetensors, a remote location lakegen does not fetch"
        in finding.message
    )


def test_a_new_reference_to_a_deprecated_base_fails_the_pr(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    lake.git("checkout", "-q", "main")
    lake.put(model("seed", deprecated=True))
    lake.commit("Deprecate seed")
    lake.git("checkout", "-q", "-b", "pr2")
    lake.put(model("child", base_models=[base("seed")]))
    report = run_check(lake.root, "main", run_evaluations=False)
    # The fixture's weights are independent random tensors, so attribution rightly disputes the lineage.
    assert [(f.rule, f.entry) for f in report.errors if f.stage == "governance"] == [
        ("deprecated-base", "child")
    ]
    lake.put(model("child", base_models=[base("seed", allow_deprecated="Ablation study.")]))
    report = run_check(lake.root, "main", run_evaluations=False)
    assert [f for f in report.errors if f.stage == "governance"] == []


def test_licence_violation_in_a_pr_is_reported_under_the_pr(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    lake.put(model("vision", license="CC-BY-NC-4.0"))  # relicensing a parent...
    lake.put(model("derived", base_models=[base("vision")]))  # ...and a permissive child
    report = run_check(lake.root, "main", run_evaluations=False)
    assert [(f.rule, f.entry) for f in report.errors if f.stage == "governance"] == [
        ("licence-propagation", "derived")
    ]
    text = render_markdown(report)
    mine = text.split("### Findings in this pull request")[1]
    assert "licence\\-propagation" in mine and "❌ error" in mine
    assert "| modified | vision | model | license: Apache\\-2\\.0 → CC\\-BY\\-NC\\-4\\.0 |" in text


def test_report_goes_to_file_and_step_summary(released: tuple[GitLake, str], tmp_path: Path) -> None:
    lake, _ = released
    outside = Path(tempfile.mkdtemp())  # not in the lake (tmp_path is it): they would be changes of it
    summary = outside / "summary.md"
    summary.write_text("earlier step\n")
    report_file = outside / "report.md"
    done = lakegen(
        lake.root,
        "check",
        "--base",
        "main",
        "--report",
        str(report_file),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    markdown = report_file.read_text()
    assert summary.read_text() == "earlier step\n" + markdown + "\n"
    assert markdown.startswith("## lakegen check: ✅ passed\n")
    for stage in ("validate", "governance", "attribution", "bench"):
        assert f"| {stage} | " in markdown
    assert "| bench | not run\\: the pull request adds or changes no evaluation |" in markdown
    assert done.stdout.startswith("lakegen check: passed\n")  # the terminal gets text, not Markdown
    assert "  bench        not run: the pull request adds or changes no evaluation\n" in done.stdout
    again = lakegen(lake.root, "check", "--base", "main", "--format", "markdown")
    assert again.stdout == markdown


HOSTILE = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) | ![x](https://evil.example/t.png) @everyone `x`"


def test_manifest_strings_cannot_inject_markup(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    lake.put(model("vision", name=HOSTILE, owners=["@mallory"]))
    lake.commit("Innocent rename <script>alert(2)</script>")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert not report.ok  # @mallory is not an owner
    text = render_markdown(report)
    for bad in ("<img", "<script", "](", "@everyone", "@mallory", "https://", "`x`"):
        assert bad not in text, bad
    row = next(line for line in text.splitlines() if line.startswith("| modified | vision"))
    assert row.count("|") - row.count("\\|") == 5  # four cells: the name's '|' is escaped


def test_md_escapes_everything_markdown_or_html_would_read() -> None:
    assert md("a_b*c") == "a\\_b\\*c"
    assert md("<b>") == "&lt;b&gt;"
    assert md("line\nbreak") == "line break"
    assert md("@org/team #12") == "&#64;org/team &#35;12"
    assert md("x" * 500).endswith("…") and len(md("x" * 500)) == 300


def test_without_base_the_pr_stages_say_why_they_did_not_run(tmp_path: Path) -> None:
    lake = GitLake(tmp_path, policies=LENIENT)
    lake.put(model("a"))
    lake.commit("a")
    report = run_check(tmp_path, run_evaluations=False)
    stages = {s.name: s.status for s in report.stages}
    assert stages["attribution"].startswith("not run: no --base")
    assert stages["bench"].startswith("not run: no --base")
    assert stages["governance"].startswith("ran: 6 rules")


def test_an_unknown_base_is_a_clear_error(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.commit("a")
    done = lakegen(tmp_path, "check", "--base", "no-such-branch")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "lakegen check: --base no-such-branch: not a git revision here (in CI, fetch full history: fetch-depth 0)\n"
    )


def test_commit_subjects_quoted_in_findings_are_escaped_too(tmp_path: Path) -> None:
    lake = GitLake(tmp_path, policies=LENIENT)
    lake.put(model("vision"))
    lake.commit("Release <script>alert(1)</script> [x](https://evil.example) @team")
    lake.git("checkout", "-q", "-b", "pr")
    manifest = model("vision")
    manifest["versions"] = [version("1.0.0", weights("swapped"), "vision")]
    lake.put(manifest)
    report = run_check(tmp_path, "main", run_evaluations=False)
    assert "<script>" in report.errors[0].message  # the finding keeps the subject as it is...
    text = render_markdown(report)
    assert "<script" not in text and "](" not in text and "@team" not in text  # ...the Markdown does not
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in text


def test_a_released_companion_file_is_immutable_too(tmp_path: Path) -> None:
    import hashlib

    def with_config(text: bytes) -> dict:
        lake.write("catalog/artifacts/adapter_config.json", text)
        manifest = model("adapter")
        manifest["versions"][0]["artifact"]["files"] = [
            {"path": "adapter_config.json", "sha256": hashlib.sha256(text).hexdigest(), "size": len(text)}
        ]
        return manifest

    lake = GitLake(tmp_path, policies=LENIENT)
    lake.put(with_config(b'{"r": 4}'))
    release = lake.commit("Release adapter 1.0.0")
    lake.git("checkout", "-q", "-b", "pr")
    lake.put(with_config(b'{"r": 8}'))
    report = run_check(tmp_path, "main", run_evaluations=False)
    assert [(f.rule, f.field) for f in report.errors if f.stage == "governance"] == [
        ("immutable-releases", "versions[0].artifact.files")
    ]
    (immutable,) = [f for f in report.errors if f.stage == "governance"]
    assert release[:12] in immutable.message and "adapter_config.json" in immutable.message


def test_turning_a_rule_off_in_the_same_pr_as_breaking_it_fails_and_names_the_rule(
    released: tuple[GitLake, str],
) -> None:
    lake, release = released
    lake.write("catalog/policies.yaml", "rules:\n  documentation: off\n  immutable-releases: off\n")
    manifest = model("vision")
    manifest["versions"] = [version("1.0.0", weights("rewritten in place"), "vision")]
    lake.put(manifest)
    lake.commit("Relax the rules and retrain vision in place")
    report = run_check(lake.root, "main", run_evaluations=False)
    changes = {f.field: f for f in report.errors if f.rule == "policy-change"}
    assert sorted(changes) == ["rules.documentation", "rules.immutable-releases"]
    weakened = changes["rules.immutable-releases"]
    assert (weakened.path, weakened.line) == ("catalog/policies.yaml", 3)
    assert weakened.message.startswith("weakens rule 'immutable-releases' from error to off;")
    assert "documentation' from warn to off" in changes["rules.documentation"].message
    # the rule the pull request turned off still holds it
    (immutable,) = [f for f in report.errors if f.rule == "immutable-releases"]
    assert release[:12] in immutable.message


def test_strengthening_a_rule_is_no_finding(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    lake.write("catalog/policies.yaml", "rules:\n  documentation: error\n")
    lake.commit("Hold documentation to error")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert not [f for f in report.findings if f.rule == "policy-change"]


def on_a_terminal(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """stdout of ``lakegen --root ROOT ARGS`` run with a pseudo-terminal as its stdout."""
    import pty

    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    proc = subprocess.Popen(
        [str(LAKEGEN), "--root", str(root), *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**environ, "TERM": "xterm", **(env or {})},
    )
    os.close(follower)
    out = b""
    while True:  # read as it runs: a full terminal buffer would block the writer
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the writer has gone
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    proc.wait(timeout=300)
    return out.decode().replace("\r\n", "\n")


def test_the_terminal_gets_plain_text_coloured_only_on_a_tty(released: tuple[GitLake, str]) -> None:
    import re

    lake, release = released
    manifest = model("vision")
    manifest["versions"] = [version("1.0.0", weights("again"), "vision")]
    lake.put(manifest)
    lake.commit("Retrain vision \x1b[2J\x1b]8;;https://evil.example\x07 @team")
    piped = lakegen(lake.root, "check", "--base", "main", "--no-bench")
    assert piped.returncode == 1 and piped.stdout.startswith("lakegen check: failed\n")
    assert "\x1b" not in piped.stdout and "\x07" not in piped.stdout  # a subject cannot drive the terminal
    assert "\\-" not in piped.stdout and "&#64;" not in piped.stdout and "| " not in piped.stdout
    (line,) = [x for x in piped.stdout.splitlines() if "[governance/immutable-releases]" in x]
    assert re.fullmatch(
        r"  catalog/models/vision\.yaml:\d+: error: versions\[0\]\.artifact\.sha256: version 1\.0\.0 .*"
        rf"{release[:12]}.* \[governance/immutable-releases\]",
        line,
    ), line
    coloured = on_a_terminal(lake.root, "check", "--base", "main", "--no-bench")
    assert "\x1b[1;31mfailed\x1b[0m" in coloured and "\x1b[1;31merror\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == piped.stdout  # colour is all a terminal adds
    assert (
        on_a_terminal(lake.root, "check", "--base", "main", "--no-bench", env={"NO_COLOR": "1"})
        == piped.stdout
    )
    as_json = lakegen(lake.root, "check", "--base", "main", "--no-bench", "--format", "json")
    assert json.loads(as_json.stdout) == json.loads(
        lakegen(lake.root, "check", "--base", "main", "--no-bench", "--json").stdout
    )
    assert json.loads(as_json.stdout)["ok"] is False


def test_a_release_leaves_only_by_a_yank_with_a_reason(released: tuple[GitLake, str]) -> None:
    lake, _ = released
    manifest = model("vision")
    manifest["versions"].append(version("1.1.0", weights("vision 1.1"), "vision"))
    manifest["versions"][0]["yanked"] = "trained on data we may not use; use 1.1.0"
    lake.put(manifest)
    lake.git("rm", "-q", "catalog/artifacts/vision-1.0.0.safetensors")  # its bytes may now go
    lake.commit("Yank vision 1.0.0")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert report.errors == [], [str(f.message) for f in report.errors]
    catalog = load_catalog(lake.root)
    assert catalog.artifacts[("vision", "1.0.0")] == "unchecked"
    assert latest_version(catalog.get("vision")) == "1.1.0"  # type: ignore[arg-type]
    assert artifact_paths(catalog)[1]["vision@1.0.0"] == "yanked: trained on data we may not use; use 1.1.0"
    # without the yank, the same deletion is an error
    manifest["versions"][0].pop("yanked")
    lake.put(manifest)
    problems = [(p.field, p.message) for p in load_catalog(lake.root).problems]
    assert problems == [("versions[0].artifact.uri", "file not found: ../artifacts/vision-1.0.0.safetensors")]
