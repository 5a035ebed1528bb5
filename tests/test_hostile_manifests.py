"""Hostile manifests: whatever the bytes, the loader answers with problems, never a crash.

The fuzz runs here are bounded for CI; ``LAKEGEN_FUZZ_EXAMPLES`` raises the count for a long run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import MODEL_A, line_of, write_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakegen.catalog.loader import load_catalog
from lakegen.errors import LakeError
from lakegen.safeyaml import parse

EXAMPLES = int(os.environ.get("LAKEGEN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
A = "catalog/models/toy-a.yaml"


def _problems_for(lake: Path, data: bytes) -> list[str]:
    """Problems reported for the manifest written (the other entries' knock-on ones are left out)."""
    (lake / A).write_bytes(data)
    catalog = load_catalog(lake, verify_artifacts=False)
    return [str(p) for p in catalog.problems if p.path == A]


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_raw_bytes(lake: Path, data: bytes) -> None:
    (lake / A).write_bytes(data)
    for problem in load_catalog(lake, verify_artifacts=False).problems:
        assert problem.path.startswith("catalog/") and problem.line >= 1, problem


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50), st.dates()
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "kind",
                "id",
                "name",
                "versions",
                "base_models",
                "owners",
                "license",
                "risk",
                "architecture",
                "evaluations",
                "x",
            ]
        ),
        yaml_values,
        max_size=8,
    )
)
def test_fuzz_manifest_shaped_documents(lake: Path, doc: dict[str, object]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    (lake / A).write_text(text)
    for problem in load_catalog(lake, verify_artifacts=False).problems:
        assert problem.path.startswith("catalog/") and problem.line >= 1, problem


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("kindmoel: -[]{}&*!|>'\"\n#?,%@`\t\\")), max_size=300))
def test_fuzz_yaml_syntax_soup(text: str) -> None:
    try:
        parse(text)
    except Exception as e:  # only the reader's own refusal may escape
        assert type(e).__name__ == "_Refused", repr(e)


@pytest.mark.parametrize("text", ["=", "<<: x", "x: =", "? [a]\n: b"])
def test_yaml_1_1_oddities_found_by_fuzzing(lake: Path, text: str) -> None:
    problems = _problems_for(lake, text.encode())
    assert problems and all(p.startswith(f"{A}:") for p in problems)


def test_billion_laughs_is_refused_before_expansion(lake: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    problems = _problems_for(lake, ("\n".join(lines) + "\n").encode())
    assert problems == [f"{A}:1: anchors (&a0) are not allowed in manifests"]


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch PWNED']",
        "!!python/object/new:subprocess.Popen [['touch', 'PWNED']]",
        "!!python/name:os.system",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!!omap [a: 1]",
    ],
)
def test_code_execution_and_exotic_tags(lake: Path, tag: str) -> None:
    text = MODEL_A.replace("name: Toy A", f"name: {tag}")
    problems = _problems_for(lake, text.encode())
    assert len(problems) == 1
    assert problems[0].startswith(f"{A}:{line_of(text, 'name:')}: tag !!")
    assert "is not allowed in manifests" in problems[0]
    assert not (lake / "PWNED").exists()
    assert not Path("PWNED").exists()


def test_huge_strings_are_capped(lake: Path) -> None:
    text = MODEL_A.replace("name: Toy A", "name: " + "x" * 5000)
    problems = _problems_for(lake, text.encode())
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{A}:{line_of(text, 'name:')}: name: string should have at most 200 characters"
    )
    assert len(problems[0]) < 200


@pytest.mark.parametrize("bad_id", ["Toy-A", "TOY-A", "toy a", "../toy-a", "-toy", "toy-a-"])
def test_ids_that_are_not_slugs(lake: Path, bad_id: str) -> None:
    text = MODEL_A.replace("id: toy-a", f"id: '{bad_id}'")
    problems = _problems_for(lake, text.encode())
    assert any(p.startswith(f"{A}:{line_of(text, 'id:')}: id: must be a lowercase slug") for p in problems)


def test_ids_differing_only_in_case_cannot_coexist(lake: Path) -> None:
    write_tree(lake, {"catalog/models/Toy-A.yaml": MODEL_A})
    catalog = load_catalog(lake, verify_artifacts=False)
    line = line_of(MODEL_A, "id:")
    assert [str(p) for p in catalog.problems] == [
        f"catalog/models/Toy-A.yaml:{line}: id: id 'toy-a' must equal the file name 'Toy-A'",
        f"catalog/models/toy-a.yaml:{line}: id: duplicate id 'toy-a' (also in catalog/models/Toy-A.yaml)",
    ]


def test_symlinked_manifest_leaving_the_lake(lake: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(MODEL_A.replace("id: toy-a", "id: toy-out"))
    os.symlink(outside, lake / "catalog/models/toy-out.yaml")
    catalog = load_catalog(lake, verify_artifacts=False)
    assert [str(p) for p in catalog.problems] == [
        "catalog/models/toy-out.yaml:1: manifest is a symlink that leaves the lake"
    ]
    assert "toy-out" not in catalog


def test_parse_errors_are_lake_errors(tmp_path: Path) -> None:
    from lakegen.safeyaml import load

    path = tmp_path / "x.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(LakeError) as info:
        load(path, "x.yaml")
    assert str(info.value).startswith("x.yaml:")
