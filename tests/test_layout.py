"""lakegen.artifacts.layout: the one place that says what a model is made of, for every caller alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from test_sharded import GROUPS, shard

from lakegen import fingerprint, scaffold
from lakegen.artifacts.layout import (
    ADAPTER_CONFIG,
    WEIGHT_SUFFIXES,
    model_input,
    model_layout,
    model_location,
)
from lakegen.bench import plan as benchplan
from lakegen.cli import attribution as cli_attribution
from lakegen.weights import READERS, WeightsError


def _sd(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=(8, 8)).astype(np.float32) for group in GROUPS for n in group}


def _adapter(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(3)
    save_file(
        {
            "base_model.model.layers.0.lora_A.weight": rng.normal(size=(2, 8)).astype(np.float32),
            "base_model.model.layers.0.lora_B.weight": rng.normal(size=(8, 2)).astype(np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    return folder


def test_each_layout_names_its_weights_its_main_file_and_its_companions(tmp_path: Path) -> None:
    single = tmp_path / "one.safetensors"
    save_file(_sd(), str(single))
    sharded = shard(tmp_path / "sharded", _sd(), GROUPS)
    adapter = _adapter(tmp_path / "lora")
    shards = sorted(sharded.glob("*.safetensors"))

    got = {p.name: model_layout(p) for p in (single, sharded, adapter)}
    assert [(n, lay.kind) for n, lay in got.items()] == [
        ("one.safetensors", "file"),
        ("sharded", "sharded"),
        ("lora", "adapter"),
    ]
    assert (got["sharded"].main, got["sharded"].files, got["sharded"].companions) == (
        sharded / "model.safetensors.index.json",
        shards,
        shards,
    )
    assert (got["lora"].main, got["lora"].companions) == (
        adapter / "adapter_model.safetensors",
        [adapter / ADAPTER_CONFIG],
    )
    assert got["one.safetensors"].companions == []
    # an artifact file that stands for its folder
    assert model_location(sharded / "model.safetensors.index.json") == sharded
    assert model_location(adapter / "adapter_model.safetensors") == adapter
    assert model_location(single) == single


def test_every_caller_asks_the_layout_and_gets_the_same_answer(tmp_path: Path) -> None:
    sharded = shard(tmp_path / "lake" / "catalog" / "m", _sd(), GROUPS)
    layout = model_layout(sharded)
    assert fingerprint.weight_files(sharded) == layout.files
    assert fingerprint.is_sharded(sharded)
    assert cli_attribution.model_input(sharded) == ("m", sharded)
    main, companions, fmt, _uri = scaffold.locate_artifact(
        tmp_path / "lake", tmp_path / "lake" / "m.yaml", sharded
    )
    assert (main, companions, fmt) == (layout.main, layout.companions, "safetensors")
    assert benchplan.ADAPTER_CONFIG == ADAPTER_CONFIG


def test_a_folder_that_is_no_model_gets_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(WeightsError, match="a folder must be a LoRA adapter"):
        model_layout(tmp_path)
    save_file(_sd(1), str(tmp_path / "a.safetensors"))
    save_file(_sd(2), str(tmp_path / "b.safetensors"))
    with pytest.raises(WeightsError, match="a folder must hold one model: found 2 weight files"):
        model_input(tmp_path)


def test_the_layout_knows_every_suffix_a_registered_reader_reads() -> None:
    assert {s for r in READERS for s in r.suffixes} <= set(WEIGHT_SUFFIXES)


def test_the_layout_imports_no_weight_reader_nor_numpy() -> None:
    code = "import sys, lakegen.artifacts.layout; print(sorted(m for m in sys.modules if m.startswith(('lakegen.weights', 'numpy', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
