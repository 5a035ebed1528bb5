"""One evaluation, run inside a worker process: build the network, load weights and data, score.

:func:`run` is the job target the bench stage sends through the executor. Its
payload is fully resolved by the parent (absolute paths, the metric, the
device), so a worker never reads the catalog. Missing inputs found only here
(a split the file lacks, say) raise :class:`MissingInput`, which the bench
stage reports as ``unreproducible`` rather than ``failed``.
"""

from __future__ import annotations

import importlib
import os
import platform
import random
import resource
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lakegen import weights
from lakegen.bench import metrics
from lakegen.version import __version__

BATCH = 1024


class MissingInput(Exception):
    """An input the evaluation needs is not there (unreproducible, not a failure of the model)."""


def run(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Score one model version on one dataset split; the job target of the bench stage."""
    device = _deterministic(payload["device"], int(payload.get("seed", 0)))
    with _code_on_path(payload["code_paths"]):
        network = _call(payload["entrypoint"], **payload["build_config"])
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"{payload['entrypoint']} returned {type(network).__name__}, not a torch module")
        network.load_state_dict(dense_state_dict(payload["weights"]), strict=True)
        network.to(device).eval()
        data = load_split(Path(payload["dataset"]), payload["split"])
        registry = metrics.REGISTRY.copy()
        if payload.get("metric_entrypoint"):
            registry.register(payload["metric"], _resolve(payload["metric_entrypoint"]))
        metric = registry.get(payload["metric"]).metric
        value = float(metric(TorchPredictor(network, device), data, payload["metric_config"]))
    if not np.isfinite(value):
        raise ValueError(f"the metric returned {value}")
    return {"value": value, "device": describe(device), "environment": environment()}


class TorchPredictor:
    """Runs the network on numpy inputs in batches, without gradients, on its device."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.module = module
        self.device = str(device)
        self._device = device
        self._dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        dtype = torch.long if np.issubdtype(x.dtype, np.integer) else self._dtype
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(x), BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + BATCH]))
                out = self.module(batch.to(self._device, dtype))
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"the network returned {type(out).__name__}, not a tensor")
                outputs.append(out.float().cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


def load_split(path: Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of ``split`` in an ``.npz``: ``x_test``, ``y_test`` become ``x``, ``y`` for split test."""
    suffix = f"_{split}"
    with np.load(path, allow_pickle=False) as archive:
        data = {k.removesuffix(suffix): archive[k] for k in archive.files if k.endswith(suffix)}
        names = sorted(archive.files)
    if not data:
        raise MissingInput(f"the dataset file has no arrays for split '{split}' (it has {', '.join(names)})")
    return data


def dense_state_dict(spec: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Float weights of a model version: int8 dequantised, a LoRA adapter added to its base's weights."""
    base = dense_state_dict(spec["base"]) if spec.get("base") else None
    return weights.dense_state_dict(spec["path"], base)


def _deterministic(device_name: str, seed: int) -> torch.device:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # One thread: float sums then do not depend on how many cores the worker got.
    torch.set_num_threads(1)
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name == "cuda":
        if not torch.cuda.is_available():
            raise MissingInput("no CUDA GPU is available to this worker")
        # Only here: on CPU, one thread already makes inference deterministic, and this call
        # imports torch's compiler stack (seconds per worker).
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # CUDA reserves far more address space than it uses: the worker's soft cap would stop it.
        resource.setrlimit(resource.RLIMIT_AS, (resource.getrlimit(resource.RLIMIT_AS)[1],) * 2)
        torch.cuda.manual_seed_all(seed)
    return torch.device(device_name)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()})"


def environment() -> dict[str, str]:
    return {
        "lakegen": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }


@contextmanager
def _code_on_path(paths: list[str]) -> Iterator[None]:
    """Put code folders first on sys.path, and forget their modules afterwards.

    A worker runs many jobs; two code entries may ship modules of the same name.
    """
    sys.path[:0] = paths
    importlib.invalidate_caches()
    try:
        yield
    finally:
        del sys.path[: len(paths)]
        prefixes = tuple(os.path.join(p, "") for p in paths)  # modules found there have such files
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if isinstance(file, str) and file.startswith(prefixes):
                del sys.modules[name]


def _resolve(entrypoint: str) -> Any:
    module, function = entrypoint.split(":", 1)
    return getattr(importlib.import_module(module), function)


def _call(entrypoint: str, **kwargs: Any) -> Any:
    return _resolve(entrypoint)(**kwargs)
