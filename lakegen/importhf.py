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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakegen import safeyaml
from lakegen.atomicfile import write_atomic
from lakegen.catalog import CATALOG_DIR
from lakegen.errors import LakeError, Problem, format_loc
from lakegen.manifest import EXTERNAL_PATTERN, SLUG_PATTERN, Model, Relation, _licensing
from lakegen.schema import schema_file
from lakegen.schema import write as write_schemas

CARD = "README.md"
HUB = "https://huggingface.co"
RISKS = ("minimal", "limited", "high", "unacceptable")
NO_SPLIT = "unspecified"  # a model-index result need not name its split; an evaluation must
_MAX_TEXT = 20_000
_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$"
_PLACEHOLDER = re.compile(r"^\s*(\[?more information needed\]?|\[?needs more information\]?)\s*$", re.I)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HYPERPARAMETER = re.compile(r"^\s*[-*]\s+`?([A-Za-z][\w .()/-]{0,99}?)`?\s*:\s*(.+?)\s*$")
# The card's section titles that fill manifest fields, matched on lowercase words.
_SECTIONS = {
    "intended_use": ("intended uses", "intended use", "uses", "direct use"),
    "limitations": (
        "limitations",
        "bias, risks, and limitations",
        "risks and limitations",
        "out-of-scope use",
    ),
    "procedure": ("training procedure", "training details", "training"),
    "hyperparameters": ("training hyperparameters", "hyperparameters", "hyper parameters"),
    "citation": ("citation", "bibtex", "citation information"),
}


@dataclass
class Card:
    """A model card: its front matter (with the card line of each key) and its Markdown body."""

    display: str
    front: dict[str, Any] = field(default_factory=dict)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1

    def line(self, *loc: str | int) -> int:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


def read_card(path: Path, display: str) -> Card:
    """Parse a model card; broken front matter raises :class:`LakeError` at its line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise LakeError(Problem(display, 1, "", f"cannot read the card: {e.strerror}")) from None
    except UnicodeDecodeError as e:
        raise LakeError(Problem(display, 1, "", f"not UTF-8 at byte {e.start}")) from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return Card(display, body=text)
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise LakeError(Problem(display, 1, "", "the front matter opened by '---' is never closed"))
    front_text = "".join(lines[1:end])
    try:
        doc = safeyaml.parse(front_text) if front_text.strip() else safeyaml.Document({}, {})
    except safeyaml._Refused as e:  # its line counts from the front matter's first line
        raise LakeError(Problem(display, e.line + 1, "", f"front matter: {e.message}")) from None
    if not isinstance(doc.data, dict):
        raise LakeError(Problem(display, 2, "", "front matter must be a YAML mapping"))
    return Card(
        display,
        front=doc.data,
        lines={loc: n + 1 for loc, n in doc.lines.items()},
        body="".join(lines[end + 1 :]),
        body_line=end + 2,
    )


@dataclass
class Section:
    level: int
    title: str
    line: int  # of its heading, in the card
    text: str
    end: int  # the card line after its last


def sections(card: Card) -> list[Section]:
    """The body's headings, each with its text up to the next heading of the same or a higher level."""
    heads: list[tuple[int, str, int]] = []
    body = card.body.splitlines()
    fenced = False
    for i, line in enumerate(body):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            heads.append((i, m.group(2), len(m.group(1))))
    out = []
    for k, (i, title, level) in enumerate(heads):
        stop = next((j for j, _, lv in heads[k + 1 :] if lv <= level), len(body))
        text = "\n".join(line.rstrip() for line in body[i + 1 : stop]).strip()
        out.append(Section(level, title, card.body_line + i, text, card.body_line + stop))
    return out


def _section(found: list[Section], key: str) -> Section | None:
    names = _SECTIONS[key]
    for section in found:
        title = re.sub(r"[^a-z ,&-]", "", section.title.lower()).strip()
        named = title in names or any(title.startswith(n + " ") for n in names if " " in n)
        if named and section.text and not _PLACEHOLDER.match(section.text):
            return section
    return None


def _capped(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text
    cut = text.rfind("\n\n", 0, _MAX_TEXT - 100)
    return text[: cut if cut > 0 else _MAX_TEXT - 100] + "\n\n(cut here; the card has the rest)"


def normalise_licence(value: str) -> str | None:
    """The SPDX form of a Hub licence id or expression (``apache-2.0`` -> ``Apache-2.0``), or None."""
    info = _licensing().validate(value)
    return None if info.errors else str(info.normalized_expression)


def slug(text: str) -> str:
    """A lowercase slug of ``text`` (may be empty)."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", text.lower())).strip("-._")[:64].strip("-._")


@dataclass
class Source:
    """Where the model is: a folder here, and the Hub repo it came from when it came from one."""

    folder: Path
    repo: str | None = None
    revision: str | None = None
    hub_files: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (sha256, size)
    link: str | None = None  # the Hub repo a local folder is a copy of


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
        raise LakeError(Problem(source, 1, "", f"{what}; give a Hugging Face model folder or hf://org/name"))
    if hub_id is not None and not re.match(_REPO, hub_id):
        raise LakeError(Problem(hub_id, 1, "", "not a Hub model id: write org/name"))
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
    problems: list[Problem] = []
    data, lines = _manifest(root, src, card, problems, entry_id, owners, risk, license, version)
    if problems:
        raise LakeError(problems)
    path = root / CATALOG_DIR / "models" / f"{data['id']}.yaml"
    display = path.relative_to(root).as_posix()
    if path.exists():
        raise LakeError(Problem(display, 1, "", "already exists; give another --id, or edit it"))
    try:
        Model.model_validate(data)
    except ValidationError as e:
        raise LakeError(
            [
                Problem(card.display, lines.get(str(err["loc"][0]), 1), format_loc(err["loc"]), err["msg"])
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
    problems: list[Problem],
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
        problems.append(Problem(card.display, line, name, message))

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


def _json(path: Path, display: str, problems: list[Problem]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        problems.append(Problem(display, e.lineno, "", f"not JSON: {e.msg}"))
        return {}
    except (OSError, ValueError) as e:
        problems.append(Problem(display, 1, "", f"cannot read it: {e}"))
        return {}
    if not isinstance(value, dict):
        problems.append(Problem(display, 1, "", "must be a JSON object"))
        return {}
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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


def _hub_links(root: Path) -> dict[str, str]:
    """Hub URL -> the id of the lake entry (model or dataset) whose links name it."""
    out: dict[str, str] = {}
    for kind in ("models", "datasets"):
        for manifest in sorted((root / CATALOG_DIR / kind).glob("**/*.yaml")):
            try:
                data = safeyaml.load(manifest, str(manifest)).data
            except LakeError:
                continue  # `lakegen validate` reports it; here it only cannot be referred to
            links = data.get("links") if isinstance(data, dict) else None
            for link in _list(links):
                if isinstance(link, dict) and str(link.get("url", "")).startswith(HUB + "/"):
                    out.setdefault(str(link["url"]).rstrip("/"), str(data.get("id")))
    return out


def _hub_ref(links: dict[str, str], kind: str, repo: str) -> str:
    """The lake entry that links to ``repo`` on the Hub, else the external ``hf:repo``."""
    return links.get(f"{HUB}/{'datasets/' if kind == 'datasets' else ''}{repo}") or f"hf:{repo}"


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


def _weights(folder: Path) -> Path | None:
    """What pins the model's weights: an adapter's or a sharded checkpoint's folder, else the file."""
    if (folder / "adapter_config.json").is_file() or any(folder.glob("*.index.json")):
        return folder
    for name in ("model.safetensors", "pytorch_model.bin", "model.onnx"):
        if (folder / name).is_file():
            return folder / name
    return None


def _versions(
    root: Path, src: Source, release: tuple[str, dt.date | None], problems: list[Problem]
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


def _local_artifact(root: Path, weights: Path, problems: list[Problem]) -> dict[str, Any] | None:
    from lakegen.digests import Digests, default_cache_dir
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


def _hub_artifact(src: Source) -> dict[str, Any] | None:
    """The weights on the Hub, pinned by the sha256 the Hub records; unchecked until fetched."""
    files = src.hub_files
    base = f"hf://{src.repo}@{src.revision}"
    if "adapter_model.safetensors" in files and "adapter_config.json" in files:
        main, companions = "adapter_model.safetensors", ["adapter_config.json"]
    else:
        index = sorted(n for n in files if n.endswith(".safetensors.index.json"))
        if index:
            shards = json.loads((src.folder / index[0]).read_bytes()).get("weight_map", {}).values()
            main, companions = index[0], sorted(set(shards))
        else:
            main = next((n for n in ("model.safetensors", "pytorch_model.bin") if n in files), "")
            companions = []
    if not main or any(c not in files for c in companions):
        return None
    sha, size = files[main]
    fmt = "pytorch" if main.endswith(".bin") else "safetensors"
    pinned: dict[str, Any] = {"uri": f"{base}/{main}", "sha256": sha, "size": size, "format": fmt}
    if companions:
        pinned["files"] = [{"path": c, "sha256": files[c][0], "size": files[c][1]} for c in companions]
    return pinned


def _from_hub(source: str, into: Path) -> Source:
    """Fetch a Hub repo's card and configs (never its weights) into ``into``; ``HF_ENDPOINT``
    picks the hub."""
    spec = source.removeprefix("hf://")
    repo, _, revision = spec.partition("@")
    if not re.match(_REPO, repo):
        raise LakeError(Problem(source, 1, "", "not a Hub model id: write hf://org/name[@revision]"))
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        raise LakeError(Problem(source, 1, "", "needs huggingface_hub: pip install 'lakegen[hf]'")) from None
    try:
        info = HfApi().model_info(repo, revision=revision or None, files_metadata=True)
        files: dict[str, tuple[str, int]] = {}
        small = []
        for sibling in info.siblings or []:
            lfs = sibling.lfs
            if lfs is not None:
                files[sibling.rfilename] = (lfs.sha256, lfs.size)
            else:
                small.append(sibling.rfilename)
        wanted = [
            n for n in small if n in (CARD, "config.json", "adapter_config.json") or n.endswith(".index.json")
        ]
        for name in wanted:
            hf_hub_download(repo, name, revision=info.sha, local_dir=into)
        for name in wanted:  # small files are stored in git, not LFS: hash what was fetched
            from lakegen.digests import sha256_file

            files[name] = (sha256_file(into / name), (into / name).stat().st_size)
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise LakeError(Problem(source, 1, "", f"not on the hub: {str(e).splitlines()[0]}")) from None
    except (HfHubHTTPError, OSError) as e:
        raise LakeError(
            Problem(source, 1, "", f"cannot read from the hub: {str(e).splitlines()[0]}")
        ) from None
    return Source(into, repo=repo, revision=info.sha, hub_files=files)


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line text, so a manifest reads like the card it came from."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
