"""The weight commands of ``lakegen``: ``fingerprint``, ``attribute`` and ``search --like``.

Registered by :mod:`lakegen.cli.main`; like it, this module only parses arguments,
calls library functions (:mod:`lakegen.fingerprint`, :mod:`lakegen.attribution`,
:mod:`lakegen.lineage.recover`) and prints. numpy and torch are imported only when a
command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakegen.artifacts.layout import model_input
from lakegen.cli.common import progress

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _lake_root(args: argparse.Namespace) -> Path | None:
    from lakegen.cli.common import find_root

    root = Path(args.root) if args.root else find_root(Path.cwd())
    return root if (root / "catalog").is_dir() else None


def _cache(args: argparse.Namespace) -> Any:
    from lakegen.artifacts.digests import default_cache_dir
    from lakegen.fingerprint import Cache

    if getattr(args, "no_cache", False):
        return None
    return Cache(default_cache_dir(_lake_root(args)))


def _inputs(paths: list[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    from lakegen.weights import WeightsError

    out: list[tuple[str, Path]] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for text in paths:
        try:
            model_id, target = model_input(Path(text))
        except WeightsError as e:
            errors.append(str(e))
            continue
        if model_id in seen:
            errors.append(f"{text}: its id '{model_id}' is also the id of {seen[model_id]}")
            continue
        seen[model_id] = text
        out.append((model_id, target))
    return out, errors


def _fingerprint_all(
    inputs: list[tuple[str, Path]], cache: Any, quiet: bool
) -> tuple[dict[str, Any], dict[str, Path], list[str]]:
    from lakegen.fingerprint import fingerprint
    from lakegen.weights import WeightsError

    fps, where, errors = {}, {}, []
    with progress(not quiet, "fingerprinting", len(inputs)) as bar:
        advance = bar.advance if bar else None
        for model_id, target in inputs:
            try:
                fps[model_id] = fingerprint(target, cache)
                where[model_id] = target
            except WeightsError as e:
                errors.append(str(e))
            if advance is not None:
                advance(model_id)
    return fps, where, errors


def _report(errors: list[str]) -> None:
    for error in errors:
        print(f"lakegen: {error}", file=sys.stderr)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, print_json

    inputs, errors = _inputs(args.paths)
    fps, where, more = _fingerprint_all(inputs, _cache(args), args.json)
    errors += more
    rows = [{"id": m, "path": str(where[m]), **fp.summary()} for m, fp in fps.items()]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            dtypes = ", ".join(f"{k} {v:,}" for k, v in row["dtypes"].items())
            shards = f"  {len(row['shards'])} shards" if "shards" in row else ""
            print(
                f"{row['id']}  {row['sha256']}  {row['bytes']:,} bytes{shards}  {row['tensors']} tensors  "
                f"{row['parameters']:,} parameters  ({dtypes})"
            )
            for part in row.get("shards", []):
                print(f"  {part['file']}  {part['sha256']}  {part['bytes']:,} bytes")
    _report(errors)
    return EXIT_FINDINGS if errors else EXIT_OK


def cmd_attribute(args: argparse.Namespace) -> int:
    if not args.paths:
        return _attribute_catalog(args)
    from lakegen.attribution import attribute
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, print_json
    from lakegen.fingerprint.align import realigner

    inputs, errors = _inputs(args.paths)
    cache = _cache(args)
    fps, where, more = _fingerprint_all(inputs, cache, args.json)
    errors += more
    lineage = attribute(fps, realign=realigner(where, fps, cache))
    if args.json:
        print_json(lineage.to_json())
    else:
        _print_edges(lineage)
    for note in lineage.notes:
        print(f"lakegen: note: {note}", file=sys.stderr)
    _report(errors)
    return EXIT_FINDINGS if errors else EXIT_OK


def _print_edges(lineage: Any) -> None:
    for e in lineage.edges:
        weight = f"  weight {e.weight:.3f}" if e.weight is not None else ""
        print(f"{e.parent} -> {e.child}  {e.relation}  {e.confidence:.2f}{weight}")
    print(
        f"{len(lineage.models)} models, {len(lineage.edges)} edges, roots: {', '.join(lineage.roots) or '-'}",
        file=sys.stderr,
    )


def _attribute_catalog(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, lake_root, print_json
    from lakegen.lineage.recover import artifact_paths, attribute_catalog

    catalog = load_catalog(lake_root(args), verify_artifacts=False)
    total = len(artifact_paths(catalog)[0])
    with progress(not args.json, "fingerprinting", total) as bar:
        result = attribute_catalog(catalog, _cache(args), bar.advance if bar else None)
    if args.json:
        print_json(result.to_json())
    else:
        _print_edges(result.lineage)
        for d in result.declared:
            print(f"{d.path}:{d.line}: {d.status}: {d.model} <- {d.base} ({d.relation}): {d.detail}")
        for finding in result.findings:
            print(finding)
        for key, why in sorted(result.skipped.items()):
            print(f"lakegen: skipped {key}: {why}", file=sys.stderr)
        counts = {
            s: sum(1 for d in result.declared if d.status == s)
            for s in ("verified", "contradicted", "unchecked")
        }
        print(
            f"declared edges: {counts['verified']} verified, {counts['contradicted']} contradicted, "
            f"{counts['unchecked']} unchecked; {len(result.findings)} findings",
            file=sys.stderr,
        )
    return EXIT_FINDINGS if args.strict and result.findings else EXIT_OK


def cmd_search_like(args: argparse.Namespace) -> int:
    from lakegen.catalog.loader import load_catalog
    from lakegen.cli.common import EXIT_FINDINGS, EXIT_OK, lake_root, print_json
    from lakegen.lineage.recover import artifact_paths
    from lakegen.lineage.search import search_like
    from lakegen.weights import WeightsError

    catalog = load_catalog(lake_root(args), verify_artifacts=False)
    total = len(artifact_paths(catalog)[0])
    try:
        with progress(not args.json, "fingerprinting", total) as bar:
            target = model_input(Path(args.like))[1]
            advance = bar.advance if bar else None
            result = search_like(catalog, target, _cache(args), advance, limit=args.limit or 10)
    except WeightsError as e:
        _report([str(e)])
        return EXIT_FINDINGS
    words = [w.lower() for w in getattr(args, "text", None) or []]
    if words:
        result.matches = [m for m in result.matches if all(w in m.id.lower() for w in words)]
        result.best = result.matches[0] if result.matches else None
    if args.json:
        print_json(result.to_json())
    else:
        for m in result.matches:
            weight = f" weight {m.weight:.3f}" if m.weight is not None else ""
            print(
                f"{m.id:40} {m.relation:12} similarity {m.corr:.3f}  distance {m.distance:.3f}  "
                f"confidence {m.confidence:.2f}{weight}"
            )
        print(result.sentence, file=sys.stderr)
    return EXIT_OK if result.best is not None else EXIT_FINDINGS


def add_commands(add: Add) -> None:
    p = add("fingerprint", cmd_fingerprint, "Fingerprint weight files: sha256, tensors, parameters, dtypes.")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="weight files or model folders (one weight file, an adapter, a sharded checkpoint)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the fingerprint cache")
    p.add_argument("--json", action="store_true", help="machine-readable output, no progress bar")

    p = add(
        "attribute",
        cmd_attribute,
        "Recover lineage from weights; with no PATH, check the lake's declared base_models.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="weight files or model folders (default: every model of the lake)",
    )
    p.add_argument("--strict", action="store_true", help="lake mode: exit 1 on any finding")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the fingerprint cache")
    p.add_argument("--json", action="store_true", help="machine-readable output, no progress bar")


def add_search(add: Add, sub: Any) -> None:
    """Extend the existing ``search`` command with ``--like``, or add a ``search`` that has only that."""
    parser = sub.choices.get("search")
    if parser is None:
        parser = add("search", cmd_search_like, "Search the lake; --like FILE ranks models by their weights.")
        parser.add_argument("text", nargs="*", metavar="TEXT", help="words the model ids must contain")
        parser.set_defaults(func=None)
    extend_search(parser)


def extend_search(parser: argparse.ArgumentParser) -> None:
    """Give ``lakegen search`` a ``--like FILE`` mode that ranks the lake's models by their weights."""
    text_search = parser.get_default("func")
    parser.add_argument(
        "--like", metavar="FILE", help="rank models by closeness to this weight file or model folder"
    )
    if not any(a.dest == "limit" for a in parser._actions):
        parser.add_argument("--limit", type=int, help="at most this many hits")
    if not any(a.dest == "json" for a in parser._actions):
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def dispatch(args: argparse.Namespace) -> int:
        if args.like:
            return cmd_search_like(args)
        if text_search is None:
            print("lakegen search: give --like FILE", file=sys.stderr)
            return 2
        return int(text_search(args))

    parser.set_defaults(func=dispatch)
