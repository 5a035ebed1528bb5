"""Governance policies over real lakes on disk: licences, owners, risk, documentation, deprecation."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from gitlake import GitLake, base, dataset, model
from helpers import LAKEGEN

from lakegen.catalog.loader import load_catalog
from lakegen.compile import compile_lake
from lakegen.errors import Finding
from lakegen.governance.changes import lake_changes
from lakegen.governance.policies import Context, register, registered, run_policies, violation
from lakegen.governance.policies.builtin import documentation_score
from lakegen.governance.policies.licences import classify, options

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def findings(root: Path, rule: str | None = None) -> list[Finding]:
    catalog = load_catalog(root)
    assert not catalog.errors, catalog.errors
    found = run_policies(catalog)
    return [f for f in found if rule is None or f.rule == rule]


def test_licence_classes_come_from_the_scancode_licensedb_index() -> None:
    assert classify("MIT") == classify("CC0-1.0") == classify("BSD-3-Clause") == "permissive"
    assert classify("CC-BY-NC-4.0") == classify("PolyForm-Noncommercial-1.0.0") == "restricted"
    assert classify("GPL-3.0-only") == classify("CC-BY-SA-4.0") == "share-alike"
    assert classify("CC-BY-NC-SA-4.0") == "restricted"
    assert classify("NoSuchLicence-9") == "unknown"
    assert options("MIT OR (Apache-2.0 AND CC-BY-SA-4.0)") == (
        frozenset({"MIT"}),
        frozenset({"Apache-2.0", "CC-BY-SA-4.0"}),
    )


def test_non_commercial_licence_carries_down_a_three_level_lineage(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(dataset("faces", license="CC-BY-NC-4.0"))
    lake.put(model("root", license="CC-BY-NC-4.0", datasets=[{"id": "faces", "role": "train"}]))
    lake.put(model("middle", license="CC-BY-NC-4.0", base_models=[base("root")]))
    leaf = lake.put(model("leaf", license="MIT", base_models=[base("middle", "quantized")]))
    found = findings(tmp_path, "licence-propagation")
    assert [(f.entry, f.severity, f.field) for f in found] == [("leaf", "error", "license")]
    message = found[0].message
    assert "faces" in message and "faces → root → middle → leaf" in message
    assert "non-commercial" in message and "CC-BY-NC-4.0" in message
    assert found[0].path == "catalog/models/leaf.yaml"
    assert leaf.read_text().splitlines()[found[0].line - 1].startswith("license:")


def test_restriction_passes_through_a_parent_that_itself_breaks_it(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("nc", license="CC-BY-NC-4.0"))
    lake.put(model("laundered", license="Apache-2.0", base_models=[base("nc")]))
    lake.put(model("grandchild", license="MIT", base_models=[base("laundered")]))
    found = findings(tmp_path, "licence-propagation")
    assert [f.entry for f in found] == ["grandchild", "laundered"]
    assert "nc → laundered → grandchild" in found[0].message


def test_a_choice_of_licences_counts_when_any_choice_is_permissive(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("nc", license="CC-BY-NC-4.0"))
    lake.put(model("either", license="MIT OR CC-BY-NC-4.0", base_models=[base("nc")]))
    lake.put(model("both", license="CC-BY-NC-4.0 AND MIT", base_models=[base("nc")]))
    assert [f.entry for f in findings(tmp_path, "licence-propagation")] == ["either"]


def test_share_alike_carries_down_from_data_and_models(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(dataset("wiki", license="CC-BY-SA-4.0"))
    lake.put(model("kept", license="CC-BY-SA-4.0", datasets=[{"id": "wiki", "role": "train"}]))
    lake.put(model("dropped", license="Apache-2.0", base_models=[base("kept")]))
    lake.put(model("eval-only", license="MIT", datasets=[{"id": "wiki", "role": "eval"}]))
    found = findings(tmp_path, "licence-propagation")
    assert [f.entry for f in found] == ["dropped"]
    assert "share-alike" in found[0].message and "wiki → kept → dropped" in found[0].message


def test_other_licence_and_outside_bases_are_left_to_a_person(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("custom", license="other", license_url="https://example.org/licence"))
    lake.put(model("child", base_models=[base("custom")]))
    lake.put(model("hub", base_models=[base("hf:org/some-model")]))
    found = findings(tmp_path, "licence-propagation")
    assert [(f.entry, f.severity) for f in found] == [("child", "info"), ("hub", "info")]


def test_owners_must_be_listed_in_owners_yaml(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("ok", owners=["@Ada", "acme/vision"]))
    path = lake.put(model("stranger", owners=["@ada", "@mallory"]))
    found = findings(tmp_path, "owners")
    assert [(f.entry, f.field) for f in found] == [("stranger", "owners[1]")]
    assert "'@mallory' is not a person or team in catalog/owners.yaml" in found[0].message
    assert "@mallory" in path.read_text().splitlines()[found[0].line - 1]


def test_without_owners_yaml_one_finding_says_so(tmp_path: Path) -> None:
    lake = GitLake(tmp_path, owners=None)
    lake.put(model("a"))
    found = findings(tmp_path, "owners")
    assert [(f.path, f.severity) for f in found] == [("catalog/owners.yaml", "error")]


def test_a_team_member_missing_from_people_is_a_config_finding(tmp_path: Path) -> None:
    GitLake(tmp_path, owners="people: [{handle: '@ada'}]\nteams:\n  - id: acme/x\n    members: ['@bob']\n")
    found = findings(tmp_path, "config")
    assert [(f.path, f.line, f.field) for f in found] == [("catalog/owners.yaml", 4, "teams[0].members[0]")]


def test_risk_cannot_drop_without_a_justification(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("risky", risk="high"))
    lake.put(model("calmer", risk="minimal", base_models=[base("risky")]))
    lake.put(
        model("justified", risk="limited", base_models=[base("risky")], risk_justification="Output filter.")
    )
    lake.put(model("same", risk="high", base_models=[base("risky")]))
    found = findings(tmp_path, "risk-justification")
    assert [(f.entry, f.field) for f in found] == [("calmer", "risk")]
    assert "'minimal' is lower than base 'risky' has ('high')" in found[0].message


def test_documentation_is_scored_per_entry(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(dataset("d"))
    evaluation = [{"dataset": "d", "split": "test", "metric": "accuracy", "value": 0.5}]
    lake.put(model("full", evaluations=evaluation))
    lake.put(model("bare", intended_use="", limitations=""))
    catalog = load_catalog(tmp_path)
    assert documentation_score(catalog.get("full")) == (1.0, [])  # type: ignore[arg-type]
    assert documentation_score(catalog.get("bare")) == (0.0, ["intended_use", "limitations", "evaluations"])  # type: ignore[arg-type]
    found = findings(tmp_path, "documentation")
    assert [f.entry for f in found] == ["bare"]
    assert "0/3 complete" in found[0].message


def test_deprecated_bases_need_an_override_only_when_new(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("old", deprecated=True))
    lake.put(model("existing", base_models=[base("old")]))
    lake.commit("base")
    lake.git("checkout", "-q", "-b", "pr")
    lake.put(model("fresh", base_models=[base("old")]))
    lake.put(model("waived", base_models=[base("old", allow_deprecated="Reproducing a 2024 paper.")]))
    catalog = load_catalog(tmp_path)
    found = [
        f for f in run_policies(catalog, changes=lake_changes(catalog, "main")) if f.rule == "deprecated-base"
    ]
    assert [(f.entry, f.severity, f.field) for f in found] == [
        ("existing", "info", "base_models[0].id"),
        ("fresh", "error", "base_models[0].id"),
    ]
    assert "allow_deprecated" in found[1].message


def test_levels_come_from_policies_yaml(tmp_path: Path) -> None:
    lake = GitLake(
        tmp_path, policies="rules:\n  owners: warn\n  documentaton: off\n  risk-justification: off\n"
    )
    lake.put(model("a", owners=["@mallory"], intended_use=""))
    found = findings(tmp_path)
    by_rule = {f.rule: f for f in found}
    assert by_rule["owners"].severity == "warning"
    assert by_rule["documentation"].severity == "error"  # misspelt above, so still strict
    assert by_rule["config"].line == 3 and "did you mean 'documentation'" in by_rule["config"].message


class NoFridayNames:
    name = "no-friday"
    description = "Entry names do not mention Friday."

    def check(self, ctx: Context) -> Iterable[Finding]:
        for entry_id, record in ctx.catalog.records.items():
            if "friday" in record.entry.name.lower():
                yield violation(entry_id, ("name",), "no Friday releases")


def test_a_custom_policy_registers_like_the_built_ins(tmp_path: Path) -> None:
    builtins = set(registered())
    assert {
        "licence-propagation",
        "owners",
        "risk-justification",
        "documentation",
        "deprecated-base",
    } <= builtins
    assert "immutable-releases" in builtins
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]
    lake = GitLake(tmp_path, policies="rules:\n  no-friday: warn\n")
    lake.put(model("a", name="Friday model"))
    register(NoFridayNames())
    try:
        found = findings(tmp_path, "no-friday")
    finally:
        from lakegen.governance.policies import registry

        registry._REGISTRY.pop("no-friday")
    assert [(f.entry, f.severity, f.field) for f in found] == [("a", "warning", "name")]


def test_compile_lake_gathers_governance_findings(tmp_path: Path) -> None:
    lake = GitLake(tmp_path)
    lake.put(model("a", owners=["@nobody"]))
    lake.commit("first")
    index = compile_lake(tmp_path)
    assert any(f.stage == "governance" and f.rule == "owners" for f in index.findings)
    assert index.stages["governance"].startswith("ran")
    assert [c.entry for c in index.history] == ["a"]


def _installed_plugin(site: Path, rule: str) -> None:
    """A package installed the way pip lays one out (module + dist-info with an entry point)."""
    (site / "lakeplugin.py").write_text(
        "class Rule:\n"
        f"    name = {rule!r}\n"
        "    description = 'a plugin rule'\n"
        "    def check(self, ctx):\n"
        "        from lakegen.governance.policies import violation\n"
        "        for entry_id in ctx.catalog.records:\n"
        "            yield violation(entry_id, ('name',), 'plugin rule ran')\n"
    )
    info = site / "lakeplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lakeplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[lakegen.policies]\n{rule} = lakeplugin:Rule\n")


def _check_with_plugin(
    tmp_path: Path, rule: str, policies: str | None = None
) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site-packages"
    site.mkdir()
    _installed_plugin(site, rule)
    lake = GitLake(tmp_path / "lake", policies=policies) if policies else GitLake(tmp_path / "lake")
    lake.put(model("a"))
    lake.commit("first")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [str(LAKEGEN), "--root", str(tmp_path / "lake"), "check", "--json", "--no-bench"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_an_installed_plugin_cannot_replace_a_built_in_rule(tmp_path: Path) -> None:
    result = _check_with_plugin(tmp_path, "owners")
    assert "Traceback" not in result.stderr
    out = json.loads(result.stdout)
    text = json.dumps(out)
    assert "plugin rule ran" not in text
    assert (
        "plugin rule refused (lakeplugin: entry point owners = lakeplugin:Rule): 'owners' is a built-in rule"
        in text
    )
    assert result.returncode == 1


@pytest.mark.parametrize(("policies", "runs"), [(None, False), ("rules:\n  team-rule: warn\n", True)])
def test_a_plugin_rule_runs_only_where_policies_yaml_names_it(
    tmp_path: Path, policies: str | None, runs: bool
) -> None:
    result = _check_with_plugin(tmp_path, "team-rule", policies)
    assert "Traceback" not in result.stderr
    assert ("plugin rule ran" in result.stdout) is runs, result.stdout


def test_a_parent_only_the_weights_show_passes_its_licence_on(tmp_path: Path) -> None:
    # The attack: leave a non-commercial parent out of base_models and release the fine-tune as MIT.
    import hashlib

    import numpy as np
    from gitlake import version
    from safetensors.numpy import save

    rng = np.random.default_rng(7)
    parent = {f"layer{i}.weight": rng.standard_normal((64, 64)).astype(np.float32) for i in range(3)}
    child = {k: v + 0.02 * rng.standard_normal(v.shape).astype(np.float32) for k, v in parent.items()}
    lake = GitLake(tmp_path)
    for entry_id, tensors, released, licence in (
        ("nc-base", parent, "2026-01-01", "CC-BY-NC-4.0"),
        ("quiet-ft", child, "2026-02-01", "MIT"),
    ):
        data = save(tensors)
        manifest = model(entry_id, license=licence)
        manifest["versions"] = [{**version("1.0.0", data, entry_id, released), "_bytes": data}]
        assert manifest["versions"][0]["artifact"]["sha256"] == hashlib.sha256(data).hexdigest()
        lake.put(manifest)
    index = compile_lake(tmp_path)
    assert [(e.parent, e.child, e.status) for e in index.edges] == [("nc-base", "quiet-ft", "undeclared")]
    found = [f for f in index.findings if f.rule == "licence-propagation"]
    assert [(f.entry, f.severity, f.field) for f in found] == [("quiet-ft", "error", "license")]
    assert "nc-base" in found[0].message and "non-commercial" in found[0].message
