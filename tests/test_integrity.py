"""Integrity: changed artifacts are caught before their bytes are used; killed builds lose nothing."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import LAKEGEN

from lakegen.catalog.loader import load_catalog
from lakegen.compile import compile_lake
from lakegen.lineage.recover import attribute_catalog

REPO = Path(__file__).resolve().parents[1]
INT8 = "catalog/artifacts/models/digits-mlp-int8-1.0.0.safetensors"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "catalog", tmp_path / "catalog")
    return tmp_path


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_artifact_changed_before_the_build_is_not_read(demo: Path) -> None:
    _flip_a_byte(demo / INT8)
    index = compile_lake(demo)
    assert any(f.stage == "validate" and "sha256 mismatch" in f.message for f in index.findings)
    skipped = attribute_catalog(load_catalog(demo), cache=None).skipped
    assert "not read" in skipped["digits-mlp-int8@1.0.0"]
    edge = next(e for e in index.edges if e.child == "digits-mlp-int8")
    assert edge.status == "unchecked"
    results = [r for r in index.results if r.model == "digits-mlp-int8"]
    assert results and all(r.status == "unreproducible" for r in results)


def test_an_artifact_changed_after_validation_is_caught_by_the_fingerprint_pass(demo: Path) -> None:
    catalog = load_catalog(demo)
    assert catalog.artifacts[("digits-mlp-int8", "1.0.0")] == "verified"
    _flip_a_byte(demo / INT8)  # after validation, before attribution reads it
    result = attribute_catalog(catalog, cache=None)
    assert "digits-mlp-int8@1.0.0" not in result.lineage.models
    assert "changed since its sha256 was recorded" in result.skipped["digits-mlp-int8@1.0.0"]


def _site_state(site: Path) -> tuple[set[str], str]:
    files = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    lake = json.loads((site / "api" / "lake.json").read_text())
    assert (site / "index.html").read_text().rstrip().endswith("</html>")
    description = next(e for e in lake["entries"] if e["id"] == "digits-mlp-base")["manifest"]["description"]
    return files, description


@pytest.mark.slow
def test_a_build_killed_mid_way_leaves_the_previous_site(demo: Path) -> None:
    first = subprocess.run(
        [str(LAKEGEN), "--root", str(demo), "build"], capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    site = demo / "site"
    before_files, before_text = _site_state(site)
    manifest = demo / "catalog/models/digits-mlp-base.yaml"
    manifest.write_text(manifest.read_text().replace("description: |\n", "description: |\n  REVISED.\n", 1))
    for delay in (0.3, 0.8, 1.5, 2.5):
        proc = subprocess.Popen(
            [str(LAKEGEN), "--root", str(demo), "build"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not site.exists():  # killed inside the swap: the next build puts the old site back
            assert list(demo.glob(".site.old-*"))
            continue
        files, text = _site_state(site)
        assert text in (before_text, "REVISED.\n" + before_text)
        if text == before_text:
            assert files == before_files
    final = subprocess.run(
        [str(LAKEGEN), "--root", str(demo), "build"], capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr
    _files, text = _site_state(site)
    assert text.startswith("REVISED.")
    assert [p.name for p in demo.glob(".site.*")] == []
    assert json.loads((demo / ".lakegen" / "lake.json").read_text())["entries"]
