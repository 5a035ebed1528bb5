"""An incremental compile (caches of earlier compiles in ``.lakegen/``) equals a cold compile of the
same tree, after each kind of change; and a no-op compile reuses the saved index."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from gitlake import GitLake
from safetensors.numpy import load_file, save

from lakegen.attribution import recover
from lakegen.compile import compile_or_reuse
from lakegen.compile.store import save as save_index
from lakegen.lineage import stage

DEMO = Path(__file__).resolve().parents[1] / "catalog"


def demo_lake(tmp_path: Path, commit: bool = True) -> GitLake:
    """A git lake holding the demo catalog, committed (or left in the working tree)."""
    lake = GitLake(tmp_path / "lake", owners=None)
    shutil.copytree(
        DEMO, lake.root / "catalog", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    if commit:
        lake.git("add", "-A")
        lake.git("commit", "-q", "-m", "Demo lake")
    return lake


def dumped(root: Path, **options: Any) -> tuple[dict[str, Any], bool]:
    index, reused = compile_or_reuse(root, **options)
    save_index(index, root)
    return index.model_dump(mode="json"), reused


def cold(root: Path, work: Path) -> dict[str, Any]:
    """A compile of a copy of ``root``'s tree (git history included) with no cache at all."""
    copy = work / f"cold-{len(list(work.iterdir()))}"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".lakegen"))
    return dumped(copy)[0]


def nudged(src: Path, dst: Path, seed: int) -> bytes:
    tensors = load_file(src)
    rng = np.random.default_rng(seed)
    out = {k: (v + 1e-4 * v.std() * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in tensors.items()}
    blob = save(out)
    dst.write_bytes(blob)
    return blob


def _not_called(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("attribution ran again though nothing it reads changed")


@pytest.fixture
def partitioned(monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo lake is small; attribute it family by family, as a large lake is, so the families'
    # memo is exercised too.
    monkeypatch.setattr(recover, "PARTITION_FROM", 2)


def test_incremental_compile_equals_cold_compile(tmp_path: Path, partitioned: None) -> None:
    lake = demo_lake(tmp_path)
    root, work = lake.root, tmp_path / "work"
    work.mkdir()
    first, reused = dumped(root)
    assert not reused
    again, reused = dumped(root)
    assert reused and again == first  # nothing changed: the saved index, as it was
    cache = root / ".lakegen/cache"
    assert {"lineage.json", "manifests.json", "history.json"} <= {p.name for p in cache.iterdir()}
    models = root / "catalog/models"

    # a manifest edit that moves every line below it
    path = models / "digits-mlp-ft-small.yaml"
    text = path.read_text()
    path.write_text("# edited\n" + text.replace("\nname: ", "\nname: Edited ", 1))
    edited, reused = dumped(root)
    assert not reused and edited != first
    assert edited == cold(root, work)

    # a description edit that moves no line: attribution's additions are read back, not recomputed
    described = models / "digits-mlp-base.yaml"
    described.write_text(
        described.read_text().replace(
            "The root of the digits family", "The described root of the digits family", 1
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "attribute_catalog", _not_called)
        described_index, _ = dumped(root)
    assert described_index != edited
    assert described_index == cold(root, work)

    # an added model: a fine-tune of ft-small, its weights nudged, committed (HEAD moves)
    data = yaml.safe_load(path.read_text())
    data["id"], data["name"] = "digits-mlp-ft-added", "Added"
    data["base_models"] = [{"id": "digits-mlp-ft-small", "version": "1.0.0", "relation": "finetune"}]
    artifact = data["versions"][0]["artifact"]
    blob = nudged(
        models / artifact["uri"], root / "catalog/artifacts/models/digits-mlp-ft-added.safetensors", 1
    )
    artifact["uri"] = "../artifacts/models/digits-mlp-ft-added.safetensors"
    artifact["sha256"], artifact["size"] = hashlib.sha256(blob).hexdigest(), len(blob)
    (models / "digits-mlp-ft-added.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "Add a model")
    added, _ = dumped(root)
    assert "digits-mlp-ft-added" in {e["id"] for e in added["entries"]}
    assert added == cold(root, work)

    # a removed model
    (models / "digits-mlp-pruned.yaml").unlink()
    removed, _ = dumped(root)
    assert "digits-mlp-pruned" not in {e["id"] for e in removed["entries"]}
    assert removed == cold(root, work)

    # a changed artifact: other bytes under the same manifest
    weights = root / "catalog/artifacts/models/digits-mlp-alt-ft-1.0.0.safetensors"
    nudged(weights, weights, 2)
    changed, _ = dumped(root)
    assert changed != removed
    assert changed == cold(root, work)

    # a changed policies.yaml
    policies = root / "catalog/policies.yaml"
    policies.write_text(policies.read_text().replace("documentation: error", "documentation: warn"))
    relaxed, _ = dumped(root)
    assert relaxed != changed
    assert relaxed == cold(root, work)


def test_reuse_needs_the_same_options(tmp_path: Path) -> None:
    lake = demo_lake(tmp_path, commit=False)
    verified, _ = dumped(lake.root)
    unverified, reused = dumped(lake.root, verify_artifacts=False)
    assert not reused  # an index compiled without checking artifacts is another index
    assert {a["status"] for a in unverified["artifacts"]} != {a["status"] for a in verified["artifacts"]}
    assert dumped(lake.root, verify_artifacts=False)[1]


def test_an_index_compiled_by_other_lakegen_code_is_not_reused(tmp_path: Path) -> None:
    from lakegen.compile.inputs import INPUTS_FILE
    from lakegen.compile.store import saved

    lake = demo_lake(tmp_path)  # committed: generated_at is the commit's time, not the compile's clock
    first, _ = dumped(lake.root)
    assert dumped(lake.root)[1] and saved(lake.root) is not None
    record = lake.root / INPUTS_FILE
    data = json.loads(record.read_text())
    data["index"]["code"] = "0" * 64  # what lakegen's code before an edit of it recorded
    record.write_text(json.dumps(data))
    assert saved(lake.root) is None
    again, reused = dumped(lake.root)
    assert not reused and again == first


def test_a_check_reads_nothing_from_a_cache_the_pull_request_commits(tmp_path: Path) -> None:
    from lakegen.catalog.parsecache import FILE, FORMAT, _encoded
    from lakegen.check.report import run_check
    from lakegen.safeyaml import parse

    lake = demo_lake(tmp_path)
    lake.git("checkout", "-q", "-b", "pr")
    path = lake.root / "catalog/models/digits-mlp-ft-small.yaml"
    before = path.read_text()
    after = before.replace("\nname: ", "\nname: Renamed ", 1)
    path.write_text(after)
    # the planted cache says the new text parses as the old one
    old = parse(before)
    forged = _encoded(old)
    planted = lake.root / ".lakegen/cache" / FILE
    planted.parent.mkdir(parents=True)
    planted.write_text(
        json.dumps({"format": FORMAT, "docs": {hashlib.sha256(after.encode()).hexdigest(): forged}})
    )
    lake.git("add", "-f", "-A")
    lake.git("commit", "-q", "-m", "Rename, and plant a cache")
    report = run_check(lake.root, "main", run_evaluations=False)
    assert report.changes is not None
    change = report.changes.of("digits-mlp-ft-small")
    assert change is not None and "name" in {f.field for f in change.fields}
    assert report.catalog.get("digits-mlp-ft-small").name.startswith("Renamed ")  # type: ignore[union-attr]


def test_a_site_built_from_the_same_index_is_not_built_again(tmp_path: Path) -> None:
    from lakegen.site import build_site

    lake = demo_lake(tmp_path, commit=False)
    index, _ = compile_or_reuse(lake.root)
    first = build_site(lake.root, index, pagefind=False)
    assert first.stats["rendered"] > 0
    home = first.site / "index.html"
    inode = home.stat().st_ino
    again = build_site(lake.root, index, pagefind=False)
    assert again.stats == {"rendered": 0, "reused": first.pages, "unchanged": True}
    assert again.pages == first.pages and home.stat().st_ino == inode  # the very same files
    # built another way, it is built again
    other = build_site(lake.root, index, pagefind=False, stamp=False)
    assert "unchanged" not in other.stats
    # and from another compile of the same lake (another generated_at) too
    index.generated_at = "2000-01-01T00:00:00+00:00"
    newer = build_site(lake.root, index, pagefind=False)
    assert "unchanged" not in newer.stats
    assert "2000-01-01" in (newer.site / "index.html").read_text()


def test_a_cached_parse_is_the_parse(tmp_path: Path) -> None:
    from lakegen.catalog.parsecache import ParseCache
    from lakegen.safeyaml import parse

    text = (
        "id: x\nreleased: 2026-01-02\nat: 2026-01-02T03:04:05+00:00\n"
        "versions:\n  - {version: 1.0.0, released: 2025-12-31, n: 3, f: .inf, ok: true, none: null}\n"
        "text: '2026-01-02'\n"
    )
    fresh = parse(text)
    first = ParseCache(tmp_path)
    assert first.parse(text) == fresh
    first.save()
    again = ParseCache(tmp_path).parse(text)  # from the file now
    assert again == fresh and again.data["text"] == "2026-01-02"  # a quoted date stays text


def test_a_no_op_build_reads_no_index(tmp_path: Path) -> None:
    from lakegen.compile.store import INDEX_FILE, saved
    from lakegen.site import build_site

    lake = demo_lake(tmp_path, commit=False)
    root = lake.root
    index, _ = compile_or_reuse(root)
    save_index(index, root)
    built = build_site(root, index, pagefind=False)
    kept = saved(root)
    assert kept is not None and (kept.digest, kept.generated_at) == (index.inputs.digest, index.generated_at)
    text = (root / INDEX_FILE).read_bytes()
    published = built.site / "api" / "lake.json"  # the saved index, linked rather than dumped again
    assert published.read_bytes() == text and json.loads(text) == index.model_dump(mode="json")
    (root / INDEX_FILE).write_text("not read")  # what identifies it comes from its inputs record
    again = build_site(root, kept, pagefind=False)
    assert again.stats == {"rendered": 0, "reused": built.pages, "unchanged": True}
    assert kept.load() is None  # no longer the index the record describes
    (root / INDEX_FILE).write_bytes(text)
    loaded = kept.load()
    assert loaded is not None and loaded.model_dump() == index.model_dump()
    manifest = root / "catalog/models/digits-mlp-base.yaml"
    manifest.write_text(manifest.read_text().replace("The root of", "The first of", 1))
    assert saved(root) is None  # the working tree moved on


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rebuild_rewrites_only_the_exports_a_change_reaches(tmp_path: Path) -> None:
    from lakegen.site import build_site

    lake = demo_lake(tmp_path)
    root = lake.root
    first = build_site(root, compile_or_reuse(root)[0], pagefind=False)
    # the first site's files, kept alive, so that "the same file" below cannot be a reused inode
    kept = tmp_path / "kept"
    before = _files(first.site / "api" / "exports")
    for name, path in before.items():
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        (kept / name).hardlink_to(path)
    manifest = root / "catalog/models/digits-mlp-base.yaml"
    manifest.write_text(manifest.read_text().replace("The root of", "The first of", 1))
    index, _ = compile_or_reuse(root)
    again = build_site(root, index, pagefind=False)
    cold_site = build_site(root, index, site_dir=tmp_path / "cold", reuse=False, pagefind=False)
    after, fresh = _files(again.site / "api" / "exports"), _files(cold_site.site / "api" / "exports")
    assert after.keys() == fresh.keys() == before.keys()
    assert {n: p.read_bytes() for n, p in after.items()} == {n: p.read_bytes() for n, p in fresh.items()}
    rewritten = {n for n, p in after.items() if not p.samefile(kept / n)}
    # the edited model's documents, and its children's model cards (they name it as their base)
    children = {e.child for e in index.edges if e.parent == "digits-mlp-base" and e.declared}
    assert children
    wanted = {"hf-card/digits-mlp-base/README.md", "ai-act/digits-mlp-base.ai-act.md"}
    wanted |= {f"hf-card/{c}/README.md" for c in children}
    wanted |= {"cyclonedx/lake.cdx.json", "spdx/lake.spdx.json"}  # one document for the whole lake
    assert rewritten == wanted


def test_an_input_record_is_trusted_only_for_an_unchanged_settled_file(tmp_path: Path) -> None:
    from lakegen.artifacts.digests import RACY_NS, sha256_file
    from lakegen.compile.inputs import Inputs, Recorded

    (tmp_path / "catalog").mkdir()
    file = tmp_path / "catalog" / "a.bin"
    file.write_bytes(b"first")
    taken = Inputs.take(tmp_path, ["catalog"])
    record = taken.files["catalog/a.bin"]
    assert record[-1] == sha256_file(file)
    record[-1] = "0" * 64  # what the record says, to tell a trusted digest from a read one
    taken.taken_ns = record[1] + RACY_NS  # recorded once the file had settled
    assert Recorded(tmp_path, taken).sha256(file) == "0" * 64
    # the fingerprint cache's question (is this file's digest known?) is answered the same way
    assert Recorded(tmp_path, taken).known(file) == "0" * 64
    taken.taken_ns = record[1] + RACY_NS - 1  # recorded while a same-tick write could go unseen
    assert Recorded(tmp_path, taken).sha256(file) == sha256_file(file)
    assert Recorded(tmp_path, taken).known(file) is None  # no memo of it either: not known
    taken.taken_ns = record[1] + RACY_NS
    file.write_bytes(b"another")  # a new stat record: read again
    assert Recorded(tmp_path, taken).sha256(file) == sha256_file(file) != "0" * 64


def test_the_index_is_as_of_the_last_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from lakegen.compile.inputs import lake_time

    lake = GitLake(tmp_path / "lake", owners=None)
    (lake.root / "catalog").mkdir(exist_ok=True)
    (lake.root / "catalog" / "x.txt").write_text("x")
    lake.git("add", "-A")
    lake.git("commit", "-q", "-m", "x", env={"GIT_COMMITTER_DATE": "2025-03-04T05:06:07+02:00"})
    assert lake_time(lake.root) == "2025-03-04T03:06:07+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(dt.datetime(2024, 1, 2, tzinfo=dt.UTC).timestamp())))
    assert lake_time(lake.root) == "2024-01-02T00:00:00+00:00"


def test_a_rebuild_renders_only_the_listing_pages_a_change_reaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.site import build_site, pages

    monkeypatch.setattr(pages, "LIST_PAGE", 2)  # the demo's models over several listing pages
    lake = demo_lake(tmp_path)
    root = lake.root
    first = build_site(root, compile_or_reuse(root)[0], pagefind=False)
    listed = {n: p for n, p in _files(first.site).items() if n.startswith("models-")}
    assert len(listed) >= 3
    kept = tmp_path / "kept"
    for name, path in listed.items():
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        (kept / name).hardlink_to(path)
    manifest = root / "catalog/models/digits-mlp-base.yaml"
    text = manifest.read_text()
    assert "\nname: " in text
    manifest.write_text(text.replace("\nname: ", "\nname: Renamed ", 1))  # a listing shows names
    index, _ = compile_or_reuse(root)
    rendered: list[str] = []
    render = pages.Renderer.render

    def counted(self: pages.Renderer, template: str, src_uri: str, *args: Any, **kwargs: Any) -> pages.Page:
        rendered.append(src_uri)
        return render(self, template, src_uri, *args, **kwargs)

    monkeypatch.setattr(pages.Renderer, "render", counted)
    again = build_site(root, index, pagefind=False)
    monkeypatch.undo()
    monkeypatch.setattr(pages, "LIST_PAGE", 2)
    cold_site = build_site(root, index, site_dir=tmp_path / "cold", reuse=False, pagefind=False)
    after, fresh = _files(again.site), _files(cold_site.site)
    assert after.keys() == fresh.keys()
    assert {n: p.read_bytes() for n, p in after.items()} == {n: p.read_bytes() for n, p in fresh.items()}
    rewritten = {n for n in listed if not after[n].samefile(kept / n)}
    holding = {n for n in listed if "digits-mlp-base.html" in after[n].read_text()}
    assert rewritten == holding and len(holding) == 1  # the page listing the renamed model, only
    # rendered at all: that page only (the first, in the navigation, goes to mkdocs as a stub, and
    # its file is kept)
    listings = {n for n in rendered if n == "models.md" or n.startswith("models-")}
    assert listings == {n.replace(".html", ".md") for n in holding} != {"models.md"}


def _compiled_in_full(
    root: Path, monkeypatch: pytest.MonkeyPatch, attributes: bool = False
) -> tuple[dict[str, Any], bool]:
    """The compile's index (saved) and whether it loaded the whole catalog rather than starting from
    the saved index (:mod:`lakegen.compile.delta`); attribution may run only when ``attributes``."""
    import lakegen.compile

    calls: list[Any] = []
    load = lakegen.compile.load_catalog

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return load(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(lakegen.compile, "load_catalog", counted)
        if not attributes:
            patch.setattr(stage, "attribute_catalog", _not_called)
        index, reused = dumped(root)
    assert not reused
    return index, bool(calls)


def _as_cold(root: Path, work: Path) -> bool:
    """Whether ``root``'s saved index equals, byte for byte, the one the latest :func:`cold` saved."""
    from lakegen.compile.store import INDEX_FILE

    latest = max(work.iterdir(), key=lambda p: int(p.name.split("-")[1]))
    return (root / INDEX_FILE).read_bytes() == (latest / INDEX_FILE).read_bytes()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_manifest_edit_redoes_only_the_entries_it_reaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.compile import inputs

    lake = demo_lake(tmp_path)
    root, work = lake.root, tmp_path / "work"
    work.mkdir()
    dumped(root)
    models, base = root / "catalog/models", root / "catalog/models/digits-mlp-base.yaml"

    _edit(base, "The root of the digits family", "The described root of the digits family")
    described, full = _compiled_in_full(root, monkeypatch)
    assert not full and described == cold(root, work) and _as_cold(root, work)

    # what a base says reaches its descendants: a riskier base holds each of them to a justification;
    # found here by reading every manifest rather than only those whose bytes name the base
    _edit(base, "risk: minimal", "risk: high")
    with monkeypatch.context() as wide:
        wide.setattr("lakegen.compile.delta._Up.WIDE", 0)
        risky, full = _compiled_in_full(root, monkeypatch)
    assert not full and risky == cold(root, work) and _as_cold(root, work)
    justify = {f["entry"] for f in risky["findings"] if f["rule"] == "risk-justification"}
    assert "digits-mlp-ft-small" in justify and not {f["entry"] for f in described["findings"]} & justify

    # a dataset's licence reaches every model trained on it, and their descendants
    _edit(root / "catalog/datasets/digits.yaml", "license: CC-BY-4.0", "license: CC-BY-NC-4.0")
    licensed, full = _compiled_in_full(root, monkeypatch)
    assert not full and licensed == cold(root, work) and _as_cold(root, work)
    assert licensed["findings"] != risky["findings"]

    # lines moved, a documentation finding appears, an evaluation's claim changes
    small = models / "digits-mlp-ft-small.yaml"
    text = small.read_text()
    start = text.index("intended_use: |")
    end = text.index("\nlimitations:")
    small.write_text(text[:start] + "intended_use: ''" + text[end:])
    undocumented, _ = _compiled_in_full(root, monkeypatch)
    assert undocumented == cold(root, work)
    assert "digits-mlp-ft-small" in {
        f["entry"] for f in undocumented["findings"] if f["rule"] == "documentation"
    }
    claim = next(f for f in undocumented["results"] if f["model"] == "digits-mlp-pruned")
    _edit(models / "digits-mlp-pruned.yaml", f"value: {claim['claimed']}", "value: 0.5")
    claimed, full = _compiled_in_full(root, monkeypatch)
    assert not full and claimed == cold(root, work) and _as_cold(root, work)
    assert claimed["results"] != undocumented["results"]

    # what attribution reads (owners), or other code, is compiled in full
    _edit(base, "- '@ada'", "- acme/data")
    owned, full = _compiled_in_full(root, monkeypatch, attributes=True)
    assert full and owned == cold(root, work)
    _edit(base, "The described root", "The root")
    monkeypatch.setattr(inputs, "code_digest", lambda: "another lakegen")
    monkeypatch.setattr("lakegen.compile.delta.code_digest", inputs.code_digest)
    recompiled, full = _compiled_in_full(root, monkeypatch)
    assert full and recompiled == cold(root, work)


def test_a_site_rebuilt_from_a_delta_compile_digests_only_what_changed_and_equals_a_cold_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.compile.delta import changed_since
    from lakegen.site import build_site, views

    lake = demo_lake(tmp_path)
    root = lake.root
    index, _ = compile_or_reuse(root)
    save_index(index, root)
    build_site(root, index, pagefind=False)
    documented: list[set[str] | None] = []
    documents = views.entry_documents

    def counted(index: Any, only: Any = None) -> dict[str, bytes]:
        documented.append(None if only is None else set(only))
        return documents(index, only)

    monkeypatch.setattr(views, "entry_documents", counted)
    base = root / "catalog/models/digits-mlp-base.yaml"
    edits = [
        (base, "The root of the digits family", "The described root of the digits family"),
        (base, "risk: minimal", "risk: high"),  # reaches every descendant's findings
        (root / "catalog/datasets/digits.yaml", "license: CC-BY-4.0", "license: CC-BY-NC-4.0"),
    ]
    for n, (path, old, new) in enumerate(edits):
        _edit(path, old, new)
        documented.clear()
        index, reused = compile_or_reuse(root)
        save_index(index, root)
        found = changed_since(index)
        assert not reused and found is not None
        changed = found[1]
        assert changed and len(changed) < len(index.entries)
        patched = build_site(root, index, pagefind=False)
        # the documents of the entries the compile changed, only (and no entry's the view did not keep)
        assert documented and all(d is not None and d <= changed for d in documented)
        fresh = build_site(root, index, site_dir=tmp_path / f"cold-{n}", reuse=False, pagefind=False)
        after, cold_files = _files(patched.site), _files(fresh.site)
        assert after.keys() == cold_files.keys()
        assert {k: p.read_bytes() for k, p in after.items()} == {
            k: p.read_bytes() for k, p in cold_files.items()
        }
    # a site not built from the index the compile started from digests every entry again
    _edit(base, "The described root", "The root")
    index, _ = compile_or_reuse(root)
    save_index(index, root)
    assert changed_since(index) is not None
    record = json.loads((root / "site" / ".lakegen-pages.json").read_text())
    record["index"] = "other" + record["index"]
    (root / "site" / ".lakegen-pages.json").write_text(json.dumps(record))
    documented.clear()
    patched = build_site(root, index, pagefind=False)
    assert None in documented
    fresh = build_site(root, index, site_dir=tmp_path / "cold-last", reuse=False, pagefind=False)
    after, cold_files = _files(patched.site), _files(fresh.site)
    assert {k: p.read_bytes() for k, p in after.items()} == {k: p.read_bytes() for k, p in cold_files.items()}


def test_a_one_change_site_rebuild_decodes_each_unchanged_models_manifest_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools
    from collections import Counter

    import lakegen.model.index as model_index
    from lakegen.compile.delta import changed_since
    from lakegen.site import build_site

    root = demo_lake(tmp_path).root
    index, _ = compile_or_reuse(root)
    save_index(index, root)
    build_site(root, index, pagefind=False)
    _edit(root / "catalog/models/digits-mlp-base.yaml", "The root of the digits family", "The described root")
    index, _ = compile_or_reuse(root)
    save_index(index, root)
    found = changed_since(index)
    assert found is not None
    # a cache of two manifests: a lake far larger than the real one's, where each pass over every
    # entry decodes each manifest again
    ids = {e.packed: e.id for e in index.entries}
    reads: Counter[str] = Counter()

    def decode(packed: bytes) -> Any:
        reads[ids.get(packed, "")] += 1
        return json.loads(packed)

    monkeypatch.setattr(model_index, "_unpacked", functools.lru_cache(maxsize=2)(decode))
    patched = build_site(root, index, pagefind=False)
    monkeypatch.undo()
    # the pages, the first page's records and both whole-lake exports take what they need of an
    # unchanged model from the one pass that reads it, or from what the previous build kept
    models = [e.id for e in index.entries if e.kind == "model"]
    assert patched.stats["rendered"] < len(models)
    assert {m: reads[m] for m in models if m not in found[1]} == {m: 1 for m in models if m not in found[1]}
    fresh = build_site(root, index, site_dir=tmp_path / "cold", reuse=False, pagefind=False)
    after, cold_files = _files(patched.site), _files(fresh.site)
    assert {k: p.read_bytes() for k, p in after.items()} == {k: p.read_bytes() for k, p in cold_files.items()}
