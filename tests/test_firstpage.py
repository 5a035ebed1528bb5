"""The first page's own search index (lakegen/site/firstpage.py): what each key lists, and its size."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from site_lake import demo_index, family_index

from lakegen.model.index import LakeIndex
from lakegen.search import entry_facets
from lakegen.site import firstpage, firstpatch
from lakegen.site.views import LakeView


def records(index: LakeIndex) -> list[firstpage.Record]:
    view, facets = LakeView(index), entry_facets(index)
    return [
        firstpage.record_of(f"{e.id}.html", e.id, e.kind, e.manifest, facets[e.id])
        for e in index.entries
        if view.path(e.id)
    ]


def unpack(files: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, tuple[int, list[list[Any]], Any]]]:
    """The meta file, and every key's (count, records listed, counts) across the buckets."""
    meta = json.loads(gzip.decompress(files["meta.json.gz"]))
    keys = {}
    for b in range(meta["buckets"]):
        bucket = json.loads(gzip.decompress(files[f"{b}.json.gz"]))
        for key, (count, listed, counts) in bucket["keys"].items():
            assert firstpage.bucket_of(key, meta["buckets"]) == b  # where the search script looks
            keys[key] = (count, [bucket["records"][i] for i in listed], counts)
    return meta, keys


def tally(found: list[firstpage.Record]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in found:
        for label, values in r.facets:
            for v in values:
                out[label][v] += 1
    return out


def test_each_key_lists_its_best_entries_as_a_full_ranking_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firstpage, "TOP", 5)  # lists longer than their top, as a large lake's are
    family = records(family_index(30))
    rows = family + [r for r in records(demo_index()) if r.id not in {f.id for f in family}]
    meta, keys = unpack(firstpage.build(rows))
    assert meta["entries"] == len(rows) and meta["top"] == 5
    assert meta["filters"] == tally(rows)
    words = {w for r in rows for f in r.fields for w in firstpage.tokens(f)}
    prefixes = {w[:n] for w in words for n in range(firstpage.PREFIX, len(w) + 1)}
    truncated = 0
    for word in words | prefixes:
        matching = [r for r in rows if firstpage.score(word, r) > 0]
        ranked = sorted(matching, key=lambda r: (-firstpage.score(word, r), r.kind, r.id))
        count, listed, counts = keys[firstpage.key_of(word)]
        assert count == len(matching), word
        assert listed == [r.row() for r in ranked[:5]], word
        assert counts == (tally(matching) if len(matching) > 5 else None), word
        truncated += len(matching) > 5
    assert truncated > 10  # the test covers long lists, not only short ones
    for label, values in meta["filters"].items():
        for value, n in values.items():
            count, listed, _ = keys[firstpage.filter_key(label, value)]
            having = sorted((r for r in rows if value in dict(r.facets).get(label, ())), key=firstpage.order)
            assert count == n == len(having)
            assert listed == [r.row() for r in having[:5]]
    assert set(keys) == {firstpage.key_of(w) for w in words | prefixes} | {
        firstpage.filter_key(label, v) for label, vs in meta["filters"].items() for v in vs
    }


def test_a_word_shorter_than_a_prefix_matches_whole_words_only() -> None:
    [record] = [r for r in records(family_index(2)) if r.id == "family-base-model"]
    assert firstpage.score("family", record) == 2 * 8  # a whole word of the id
    assert firstpage.score("fam", record) == 8  # a word beginning
    assert firstpage.score("fa", record) == 0


def test_the_bucket_hash_is_fnv1a_as_the_search_script_computes_it() -> None:
    # FNV-1a's published test vectors (32 bits): the script's Math.imul loop gives the same
    assert firstpage.bucket_of("", 1 << 32) == 0x811C9DC5
    assert firstpage.bucket_of("a", 1 << 32) == 0xE40C292C
    assert firstpage.bucket_of("foobar", 1 << 32) == 0xBF9CF968


def test_the_same_lake_gives_the_same_bytes() -> None:
    rows = records(demo_index())
    assert firstpage.build(rows) == firstpage.build(list(reversed(rows)))
    assert firstpage.Index(rows).digest == firstpage.Index(list(reversed(rows))).digest
    changed = [rows[0], *rows[2:]]
    assert firstpage.Index(changed).digest != firstpage.Index(rows).digest


def test_what_a_query_reads_stays_bounded_as_the_lake_grows() -> None:
    """A bucket (what a query reads per word) lists at most about BUCKET_REFS records however
    large the lake: the number of buckets grows instead; the meta file grows with the filter
    values, not the entries."""
    metas = []
    for n in (200, 1600):
        files = firstpage.build(records(family_index(n)))
        files.pop(firstpage.STATE)  # not read by a query
        buckets = [json.loads(gzip.decompress(d)) for name, d in files.items() if name != "meta.json.gz"]
        listed = sorted(sum(len(v[1]) for v in b["keys"].values()) for b in buckets)
        assert listed[len(listed) // 2] <= firstpage.BUCKET_REFS * 1.5
        assert listed[-1] <= firstpage.BUCKET_REFS * 3
        assert max(len(d) for d in files.values()) < 40_000
        metas.append(len(files["meta.json.gz"]))
    assert metas[1] < 1.2 * metas[0]


def _edited(rows: list[firstpage.Record], rng: random.Random) -> list[firstpage.Record]:
    """``rows`` with a few records changed the ways an edit changes them: a new description
    (new words, words gone), a name, tags, and filter values swapped with another record's."""
    out = list(rows)
    for _ in range(rng.randint(1, 3)):
        i, other = rng.randrange(len(out)), rng.choice(rows)
        r = out[i]
        how = rng.choice(["description", "name", "tags", "facets"])
        if how == "description":
            text = " ".join(
                rng.choice(["zebra", "quokka", "model", "vision", "tiny", r.id]) for _ in range(6)
            )
            fields = (*r.fields[:5], text.lower())
            out[i] = dataclasses.replace(r, description=text, fields=fields)
        elif how == "name":
            out[i] = dataclasses.replace(
                r, title="Renamed " + r.title, fields=(r.fields[0], "renamed", *r.fields[2:])
            )
        elif how == "tags":
            out[i] = dataclasses.replace(r, fields=(*r.fields[:2], other.fields[2] + " extra", *r.fields[3:]))
        else:
            out[i] = dataclasses.replace(r, facets=other.facets)
    return out


def _write(tmp: Path, name: str, rows: list[firstpage.Record], old: Path | None) -> tuple[Path, bool]:
    out = tmp / name
    return out, firstpatch.write(firstpage.Index(rows), out, old)


def _same(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_a_patched_index_has_the_bytes_of_a_whole_build(tmp_path: Path) -> None:
    """Random edits of a few records, one build after another, each patched from the last:
    every file (buckets, meta, state) equals a whole build's of the same records."""
    rng = random.Random(19)
    family = records(family_index(300))
    rows = family + [r for r in records(demo_index()) if r.id not in {f.id for f in family}]
    previous, _ = _write(tmp_path, "0", rows, None)
    patched = 0
    for n in range(1, 13):
        rows = _edited(rows, rng)
        made, was_patched = _write(tmp_path, f"{n}", rows, previous)
        whole, was_whole = _write(tmp_path, f"whole-{n}", rows, None)
        assert not was_whole
        _same(made, whole)
        assert unpack(firstpage.build(rows))[0]["entries"] == len(rows)
        patched += was_patched
        previous = made
    assert patched >= 10  # most edits keep the bucket count: the patch is what ran
    # the buckets no edit reached are the previous build's files, linked
    assert any((previous / n).stat().st_nlink > 1 for n in os.listdir(previous) if n.endswith(".json.gz"))


def test_anything_doubtful_builds_the_index_whole(tmp_path: Path) -> None:
    rows = records(family_index(40))
    old, _ = _write(tmp_path, "old", rows, None)
    edited = [dataclasses.replace(rows[0], description="new words here"), *rows[1:]]
    assert _write(tmp_path, "patched", edited, old)[1]
    state = (old / firstpage.STATE).read_bytes()
    (old / firstpage.STATE).write_bytes(state[:-5])  # damaged
    assert not _write(tmp_path, "damaged", edited, old)[1]
    (old / firstpage.STATE).write_bytes(state.replace(b'"code":"', b'"code":"0', 1))  # other code
    assert not _write(tmp_path, "code", edited, old)[1]
    (old / firstpage.STATE).write_bytes(state)
    bucket = (old / "0.json.gz").read_bytes()
    (old / "0.json.gz").unlink()  # a bucket missing
    assert not _write(tmp_path, "missing", edited, old)[1]
    (old / "0.json.gz").write_bytes(bucket)
    assert not _write(tmp_path, "added", [*rows, *records(demo_index())], old)[1]  # other rows
    many = [dataclasses.replace(r, description="all new") for r in rows]  # most records changed
    assert not _write(tmp_path, "many", many, old)[1]
    (old / firstpage.STATE).unlink()
    assert not _write(tmp_path, "none", edited, old)[1]
    for name in ("damaged", "code", "missing", "added", "none"):  # each built whole, as a whole build does
        made = tmp_path / name
        rebuilt, _ = _write(
            tmp_path, f"{name}-again", edited if name != "added" else [*rows, *records(demo_index())], None
        )
        _same(made, rebuilt)
