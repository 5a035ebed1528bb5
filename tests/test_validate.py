"""``lakegen validate`` on good and broken lakes: exact ``path:line`` messages, exit codes, no writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from helpers import MODEL_A, MODEL_B, WEIGHTS_A, age, line_of, run_lakegen, snapshot, write_tree

from lakegen import safeyaml
from lakegen.catalog.loader import load_catalog

A = "catalog/models/toy-a.yaml"
B = "catalog/models/toy-b.yaml"


def validate(root: Path) -> tuple[int, list[str], str]:
    result = run_lakegen("--root", str(root), "validate")
    assert "Traceback" not in result.stderr + result.stdout
    return result.returncode, result.stdout.splitlines(), result.stderr


def test_clean_lake_passes_and_verifies_artifacts(lake: Path) -> None:
    rc, out, err = validate(lake)
    assert rc == 0, out
    assert out == []
    assert "4 entries: 0 errors, 0 warnings; artifacts: 3 verified, 0 contradicted, 0 unchecked" in err


def _broken(lake: Path, rel: str, text: str | bytes) -> list[str]:
    write_tree(lake, {rel: text})
    before = snapshot(lake)
    rc, out, _ = validate(lake)
    assert rc == 1
    assert snapshot(lake) == before, "validate must write nothing"
    return out


def test_unknown_field_suggests_the_right_name(lake: Path) -> None:
    text = MODEL_A.replace("license: Apache-2.0", "licence: Apache-2.0")
    out = _broken(lake, A, text)
    n = line_of(text, "licence:")
    assert f"{A}:{n}: licence: unknown field (did you mean 'license'?)" in out
    assert f"{A}:1: license: required field is missing" in out


def test_wrong_type_and_enum(lake: Path) -> None:
    text = MODEL_A.replace("risk: minimal", "risk: 3").replace("framework: pytorch", "framework: pytorh")
    out = _broken(lake, A, text)
    assert (
        f"{A}:{line_of(text, 'risk: 3')}: risk: 3 is not one of: minimal, limited, high, unacceptable" in out
    )
    assert (
        f"{A}:{line_of(text, 'framework:')}: framework: 'pytorh' is not one of: pytorch, jax, tensorflow, "
        "onnx, sklearn, other (did you mean 'pytorch'?)"
    ) in out


def test_unknown_reference_suggests_close_id(lake: Path) -> None:
    text = MODEL_B.replace("- id: toy-a", "- id: toy-aa")
    out = _broken(lake, B, text)
    assert (
        f"{B}:{line_of(text, 'id: toy-aa')}: base_models[0].id: no model 'toy-aa' in the lake (did you mean 'toy-a'?)"
        in out
    )


def test_reference_of_the_wrong_kind(lake: Path) -> None:
    text = MODEL_B.replace("- id: toy-a\n    version: 1.0.0", "- id: toy-data")
    out = _broken(lake, B, text)
    assert (
        f"{B}:{line_of(text, 'id: toy-data')}: base_models[0].id: 'toy-data' is a dataset, not a model" in out
    )


def test_missing_version_split_and_dataset(lake: Path) -> None:
    text = MODEL_B.replace("version: 1.0.0", "version: 9.0.0") + (
        "evaluations:\n  - {dataset: toy-data, split: valid, metric: accuracy, value: 0.5}\n"
        "  - {dataset: nope, split: test, metric: accuracy, value: 0.5}\n"
    )
    out = _broken(lake, B, text)
    assert f"{B}:{line_of(text, 'id: toy-a')}: base_models[0].id: model 'toy-a' has no version 9.0.0" in out
    n = line_of(text, "split: valid")
    assert (
        f"{B}:{n}: evaluations[0].split: dataset 'toy-data' has no split 'valid' (it has train, test)" in out
    )
    assert f"{B}:{n + 1}: evaluations[1].dataset: no dataset 'nope' in the lake" in out


def test_lineage_cycle(lake: Path) -> None:
    text = MODEL_A.replace("datasets:\n", "base_models:\n  - {id: toy-b, relation: finetune}\ndatasets:\n")
    out = _broken(lake, A, text)
    assert (
        f"{A}:{line_of(text, 'id: toy-b')}: base_models[0].id: lineage cycle: toy-a → toy-b → toy-a" in out
        or (
            f"{A}:{line_of(text, 'id: toy-b')}: base_models[0].id: lineage cycle: toy-b → toy-a → toy-b"
            in out
        )
    )
    assert any(line.startswith(f"{B}:") and "lineage cycle" in line for line in out)


def test_id_must_match_file_name_and_be_unique(lake: Path) -> None:
    write_tree(lake, {"catalog/models/extra/toy-a.yaml": MODEL_A.replace("../artifacts", "../../artifacts")})
    out = _broken(lake, "catalog/models/toy-c.yaml", MODEL_B)
    assert (
        f"catalog/models/toy-c.yaml:{line_of(MODEL_B, 'id: toy-b')}: id: id 'toy-b' must equal the file name 'toy-c'"
        in out
    )
    dup = [line for line in out if "duplicate id 'toy-a'" in line]
    assert dup == [
        f"{A}:{line_of(MODEL_A, 'id: toy-a')}: id: duplicate id 'toy-a' (also in catalog/models/extra/toy-a.yaml)"
    ]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("../../../etc/passwd", "'../../../etc/passwd' leaves the lake"),
        ("/etc/passwd", "'/etc/passwd' is absolute; use a path relative to the manifest"),
        (
            "ftp://host/x.bin",
            "unsupported URI scheme 'ftp:' (use a path relative to the manifest, or https, http, s3, gs, hf)",
        ),
        ("file:///etc/passwd", "unsupported URI scheme 'file:'"),
        ("../artifacts/missing.safetensors", "file not found: ../artifacts/missing.safetensors"),
    ],
)
def test_artifact_uris_that_are_refused(lake: Path, uri: str, message: str) -> None:
    text = MODEL_A.replace("../artifacts/toy-a-1.0.0.safetensors", uri)
    out = _broken(lake, A, text)
    field = "uri"
    matches = [
        line
        for line in out
        if line.startswith(f"{A}:{line_of(text, uri)}: versions[0].artifact.{field}: {message}")
    ]
    assert matches, out


def test_symlink_out_of_the_lake(lake: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(WEIGHTS_A)
    os.symlink(outside, lake / "catalog/artifacts/link.safetensors")
    text = MODEL_A.replace("toy-a-1.0.0.safetensors", "link.safetensors")
    out = _broken(lake, A, text)
    n = line_of(text, "link.safetensors")
    assert (
        f"{A}:{n}: versions[0].artifact.uri: '../artifacts/link.safetensors' resolves outside the lake through a symlink"
        in out
    )


def test_wrong_sha256_and_size(lake: Path) -> None:
    (lake / "catalog/artifacts/toy-a-1.0.0.safetensors").write_bytes(WEIGHTS_A[:-1] + b"!")
    (lake / "catalog/artifacts/toy-b-0.1.0.safetensors").write_bytes(b"short")
    rc, out, err = validate(lake)
    assert rc == 1
    n = line_of(MODEL_A, "artifact:")
    assert any(
        line.startswith(f"{A}:{n}: versions[0].artifact.sha256: sha256 mismatch: manifest says ")
        for line in out
    )
    assert (
        f"{B}:{line_of(MODEL_B, 'artifact:')}: versions[0].artifact.size: size is 5 bytes; manifest says 1,088"
        in out
    )
    assert "1 verified, 2 contradicted" in err


@pytest.mark.parametrize(
    ("text", "needle", "message"),
    [
        ("kind: model\nid: toy-a\nname: [unclosed\n", None, "invalid YAML"),
        (
            "kind: model\nid: !!python/object/apply:os.system ['touch PWNED']\n",
            "id:",
            "tag !!python/object/apply:os.system is not allowed in manifests",
        ),
        ("kind: model\nid: toy-a\nid: toy-b\n", "id: toy-b", "duplicate key 'id' (first at line 2)"),
        ("a: &a [x, x]\nb: &b [*a, *a]\nkind: model\n", "a:", "anchors (&a) are not allowed in manifests"),
        ("- kind: model\n- id: toy-a\n", None, "a manifest is a YAML mapping, not a list"),
        ("just a string\n", None, "a manifest is a YAML mapping, not a str scalar"),
        (
            "kind: model\n---\nkind: model\n",
            "---",
            "more than one YAML document; a manifest holds exactly one",
        ),
        ("", None, "file is empty; a manifest is a YAML mapping"),
        ("kind: widget\n", "kind:", "kind: unknown kind 'widget' (one of model, dataset, code)"),
        ("kind: model\nid: toy-a\nx: !custom 1\n", "x:", "tag !custom is not allowed in manifests"),
    ],
)
def test_hostile_yaml(lake: Path, text: str, needle: str | None, message: str) -> None:
    out = _broken(lake, A, text)
    line = line_of(text, needle) if needle else None
    mine = [o for o in out if o.startswith(f"{A}:")]
    assert len(mine) == 1, out
    assert message in mine[0]
    if line is not None:
        assert mine[0].startswith(f"{A}:{line}: ")
    assert not (lake / "PWNED").exists()


DEEP_FLOW = "kind: model\nid: " + "[" * 10_000 + "]" * 10_000 + "\n"
DEEP_BLOCK = "kind: model\nid:\n" + "".join(" " * (i + 1) + "- \n" for i in range(40))


@pytest.mark.parametrize(
    ("text", "line"),
    [(DEEP_FLOW, 2), ("kind: model\nid: " + "[" * 40 + "]" * 40 + "\n", 2), (DEEP_BLOCK, 35)],
)
def test_deep_nesting_is_one_clear_line(lake: Path, text: str, line: int) -> None:
    # Whichever layer refuses first (libyaml caps nesting at its own depth and scans ahead), the user
    # reads one line for the file, with a line number and lakegen's own words, and no traceback.
    out = _broken(lake, A, text)
    mine = [o for o in out if o.startswith(f"{A}:")]
    assert len(mine) == 1, out
    assert mine == [f"{A}:{line}: nested deeper than 32 levels"]


@pytest.mark.parametrize("loader", ["SafeLoader", "CSafeLoader"])
@pytest.mark.parametrize("depth", [40, 2_000])
def test_deep_nesting_refused_by_either_parser(
    monkeypatch: pytest.MonkeyPatch, loader: str, depth: int
) -> None:
    if not hasattr(yaml, loader):
        pytest.skip(f"PyYAML built without {loader}")
    monkeypatch.setattr(safeyaml, "_Loader", getattr(yaml, loader))
    with pytest.raises(safeyaml._Refused) as refused:
        safeyaml.parse("kind: model\nid: " + "[" * depth + "]" * depth + "\n")
    assert (refused.value.line, refused.value.message) == (2, "nested deeper than 32 levels")


def test_non_utf8_bytes_name_their_line(lake: Path) -> None:
    out = _broken(lake, A, b"kind: model\nid: toy-a\nname: caf\xe9\n")
    assert f"{A}:3: not UTF-8: byte 0xe9 cannot be decoded" in out


def test_huge_manifest_is_not_read(lake: Path) -> None:
    path = lake / A
    with open(path, "wb") as f:
        f.truncate(100 * 1024 * 1024)
    rc, out, _ = validate(lake)
    assert rc == 1
    assert f"{A}:1: file is 104,857,600 bytes; manifests are capped at 1,048,576" in out


def test_control_and_bidi_characters_are_refused(lake: Path) -> None:
    text = MODEL_A.replace("name: Toy A", 'name: "Toy \\u202eA"')
    out = _broken(lake, A, text)
    assert (
        f"{A}:{line_of(text, 'name:')}: name: contains the invisible or control character U+202E; remove it"
        in out
    )


@pytest.mark.slow
def test_spdx_licences(lake: Path) -> None:
    text = MODEL_A.replace("license: Apache-2.0", "license: Apache 2")
    out = _broken(lake, A, text)
    assert any(
        o.startswith(f"{A}:{line_of(text, 'license:')}: license: 'Apache 2' is not an SPDX") for o in out
    )
    text = MODEL_A.replace("license: Apache-2.0", "license: other")
    out = _broken(lake, A, text)
    assert f"{A}:1: license 'other' needs a license_url" in out


def test_manifest_in_the_wrong_folder(lake: Path) -> None:
    out = _broken(
        lake,
        "catalog/datasets/toy-z.yaml",
        MODEL_A.replace("id: toy-a", "id: toy-z").replace("- version: 1.0.0", "- version: 2.0.0"),
    )
    assert any("kind: a model manifest belongs in catalog/models/" in o for o in out)


def test_all_problems_reported_at_once_and_sorted(lake: Path) -> None:
    write_tree(lake, {A: MODEL_A.replace("risk: minimal", "risk: low"), B: MODEL_B.replace("toy-a", "toy-x")})
    rc, out, _ = validate(lake)
    assert rc == 1
    assert len(out) >= 2
    keys = [(o.split(":")[0], int(o.split(":")[1])) for o in out]
    assert keys == sorted(keys)


def test_catalog_api(lake: Path) -> None:
    catalog = load_catalog(lake)
    assert catalog.problems == []
    assert sorted(catalog.records) == ["toy-a", "toy-b", "toy-code", "toy-data"]
    assert list(catalog.lineage().edges(data="relation")) == [("toy-a", "toy-b", "finetune")]
    assert catalog.artifacts[("toy-a", "1.0.0")] == "verified"


def test_a_loaded_catalog_keeps_each_manifests_lines_not_its_data(lake: Path) -> None:
    """The catalog lives through a whole compile: each record keeps the line of every path (for
    findings), as the parse gave them, but not the parsed data it was validated from."""
    cache = lake / ".lakegen" / "cache"
    first = load_catalog(lake, parse_cache=cache)
    assert first.parsed is not None
    first.parsed.save()
    for catalog in (first, load_catalog(lake, parse_cache=cache)):  # parsed, then read from the cache
        a, b = catalog.records["toy-a"], catalog.records["toy-b"]
        assert a.doc.data is None and b.doc.data is None
        parsed = safeyaml.parse((lake / A).read_text())
        assert dict(a.doc.lines) == dict(parsed.lines)
        assert (
            a.line("versions", 0, "artifact", "sha256") == parsed.lines[("versions", 0, "artifact", "sha256")]
        )
        assert a.line("versions", 0, "no-such-field") == parsed.lines[("versions", 0)]
        assert b.line("no-such-field") == 1
    twin = (lake / A).read_text().replace("id: toy-a", "id: toy-a2")
    write_tree(lake, {"catalog/models/toy-a2.yaml": twin})
    records = load_catalog(lake).records
    assert records["toy-a2"].doc.lines._shape is records["toy-a"].doc.lines._shape  # one copy of the paths


@pytest.mark.slow
def test_companion_files_are_pinned_like_the_artifact(lake: Path) -> None:
    import hashlib

    config = b'{"r": 4, "lora_alpha": 8}'
    digest = hashlib.sha256(config).hexdigest()
    text = MODEL_A.replace(
        "../artifacts/toy-a-1.0.0.safetensors, ",
        "../artifacts/toy-a-1.0.0.safetensors, files: [{path: toy-a.json, sha256: "
        + digest
        + f", size: {len(config)}}}], ",
    )
    write_tree(lake, {A: text, "catalog/artifacts/toy-a.json": config})
    rc, out, err = validate(lake)
    assert rc == 0, out
    (lake / "catalog/artifacts/toy-a.json").write_bytes(config.replace(b"4", b"8"))
    rc, out, err = validate(lake)
    assert rc == 1
    n = line_of(text, "files:")
    assert any(
        o.startswith(f"{A}:{n}: versions[0].artifact.files[0].sha256: sha256 mismatch") for o in out
    ), out
    assert "2 verified, 1 contradicted" in err
    (lake / "catalog/artifacts/toy-a.json").unlink()
    rc, out, err = validate(lake)
    assert f"{A}:{n}: versions[0].artifact.files[0].path: file not found: ../artifacts/toy-a.json" in out
    write_tree(lake, {A: text.replace("path: toy-a.json", "path: ../../../etc/passwd")})
    rc, out, err = validate(lake)
    assert rc == 1
    assert (
        f"{A}:{n}: versions[0].artifact.files[0].path: '../artifacts/../../../etc/passwd' leaves the lake"
        in out
    )


def test_unchanged_artifacts_are_not_hashed_again(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = WEIGHTS_A * 1024  # over MEMO_FROM (1 MiB); smaller files are always hashed
    digest, big_digest = hashlib.sha256(WEIGHTS_A).hexdigest(), hashlib.sha256(big).hexdigest()
    text = MODEL_A.replace(digest, big_digest).replace(f"size: {len(WEIGHTS_A)}", f"size: {len(big)}")
    weights = lake / "catalog/artifacts/toy-a-1.0.0.safetensors"
    write_tree(lake, {A: text})
    weights.write_bytes(big)
    for path in (lake / "catalog/artifacts").iterdir():
        age(path)
    first = load_catalog(lake)
    assert set(first.artifacts.values()) == {"verified"} and not first.problems
    hashed: list[str] = []
    file_digest = hashlib.file_digest

    def counting(f, name):  # type: ignore[no-untyped-def]
        hashed.append(Path(f.name).name)
        return file_digest(f, name)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    again = load_catalog(lake)
    assert again.artifacts == first.artifacts and not again.problems
    assert weights.name not in hashed and "toy-b-0.1.0.safetensors" in hashed
    # other bytes, same size, the modification time set back: hashed again, and caught
    st = weights.stat()
    weights.write_bytes(big[:-1] + b"!")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    tampered = load_catalog(lake)
    assert weights.name in hashed
    assert tampered.artifacts[("toy-a", "1.0.0")] == "contradicted"
    assert any("sha256 mismatch" in p.message for p in tampered.problems)


def test_control_characters_in_any_value_never_reach_the_terminal(lake: Path) -> None:
    text = MODEL_A.replace(
        "uri: ../artifacts/toy-a-1.0.0.safetensors", 'uri: "../artifacts/\\e]0;owned\\a\\e[2Jx.safetensors"'
    )
    assert text != MODEL_A
    write_tree(lake, {A: text})
    result = run_lakegen("--root", str(lake), "validate")
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr
    assert "\\x1b" in result.stdout  # shown, as a visible escape
