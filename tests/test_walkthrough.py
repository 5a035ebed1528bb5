"""README's "add a model by pull request", followed step by step in a real git copy of the demo lake.

A contributor trains a model the demo lake's way, scaffolds and fills in its
manifest, validates and checks it on a branch; the branch merges into main;
then a fresh clone runs exactly the commands ``publish.yml`` runs. The
published site must show the claim reproduced by that run, not by the
contributor: a second pull request claiming a wrong number, and committing a
forged results file that says it verified, ends contradicted on the site.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitlake import GitLake

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARTIFACT = "catalog/artifacts/models/my-model-1.0.0.safetensors"
TRAIN = (
    "python -m lakedemo.train --dataset catalog/artifacts/datasets/digits-1.0.0.npz"
    " --init catalog/artifacts/models/digits-mlp-base-1.0.0.safetensors"
    f" --epochs 2 --lr 3e-4 --seed 11 --out {ARTIFACT}"
)
MEASURE = """\
from lakedemo.evaluate import evaluate, load_weights
from lakedemo.nets import build_mlp
model = build_mlp(in_features=64, hidden=[256, 128], out_features=10)
load_weights(model, "{artifact}")
print(round(evaluate(model, "catalog/artifacts/datasets/digits-1.0.0.npz", "test")["accuracy"], 4))
"""
MERGE = "Merge pull request #{n} from ada/{branch}"

pytestmark = pytest.mark.slow


def sh(command: str, cwd: Path, *, expect: int = 0, **env: str) -> str:
    """Run ``command`` as a workflow step would (bash), with this environment's lakegen first on PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    environ.update(PATH=f"{BIN}{os.pathsep}{environ.get('PATH', '')}", **env)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=environ, capture_output=True, text=True
    )
    assert done.returncode == expect, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def walkthrough() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("## Walkthrough: add a model by pull request")[1].split("\n## ")[0]


def publish_commands() -> list[str]:
    """The ``run`` steps of publish.yml's build job after installing the sandbox and lakegen (both
    installed here already: the Makefile installs bubblewrap)."""
    workflow = yaml.safe_load((REPO / ".github/workflows/publish.yml").read_text(encoding="utf-8"))
    runs = [s["run"] for s in workflow["jobs"]["build"]["steps"] if "run" in s]
    assert "apt-get install -y -qq bubblewrap" in runs[0]
    assert runs[1].startswith("python -m pip install ")
    return runs[2:]


def publish(lake: GitLake, where: Path) -> Path:
    """A fresh clone of main, as the publish job checks it out (no results cache yet), running its commands."""
    lake.git("clone", "-q", "--branch", "main", str(lake.root), str(where))
    for command in publish_commands():
        sh(command, where)
    return where / "site"


def fill_in(path: Path, claimed: float) -> None:
    """Step 3: the fields README names, written into the scaffold below its schema line."""
    text = path.read_text(encoding="utf-8")
    manifest: dict[str, Any] = yaml.safe_load(text)
    manifest.update(
        name="My digits model",
        description="`digits-mlp-base` fine-tuned for two more epochs on `digits`.\n",
        owners=["@ada"],
        license="Apache-2.0",
        tags=["digits"],
        architecture={
            "family": "digits-mlp",
            "code": "lakedemo-train",
            "entrypoint": "lakedemo.nets:build_mlp",
            "config": {"in_features": 64, "hidden": [256, 128], "out_features": 10},
        },
        base_models=[{"id": "digits-mlp-base", "version": "1.0.0", "relation": "finetune"}],
        datasets=[{"id": "digits", "version": "1.0.0", "role": "finetune"}],
        code=[{"id": "lakedemo-train", "role": "train"}, {"id": "lakedemo-eval", "role": "eval"}],
        evaluations=[
            {"dataset": "digits", "split": "test", "metric": "accuracy", "value": claimed, "tolerance": 0.005}
        ],
        intended_use="Showing how a model joins the lake.\n",
        limitations="Trained on 8x8 digits only.\n",
    )
    schema_line = text.splitlines()[0]
    assert schema_line.startswith("# yaml-language-server: $schema=")
    path.write_text(schema_line + "\n" + yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")


def evaluation_row(page: str, key: str) -> str:
    table = page.split('class="lg-table lg-evals"')[1].split("</table>")[0]
    return next(row for row in table.split("<tr>") if key in row)


def test_a_model_added_by_pull_request_is_published_with_reproduced_numbers(tmp_path: Path) -> None:
    steps = walkthrough()
    for command in (
        f"lakegen new model my-model --artifact {ARTIFACT}",
        "lakegen validate",
        "lakegen check --base main",
        *publish_commands(),
    ):
        assert f"`{command}`" in steps, f"README's walkthrough no longer says `{command}`"
    assert f"\n   PYTHONPATH=catalog/src {TRAIN}\n" in steps

    lake = GitLake(tmp_path / "lake", owners=None)
    shutil.copytree(
        REPO / "catalog",
        lake.root / "catalog",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO / ".gitignore", lake.root / ".gitignore")
    lake.commit("The demo lake")
    lake.git("checkout", "-q", "-b", "add-my-model")

    # 1. the weights, made the demo lake's way: two epochs of fine-tuning digits-mlp-base
    sh(f"PYTHONPATH=catalog/src {TRAIN}", lake.root)
    claimed = float(sh(f"PYTHONPATH=catalog/src python -c '{MEASURE.format(artifact=ARTIFACT)}'", lake.root))
    # 2. the scaffold, released as 1.0.0 and pinned by sha256; the weights name their base
    sh(f"lakegen new model my-model --artifact {ARTIFACT}", lake.root)
    manifest = lake.root / "catalog/models/my-model.yaml"
    assert "this file is a fine-tune of digits-mlp-base 1.0.0" in manifest.read_text(encoding="utf-8")
    # 3. filled in; 4. valid, and the pull-request report re-runs the claim on this machine
    fill_in(manifest, claimed)
    sh("lakegen validate", lake.root)
    report = sh("lakegen check --base main", lake.root).replace("\\", "")
    assert "1 evaluations of 1 models (1 verified" in report and "1 verified by weights" in report
    assert not (lake.root / "catalog/results/my-model.json").exists()  # the check commits nothing
    lake.commit("Add my-model")
    lake.git("checkout", "-q", "main")
    lake.merge("add-my-model", MERGE.format(n=1, branch="add-my-model"))

    # 5. what publish.yml runs on main, in a fresh clone
    first = publish(lake, tmp_path / "publish-1")
    page = (first / "models/my-model.html").read_text(encoding="utf-8")
    row = evaluation_row(page, "digits/test/accuracy")
    assert f"<td>{claimed:g}</td><td>{claimed:g}</td>" in row and "lg-s-verified" in row
    assert "PR #1" in page.split('id="history"')[1]
    board = (first / "leaderboards/digits--test--accuracy.html").read_text(encoding="utf-8")
    ranked = re.findall(r'<tr><td>\d+</td><td><a href="../models/([^"]+)\.html">', board)
    assert "my-model" in ranked and len(ranked) > 1
    mine = next(r for r in board.split("<tr>") if "models/my-model.html" in r and r.startswith("<td>"))
    assert "lg-s-verified" in mine
    published = json.loads((tmp_path / "publish-1/catalog/results/my-model.json").read_text())
    assert [r["status"] for r in published["results"]] == ["verified"]

    # A second pull request claims more than the weights score, and commits a results file saying so.
    lake.git("checkout", "-q", "-b", "better-claim")
    text = manifest.read_text(encoding="utf-8")
    wrong = round(claimed + 0.02, 4)
    assert f"value: {claimed}\n" in text
    manifest.write_text(text.replace(f"value: {claimed}\n", f"value: {wrong}\n"), encoding="utf-8")
    forged = {**published, "results": [{**published["results"][0], "claimed": wrong, "reproduced": wrong}]}
    (lake.root / "catalog/results/my-model.json").write_text(json.dumps(forged, indent=2) + "\n")
    shutil.rmtree(lake.root / ".lakegen" / "bench")  # a fresh checkout, as in CI: no result of its own
    report = sh("lakegen check --base main", lake.root, expect=1).replace("\\", "")
    reproduced = published["results"][0]["reproduced"]
    assert f"claimed {wrong:g}, reproduced {reproduced:.6g}" in report
    lake.commit("Claim a better accuracy for my-model")
    lake.git("checkout", "-q", "main")
    lake.merge("better-claim", MERGE.format(n=2, branch="better-claim"))

    second = publish(lake, tmp_path / "publish-2")  # no cache: the forged file is all there is to read
    row = evaluation_row(
        (second / "models/my-model.html").read_text(encoding="utf-8"), "digits/test/accuracy"
    )
    assert f"<td>{wrong:g}</td><td>{claimed:g}</td>" in row and "lg-s-contradicted" in row
    board = (second / "leaderboards/digits--test--accuracy.html").read_text(encoding="utf-8")
    assert "lg-s-contradicted" in next(
        r for r in board.split("<tr>") if "models/my-model.html" in r and r.startswith("<td>")
    )
