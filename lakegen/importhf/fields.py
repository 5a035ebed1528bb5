"""Manifest fields from a card and its configs: description, licence, framework, bases, results, training."""

from __future__ import annotations

import re
from typing import Any

from lakegen.importhf.card import (
    _HYPERPARAMETER,
    NO_SPLIT,
    Card,
    Section,
    _capped,
    _list,
    _section,
    normalise_licence,
)
from lakegen.importhf.hub import Source, _hub_ref
from lakegen.model.manifest import EXTERNAL_PATTERN, Relation, slug


def _intro(card: Card, found: list[Section]) -> str:
    """The card's text before its first section below the title (its description)."""
    first = next((s for s in found if s.level > 1), None)
    title = next((s for s in found if s.level == 1), None)
    body = card.body.splitlines()
    start = title.line - card.body_line + 1 if title else 0
    stop = first.line - card.body_line if first else len(body)
    text = "\n".join(line.rstrip() for line in body[start:stop]).strip()
    if not text:
        described = next(
            (s for s in found if "description" in s.title.lower() or "summary" in s.title.lower()), None
        )
        text = described.text if described else ""
    return text


def _model_index_name(front: dict[str, Any]) -> str:
    first = next(iter(_list(front.get("model-index"))), None)
    return str(first.get("name") or "") if isinstance(first, dict) else ""


def _model_index_task(front: dict[str, Any]) -> str:
    for model in _list(front.get("model-index")):
        for result in _list(model.get("results") if isinstance(model, dict) else None):
            task = result.get("task") if isinstance(result, dict) else None
            if isinstance(task, dict) and task.get("type"):
                return str(task["type"])
    return ""


def _licence(
    front: dict[str, Any], at: Any, given: str | None, problem: Any
) -> tuple[str | None, str | None]:
    url = front.get("license_link")
    url = str(url) if isinstance(url, str) and re.match(r"^https?://", url) else None
    if given:
        spdx = "other" if given == "other" else normalise_licence(given)
        if spdx is None:
            problem(1, "license", f"--license '{given}' is not an SPDX licence expression")
        return spdx, url
    value = front.get("license")
    if value is None:
        problem(1, "license", "the card names no licence; give --license with an SPDX expression")
        return None, None
    if isinstance(value, list):  # the Hub allows a list; a model under several licences is under all
        value = " AND ".join(str(v) for v in value)
    value = str(value)
    if value == "other":
        if url is None:
            problem(at("license"), "license", "'other' needs license_link in the card, or give --license")
        return "other", url
    spdx = normalise_licence(value)
    if spdx is None:
        problem(
            at("license"),
            "license",
            f"'{value}' is not an SPDX licence; give --license with its SPDX expression, or 'other' "
            "with license_link in the card",
        )
    return spdx, url


def _framework(src: Source) -> str:
    names = {p.name for p in src.folder.iterdir()} | set(src.hub_files)
    if any(n.endswith((".safetensors", ".bin", ".pt", ".pth")) for n in names):
        return "pytorch"
    if any(n.endswith(".onnx") for n in names):
        return "onnx"
    if "tf_model.h5" in names:
        return "tensorflow"
    if "flax_model.msgpack" in names:
        return "jax"
    return "other"


def _bases(
    links: dict[str, str],
    front: dict[str, Any],
    adapter: dict[str, Any],
    config: dict[str, Any],
    at: Any,
    problem: Any,
) -> list[dict[str, Any]]:
    names = [str(b) for b in _list(front.get("base_model"))]
    if not names and adapter.get("base_model_name_or_path"):
        names = [str(adapter["base_model_name_or_path"])]
    relation = front.get("base_model_relation")
    if relation is None:  # as the Hub infers it when a card does not say
        merged = len(names) > 1
        quantized = "quantization_config" in config
        relation = "adapter" if adapter else "merge" if merged else "quantized" if quantized else "finetune"
    if relation not in [r.value for r in Relation]:
        known = ", ".join(r.value for r in Relation)
        problem(at("base_model_relation"), "base_model_relation", f"'{relation}' is not one of {known}")
        return []
    out = []
    for i, name in enumerate(names):
        ref = _hub_ref(links, "models", name)
        if ref.startswith("hf:") and not re.match(EXTERNAL_PATTERN, ref):
            problem(
                at("base_model", i) if len(names) > 1 else at("base_model"),
                "base_model",
                f"'{name}' is not a Hub model id (org/name)",
            )
            continue
        out.append({"id": ref, "relation": relation})
    return out


def _results(front: dict[str, Any], at: Any, problem: Any, has_versions: bool) -> list[dict[str, Any]]:
    """``model-index`` results as evaluations on benchmarks outside the lake: claims, until a
    dataset of the lake reproduces them."""
    out = []
    for m, model in enumerate(_list(front.get("model-index"))):
        for r, result in enumerate(_list(model.get("results") if isinstance(model, dict) else None)):
            where = at("model-index", m, "results", r)
            dataset = result.get("dataset") if isinstance(result, dict) else None
            if not isinstance(dataset, dict) or not dataset.get("type"):
                problem(
                    where, "model-index", "a result needs dataset.type (the Hub dataset it was measured on)"
                )
                continue
            ref = f"hf:{dataset['type']}"
            if not re.match(EXTERNAL_PATTERN, ref):
                problem(where, "model-index", f"dataset type '{dataset['type']}' is not a Hub dataset id")
                continue
            source = result.get("source")
            for metric in _list(result.get("metrics")):
                if not isinstance(metric, dict) or not isinstance(metric.get("value"), int | float):
                    problem(where, "model-index", "a metric needs a type and a numeric value")
                    continue
                ev: dict[str, Any] = {
                    "dataset": ref,
                    "split": slug(str(dataset.get("split") or "")) or NO_SPLIT,
                    "metric": slug(str(metric.get("type") or metric.get("name") or "")) or "score",
                    "value": float(metric["value"]),
                }
                if dataset.get("config"):
                    ev["subset"] = str(dataset["config"])
                if isinstance(source, dict) and re.match(r"^https?://", str(source.get("url", ""))):
                    ev["source"] = {"title": str(source.get("name") or "source"), "url": str(source["url"])}
                out.append(ev)
    if out and not has_versions:
        problem(at("model-index"), "model-index", "results need a released version: no weights were found")
    return out


def _training(card: Card, found: list[Section]) -> dict[str, Any]:
    training: dict[str, Any] = {}
    hyper = _section(found, "hyperparameters")
    params: dict[str, Any] = {}
    for line in (hyper.text if hyper else "").splitlines():
        m = _HYPERPARAMETER.match(line)
        if m:
            params[m.group(1).strip()] = _scalar(m.group(2))
    if params:
        training["hyperparameters"] = params
    procedure = _section(found, "procedure")
    if procedure:
        body = card.body.splitlines()
        # hyper-parameters read into their own field are not kept twice in the procedure's text
        skip = range(hyper.line, hyper.end) if hyper and params else range(0)
        kept = [
            body[n - card.body_line].rstrip()
            for n in range(procedure.line + 1, procedure.end)
            if n not in skip
        ]
        text = "\n".join(kept).strip()
        if text:
            training["procedure"] = _capped(text)
    return training


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text[:200])


def _unfence(text: str) -> str:
    m = re.search(r"```[\w-]*\n(.*?)```", text, re.S)
    return m.group(1).strip() if m else text
