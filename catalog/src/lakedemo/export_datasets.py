"""Export the demo lake's datasets from scikit-learn into compact ``.npz`` files.

Run once; the resulting files are committed under ``catalog/artifacts/datasets/``
so that nothing downstream needs scikit-learn or a network connection.
``build_demo.py --export-datasets`` calls :func:`export` before training.

Each archive holds ``x_train``, ``y_train``, ``x_test``, ``y_test``: float32
features and int64 labels, split 75/25, stratified by label, with seed 0.

- ``digits-1.0.0.npz``: ``sklearn.datasets.load_digits`` (1,797 8×8 images of
  handwritten digits, UCI Optical Recognition of Handwritten Digits, CC-BY-4.0);
  pixel counts 0–16 divided by 16, so features lie in [0, 1].
- ``wine-1.0.0.npz``: ``sklearn.datasets.load_wine`` (178 wines, 13 chemical
  measurements, 3 cultivars; UCI Wine, CC-BY-4.0); features standardised with
  the mean and standard deviation of the training split only.
- ``digits-noisy-1.0.0.npz``: derived from digits with the same rows and split:
  Gaussian noise (σ = 0.2, numpy ``default_rng(0)``) added to every pixel,
  clipped back to [0, 1].

The archives are written with fixed zip timestamps, so re-exporting with the
same library versions reproduces the same bytes.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SEED = 0
TEST_SIZE = 0.25
NOISE_SIGMA = 0.2
VERSION = "1.0.0"


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """A compressed ``.npz`` readable by ``np.load``, byte-for-byte reproducible (fixed timestamps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    return path


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=SEED))


def digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = _split(x, bunch.target.astype(np.int64))
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def noisy_arrays(digits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    out = dict(digits)
    for split in ("train", "test"):
        x = digits[f"x_{split}"]
        noisy = x + rng.normal(0.0, NOISE_SIGMA, size=x.shape)
        out[f"x_{split}"] = np.clip(noisy, 0.0, 1.0).astype(np.float32)
    return out


def wine_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    x_train, x_test, y_train, y_test = _split(bunch.data.astype(np.float64), bunch.target.astype(np.int64))
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return {
        "x_train": ((x_train - mean) / std).astype(np.float32),
        "y_train": y_train,
        "x_test": ((x_test - mean) / std).astype(np.float32),
        "y_test": y_test,
    }


def export(out_dir: str | Path) -> list[Path]:
    """Write digits, digits-noisy and wine ``.npz`` files into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    digits = digits_arrays()
    return [
        save_npz(out_dir / f"digits-{VERSION}.npz", digits),
        save_npz(out_dir / f"digits-noisy-{VERSION}.npz", noisy_arrays(digits)),
        save_npz(out_dir / f"wine-{VERSION}.npz", wine_arrays()),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Export the demo datasets (needs scikit-learn)."""
    parser = argparse.ArgumentParser(prog="python -m lakedemo.export_datasets", description=main.__doc__)
    parser.add_argument("--out", default="catalog/artifacts/datasets", help="folder to write into")
    args = parser.parse_args(argv)
    for path in export(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
