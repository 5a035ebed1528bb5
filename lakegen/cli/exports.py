"""The ``export`` and ``import`` commands of ``lakegen``.

Kept beside :mod:`lakegen.cli.main` (which registers them); like it, this module only parses
arguments, calls library functions (:mod:`lakegen.exports`, :mod:`lakegen.importhf`) and prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
# Named here rather than imported, so `lakegen --help` does not load the exporters; a test keeps
# them equal to lakegen.exports.FORMATS and lakegen.importhf.RISKS.
FORMATS = {
    "hf-card": "Hugging Face model card, README.md",
    "cyclonedx": "CycloneDX 1.6 ML-BOM",
    "spdx": "SPDX 3.0.1 with the AI and Dataset profiles",
    "croissant": "Croissant 1.1, for datasets",
    "ai-act": "EU AI Act technical documentation",
}
RISKS = ("minimal", "limited", "high", "unacceptable")


def _index(args: argparse.Namespace, root: Path) -> Any:
    """``--index`` when given; else the saved index while it matches the working tree; else compiled
    now (verifying artifacts, as their hashes go into the exports) and saved."""
    from lakegen.compile import compile_lake
    from lakegen.compile.store import load_current, load_index, save

    if args.index:
        return load_index(Path(args.index))
    index, _ = load_current(root)
    if index is None:
        index = compile_lake(root)
        save(index, root)
    return index


def cmd_export(args: argparse.Namespace) -> int:
    from lakegen.atomicfile import write_atomic
    from lakegen.cli.common import EXIT_OK, UsageError, lake_root
    from lakegen.exports import ExportError, export

    try:
        documents = export(_index(args, lake_root(args)), args.format, args.ids)
    except ExportError as e:
        raise UsageError(str(e)) from None
    if not documents:
        raise UsageError(f"the lake has no entries for {args.format}")
    if args.output is None:
        if len(documents) > 1:
            raise UsageError(f"{len(documents)} documents: name one ID, or give -o FOLDER")
        sys.stdout.write(next(iter(documents.values())))
        return EXIT_OK
    out = Path(args.output)
    if len(documents) == 1 and not out.is_dir():
        targets = {out: next(iter(documents.values()))}
    else:
        targets = {out / name: text for name, text in documents.items()}
    for path, text in targets.items():  # every document is rendered before the first is written
        write_atomic(path, text)
        print(path.as_posix())
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from lakegen.cli.common import EXIT_OK, lake_root
    from lakegen.importhf import import_hf

    root = lake_root(args)
    path = import_hf(
        root,
        args.source,
        entry_id=args.id,
        owners=args.owner,
        risk=args.risk,
        license=args.license,
        version=args.version,
        hub_id=args.hub_id,
        released=args.released,
    )
    print(path.relative_to(root).as_posix())
    return EXIT_OK


def add_commands(add: Add) -> None:
    formats = ", ".join(f"{name} ({what})" for name, what in FORMATS.items())
    p = add("export", cmd_export, "Write model cards, ML-BOMs, dataset descriptions or AI Act documentation.")
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT", help=f"one of: {formats}")
    p.add_argument(
        "ids", nargs="*", metavar="ID", help="entries to export (default: every model, or dataset)"
    )
    p.add_argument(
        "-o", "--output", metavar="PATH", help="write here (a folder for several documents); default stdout"
    )
    p.add_argument("--index", help="export from this compiled lake.json instead of the lake's own")

    p = add("import", cmd_import, "Write a manifest from a Hugging Face model folder or Hub repo.")
    p.add_argument("kind", choices=["hf"], metavar="FROM", help="hf: a Hugging Face model")
    p.add_argument("source", metavar="PATH|hf://org/name", help="a model folder in the lake, or a Hub repo")
    p.add_argument("--id", help="the new entry's id (default: from the folder or repo name)")
    p.add_argument("--owner", action="append", help="owner handle or team; repeat for several (required)")
    p.add_argument("--risk", choices=RISKS, help="its risk level under the EU AI Act (required)")
    p.add_argument("--license", help="SPDX expression, when the card's licence is not one")
    p.add_argument("--version", default="1.0.0", help="the version the weights are released as (1.0.0)")
    p.add_argument(
        "--released",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="when that version was released (default today; attribution orders models by it)",
    )
    p.add_argument(
        "--hub-id", metavar="ORG/NAME", help="the Hub repo a folder was copied from (links the entry to it)"
    )
