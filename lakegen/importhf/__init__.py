"""``lakegen import hf``: a Hugging Face model folder or Hub repo as a lake manifest.

The card's YAML front matter and sections, ``config.json``, ``adapter_config.json`` and the
weights become ``catalog/models/<id>.yaml``. The card is hostile input like any manifest: its
front matter is read by :mod:`lakegen.safeyaml`, and every problem is one ``path:line: what is
wrong`` line. What a card cannot know (who owns the model in this lake, its risk under the EU AI
Act) is asked for, never invented. The manifest is validated before it is written, atomically,
so a failed import leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakegen import safeyaml
from lakegen.atomicfile import write_atomic
from lakegen.catalog.loader import CATALOG_DIR
from lakegen.errors import Finding, LakeError, format_loc

__all__ = ["NO_SPLIT", "RISKS", "import_hf", "normalise_licence", "read_card"]

from lakegen.importhf.card import (
    _REPO,
    CARD,
    NO_SPLIT,
    RISKS,
    Card,
    _capped,
    _list,
    _section,
    normalise_licence,
    read_card,
    sections,
)
from lakegen.importhf.fields import (
    _bases,
    _framework,
    _intro,
    _licence,
    _model_index_name,
    _model_index_task,
    _results,
    _training,
    _unfence,
)
from lakegen.importhf.hub import Source, _from_hub, _hub_artifact, _hub_links, _hub_ref
from lakegen.model.manifest import HUB, SLUG_PATTERN, Model, slug
from lakegen.model.schema import schema_file
from lakegen.model.schema import write as write_schemas


def import_hf(
    root: Path,
    source: str,
    *,
    entry_id: str | None = None,
    owners: list[str] | None = None,
    risk: str | None = None,
    license: str | None = None,
    version: str = "1.0.0",
    hub_id: str | None = None,
    released: dt.date | None = None,
) -> Path:
    """Write ``catalog/models/<id>.yaml`` for the model at ``source`` (a folder, or ``hf://org/name``).

    ``hub_id`` names the Hub repo a folder was copied from; the manifest then links to it, and a
    later import whose ``base_model`` names that repo refers to this entry, so the lake can verify
    the edge from the weights. ``released`` dates the version (default today); attribution orders
    models by it, so a base imported after its fine-tune needs its own, earlier date.

    Returns:
        The manifest's path.

    Raises:
        LakeError: with every problem found (the card's, the missing answers); nothing is written.
    """
    if source.startswith("hf://"):
        with tempfile.TemporaryDirectory(prefix="lakegen-hf-") as tmp:
            hub = _from_hub(source, Path(tmp))
            return _import(root, hub, entry_id, owners, risk, license, (version, released))
    folder = Path(source)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "no such folder"
        raise LakeError(Finding(source, 1, "", f"{what}; give a Hugging Face model folder or hf://org/name"))
    if hub_id is not None and not re.match(_REPO, hub_id):
        raise LakeError(Finding(hub_id, 1, "", "not a Hub model id: write org/name"))
    return _import(root, Source(folder, link=hub_id), entry_id, owners, risk, license, (version, released))


def _import(
    root: Path,
    src: Source,
    entry_id: str | None,
    owners: list[str] | None,
    risk: str | None,
    license: str | None,
    version: tuple[str, dt.date | None],
) -> Path:
    card_path = src.folder / CARD
    shown = f"hf://{src.repo}/{CARD}" if src.repo else str(card_path)
    card = read_card(card_path, shown) if card_path.is_file() else Card(shown)
    problems: list[Finding] = []
    data, lines = _manifest(root, src, card, problems, entry_id, owners, risk, license, version)
    if problems:
        raise LakeError(problems)
    path = root / CATALOG_DIR / "models" / f"{data['id']}.yaml"
    display = path.relative_to(root).as_posix()
    if path.exists():
        raise LakeError(Finding(display, 1, "", "already exists; give another --id, or edit it"))
    try:
        Model.model_validate(data)
    except ValidationError as e:
        raise LakeError(
            [
                Finding(card.display, lines.get(str(err["loc"][0]), 1), format_loc(err["loc"]), err["msg"])
                for err in e.errors()
            ]
        ) from None
    schema = Path("../" * (len(path.relative_to(root).parts) - 1)) / schema_file("model")
    text = f"# yaml-language-server: $schema={schema.as_posix()}\n" + _dump(data)
    Model.model_validate(safeyaml.parse(text).data)  # what is written reads back as what was checked
    write_atomic(path, text)
    write_schemas(root, missing_only=True)  # a new lake's first manifest: its $schema line must resolve
    return path


def _manifest(
    root: Path,
    src: Source,
    card: Card,
    problems: list[Finding],
    entry_id: str | None,
    owners: list[str] | None,
    risk: str | None,
    licence: str | None,
    version: tuple[str, dt.date | None],
) -> tuple[dict[str, Any], dict[str, int]]:
    """The manifest as data, and the card line each top-level field came from."""
    front, at = card.front, card.line
    lines: dict[str, int] = {}

    def problem(line: int, name: str, message: str) -> None:
        problems.append(Finding(card.display, line, name, message))

    where = f"hf://{src.repo}" if src.repo else str(src.folder)
    config = _json(src.folder / "config.json", f"{where}/config.json", problems)
    adapter = _json(src.folder / "adapter_config.json", f"{where}/adapter_config.json", problems)
    found = sections(card)
    title = next((s for s in found if s.level == 1), None)

    model_id = entry_id or slug((src.repo or src.folder.resolve().name).rsplit("/", 1)[-1])
    if not re.match(SLUG_PATTERN, model_id):
        problem(1, "id", f"'{model_id}' is not a lowercase slug; give --id")

    data: dict[str, Any] = {"kind": "model", "id": model_id}
    data["name"] = (title.title if title else "") or _model_index_name(front) or model_id
    data["description"] = _capped(_intro(card, found))
    if not owners:
        problem(1, "owners", "a card does not say who owns the model in this lake; give --owner @handle")
    data["owners"] = owners or []
    data["license"], data["license_url"] = _licence(front, at, licence, problem)
    lines["license"] = at("license")
    if src.repo or src.link:
        data["links"] = [{"title": "Hugging Face", "url": f"{HUB}/{src.repo or src.link}"}]
    tags = [t for t in (slug(str(t)) for t in _list(front.get("tags"))) if re.match(SLUG_PATTERN, t)]
    data["tags"] = list(dict.fromkeys(tags))
    data["task"] = slug(str(front.get("pipeline_tag") or _model_index_task(front) or "other")) or "other"
    lines["task"] = at("pipeline_tag")
    data["framework"] = _framework(src)
    family = slug(str(config.get("model_type") or adapter.get("peft_type") or "")) or model_id
    arch_config = {k: v for k, v in (adapter or config).items() if not k.startswith("_")}
    data["architecture"] = {"family": family, "config": arch_config}
    data["versions"] = _versions(root, src, version, problems)
    links = _hub_links(root)
    data["base_models"] = _bases(links, front, adapter, config, at, problem)
    lines["base_models"] = at("base_model")
    data["datasets"] = [
        {"id": _hub_ref(links, "datasets", str(d)), "role": "train"} for d in _list(front.get("datasets"))
    ]
    lines["datasets"] = at("datasets")
    data["evaluations"] = _results(front, at, problem, has_versions=bool(data["versions"]))
    lines["evaluations"] = at("model-index")
    for key in ("intended_use", "limitations"):
        section = _section(found, key)
        data[key] = _capped(section.text) if section else ""
        lines[key] = section.line if section else 1
    if risk not in RISKS:
        choices = ", ".join(RISKS)
        problem(1, "risk", f"a card does not classify the model under the EU AI Act; give --risk ({choices})")
    data["risk"] = risk
    data["language"] = [str(x) for x in _list(front.get("language"))]
    lines["language"] = at("language")
    if front.get("library_name"):
        data["library_name"] = slug(str(front["library_name"]))
        lines["library_name"] = at("library_name")
    training = _training(card, found)
    if training:
        data["training"] = training
    cite = _section(found, "citation")
    if cite:
        data["citation"] = _capped(_unfence(cite.text))
        lines["citation"] = cite.line
    return {k: v for k, v in data.items() if v not in (None, [], "") or k in _REQUIRED}, lines


_REQUIRED = {"description", "owners"}


def _json(path: Path, display: str, problems: list[Finding]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        problems.append(Finding(display, e.lineno, "", f"not JSON: {e.msg}"))
        return {}
    except (OSError, ValueError) as e:
        problems.append(Finding(display, 1, "", f"cannot read it: {e}"))
        return {}
    if not isinstance(value, dict):
        problems.append(Finding(display, 1, "", "must be a JSON object"))
        return {}
    return value


def _weights(folder: Path) -> Path | None:
    """What pins the model's weights: an adapter's or a sharded checkpoint's folder, else the file."""
    if (folder / "adapter_config.json").is_file() or any(folder.glob("*.index.json")):
        return folder
    for name in ("model.safetensors", "pytorch_model.bin", "model.onnx"):
        if (folder / name).is_file():
            return folder / name
    return None


def _versions(
    root: Path, src: Source, release: tuple[str, dt.date | None], problems: list[Finding]
) -> list[dict[str, Any]]:
    version, released = release[0], release[1] or dt.date.today()
    if src.repo:
        artifact = _hub_artifact(src)
        if artifact is None:
            return []
        origin = f"hf://{src.repo}@{src.revision}"
    else:
        weights = _weights(src.folder)
        if weights is None:
            return []
        artifact, origin = _local_artifact(root, weights, problems), str(src.folder)
        if artifact is None:
            return []
    return [
        {
            "version": version,
            "released": released,
            "changelog": f"Imported from {origin}.",
            "artifact": artifact,
        }
    ]


def _local_artifact(root: Path, weights: Path, problems: list[Finding]) -> dict[str, Any] | None:
    from lakegen.artifacts.digests import Digests, default_cache_dir
    from lakegen.scaffold import locate_artifact

    manifest = root / CATALOG_DIR / "models" / "_.yaml"
    try:
        main, companions, fmt, uri = locate_artifact(root, manifest, weights.resolve())
    except LakeError as e:
        problems.extend(e.problems)
        return None
    digests = Digests(default_cache_dir(root))
    pinned: dict[str, Any] = {
        "uri": uri,
        "sha256": digests.sha256(main),
        "size": main.stat().st_size,
        "format": fmt,
    }
    if companions:
        pinned["files"] = [
            {
                "path": c.relative_to(main.parent).as_posix(),
                "sha256": digests.sha256(c),
                "size": c.stat().st_size,
            }
            for c in companions
        ]
    return pinned


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line text, so a manifest reads like the card it came from."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
