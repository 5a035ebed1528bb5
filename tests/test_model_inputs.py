"""How real models arrive: the folders and files libraries write, named and read as users expect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from helpers import run_lakegen
from safetensors.numpy import save_file

from lakegen.artifacts.layout import model_input
from lakegen.weights import open_weights


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"layer.weight": rng.normal(size=(16, 8)).astype(np.float32)}


def test_a_folder_with_both_safetensors_and_bin_reads_the_safetensors(tmp_path: Path) -> None:
    folder = tmp_path / "bert-ft"
    folder.mkdir()
    weights = _weights(1)
    save_file(weights, str(folder / "model.safetensors"))
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text("{}")
    assert model_input(folder) == ("bert-ft", folder / "model.safetensors")


def test_files_the_libraries_name_alike_take_their_folder_s_name(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_file(_weights(ord(name)), str(tmp_path / name / "model.safetensors"))
    result = run_lakegen(
        "attribute", str(tmp_path / "a/model.safetensors"), str(tmp_path / "b/model.safetensors"), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["models"]) == ["a", "b"]


def test_a_hugging_face_cache_snapshot_is_named_after_its_repository(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    save_file(_weights(2), str(snapshot / "model.safetensors"))
    assert model_input(snapshot)[0] == "sentence-transformers/all-MiniLM-L6-v2"
    assert model_input(snapshot / "model.safetensors")[0] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_training_checkpoint_with_metadata_reads_its_model_state_dict(tmp_path: Path) -> None:
    weights = {k: torch.from_numpy(v) for k, v in _weights(3).items()}
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {"epoch": 3, "model_state_dict": weights, "optimizer_state_dict": {"state": {}, "param_groups": []}},
        path,
    )
    with open_weights(path) as wf:
        assert list(wf.tensors) == ["layer.weight"]
        assert np.array_equal(wf.raw("layer.weight"), weights["layer.weight"].numpy())
