"""``lakegen check --base``: every changed file that is not a manifest is classified, and the ones that
change how the lake is checked, built or published are findings."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitlake import GitLake, dataset, model

from lakegen.catalog.loader import load_catalog
from lakegen.check.render import render
from lakegen.check.report import run_check
from lakegen.compile.scope import Scope
from lakegen.governance.changes import lake_changes

LENIENT = "rules:\n  documentation: warn\n"
CODE = """\
kind: code
id: nets
name: Networks
description: Builds the networks.
owners: ['@ada']
license: MIT
path: src
entrypoints:
  build: nets.build:build
"""
MKDOCS = "site_name: Lake\\nplugins:\\n  - lakegen\\n"


@pytest.fixture
def lake(tmp_path: Path) -> GitLake:
    lake = GitLake(tmp_path, policies=LENIENT)
    lake.write("catalog/code/nets.yaml", CODE)
    lake.write("src/nets/__init__.py", "")
    lake.write("src/nets/build.py", "def build():\n    return None\n")
    lake.write("mkdocs.yml", "site_name: Lake\nplugins:\n  - lakegen\n")
    lake.write("pyproject.toml", '[project]\nname = "lake"\n')
    lake.put(dataset("toy"))
    claim = [{"dataset": "toy", "split": "test", "metric": "accuracy", "value": 0.9}]
    lake.put(
        model(
            "built",
            architecture={"family": "toy", "code": "nets", "entrypoint": "nets.build:build"},
            evaluations=claim,
        )
    )
    lake.put(model("other", evaluations=claim))
    lake.commit("Seed")
    lake.git("checkout", "-q", "-b", "pr")
    return lake


def findings(lake: GitLake, rule: str) -> list:
    report = run_check(lake.root, "main", run_evaluations=False)
    return [f for f in report.findings if f.rule == rule]


def test_mkdocs_hooks_plugins_and_scripts_are_errors_at_their_line(lake: GitLake) -> None:
    lake.write(
        "mkdocs.yml",
        "site_name: Lake\n"
        "hooks:\n  - hooks/inject.py\n"
        "plugins:\n  - lakegen\n  - macros\n"
        "markdown_extensions:\n  - toc\n  - evil.ext\n"
        "extra_javascript:\n  - https://cdn.example/x.js\n"
        "theme:\n  name: material\n  custom_dir: overrides\n",
    )
    lake.write(
        "hooks/inject.py", "def on_page_content(html, **kw):\n    return html + '<script>x</script>'\n"
    )
    lake.commit("Site tweaks")
    found = {(f.line, f.message.split(":")[0]) for f in findings(lake, "site-config")}
    assert found == {
        (2, "hooks"),
        (6, "plugins"),
        (9, "markdown_extensions"),
        (10, "extra_javascript"),
        (14, "theme.custom_dir"),
    }
    assert all(f.severity == "error" for f in findings(lake, "site-config"))
    report = run_check(lake.root, "main", run_evaluations=False)
    assert not report.ok
    (hook,) = [c for c in report.changes.files if c.path == "hooks/inject.py"]  # type: ignore[union-attr]
    assert hook.what == "other"


def test_a_harmless_mkdocs_change_is_no_error(lake: GitLake) -> None:
    lake.write("mkdocs.yml", "site_name: Our lake\nplugins:\n  - lakegen\n  - search\n")
    lake.commit("Rename the site")
    assert findings(lake, "site-config") == []


def test_a_new_entry_point_is_an_error_other_packaging_a_warning(lake: GitLake) -> None:
    lake.write(
        "pyproject.toml",
        '[project]\nname = "lake"\nversion = "2"\n\n[project.entry-points."lakegen.policies"]\nowners = "evil:Rule"\n',
    )
    lake.commit("Add a plugin")
    (entry,) = findings(lake, "entry-points")
    assert (entry.severity, entry.path, entry.line) == ("error", "pyproject.toml", 6)
    assert 'owners = "evil:Rule"' in entry.message
    (review,) = findings(lake, "tooling-change")
    assert review.severity == "warning" and review.message.startswith("modified packaging:")


def test_changing_a_code_entry_s_source_re_runs_the_models_it_builds(lake: GitLake) -> None:
    lake.write("src/nets/build.py", "def build():\n    return 'changed'\n")
    lake.commit("Change the network")
    catalog = load_catalog(lake.root)
    changes = lake_changes(catalog, "main")
    (change,) = changes.files
    assert (change.path, change.what, change.code_entries) == (
        "src/nets/build.py",
        "code entry source",
        ("nets",),
    )
    ctx = Scope(catalog, changes, check=True)
    assert ctx.changed_code() == {"nets"}
    assert ctx.changed_evaluations() == ["built"]  # not 'other', which does not use it
    report = run_check(lake.root, "main", run_evaluations=False)
    (files,) = [s for s in report.stages if s.name == "files"]
    assert "source of nets changed: their models' evaluations re-run" in files.status
    assert "| modified | src/nets/build\\.py | file | source of code entry nets |" in render(
        report, "markdown"
    )


def test_committed_results_are_noted_and_never_read(lake: GitLake) -> None:
    lake.write("catalog/results/built.json", '{"results": []}\n')
    lake.write(".github/workflows/check.yml", "name: check\n")
    lake.commit("Results and a workflow")
    (note,) = findings(lake, "results-change")
    assert note.severity == "info" and "not read" in note.message
    (workflow,) = findings(lake, "tooling-change")
    assert workflow.path == ".github/workflows/check.yml" and workflow.severity == "warning"


def test_lakegen_build_refuses_a_site_config_that_runs_code(tmp_path: Path) -> None:
    from helpers import run_lakegen

    lake = GitLake(tmp_path)
    lake.put(model("a"))
    lake.write("mkdocs.yml", "site_name: Lake\nplugins:\n  - lakegen\nhooks:\n  - inject.py\n")
    lake.write("inject.py", "import pathlib\npathlib.Path('PWNED').write_text('ran')\n")
    result = run_lakegen("--root", str(tmp_path), "build")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        "mkdocs.yml:4: hooks: mkdocs runs these Python files at build time" in result.stdout + result.stderr
    )
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "site" / "index.html").exists()


def test_a_committed_cache_is_an_error_and_not_read(lake: GitLake) -> None:
    lake.write(".lakegen/bench/ab/forged.json", '{"status": "verified"}\n')
    lake.git("add", "-f", ".lakegen/bench/ab/forged.json")
    lake.commit("Plant a result")
    report = run_check(lake.root, "main", run_evaluations=False)
    (planted,) = [f for f in report.findings if f.rule == "planted-cache"]
    assert planted.severity == "error" and planted.path == ".lakegen/bench/ab/forged.json"
    assert not report.ok
    # an ignored (untracked) cache is lakegen's own, and no change
    lake.git("rm", "-q", "--cached", ".lakegen/bench/ab/forged.json")
    lake.write(".gitignore", ".lakegen/\n")
    lake.commit("Unplant")
    assert not [
        f for f in run_check(lake.root, "main", run_evaluations=False).findings if f.rule == "planted-cache"
    ]


def test_a_committed_fingerprint_and_audit_cannot_verify_a_false_parent(tmp_path: Path) -> None:
    """The attack: a pull request adds an unrelated model declared as a fine-tune of ``a`` and commits
    lakegen's cache with a fingerprint (of a real fine-tune of ``a``) under the new file's sha256 and a
    verified audit for the edge. The check must compute both itself."""
    import dataclasses
    import hashlib

    import numpy as np
    from gitlake import base, version
    from helpers import age
    from safetensors.numpy import save, save_file

    from lakegen.fingerprint import Cache, compute
    from lakegen.lineage.audit import Audit, AuditCache

    rng = np.random.default_rng(3)
    parent = {f"layer{i}.weight": rng.standard_normal((512, 256)).astype(np.float32) for i in range(3)}
    unrelated = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in parent.items()}
    tuned = {k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32) for k, v in parent.items()}
    lake = GitLake(tmp_path / "lake", policies=LENIENT)
    lake.write(".gitignore", "")
    a, b = save(parent), save(unrelated)
    lake.put(model("a", versions=[version("1.0.0", a, "a")]))
    lake.commit("Seed")
    lake.git("checkout", "-q", "-b", "pr")
    b_version = version("1.0.0", b, "b", released="2026-02-01")
    lake.put(model("b", versions=[b_version], base_models=[base("a")]))
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    sha_a, sha_b = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    planted = Cache(lake.root / ".lakegen" / "cache")
    planted.put(sha_b, dataclasses.replace(compute(tmp_path / "tuned.safetensors"), sha256=sha_b))
    verified = Audit("verified", 0.99, 1.0, "layer0.weight", 3, 3072, coverage=1.0)
    audits = AuditCache(planted.folder)
    audits.put(sha_b, [(sha_a, 1.0)], "finetune", verified)
    audits.save()
    lake.git("add", "-f", ".lakegen")
    lake.commit("Add b")
    for name in ("a", "b"):  # old enough that the check's own hashing is remembered in a cache
        age(lake.root / "catalog" / "artifacts" / f"{name}-1.0.0.safetensors")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert [(e.parent, e.status) for e in report.index.edges if e.child == "b"] == [("a", "contradicted")]
    assert {f.rule for f in report.errors} >= {"planted-cache", "unsupported-claim"}
