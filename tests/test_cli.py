"""The ``lakegen`` command through its real entry point: new, list, show, schema, usage errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from helpers import MODEL_A, run_lakegen, snapshot
from safetensors.numpy import save_file
from test_attribution import finetune, manifest, trained, write_adapter
from test_sharded import GROUPS, shard

from lakegen.model import schema
from lakegen.model.manifest import KINDS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["model", "dataset", "code"])
def test_new_scaffolds_a_manifest_that_validates(lake: Path, kind: str) -> None:
    result = run_lakegen("--root", str(lake), "new", kind, f"fresh-{kind}", "--owner", "@bob")
    assert result.returncode == 0, result.stderr
    folder = {"model": "models", "dataset": "datasets", "code": "code"}[kind]
    rel = f"catalog/{folder}/fresh-{kind}.yaml"
    assert result.stdout.strip() == rel
    text = (lake / rel).read_text()
    assert text.startswith(f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json\n")
    check = run_lakegen("--root", str(lake), "validate")
    assert check.returncode == 0, check.stdout
    again = run_lakegen("--root", str(lake), "new", kind, f"fresh-{kind}")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_new_refuses_a_bad_id_and_writes_nothing(lake: Path) -> None:
    before = snapshot(lake)
    result = run_lakegen("--root", str(lake), "new", "model", "Bad Id")
    assert result.returncode == 1
    assert "must be a lowercase slug" in result.stderr
    assert snapshot(lake) == before


def test_list_and_show_json(lake: Path) -> None:
    listed = run_lakegen("--root", str(lake), "list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert [(r["kind"], r["id"], r["latest_version"]) for r in rows] == [
        ("code", "toy-code", None),
        ("dataset", "toy-data", "1.0.0"),
        ("model", "toy-a", "1.0.0"),
        ("model", "toy-b", "0.1.0"),
    ]
    models = json.loads(run_lakegen("--root", str(lake), "list", "--kind", "model", "--json").stdout)
    assert [r["id"] for r in models] == ["toy-a", "toy-b"]
    shown = json.loads(run_lakegen("--root", str(lake), "show", "toy-b", "--json").stdout)
    assert shown["path"] == "catalog/models/toy-b.yaml"
    [base] = shown["base_models"]
    assert (base["id"], base["version"], base["relation"], base["weight"]) == (
        "toy-a",
        "1.0.0",
        "finetune",
        None,
    )


def test_show_human_and_unknown_id(lake: Path) -> None:
    shown = run_lakegen("--root", str(lake), "show", "toy-a")
    assert shown.returncode == 0
    assert shown.stdout.startswith("# catalog/models/toy-a.yaml\n")
    assert "family: toy-mlp" in shown.stdout
    missing = run_lakegen("--root", str(lake), "show", "toy-aa")
    assert missing.returncode == 2
    assert missing.stderr == "lakegen show: no entry 'toy-aa' (did you mean 'toy-a'?)\n"


def test_root_is_found_from_a_subfolder(lake: Path) -> None:
    result = run_lakegen("list", "--json", cwd=lake / "catalog" / "models")
    assert result.returncode == 0
    assert len(json.loads(result.stdout)) == 4


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["new", "widget", "x"], ["validate", "--nope"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run_lakegen(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    from lakegen import __version__

    done = run_lakegen("--version")
    assert (done.returncode, done.stdout) == (0, f"lakegen {__version__}\n")


def test_not_a_lake(tmp_path: Path) -> None:
    result = run_lakegen("--root", str(tmp_path), "validate")
    assert result.returncode == 1
    assert "no catalog/ folder here; is this a lake?" in result.stderr


def test_committed_json_schema_matches_the_models() -> None:
    assert schema.stale(REPO) == [], "run 'lakegen schema --write'"
    result = run_lakegen("--root", str(REPO), "schema", "--check")
    assert result.returncode == 0, result.stdout


def test_schema_check_detects_drift(tmp_path: Path) -> None:
    schema.write(tmp_path)
    (tmp_path / "schemas/model.schema.json").write_text("{}\n")
    result = run_lakegen("--root", str(tmp_path), "schema", "--check")
    assert result.returncode == 1
    assert result.stdout.strip() == "schemas/model.schema.json: out of date; run 'lakegen schema --write'"


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_printed_is_valid_json_schema(kind: str) -> None:
    result = run_lakegen("schema", "--kind", kind)
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["additionalProperties"] is False


def test_json_schema_accepts_good_and_flags_typos_like_an_editor() -> None:
    validator = jsonschema.Draft202012Validator(schema.json_schema("model"))
    data = json.loads(json.dumps(yaml.safe_load(MODEL_A), default=str))
    assert list(validator.iter_errors(data)) == []
    data["licence"] = data.pop("license")
    messages = [e.message for e in validator.iter_errors(data)]
    assert any("'license' is a required property" in m for m in messages)
    assert any("'licence' was unexpected" in m for m in messages)


def test_every_catalog_manifest_points_at_its_schema() -> None:
    for path in sorted((REPO / "catalog").glob("*/*.yaml")):
        kind = yaml.safe_load(path.read_text())["kind"]
        assert path.read_text().startswith(
            f"# yaml-language-server: $schema=../../schemas/{kind}.schema.json\n"
        ), path


def test_cli_reference_in_docs_is_current() -> None:
    from lakegen.cli.main import reference

    assert (REPO / "docs/cli.md").read_text() == reference(), "regenerate docs/cli.md (see its first line)"


def test_every_command_and_option_has_help() -> None:
    import argparse

    from lakegen.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert command.description, f"lakegen {name} has no description"
        for action in command._actions:
            if action.dest != "help":
                what = action.option_strings[0] if action.option_strings else action.dest
                assert action.help, f"lakegen {name} {what} is undocumented"


# ------------------------------------------------------------------------------- new --artifact


def _weights_lake(tmp_path: Path) -> Path:
    """A lake with one real model, ``base``, and a fine-tune of it put in as a file, as two shards
    and as an adapter, none of them described yet."""
    rng = np.random.default_rng(9)
    root = tmp_path / "lake"
    art = root / "catalog" / "artifacts"
    art.mkdir(parents=True)
    base = trained(rng)
    save_file(base, str(art / "base.safetensors"))
    data = (art / "base.safetensors").read_bytes()
    (root / "catalog" / "models").mkdir()
    (root / "catalog" / "models" / "base.yaml").write_text(
        manifest("base", "../artifacts/base.safetensors", data, "2026-01-01", [])
    )
    ft = finetune(rng, base)
    save_file(ft, str(art / "ft.safetensors"))
    shard(art / "ft-sharded", ft, GROUPS)
    write_adapter(art / "lora", "base", rng)
    return root


def test_new_with_an_artifact_pins_it_and_says_what_the_weights_show(tmp_path: Path) -> None:
    root = _weights_lake(tmp_path)
    art = root / "catalog" / "artifacts"
    made = run_lakegen("--root", str(root), "new", "model", "ft", "--artifact", str(art / "ft.safetensors"))
    assert made.returncode == 0, made.stderr
    text = (root / "catalog/models/ft.yaml").read_text()
    assert "# the weights say: this file is a fine-tune of base 1.0.0 (confidence" in text
    (release,) = yaml.safe_load(text)["versions"]
    data = (art / "ft.safetensors").read_bytes()
    assert release["version"] == "1.0.0" and release["artifact"] == {
        "uri": "../artifacts/ft.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "format": "safetensors",
    }
    sharded = run_lakegen(
        "--root",
        str(root),
        "new",
        "model",
        "ft-sharded",
        "--artifact",
        str(art / "ft-sharded"),
        "--version",
        "2.0.0",
    )
    assert sharded.returncode == 0, sharded.stderr
    text = (root / "catalog/models/ft-sharded.yaml").read_text()
    assert "the weights say: this file holds the same weights as ft 1.0.0" in text
    artifact = yaml.safe_load(text)["versions"][0]["artifact"]
    assert artifact["uri"] == "../artifacts/ft-sharded/model.safetensors.index.json"
    assert [f["path"] for f in artifact["files"]] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert (
        artifact["files"][0]["sha256"]
        == hashlib.sha256((art / "ft-sharded" / "model-00001-of-00002.safetensors").read_bytes()).hexdigest()
    )
    adapter = run_lakegen("--root", str(root), "new", "model", "lora", "--artifact", str(art / "lora"))
    assert adapter.returncode == 0, adapter.stderr
    artifact = yaml.safe_load((root / "catalog/models/lora.yaml").read_text())["versions"][0]["artifact"]
    assert artifact["uri"] == "../artifacts/lora/adapter_model.safetensors"
    assert [f["path"] for f in artifact["files"]] == ["adapter_config.json"]
    check = run_lakegen("--root", str(root), "validate")
    assert check.returncode == 0, check.stdout  # each manifest validates as it stands, shards pinned


def test_new_refuses_an_artifact_outside_the_lake_or_of_no_known_format(tmp_path: Path) -> None:
    root = _weights_lake(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((root / "catalog/artifacts/ft.safetensors").read_bytes())
    (root / "catalog/artifacts/notes.txt").write_text("not weights")
    before = snapshot(root)
    cases = {
        str(outside): "leaves the lake: put the file under catalog/ first",
        str(root / "catalog/artifacts/notes.txt"): "unknown artifact format '.txt'",
        str(root / "catalog/artifacts/missing.safetensors"): "no such file or folder",
        str(root / "catalog"): "a folder must be a LoRA adapter (adapter_config.json + adapter_model.*) "
        "or a sharded checkpoint (*.index.json + its shards)",
    }
    for path, message in cases.items():
        result = run_lakegen("--root", str(root), "new", "model", "x", "--artifact", path)
        assert result.returncode == 1 and message in result.stderr, (path, result.stderr)
        assert "Traceback" not in result.stderr
    bad = run_lakegen("--root", str(root), "new", "code", "x", "--artifact", str(outside))
    assert bad.returncode == 1 and "a code entry has no artifact" in bad.stderr
    version = run_lakegen(
        "--root",
        str(root),
        "new",
        "model",
        "x",
        "--artifact",
        str(root / "catalog/artifacts/ft.safetensors"),
        "--version",
        "v1",
    )
    assert version.returncode == 1 and "'v1' is not a semantic version" in version.stderr
    assert snapshot(root) == before  # nothing written


def test_new_dataset_with_an_artifact_pins_it(tmp_path: Path) -> None:
    root = _weights_lake(tmp_path)
    data = root / "catalog/artifacts/toy.npz"
    np.savez(data, x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    made = run_lakegen("--root", str(root), "new", "dataset", "toy", "--artifact", str(data))
    assert made.returncode == 0, made.stderr
    artifact = yaml.safe_load((root / "catalog/datasets/toy.yaml").read_text())["versions"][0]["artifact"]
    assert artifact["format"] == "npz" and artifact["uri"] == "../artifacts/toy.npz"
    assert run_lakegen("--root", str(root), "validate").returncode == 0


# ------------------------------------------------------------------------ mistakes on the command line


@pytest.mark.slow
def test_a_search_filter_no_entry_has_names_the_nearest_known_value(lake: Path) -> None:
    def search(*args: str) -> tuple[int, str]:
        done = run_lakegen("--root", str(lake), "search", *args)
        assert "Traceback" not in done.stderr
        return done.returncode, done.stderr.splitlines()[-1]

    assert search("--task", "tabular-clasification") == (
        2,
        "lakegen search: --task tabular-clasification: no entry has task 'tabular-clasification' "
        "(did you mean 'tabular-classification'?)",
    )
    assert search("--lineage-status", "verfied") == (
        2,
        "lakegen search: --lineage-status verfied: no entry has lineage status 'verfied' "
        "(did you mean 'verified'?)",
    )
    assert search("--where", "acc>=0.9") == (
        2,
        "lakegen search: --where 'acc>=0.9': no entry has a score named 'acc' (did you mean 'accuracy'?)",
    )
    assert search("--where", "toy-data/train/accuracy>0") == (
        2,
        "lakegen search: --where 'toy-data/train/accuracy>0': no entry has a score named "
        "'toy-data/train/accuracy' (did you mean 'toy-data/test/accuracy'?)",
    )
    assert search("--license", "GPL-3.0") == (
        2,
        "lakegen search: --license GPL-3.0: no entry has licence 'GPL-3.0' (known: Apache-2.0, CC-BY-4.0, MIT)",
    )
    assert search("--where", "accuracy>>1") == (
        2,
        "lakegen search: --where 'accuracy>>1': cannot read it; write NAME OP NUMBER, e.g. 'accuracy>=0.9'",
    )
    # a status no entry has right now is a real question with an empty answer, not a typo
    assert search("--lineage-status", "contradicted") == (1, "0 entries")
    assert search("--where", "accuracy>=0.9", "--task", "TABULAR-classification")[0] == 0


@pytest.mark.slow
def test_an_unknown_id_version_or_revision_is_one_line_exiting_2(tmp_path: Path) -> None:
    from gitlake import GitLake, model

    lake = GitLake(tmp_path / "repo")
    lake.put(model("vision"))
    lake.put(model("vision2"))
    lake.commit("Release vision and vision2")
    lake.git("rm", "-q", "catalog/models/vision.yaml")
    lake.commit("Retire vision")

    def fails(*args: str) -> str:
        done = run_lakegen("--root", str(lake.root), *args)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        return done.stderr

    assert fails("history", "nope") == (
        "lakegen history: no entry 'nope' in the lake or its history (known: vision, vision2)\n"
    )
    assert fails("history", "vison") == (
        "lakegen history: no entry 'vison' in the lake or its history (did you mean 'vision'?)\n"
    )
    deleted = run_lakegen("--root", str(lake.root), "history", "vision")  # gone from the lake, not from git
    assert deleted.returncode == 0 and " deleted vision: Retire vision" in deleted.stdout
    assert fails("diff", "nope", "1.0.0", "1.1.0") == "lakegen diff: no entry 'nope' (known: vision2)\n"
    assert (
        fails("diff", "vision2", "1.0.0", "9.9.9")
        == "lakegen diff: vision2 has no version '9.9.9' (has 1.0.0)\n"
    )
    assert fails("check", "--base", "nonexistent") == (
        "lakegen check: --base nonexistent: not a git revision here (in CI, fetch full history: fetch-depth 0)\n"
    )
    outside = tmp_path / "plain"
    (outside / "catalog").mkdir(parents=True)
    assert run_lakegen("--root", str(outside), "check", "--base", "main").stderr == (
        "lakegen check: --base main: the lake is not in a git repository\n"
    )


@pytest.mark.slow
def test_one_edge_shows_one_confidence_in_new_search_like_and_check(tmp_path: Path) -> None:
    from gitlake import GitLake

    rng = np.random.default_rng(9)
    lake = GitLake(tmp_path, policies="rules:\n  documentation: warn\n")
    art = tmp_path / "catalog" / "artifacts"
    art.mkdir(parents=True)
    base = trained(rng)
    released = {
        "base": (base, "2026-01-01", []),
        "sibling": (finetune(rng, base), "2026-01-05", ["{id: base, relation: finetune}"]),
    }
    for name, (weights, date, bases) in released.items():
        save_file(weights, str(art / f"{name}.safetensors"))
        data = (art / f"{name}.safetensors").read_bytes()
        text = manifest(name, f"../artifacts/{name}.safetensors", data, date, bases)
        lake.write(f"catalog/models/{name}.yaml", text)
    lake.commit("base and a sibling")
    lake.git("checkout", "-q", "-b", "pr")
    save_file(finetune(rng, base), str(art / "ft.safetensors"))

    made = run_lakegen(
        "--root", str(tmp_path), "new", "model", "ft", "--artifact", str(art / "ft.safetensors")
    )
    assert made.returncode == 0, made.stderr
    said = (tmp_path / "catalog/models/ft.yaml").read_text()
    new = float(said.split("this file is a fine-tune of base 1.0.0 (confidence ", 1)[1][:4])

    like = run_lakegen("--root", str(tmp_path), "search", "--like", str(art / "ft.safetensors"), "--json")
    ranked = {m["id"]: m for m in json.loads(like.stdout)["matches"]}
    assert (
        ranked["base@1.0.0"]["relation"] == "finetune" and ranked["sibling@1.0.0"]["relation"] == "finetune"
    )
    assert ranked["sibling@1.0.0"]["confidence"] < ranked["base@1.0.0"]["confidence"]  # the runner-up

    checked = run_lakegen(
        "--root", str(tmp_path), "check", "--base", "main", "--no-bench", "--format", "json"
    )
    (finding,) = [f for f in json.loads(checked.stdout)["findings"] if f["rule"] == "undeclared-derivation"]
    assert finding["entry"] == "ft" and "ft@1.0.0 is a finetune of base@1.0.0" in finding["message"]
    shown = float(finding["message"].split("(confidence ", 1)[1][:4])
    assert new == round(ranked["base@1.0.0"]["confidence"], 2) == shown


def test_help_imports_none_of_the_heavy_stages() -> None:
    # `lakegen --help` (and every command's start) stays fast: the parser is built from light modules.
    code = (
        "import sys, lakegen.cli.main; lakegen.cli.main.build_parser(); "
        "print(sorted(m for m in ('networkx', 'torch', 'numpy', 'pydantic', 'lakegen.check.report') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_only_the_program_itself_leaves_its_objects_to_the_exit(capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    from lakegen.cli.main import main

    # a caller passing argv goes on running: nothing of its process is frozen
    before = gc.get_freeze_count()
    assert main(["schema", "--kind", "model"]) == 0
    assert gc.get_freeze_count() == before
    capsys.readouterr()
    # the program (its own command line) freezes what is left, so the exit does not collect it
    code = (
        "import gc, sys\n"
        "from lakegen.cli.main import main\n"
        "sys.argv = ['lakegen', 'schema', '--kind', 'model']\n"
        "rc = main()\n"
        "print(rc, gc.get_freeze_count() > 0, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.split() == ["0", "True"]
    assert json.loads(done.stdout)["title"]
