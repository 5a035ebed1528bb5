"""The CODEOWNERS file lakegen makes from owners.yaml and the manifests' owners."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gitlake import OWNERS, GitLake, model
from helpers import LAKEGEN, run_lakegen

from lakegen.catalog.loader import load_catalog
from lakegen.governance.codeowners import CODEOWNERS, drift, render
from lakegen.governance.policies import load_config

GOVERNED = OWNERS + "  - {id: acme/platform, members: ['@grace']}\ngovernance: ['acme/platform']\n"


def test_codeowners_names_each_manifest_s_owners_and_the_governance_owners(tmp_path: Path) -> None:
    lake = GitLake(tmp_path, owners=GOVERNED)
    lake.put(model("vision", owners=["@ada", "acme/vision"]))
    catalog = load_catalog(tmp_path)
    config = load_config(tmp_path)
    assert config.governance == ["acme/platform"]
    text = render(catalog, config.governance)
    lines = text.splitlines()
    assert "/catalog/models/vision.yaml @ada @acme/vision" in lines
    assert "/catalog/policies.yaml @acme/platform" in lines and "/.github/ @acme/platform" in lines
    # later lines win on GitHub: the governed paths come after the entries
    assert lines.index("/catalog/policies.yaml @acme/platform") > lines.index(
        "/catalog/models/vision.yaml @ada @acme/vision"
    )
    assert drift(tmp_path, text) == f"{CODEOWNERS}: missing; run 'lakegen codeowners --write'"
    (tmp_path / ".github").mkdir()
    (tmp_path / CODEOWNERS).write_text(text)
    assert drift(tmp_path, text) is None
    lake.put(model("vision", owners=["@grace"]))
    assert drift(tmp_path, render(load_catalog(tmp_path), config.governance)) is not None


def test_an_unknown_governance_owner_is_a_problem_with_its_line(tmp_path: Path) -> None:
    GitLake(tmp_path, owners=OWNERS + "governance: ['@nobody']\n")
    config = load_config(tmp_path)
    (problem,) = [p for p in config.problems if p.field.startswith("governance")]
    assert problem.message == "'@nobody' is not listed under people or teams"
    assert problem.line == len(OWNERS.splitlines()) + 1


@pytest.mark.slow
def test_the_cli_writes_checks_and_check_reports_drift(tmp_path: Path) -> None:
    lake = GitLake(tmp_path, owners=GOVERNED)
    lake.put(model("vision"))
    lake.commit("first")
    assert run_lakegen("--root", str(tmp_path), "codeowners", "--check").returncode == 1
    assert run_lakegen("--root", str(tmp_path), "codeowners", "--write").stdout == f"{CODEOWNERS}\n"
    assert run_lakegen("--root", str(tmp_path), "codeowners", "--check").returncode == 0
    lake.commit("codeowners")
    lake.git("checkout", "-q", "-b", "pr")
    lake.put(model("vision", owners=["@grace"]))
    report = subprocess.run(
        [
            str(LAKEGEN),
            "--root",
            str(tmp_path),
            "check",
            "--base",
            "main",
            "--no-bench",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert '"rule": "codeowners"' in report.stdout and report.returncode == 1
