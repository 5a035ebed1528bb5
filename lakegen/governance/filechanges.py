"""What a pull request's changes to files other than manifests mean for the check.

Every changed file is classified (:func:`lakegen.governance.changes.classify`); this module
turns the classes that change how the lake is checked, built or published into
findings:

- ``mkdocs.yml``: hooks, plugins outside an allowlist, Markdown extensions
  outside one, scripts, theme overrides and Python tags run code or load
  markup at build time: errors, at their line;
- ``pyproject.toml``: a changed entry point (a policy plugin, an mkdocs plugin)
  is code lakegen would load: an error; other packaging changes, workflows,
  templates and lakegen's own code: warnings that the governance owners review;
- a code entry's source: every evaluation of a model built or evaluated with it
  is re-run (see :meth:`lakegen.compile.scope.Scope.changed_evaluations`);
- results a pull request commits are never read (they are re-run): a note.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lakegen.errors import Finding, Severity
from lakegen.governance.changes import FileChange, LakeChanges

MKDOCS = "mkdocs.yml"
# What a site build may use: lakegen's own plugin and material's built-ins that load nothing remote.
PLUGINS = {"lakegen", "search", "offline", "tags"}
MARKDOWN_EXTENSIONS = {
    "abbr",
    "admonition",
    "attr_list",
    "def_list",
    "footnotes",
    "md_in_html",
    "tables",
    "toc",
    "meta",
    "sane_lists",
    "smarty",
    "fenced_code",
    "codehilite",
    "pymdownx.details",
    "pymdownx.highlight",
    "pymdownx.inlinehilite",
    "pymdownx.superfences",
    "pymdownx.tabbed",
    "pymdownx.tasklist",
    "pymdownx.emoji",
    "pymdownx.mark",
    "pymdownx.tilde",
    "pymdownx.caret",
    "pymdownx.keys",
    "pymdownx.smartsymbols",
}
REVIEWED = {"workflow", "repository settings", "packaging", "lakegen's own code", "site templates"}


class _AnyTag(yaml.SafeLoader):
    """Reads mkdocs.yml's shape without constructing its tags (``!ENV``, ``!!python/name``)."""


_AnyTag.add_multi_constructor("", lambda loader, suffix, node: None)


def findings(changes: LakeChanges, root: Path) -> list[Finding]:
    """The findings of one pull request's changed files (manifests aside)."""
    out: list[Finding] = []
    for change in changes.files:
        if change.status == "removed":
            continue
        if change.path == MKDOCS:
            out += site_config(root / MKDOCS)
        elif change.path.endswith("pyproject.toml"):
            out += _entry_points(changes, change, root)
        if change.what in REVIEWED:
            out.append(
                _finding(
                    "tooling-change",
                    "warning",
                    change.path,
                    1,
                    f"{change.status} {change.what}: it changes how lakegen checks, builds or publishes the "
                    "lake, so the governance owners review it (lakegen codeowners)",
                )
            )
        elif change.what in ("lakegen's cache", "built site"):
            out.append(
                _finding(
                    "planted-cache",
                    "error",
                    change.path,
                    1,
                    f"commits {change.what} ({change.path}): lakegen writes it, nobody commits it; a "
                    "committed cache could carry forged results or fingerprints, so the check reads no "
                    "cache and re-runs everything",
                )
            )
        elif change.what == "results":
            out.append(
                _finding(
                    "results-change",
                    "info",
                    change.path,
                    1,
                    "results a pull request commits are not read: the check re-runs the claims, and main's "
                    "publish run writes the numbers the site shows",
                )
            )
    return out


def site_config(path: Path) -> list[Finding]:
    """What in ``mkdocs.yml`` would run code or load markup at build time."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_AnyTag)  # constructs no tag at all
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return [_finding("site-config", "error", MKDOCS, 1, f"cannot be read: {e}")]
    if not isinstance(data, dict):
        return [_finding("site-config", "error", MKDOCS, 1, "is not a YAML mapping")]
    lines = text.splitlines()
    out = []

    def error(key: str, message: str) -> None:
        out.append(_finding("site-config", "error", MKDOCS, _line(lines, key), message))

    if data.get("hooks"):
        error("hooks", "hooks: mkdocs runs these Python files at build time; lakegen builds allow none")
    for name in _names(data.get("plugins")):
        if name not in PLUGINS:
            error(name, f"plugins: '{name}' is not one a lake site may run ({', '.join(sorted(PLUGINS))})")
    for name in _names(data.get("markdown_extensions")):
        if name not in MARKDOWN_EXTENSIONS:
            error(
                name,
                f"markdown_extensions: '{name}' is not on lakegen's allowlist; mkdocs imports it as code",
            )
    for key in ("extra_javascript", "extra_templates"):
        if data.get(key):
            error(key, f"{key}: scripts and templates from the lake's config are not allowed in its site")
    theme = data.get("theme")
    if isinstance(theme, dict) and theme.get("custom_dir"):
        error("custom_dir", "theme.custom_dir: template overrides run at build time and are not allowed")
    for n, line in enumerate(lines, 1):
        if re.search(r"!!python/", line):
            out.append(
                _finding("site-config", "error", MKDOCS, n, "a !!python tag names code for mkdocs to run")
            )
    return out


def _names(items: Any) -> list[str]:
    if isinstance(items, dict):
        return [str(k) for k in items]
    if isinstance(items, list):
        return [str(next(iter(i))) if isinstance(i, dict) and i else str(i) for i in items]
    return []


def _entry_points(changes: LakeChanges, change: FileChange, root: Path) -> list[Finding]:
    """An entry point added or changed: code lakegen (policies) or mkdocs (plugins) would load."""
    blob = changes.repo.tree(changes.base_commit, change.path).get(change.path)
    before = changes.repo.blobs([blob]).get(blob, b"").decode("utf-8", "replace") if blob else ""
    try:
        after = (root / change.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    added = sorted(set(_entry_point_lines(after)) - set(_entry_point_lines(before)))
    return [
        _finding(
            "entry-points",
            "error",
            change.path,
            _line(after.splitlines(), line),
            f"adds or changes the entry point '{line}': installed, it is code lakegen or mkdocs loads "
            "(a policy, a plugin); the governance owners must review it",
        )
        for line in added
    ]


def _entry_point_lines(text: str) -> list[str]:
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line.startswith(("[project.entry-points", "[project.scripts", "[project.gui-scripts"))
            continue
        if inside and line and not line.startswith("#"):
            out.append(line)
    return out


def _line(lines: list[str], needle: str) -> int:
    return next((n for n, line in enumerate(lines, 1) if needle in line), 1)


def _finding(rule: str, severity: Severity, path: str, line: int, message: str) -> Finding:
    return Finding(stage="governance", rule=rule, severity=severity, path=path, line=line, message=message)
