"""The GitHub workflows: linted with zizmor, and held to the project's own rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if exe is None:
        pytest.fail("zizmor is not installed; it is a dev dependency (pip install -e '.[dev]')")
    return subprocess.run(
        [exe, "--offline", "--no-progress", "--persona", "pedantic", "--format", "plain", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def test_zizmor_finds_nothing_in_the_real_workflows() -> None:
    done = zizmor(WORKFLOWS / "check.yml", WORKFLOWS / "publish.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout


def test_zizmor_fails_a_pull_request_target_workflow(tmp_path: Path) -> None:
    unsafe = tmp_path / ".github" / "workflows" / "unsafe.yml"
    unsafe.parent.mkdir(parents=True)
    text = (WORKFLOWS / "check.yml").read_text().replace("  pull_request:\n", "  pull_request_target:\n")
    assert "pull_request_target" in text
    unsafe.write_text(text)
    done = zizmor(unsafe)
    assert done.returncode != 0
    assert "dangerous-triggers" in done.stdout


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_tag() -> None:
    for name in ("check.yml", "publish.yml"):
        text = (WORKFLOWS / name).read_text()
        uses = re.findall(r"uses:\s*(\S+)(.*)", text)
        assert uses
        for ref, comment in uses:
            assert SHA_PIN.match(ref), ref
            assert re.match(r"\s+# v\d+\.\d+\.\d+$", comment), f"{ref}: say which tag the sha is"


def test_check_runs_on_pull_requests_with_read_only_rights() -> None:
    check = load("check.yml")
    assert list(check["on"]) == ["pull_request"]
    assert check["permissions"] == {"contents": "read"}
    assert "secrets." not in (WORKFLOWS / "check.yml").read_text()
    job = check["jobs"]["check"]
    assert "permissions" not in job
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == ".lakegen/cache"
    assert "hashFiles('catalog/**/*.yaml')" in cache["with"]["key"]
    run = job["steps"][-1]["run"]
    assert run.startswith('lakegen check --base "$BASE_SHA"')


def test_publish_deploys_pages_with_write_rights_only_on_the_deploy_job() -> None:
    publish = load("publish.yml")
    assert publish["on"]["push"] == {"branches": ["main"]}
    assert publish["permissions"] == {}
    build, deploy = publish["jobs"]["build"], publish["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build"
    runs = [s["run"] for s in build["steps"] if "run" in s]
    assert "apt-get install -y -qq bubblewrap" in runs[0]  # the bench runs code entries sandboxed
    assert runs[2:] == ["lakegen bench --no-committed", "lakegen build"]  # trusted numbers, then the site
    used = [s["uses"].split("@")[0] for s in steps(publish) if "uses" in s]
    for action in ("actions/upload-pages-artifact", "actions/configure-pages", "actions/deploy-pages"):
        assert action in used
    assert "actions/cache" not in used  # restore and save stay separate steps, each with its own key
    (restore,) = [s for s in build["steps"] if s.get("uses", "").startswith("actions/cache/restore@")]
    assert restore["with"]["path"] == ".lakegen/bench"  # only results that runs on main saved
    assert restore["with"]["restore-keys"].strip() == "lakegen-results-${{ runner.os }}-"


def test_pull_requests_only_restore_the_results_main_saved() -> None:
    job = load("check.yml")["jobs"]["check"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert "apt-get install -y -qq bubblewrap" in runs[0]  # the pull request's code runs sandboxed
    results = [s for s in job["steps"] if ".lakegen/bench" in str(s.get("with", {}).get("path"))]
    assert [s["uses"].split("@")[0] for s in results] == ["actions/cache/restore"]
    assert results[0]["with"]["restore-keys"].strip() == "lakegen-results-${{ runner.os }}-"


def test_the_check_that_judges_a_pull_request_is_the_base_branch_s_lakegen() -> None:
    job = load("check.yml")["jobs"]["check"]
    (base,) = [s for s in job["steps"] if s.get("with", {}).get("path") == ".lakegen/base"]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    installs = [s["run"] for s in job["steps"] if "pip install" in s.get("run", "")]
    assert installs == ["python -m pip install -c .lakegen/base/requirements.lock ./.lakegen/base"]
