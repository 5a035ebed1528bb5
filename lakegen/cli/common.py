"""What every command of the CLI shares: exit codes, the usage error, the lake root, JSON and colour on
stdout, and the progress bar. The command modules import from here, never from :mod:`.main`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line asks for something that is not there: an unknown id, revision or facet value.

    Raised by a command with one line per problem; :func:`lakegen.cli.main.main` prints them and
    exits 2, as argparse does for an unknown option.
    """

    def __init__(self, *lines: str):
        self.lines = lines
        super().__init__("\n".join(lines))


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` that holds ``catalog/``; else ``start``."""
    for folder in (start, *start.parents):
        if (folder / "catalog").is_dir():
            return folder
    return start


def lake_root(args: argparse.Namespace) -> Path:
    """The lake a command works on: ``--root``, else the nearest folder holding ``catalog/``."""
    return Path(args.root) if args.root else find_root(Path.cwd())


def colour(stream: Any) -> bool:
    """Whether to colour output to ``stream``: a terminal, and neither NO_COLOR set nor TERM=dumb."""
    isatty = getattr(stream, "isatty", None)
    interactive = bool(isatty and isatty())
    return interactive and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


class Bar:
    """A progress bar's two ways of being fed: one step per item, or ``(done, total)``."""

    def __init__(self, bar: Any, task: Any):
        self._bar, self._task = bar, task

    def advance(self, _item: object = None) -> None:
        self._bar.advance(self._task)

    def update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)


@contextlib.contextmanager
def progress(enabled: bool, label: str, total: int | None = None) -> Iterator[Bar | None]:
    """A rich progress bar on stderr, only on a terminal; None when quiet or not on one."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield Bar(bar, bar.add_task(label, total=total))


def add_executor_option(parser: argparse.ArgumentParser, workers: str | None = None) -> None:
    """``--executor``, and ``--workers`` helped by ``workers`` when given."""
    if workers is not None:
        parser.add_argument("--workers", type=int, help=workers)
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="where fingerprints, evaluations and remote artifact checks run: worker processes here, "
        "or a Ray cluster ($RAY_ADDRESS, else one started for the run); "
        "default $LAKEGEN_EXECUTOR, else local",
    )


def engine(args: argparse.Namespace) -> Any:
    """The executor engine ``--executor`` (or ``$LAKEGEN_EXECUTOR``) names."""
    from lakegen.executor import ENGINE_ENV, EngineError, engine_named

    try:
        return engine_named(getattr(args, "executor", None))
    except EngineError as e:
        raise UsageError(f"${ENGINE_ENV}: {e}") from None
