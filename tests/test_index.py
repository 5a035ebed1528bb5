"""The compiled lake: every stage's evidence lands in one index, which the site and exports read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakegen.compile import compile_lake
from lakegen.compile.store import load_index, save

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "catalog", root / "catalog")
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_demo_lake_compiles_with_every_declared_edge_verified(demo_copy: Path) -> None:
    index = compile_lake(demo_copy)
    assert set(index.stages) >= {"validate", "attribution", "bench", "governance", "history"}
    declared = [e for e in index.edges if e.declared]
    assert len(declared) == 12
    assert {e.status for e in declared} == {"verified"}
    assert all(e.weights_relation == e.relation for e in declared)
    assert [e for e in index.edges if not e.declared] == []
    assert [f for f in index.findings if f.severity == "error"] == []
    base = index.entry("digits-mlp-base")
    assert base is not None and base.parameters == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    merge = sorted(e.weight for e in declared if e.relation == "merge")
    assert merge == pytest.approx([0.5, 0.5], abs=0.02)


def test_weights_contradicting_manifests_show_in_the_index(tmp_path: Path) -> None:
    shutil.copytree(REPO / "catalog", tmp_path / "catalog")
    models = tmp_path / "catalog" / "models"
    # int8 declares nothing (an undeclared derivation); pruned claims the wrong parent.
    _edit(
        models / "digits-mlp-int8.yaml",
        "base_models:\n- id: digits-mlp-base\n  version: 1.0.0\n  relation: quantized\n",
        "",
    )
    _edit(models / "digits-mlp-pruned.yaml", "- id: digits-mlp-base\n", "- id: digits-mlp-alt\n")
    index = compile_lake(tmp_path)
    undeclared = [e for e in index.edges if e.status == "undeclared"]
    assert ("digits-mlp-base", "digits-mlp-int8", "quantized") in {
        (e.parent, e.child, e.relation) for e in undeclared
    }
    wrong = [e for e in index.edges if e.child == "digits-mlp-pruned" and e.declared]
    assert [(e.parent, e.status) for e in wrong] == [("digits-mlp-alt", "contradicted")]
    rules = {(f.entry, f.rule, f.path) for f in index.findings if f.stage == "attribution"}
    assert ("digits-mlp-int8", "undeclared-derivation", "catalog/models/digits-mlp-int8.yaml") in rules
    assert ("digits-mlp-pruned", "unsupported-claim", "catalog/models/digits-mlp-pruned.yaml") in rules
    finding = next(
        f for f in index.findings if f.entry == "digits-mlp-pruned" and f.rule == "unsupported-claim"
    )
    lines = (models / "digits-mlp-pruned.yaml").read_text().splitlines()
    assert "digits-mlp-alt" in lines[finding.line - 1]
    assert finding.owners == ("acme/vision", "@ada")


def test_index_round_trips_through_json(demo_copy: Path) -> None:
    index = compile_lake(demo_copy)
    path = save(index, demo_copy)
    assert load_index(path) == index


def test_the_index_holds_each_manifest_as_compact_json_and_gives_back_the_dict(demo_copy: Path) -> None:
    import json

    from lakegen.catalog.loader import load_catalog
    from lakegen.model.index import IndexEntry

    index = compile_lake(demo_copy)
    catalog = load_catalog(demo_copy)
    assert len(index.entries) == len(catalog.records) > 10
    for entry in index.entries:
        assert isinstance(entry.packed, bytes)  # not a dict: a tenth of its memory
        assert entry.manifest == catalog.records[entry.id].entry.model_dump(mode="json")
    entry = index.entries[0]
    entry.manifest = {**entry.manifest, "description": "kept", "score": float("inf")}
    assert entry.manifest["description"] == "kept" and entry.manifest["score"] == float("inf")
    saved = json.loads(save(index, demo_copy).read_bytes())
    assert saved["entries"][0]["manifest"] == {**entry.manifest, "score": None}  # as JSON writes inf
    assert {e["id"]: e["manifest"] for e in saved["entries"][1:]} == {
        e.id: e.manifest for e in index.entries[1:]
    }
    assert "packed" not in index.model_dump()["entries"][0]
    assert IndexEntry(id="x", kind="code", path="p", manifest={"id": "x"}).manifest == {"id": "x"}


def test_the_index_is_saved_as_pydantic_dumps_it_with_the_manifests_copied_as_held(demo_copy: Path) -> None:
    from pydantic import TypeAdapter

    from lakegen.model.index import LakeIndex, index_json

    index = compile_lake(demo_copy)
    odd = [
        {"description": 'ünïcode, "quotes", \\ and \u0000 and a tab\t', "n": 1e-7, "big": 2**70},
        {"score": float("inf"), "other": float("nan"), "kept": -0.0},  # written as null, as before
        {"description": "NaN and Infinity as words", "nested": [{"a": [1.5, None, True]}]},
        {"description": '"\u0000" like a marker', "x": "\u0000deadbeef:0"},
    ]
    for entry, extra in zip(index.entries, odd, strict=False):
        entry.manifest = {**entry.manifest, **extra}
    assert len(index.entries) > len(odd)
    dumped = TypeAdapter(LakeIndex).dump_json(index)
    assert index_json(index) == dumped
    assert save(index, demo_copy).read_bytes() == dumped
    assert index_json(LakeIndex(generated_at="now")) == TypeAdapter(LakeIndex).dump_json(
        LakeIndex(generated_at="now")
    )


def test_a_saved_index_is_read_back_with_its_manifests_cut_out_as_written(demo_copy: Path) -> None:
    import os

    from pydantic import TypeAdapter

    from lakegen.compile.store import SPANS_FILE
    from lakegen.model.index import LakeIndex

    index = compile_lake(demo_copy)
    odd = [
        {"description": 'ünïcode, "quotes", \\ and \u0000 and a tab\t', "n": 1e-7, "big": 2**70},
        {"score": float("inf")},  # dumped as a dict, so not cut out: read as JSON reads it
        {"description": '"manifest":{"a":1}', "manifest": {"id": "not the entry's"}},
    ]
    for entry, extra in zip(index.entries, odd, strict=False):
        entry.manifest = {**entry.manifest, **extra}
    path = save(index, demo_copy)
    plain = LakeIndex.model_validate_json(path.read_bytes())
    cut = load_index(path)
    assert (demo_copy / SPANS_FILE).is_file()
    assert cut == plain and [e.packed for e in cut.entries] == [e.packed for e in plain.entries]
    assert TypeAdapter(LakeIndex).dump_json(cut) == path.read_bytes()
    assert cut.entries[2].manifest["manifest"] == {"id": "not the entry's"}

    # a record of other spans, or of another file, is not used
    import lakegen.compile.store as store

    record = store.fastjson.loads((demo_copy / SPANS_FILE).read_bytes())
    wrong = {**record, "spans": [s + 1 for s in record["spans"]]}
    (demo_copy / SPANS_FILE).write_bytes(store.fastjson.compact(wrong))
    assert load_index(path) == plain
    inner = path.read_bytes().index(b'"manifest":{"id":"not') + len(b'"manifest":')
    end = path.read_bytes().index(b"}", inner) + 1
    (demo_copy / SPANS_FILE).write_bytes(store.fastjson.compact({**record, "spans": [inner, end]}))
    assert load_index(path) == plain  # a manifest inside a manifest: no entry's took the number
    (demo_copy / SPANS_FILE).write_bytes(store.fastjson.compact(record))
    assert load_index(path) == plain
    data = path.read_bytes()
    os.utime(path, ns=(0, 0))  # another file now, for all the record knows
    assert store._spans(path, path.stat()) is None and load_index(path) == plain
    path.write_bytes(data)


def test_the_inputs_record_written_is_given_back_unread_until_the_file_changes(
    demo_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.compile import inputs

    index = compile_lake(demo_copy)
    save(index, demo_copy)
    real = inputs.fastjson.loads
    with monkeypatch.context() as m:
        m.setattr(inputs.fastjson, "loads", lambda _: pytest.fail("the record was read again"))
        kept = inputs.recorded(demo_copy)
    assert kept is not None and kept.recorded_digest == index.inputs.digest
    path = demo_copy / inputs.INPUTS_FILE
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"taken_ns":', b'"taken_ns": ', 1))  # another file, the same record
    read = []
    monkeypatch.setattr(inputs.fastjson, "loads", lambda b: read.append(1) or real(b))
    again = inputs.recorded(demo_copy)
    assert read and again is not None and again.files == kept.files
    assert again.recorded_digest == kept.recorded_digest


def test_a_metric_ranks_in_the_direction_its_registry_or_code_entry_gives(tmp_path: Path) -> None:
    from gitlake import GitLake, model

    lake = GitLake(tmp_path)
    lake.write("src/nets/__init__.py", "")
    code = {
        "kind": "code",
        "id": "nets",
        "name": "Nets",
        "description": "Metrics.",
        "owners": ["@ada"],
        "license": "MIT",
        "path": "src",
        "entrypoints": {"my-loss": "nets:loss", "my-score": "nets:score"},
        "lower_is_better": ["my-loss"],
    }
    lake.put(code)
    claims = [{"dataset": "d", "split": "test", "metric": m, "value": 0.5} for m in ("my-loss", "my-score")]
    lake.put(model("m", code=[{"id": "nets", "role": "eval"}], evaluations=claims))
    index = compile_lake(tmp_path, verify_artifacts=False)
    assert index.higher_is_better("my-loss") is False and index.higher_is_better("my-score") is True
    assert index.higher_is_better("mse") is False and index.higher_is_better("accuracy") is True
    assert index.metrics["my-loss"].version == "code:nets"
    assert index.higher_is_better("no-such-metric") is None
