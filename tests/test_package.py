"""lakegen as a user gets it: a wheel installed into a fresh venv, run in a lake that holds only ``catalog/``.

Nothing may be read from beside the source tree: the site's templates and assets are package data,
and the JSON Schemas a manifest's first line points at are generated into the lake.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import run_lakegen

from lakegen.catalog.loader import load_catalog
from lakegen.model import schema
from lakegen.model.manifest import KINDS

REPO = Path(__file__).resolve().parents[1]
# What the installed lakegen runs with: nothing that points it back at this checkout.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAKEGEN_CACHE", "VIRTUAL_ENV")}


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def _schema_target(manifest: Path) -> Path:
    first = manifest.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    return (manifest.parent / match.group(1)).resolve()


def test_new_writes_the_schemas_a_lake_lacks_and_leaves_existing_ones(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    assert run_lakegen("--root", str(tmp_path), "schema", "--check").returncode == 1
    result = run_lakegen("--root", str(tmp_path), "new", "model", "fresh", "--owner", "@ada")
    assert result.returncode == 0, result.stderr
    target = _schema_target(tmp_path / "catalog" / "models" / "fresh.yaml")
    assert target == (tmp_path / "schemas" / "model.schema.json").resolve()
    for kind in KINDS:
        assert (tmp_path / schema.schema_file(kind)).read_text(encoding="utf-8") == schema.render(kind)
    check = run_lakegen("--root", str(tmp_path), "schema", "--check")
    assert (check.returncode, check.stdout) == (0, "")
    # An existing schema stays as it is, stale or not: refreshing it is `schema --write`'s job.
    (tmp_path / "schemas" / "model.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "schemas" / "code.schema.json").unlink()
    assert run_lakegen("--root", str(tmp_path), "new", "dataset", "fresh-data").returncode == 0
    assert (tmp_path / "schemas" / "model.schema.json").read_text(encoding="utf-8") == "{}\n"
    assert (tmp_path / "schemas" / "code.schema.json").read_text(encoding="utf-8") == schema.render("code")
    stale = run_lakegen("--root", str(tmp_path), "schema", "--check")
    assert (stale.returncode, stale.stdout.split(":")[0]) == (1, "schemas/model.schema.json")


def _wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources, so that no stale build/ folder of the repo leaks in."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src)
    shutil.copytree(REPO / "lakegen", src / "lakegen", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    pip = (sys.executable, "-m", "pip", "-q")
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src)
    [wheel] = out.glob("lakegen-*.whl")
    return wheel


def _venv(tmp_path: Path, wheel: Path) -> Path:
    """A fresh venv with only the wheel installed; the dependencies come from the test venv (a .pth line)."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "test-deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)), encoding="utf-8")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel, and a fresh venv it is installed in."""
    tmp = tmp_path_factory.mktemp("package")
    wheel = _wheel(tmp)
    return wheel, _venv(tmp, wheel)


@pytest.mark.slow
def test_the_wheel_holds_every_file_of_the_package(installed: tuple[Path, Path]) -> None:
    names = set(zipfile.ZipFile(installed[0]).namelist())
    package = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "lakegen").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {"lakegen/py.typed", "lakegen/site/templates/pages/model.html"} <= package
    assert package - names == set()


@pytest.mark.slow
def test_the_installed_lakegen_builds_the_site_of_a_lake_that_holds_only_its_catalog(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = installed[1]
    lake = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", lake / "catalog")
    where = _run(venv / "bin" / "python", "-c", "import lakegen; print(lakegen.__file__)", cwd=lake, env=ENV)
    assert Path(where.strip()).is_relative_to(venv), where

    lakegen = str(venv / "bin" / "lakegen")
    _run(lakegen, "build", cwd=lake, env=ENV)
    site = lake / "site"
    models = sorted(m.id for m in load_catalog(lake, verify_artifacts=False).models())
    assert len(models) == 14
    for model_id in models:
        assert model_id in (site / "models" / f"{model_id}.html").read_text(encoding="utf-8")
    for asset in ("lakegen.css", "lakegen-search.js"):
        shipped = (REPO / "lakegen" / "site" / "templates" / "assets" / asset).read_bytes()
        assert (site / "assets" / asset).read_bytes() == shipped
    entry = json.loads((site / "pagefind" / "shard-0" / "pagefind-entry.json").read_text(encoding="utf-8"))
    assert entry["languages"]["en"]["page_count"] >= len(models)
    assert 'src="assets/lakegen-search.js"' in (site / "search.html").read_text(encoding="utf-8")
    _run(lakegen, "validate", cwd=lake, env=ENV)

    _run(lakegen, "new", "model", "fresh", "--owner", "@ada", cwd=lake, env=ENV)
    assert _schema_target(lake / "catalog" / "models" / "fresh.yaml").is_file()
    _run(lakegen, "schema", "--check", cwd=lake, env=ENV)


@pytest.mark.slow
def test_a_type_checker_sees_the_installed_api(installed: tuple[Path, Path], tmp_path: Path) -> None:
    user = tmp_path / "user.py"
    user.write_text(
        "import lakegen\n"
        "index: lakegen.LakeIndex = lakegen.compile_lake('.')\n"
        "reveal_type(lakegen.fingerprint_weights)\n"
        "lakegen.fingerprint_weight('x')\n",
        encoding="utf-8",
    )
    mypy = Path(sys.executable).with_name("mypy")
    python = installed[1] / "bin" / "python"
    command = [mypy, "--python-executable", python, "--cache-dir", tmp_path / "cache", user.name]
    result = subprocess.run(
        [str(c) for c in command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        'user.py:3: note: Revealed type is "def (path: str | pathlib.Path, *, cache_dir: str | pathlib.Path | None =) -> lakegen.fingerprint.prints.Fingerprint"',
        'user.py:4: error: Module has no attribute "fingerprint_weight"; maybe "fingerprint_weights"?  [attr-defined]',
    ], result.stdout + result.stderr
