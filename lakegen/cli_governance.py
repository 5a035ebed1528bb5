"""The governance commands of ``lakegen``: ``check``, ``history`` and ``diff``.

Kept beside :mod:`lakegen.cli` (which registers them) so that file stays short;
like it, this module only parses, calls library functions and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_check(args: argparse.Namespace) -> int:
    from lakegen.cli import EXIT_FINDINGS, EXIT_OK, _print_json, _root
    from lakegen.report import run_check

    report = run_check(
        _root(args), args.base, run_evaluations=not args.no_bench, verify_artifacts=not args.no_verify
    )
    text = report.markdown()
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.json:
        _print_json(report.to_json())
    else:
        sys.stdout.write(text)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def cmd_history(args: argparse.Namespace) -> int:
    from lakegen.catalog import load_catalog
    from lakegen.changetext import as_text
    from lakegen.cli import EXIT_OK, _print_json, _root
    from lakegen.history import lake_history
    from lakegen.terminal import printable

    root = _root(args)
    changes = lake_history(root, load_catalog(root, verify_artifacts=False))
    if args.id:
        changes = [c for c in changes if c.entry == args.id]
    if args.json:
        _print_json([c.model_dump(mode="json") for c in changes])
        return EXIT_OK
    for c in changes:
        pr = f" (PR #{c.pr})" if c.pr else ""
        head = f"{c.date[:10]} {c.commit[:12]} {c.author} <{c.email}>{pr} {c.action} {c.entry}: {c.subject}"
        print(printable(head))
        for fc in c.changes:
            print("\n".join(as_text(fc, "    ")))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from lakegen.catalog import load_catalog
    from lakegen.cli import EXIT_OK, _print_json, _root
    from lakegen.versiondiff import diff_versions, render_text

    catalog = load_catalog(_root(args), verify_artifacts=False)
    diff = diff_versions(catalog, args.id, args.version_a, args.version_b, weights=not args.no_weights)
    if args.json:
        _print_json(diff.to_json())
    else:
        sys.stdout.write(render_text(diff))
    return EXIT_OK


def add_commands(add: Add) -> None:
    """Register ``check``, ``history`` and ``diff`` through cli's ``add`` helper."""
    p = add("check", cmd_check, "Check the lake as a pull request: validation, policies, attribution, bench.")
    p.add_argument("--base", metavar="REF", help="the branch or commit the pull request targets")
    p.add_argument("--report", metavar="FILE", help="also write the Markdown report to FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output instead of Markdown")
    p.add_argument("--no-bench", action="store_true", help="do not re-run new or changed evaluations")
    p.add_argument("--no-verify", action="store_true", help="skip artifact sha256 checks")

    p = add("history", cmd_history, "The audit trail of manifests from git: field-level changes.")
    p.add_argument("id", nargs="?", help="only this entry")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("diff", cmd_diff, "Compare two versions of an entry: manifest and weights.")
    p.add_argument("id")
    p.add_argument("version_a")
    p.add_argument("version_b")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-weights", action="store_true", help="compare manifests only")
