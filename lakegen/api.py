"""Thin wrappers that give the weight functions a library signature (re-exported by :mod:`lakegen`).

The stages themselves take a fingerprint :class:`~lakegen.fingerprint.Cache` object and raise
:class:`~lakegen.weights.WeightsError`; a library user passes a cache folder and catches the one
:class:`~lakegen.errors.LakeError`, which carries every problem of the call at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen.errors import Finding, LakeError

if TYPE_CHECKING:
    from lakegen.attribution import Lineage
    from lakegen.fingerprint import Cache, Fingerprint


def fingerprint_weights(path: str | Path, *, cache_dir: str | Path | None = None) -> Fingerprint:
    """Fingerprint one model: a weight file, a LoRA adapter folder or a sharded checkpoint's folder.

    One streaming pass over its bytes also yields their sha256, which the fingerprint carries.

    Args:
        path: the weight file (safetensors, PyTorch, npz) or model folder.
        cache_dir: a folder to keep fingerprints in (a lake keeps its own in ``.lakegen/cache``);
            an unchanged file is then not read again. ``None`` reads the file every time.

    Returns:
        The fingerprint; ``summary()`` gives its facts (sha256, parameters, dtypes) as a dict.

    Raises:
        LakeError: the path is missing, unreadable, or not weights lakegen reads safely.
    """
    from lakegen.fingerprint import fingerprint
    from lakegen.weights import WeightsError

    try:
        return fingerprint(Path(path), _cache(cache_dir))
    except WeightsError as e:
        raise LakeError(Finding(e.path, 1, "", e.reason)) from None


def attribute(
    paths: Iterable[str | Path] | Mapping[str, str | Path],
    *,
    cache_dir: str | Path | None = None,
    order: Mapping[str, Any] | None = None,
) -> Lineage:
    """Recover typed, directed lineage among models from their weights alone.

    Args:
        paths: weight files or model folders; each model is named after its file's stem (its
            folder's name for a folder). A mapping of model id to path chooses the names instead.
        cache_dir: a folder to keep fingerprints in, as for :func:`fingerprint_weights`.
        order: model id to a sortable value such as its release date; a model is never made the
            fine-tuned child of one that sorts after it.

    Returns:
        The lineage: ``edges`` (parent, child, relation, confidence, merge weight), ``roots``.

    Raises:
        LakeError: with one problem per path that cannot be fingerprinted, and per name used twice.
    """
    from lakegen.attribution import attribute as attribute_fingerprints
    from lakegen.fingerprint.align import realigner
    from lakegen.lineage.recover import fingerprints

    problems: list[Finding] = []
    if isinstance(paths, Mapping):
        named = {model_id: Path(p) for model_id, p in paths.items()}
    else:
        named, problems = _named([Path(p) for p in paths])
    found, failed = fingerprints(named, _cache(cache_dir))
    problems += [Finding(str(named[model_id]), 1, "", why) for model_id, why in failed.items()]
    if problems:
        raise LakeError(problems)
    return attribute_fingerprints(found, order=order, realign=realigner(named, found, _cache(cache_dir)))


def _named(paths: list[Path]) -> tuple[dict[str, Path], list[Finding]]:
    """Each path under its model's name (a file's stem, a folder's name), and the names used twice."""
    named: dict[str, Path] = {}
    problems = []
    for path in paths:
        name = path.name if path.is_dir() else path.stem
        if name in named:
            problems.append(Finding(str(path), 1, "", f"its name '{name}' is also the name of {named[name]}"))
        else:
            named[name] = path
    return named, problems


def _cache(folder: str | Path | None) -> Cache | None:
    from lakegen.fingerprint import Cache

    return Cache(folder) if folder is not None else None
