"""Lake indexes built directly (no pipeline run) that exercise every page type of the site."""

from __future__ import annotations

from typing import Any

from lakegen.bench.metrics import REGISTRY
from lakegen.errors import Finding
from lakegen.model.index import (
    ArtifactCheck,
    Change,
    Edge,
    FieldChange,
    IndexEntry,
    LakeIndex,
    MetricInfo,
    Result,
)

SHA = "ab" * 32


def version(
    v: str, released: str = "2024-05-01", changelog: str = "", files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    artifact: dict[str, Any] = {
        "uri": f"../artifacts/{v}.safetensors",
        "sha256": SHA,
        "size": 123456,
        "format": "safetensors",
    }
    if files:
        artifact["uri"] = f"../artifacts/{v}/model.safetensors.index.json"
        artifact["files"] = files
    return {"version": v, "released": released, "changelog": changelog, "artifact": artifact}


def shard(k: int, n: int) -> dict[str, Any]:
    """A pinned shard of a sharded checkpoint, as ``files`` lists it."""
    return {"path": f"model-{k:05d}-of-{n:05d}.safetensors", "sha256": f"{k:02x}" * 32, "size": 1 << 20}


def model(entry_id: str, **fields: Any) -> IndexEntry:
    manifest: dict[str, Any] = {
        "id": entry_id,
        "kind": "model",
        "name": fields.pop("name", entry_id.replace("-", " ").title()),
        "description": fields.pop("description", f"The **{entry_id}** model."),
        "owners": fields.pop("owners", ["@alice"]),
        "license": fields.pop("license", "Apache-2.0"),
        "tags": fields.pop("tags", ["digits"]),
        "links": fields.pop("links", []),
        "task": fields.pop("task", "image-classification"),
        "framework": fields.pop("framework", "pytorch"),
        "architecture": {"family": "digits-mlp", "code": "lakedemo", "entrypoint": "lakedemo.nets:mlp"},
        "versions": fields.pop("versions", [version("1.0.0")]),
        "base_models": fields.pop("base_models", []),
        "datasets": fields.pop("datasets", [{"id": "digits", "version": None, "role": "train"}]),
        "code": [{"id": "lakedemo", "role": "train"}],
        "evaluations": fields.pop("evaluations", []),
        "intended_use": "Demonstrations.",
        "limitations": "Small.",
        "risk": fields.pop("risk", "minimal"),
        "deprecated": False,
    }
    manifest.update(fields)
    return IndexEntry(
        id=entry_id,
        kind="model",
        path=f"catalog/models/{entry_id}.yaml",
        latest_version="1.0.0",
        manifest=manifest,
    )


def dataset(entry_id: str, **fields: Any) -> IndexEntry:
    manifest: dict[str, Any] = {
        "id": entry_id,
        "kind": "dataset",
        "name": fields.pop("name", entry_id.title()),
        "description": fields.pop("description", "Handwritten digits, 8x8."),
        "owners": ["data/team"],
        "license": "CC-BY-4.0",
        "task": "image-classification",
        "source": {"name": "UCI", "url": "https://archive.ics.uci.edu/", "citation": ""},
        "personal_data": False,
        "versions": [version("1.0.0")],
        "splits": [{"name": "train", "rows": 1437}, {"name": "test", "rows": 360}],
        "features": [{"name": "pixels", "dtype": "float32", "shape": [64], "description": ""}],
        "derived_from": fields.pop("derived_from", []),
    }
    manifest.update(fields)
    return IndexEntry(
        id=entry_id,
        kind="dataset",
        path=f"catalog/datasets/{entry_id}.yaml",
        latest_version="1.0.0",
        manifest=manifest,
    )


def code(entry_id: str, **fields: Any) -> IndexEntry:
    manifest: dict[str, Any] = {
        "id": entry_id,
        "kind": "code",
        "name": fields.pop("name", "Demo networks"),
        "description": fields.pop("description", "Builds the demo networks."),
        "owners": ["@bob"],
        "license": "MIT",
        "path": "catalog/src",
        "language": "python",
        "entrypoints": {"build_model": "lakedemo.nets:mlp"},
    }
    manifest.update(fields)
    return IndexEntry(id=entry_id, kind="code", path=f"catalog/code/{entry_id}.yaml", manifest=manifest)


def ev(dataset_id: str, value: float, metric: str = "accuracy", split: str = "test") -> dict[str, Any]:
    return {"dataset": dataset_id, "split": split, "metric": metric, "value": value, "tolerance": 0.005}


def base(entry_id: str, relation: str = "finetune", weight: float | None = None) -> dict[str, Any]:
    return {"id": entry_id, "version": None, "relation": relation, "weight": weight}


def demo_index() -> LakeIndex:
    """Seven models in one family plus an outsider, two datasets, one code entry, and evidence of each kind."""
    entries = [
        dataset("digits"),
        dataset("digits-noisy", derived_from=[{"id": "digits", "note": "added noise"}]),
        code("lakedemo"),
        model(
            "mlp-base",
            evaluations=[ev("digits", 0.95)],
            owners=["@alice", "vision/team"],
            versions=[version("1.0.0", files=[shard(1, 2), shard(2, 2)])],
        ),
        model("mlp-ft", base_models=[base("mlp-base")], evaluations=[ev("digits", 0.97)], license="MIT"),
        model(
            "mlp-q8",
            base_models=[base("mlp-ft", "quantized")],
            evaluations=[ev("digits", 0.96), ev("digits", 0.2, metric="loss")],
            owners=["@carol"],
        ),
        model("mlp-lora", base_models=[base("mlp-base", "adapter")], evaluations=[ev("digits", 0.93)]),
        model(
            "mlp-merge",
            base_models=[base("mlp-ft", "merge", 0.5), base("mlp-lora", "merge", 0.5)],
            evaluations=[ev("digits-noisy", 0.9)],
            task="digit-recognition",
        ),
        model("mlp-mystery", evaluations=[ev("digits", 0.5)], owners=["@dave"], license="GPL-3.0-only"),
        model("ext-ft", base_models=[base("hf:org/tiny-mlp")], framework="onnx", risk="high"),
    ]
    edges = [
        Edge(parent="mlp-base", child="mlp-ft", relation="finetune", declared=True, status="verified",
             weights_relation="finetune", confidence=0.99),
        Edge(parent="mlp-ft", child="mlp-q8", relation="quantized", declared=True, status="contradicted",
             weights_relation="finetune", confidence=0.8),
        Edge(parent="mlp-base", child="mlp-lora", relation="adapter", declared=True, status="unchecked"),
        Edge(parent="mlp-ft", child="mlp-merge", relation="merge", declared=True, status="verified", weight=0.5),
        Edge(parent="mlp-lora", child="mlp-merge", relation="merge", declared=True, status="verified", weight=0.5),
        Edge(parent="mlp-base", child="mlp-mystery", relation="finetune", declared=False, status="undeclared",
             weights_relation="finetune", confidence=0.97),
        Edge(parent="hf:org/tiny-mlp", child="ext-ft", relation="finetune", declared=True, status="unchecked"),
    ]  # fmt: skip
    results = [
        Result(model="mlp-base", version="1.0.0", dataset="digits", split="test", metric="accuracy",
               claimed=0.95, tolerance=0.005, reproduced=0.951, status="verified"),
        Result(model="mlp-ft", version="1.0.0", dataset="digits", split="test", metric="accuracy",
               claimed=0.97, tolerance=0.005, reproduced=0.972, status="verified"),
        Result(model="mlp-q8", version="1.0.0", dataset="digits", split="test", metric="accuracy",
               claimed=0.96, tolerance=0.005, reproduced=0.91, status="contradicted", detail="5 points below"),
        Result(model="mlp-lora", version="1.0.0", dataset="digits", split="test", metric="accuracy",
               claimed=0.93, tolerance=0.005, status="unreproducible", detail="adapter weights missing"),
    ]  # fmt: skip
    findings = [
        Finding(stage="governance", rule="license-compatibility", severity="error", entry="mlp-mystery",
                owners=("@dave",), path="catalog/models/mlp-mystery.yaml", line=5, field="license",
                message="GPL-3.0-only model derived (by weights) from an Apache-2.0 base"),
        Finding(stage="attribution", rule="undeclared-parent", severity="warning", entry="mlp-mystery",
                owners=("@dave",), path="catalog/models/mlp-mystery.yaml", line=1,
                message="weights show a finetune of mlp-base that the manifest does not declare"),
        Finding(stage="bench", rule="claim-contradicted", severity="error", entry="mlp-q8", owners=("@carol",),
                path="catalog/models/mlp-q8.yaml", line=30, field="evaluations[0].value",
                message="claimed 0.96, reproduced 0.91"),
        Finding(stage="governance", rule="risk-review", severity="info", entry="ext-ft", owners=("@alice",),
                path="catalog/models/ext-ft.yaml", line=20, field="risk", message="high-risk model: review due"),
    ]  # fmt: skip
    history = [
        Change(entry="mlp-ft", commit="1" * 40, author="Alice", date="2024-05-02T10:00:00+00:00",
               subject="Add mlp-ft", path="catalog/models/mlp-ft.yaml", action="added"),
        Change(entry="mlp-ft", commit="2" * 40, author="Bob", date="2024-06-01T10:00:00+00:00",
               subject="Bump licence", pr=12, path="catalog/models/mlp-ft.yaml", action="modified",
               changes=[FieldChange(field="license", old="Apache-2.0", new="MIT")]),
        Change(entry="digits", commit="3" * 40, author="Carol", date="2024-04-01T10:00:00+00:00",
               subject="Add digits", path="catalog/datasets/digits.yaml", action="added"),
    ]  # fmt: skip
    artifacts = [
        ArtifactCheck(entry=e.id, version="1.0.0", status="verified") for e in entries if e.kind != "code"
    ]
    return LakeIndex(
        generated_at="2024-06-02T00:00:00+00:00",
        entries=entries,
        edges=edges,
        results=results,
        findings=findings,
        history=history,
        artifacts=artifacts,
        # as a compile records them: the leaderboards' directions ('loss': a code entry's metric)
        metrics={
            "loss": MetricInfo(name="loss", version="code:lakedemo", higher_is_better=False),
            **REGISTRY.describe(),
        },
        stages={"validate": "ran", "attribution": "ran", "bench": "ran", "governance": "ran"},
    )


PAYLOADS = [
    "<script>window.__xss=1;alert(1)</script>",
    '"><img src=x onerror="window.__xss=2;alert(2)">',
    '<svg onload="window.__xss=3"></svg>',
    "javascript:window.__xss=4",
    "</title><script>window.__xss=5</script>",
    "{{ 7*7 }}{% raw %}",
    "--><script>window.__xss=11</script><!--",
]


def xss_index() -> LakeIndex:
    """Every string a manifest can hold, filled with script injection attempts."""
    p = PAYLOADS
    desc = (
        f"{p[0]}\n\n[click](javascript:window.__xss=6) [data](data:text/html;base64,PHNjcmlwdD4=)"
        f' <a href="javascript:window.__xss=7">raw</a>\n\n![img](x" onerror="window.__xss=8)\n\n{p[1]}'
    )
    evil = model(
        "evil",
        name="<script>",
        description=desc,
        owners=[p[1], "@ok"],
        license=p[2],
        tags=[p[4]],
        task=p[0],
        framework=p[1],
        links=[{"title": p[0], "url": "javascript:window.__xss=9"}, {"title": "ok", "url": p[3]}],
        evaluations=[ev("digits", 0.9, metric=p[1]), ev(p[2], 0.5, split=p[4])],
        base_models=[base("weird<id>")],
        intended_use=p[5],
        limitations=p[4],
        license_url="javascript:window.__xss=10",
        versions=[version("1.0.0", changelog=p[0], files=[{"path": p[1], "sha256": p[2], "size": 1}])],
    )
    strange = model(
        "x<script>y", name=p[4], description=f"{p[2]}\n\n<!-- {p[6]} -->\n\n{p[6]}", limitations=p[6]
    )
    entries = [
        dataset("digits", name=p[1], description=p[0]),
        code("lakedemo", repository=p[3]),
        evil,
        strange,
    ]
    return LakeIndex(
        generated_at=p[1],
        entries=entries,
        edges=[
            Edge(parent="weird<id>", child="evil", relation=p[0], declared=True, status="unchecked"),
            Edge(parent="evil", child="x<script>y", relation="finetune", declared=False, status="undeclared"),
        ],
        results=[
            Result(
                model="evil",
                version="1.0.0",
                dataset="digits",
                split="test",
                metric=p[1],
                claimed=0.9,
                tolerance=0.01,
                reproduced=0.1,
                status="contradicted",
                detail=p[0],
            ),
        ],
        findings=[
            Finding(
                stage="governance",
                rule=p[0],
                severity="error",
                entry="evil",
                owners=(p[1],),
                path=p[4],
                line=1,
                field=p[2],
                message=p[0],
            ),
        ],
        history=[
            Change(
                entry="evil",
                commit=p[0],
                author=p[1],
                date="2024-01-01",
                subject=p[4],
                path=p[2],
                action="modified",
                changes=[FieldChange(field=p[0], old=p[1], new=p[4])],
            ),
        ],
        stages={p[0]: p[1]},
    )


def family_index(size: int = 50) -> LakeIndex:
    """One lineage family of ``size`` models: a base, its fine-tunes, and their quantized, pruned and
    merged children, with edges of every status (long ids, as real lakes have)."""
    statuses = ("verified", "contradicted", "undeclared", "unchecked")
    relations = ("quantized", "pruned", "finetune", "adapter", "distilled", "merge")
    entries = [dataset("digits"), code("lakedemo"), model("family-base-model")]
    edges = []
    tunes = max(1, round((size - 1) / 7))
    for i in range(size - 1):
        if i < tunes:
            child, parent, relation = f"family-base-model-finetune-{i:02d}", "family-base-model", "finetune"
        else:
            parent = f"family-base-model-finetune-{(i - tunes) % tunes:02d}"
            relation = relations[i % len(relations)]
            child = f"{parent}-{relation}-{i:02d}"
        status = statuses[i % len(statuses)]
        declared = status != "undeclared"
        entries.append(model(child, base_models=[base(parent, relation)] if declared else []))
        edges.append(Edge(parent=parent, child=child, relation=relation, declared=declared, status=status))
    return LakeIndex(generated_at="2024-06-02T00:00:00+00:00", entries=entries, edges=edges)
