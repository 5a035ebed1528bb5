"""The public Python API: every name of ``lakegen.__all__`` and every example of docs/api.md."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lakegen

REPO = Path(__file__).resolve().parents[1]
API_DOC = REPO / "docs" / "api.md"
MODELS = REPO / "catalog" / "artifacts" / "models"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Each ```python block of ``text`` with the line its code starts on."""
    return [
        (text[: m.start(1)].count("\n") + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    ]


def test_every_example_of_the_api_doc_runs_in_a_copy_of_the_demo_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "catalog", tmp_path / "catalog")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKEGEN_CACHE", raising=False)
    blocks = python_blocks(API_DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    namespace: dict[str, object] = {"__name__": "docs_api"}
    for line, code in blocks:  # one after the other, as the page says; padded so tracebacks name doc lines
        exec(compile("\n" * (line - 1) + code, str(API_DOC), "exec"), namespace)
    assert (tmp_path / ".lakegen" / "cache").is_dir()  # the examples' cache_dir, inside the lake


def test_every_public_name_resolves_has_a_docstring_and_is_in_the_api_doc() -> None:
    doc = API_DOC.read_text(encoding="utf-8")
    assert set(lakegen.__all__) == {"__version__", *lakegen._EXPORTS}
    for name in lakegen.__all__:
        value = getattr(lakegen, name)
        assert f"`{name}" in doc, f"{name} is missing from docs/api.md"
        if name != "__version__":
            assert inspect.getdoc(value), f"lakegen.{name} has no docstring"
            assert value is getattr(importlib.import_module(lakegen._EXPORTS[name]), name)
    assert lakegen.__version__ == importlib.metadata.version("lakegen")
    assert set(lakegen.__all__) <= set(dir(lakegen))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = lakegen.nothing_here  # type: ignore[attr-defined]


def test_public_names_survive_importing_every_submodule() -> None:
    # Importing lakegen.<x> sets the package attribute <x>: a public name equal to a module name would be replaced.
    for module in pkgutil.walk_packages(lakegen.__path__, "lakegen."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name, module in lakegen._EXPORTS.items():
        assert getattr(lakegen, name) is getattr(importlib.import_module(module), name), name


def test_import_lakegen_imports_nothing_else_of_lakegen() -> None:
    code = "import sys, lakegen; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lakegen', 'numpy', 'pydantic', 'mkdocs')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['lakegen', 'lakegen.version']"


def test_attribute_names_models_after_their_files_and_refuses_a_name_used_twice(tmp_path: Path) -> None:
    base, pruned = (
        MODELS / "digits-mlp-base-1.0.0.safetensors",
        MODELS / "digits-mlp-pruned-1.0.0.safetensors",
    )
    lineage = lakegen.attribute([base, str(pruned)])
    assert [(e.parent, e.child, e.relation) for e in lineage.edges] == [
        ("digits-mlp-base-1.0.0", "digits-mlp-pruned-1.0.0", "pruned")
    ]
    (tmp_path / "copy").mkdir()
    twin = shutil.copy(base, tmp_path / "copy")
    with pytest.raises(lakegen.LakeError) as caught:
        lakegen.attribute([base, twin])
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == (str(twin), 1)
    assert problem.message == f"its name 'digits-mlp-base-1.0.0' is also the name of {base}"


def test_fingerprint_weights_caches_by_content_and_raises_lake_error(tmp_path: Path) -> None:
    path = shutil.copy(MODELS / "wine-mlp-base-1.0.0.safetensors", tmp_path)
    first = lakegen.fingerprint_weights(path, cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache" / "fingerprints").rglob("*.lgfp"))
    assert [p.stem for p in cached] == [first.sha256]
    assert lakegen.fingerprint_weights(str(path), cache_dir=tmp_path / "cache").summary() == first.summary()
    Path(path).write_bytes(b"not weights")
    with pytest.raises(lakegen.LakeError) as caught:
        lakegen.fingerprint_weights(path)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{path}:1: ")


def test_build_site_refuses_an_mkdocs_config_without_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text("site_name: x\nplugins:\n  - search\n", encoding="utf-8")
    with pytest.raises(lakegen.LakeError) as caught:
        lakegen.build_site(tmp_path)
    assert str(caught.value) == "mkdocs.yml:1: plugins: does not list the lakegen plugin"
    assert not (tmp_path / "site").exists()
