"""``lakegen search`` answers for the working tree, never from a compile of another state or branch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gitlake import GitLake
from helpers import run_lakegen
from safetensors.numpy import save
from test_attribution import finetune, manifest, trained

from lakegen.compile import compile_lake
from lakegen.compile.inputs import INPUTS_FILE
from lakegen.compile.store import INDEX_FILE, load_current
from lakegen.compile.store import save as save_index

STALE = "is out of date"


def ids(done: object) -> list[str]:
    return [hit["id"] for hit in json.loads(done.stdout)]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_model_added_after_the_build_is_found_without_one(lake: Path) -> None:
    first = run_lakegen("--root", str(lake), "search", "toy", "--json")
    assert first.returncode == 0 and (lake / INDEX_FILE).is_file() and (lake / INPUTS_FILE).is_file()
    again = run_lakegen("--root", str(lake), "search", "toy", "--json")
    assert ids(again) == ids(first) and STALE not in again.stderr  # the saved index is current: read as is
    assert run_lakegen("--root", str(lake), "new", "model", "my-model").returncode == 0
    found = run_lakegen("--root", str(lake), "search", "my-model", "--json")
    assert found.returncode == 0, found.stderr
    assert ids(found) == ["my-model"]
    assert found.stderr.splitlines()[0] == (
        f"lakegen: {INDEX_FILE} is out of date (catalog/models/my-model.yaml added); compiling the lake again"
    )
    assert STALE not in run_lakegen("--root", str(lake), "search", "my-model").stderr  # and saved


def test_an_edit_a_touch_and_a_removal(lake: Path) -> None:
    save_index(compile_lake(lake, verify_artifacts=False), lake)
    manifest_file = lake / "catalog/models/toy-a.yaml"
    text = manifest_file.read_text()
    manifest_file.write_text(text)  # rewritten, same bytes: the stat record differs, the content does not
    assert load_current(lake)[0] is not None
    manifest_file.write_text(text.replace("name: Toy A", "name: Toy Alpha"))
    index, why = load_current(lake)
    assert index is None and why == f"{INDEX_FILE} is out of date (catalog/models/toy-a.yaml changed)"
    done = run_lakegen("--root", str(lake), "search", "alpha", "--json")
    assert ids(done) == ["toy-a"] and "toy-a.yaml changed" in done.stderr
    (lake / "catalog/models/toy-b.yaml").unlink()
    assert load_current(lake)[1].endswith("(catalog/models/toy-b.yaml removed)")
    (lake / "src/toy/nets.py").write_text("def build(hidden):\n    return 2 * hidden\n")  # a code folder
    save_index(compile_lake(lake, verify_artifacts=False), lake)
    (lake / "src/toy/nets.py").write_text("def build(hidden):\n    return 3 * hidden\n")
    assert load_current(lake)[1].endswith("(src/toy/nets.py changed)")


def test_an_index_without_its_record_or_unreadable_is_compiled_again(lake: Path) -> None:
    save_index(compile_lake(lake, verify_artifacts=False), lake)
    (lake / INPUTS_FILE).unlink()
    assert load_current(lake) == (
        None,
        f"{INDEX_FILE} is out of date (no record of what it was compiled from)",
    )
    (lake / INDEX_FILE).write_text('{"format": 1, "from": "a newer lakegen"}')
    assert load_current(lake) == (None, f"{INDEX_FILE} cannot be read")
    done = run_lakegen("--root", str(lake), "search", "toy-b", "--json")
    assert done.returncode == 0 and ids(done)[0] == "toy-b"
    assert done.stderr.startswith(f"lakegen: {INDEX_FILE} cannot be read; compiling the lake again\n")


@pytest.mark.slow
def test_switching_branches_answers_for_the_branch_checked_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = trained(rng)
    weights = {"base": save(base), "ft": save(finetune(rng, base))}
    lake = GitLake(tmp_path, policies="rules:\n  documentation: warn\n")
    for name, data in weights.items():
        lake.write(f"catalog/artifacts/{name}.safetensors", data)
    uri = "../artifacts/{}.safetensors"
    lake.write(
        "catalog/models/base.yaml", manifest("base", uri.format("base"), weights["base"], "2026-01-01", [])
    )

    def declare(relation: str) -> None:
        bases = [f"{{id: base, relation: {relation}}}"]
        lake.write(
            "catalog/models/ft.yaml", manifest("ft", uri.format("ft"), weights["ft"], "2026-02-01", bases)
        )

    declare("finetune")
    lake.commit("base and its fine-tune")
    lake.git("checkout", "-q", "-b", "other")
    declare("quantized")  # what the weights do not show
    lake.commit("ft: claim it is a quantized copy")

    def status(wanted: str) -> tuple[int, list[str], str]:
        done = run_lakegen("--root", str(tmp_path), "search", "--lineage-status", wanted, "--json")
        return done.returncode, ids(done), done.stderr

    assert status("contradicted")[:2] == (0, ["ft"])
    lake.git("checkout", "-q", "main")
    code, found, err = status("contradicted")
    assert (code, found) == (1, [])
    assert "git HEAD moved (another branch or commit)" in err
    assert status("verified")[:2] == (0, ["ft"])
    lake.git("checkout", "-q", "other")
    assert status("contradicted")[:2] == (0, ["ft"])
