"""Build the site into a temporary folder, then swap it into place or patch the previous site
with it; serve it locally.

An interrupted build leaves the previous ``site/`` as it was: mkdocs writes
into a sibling temporary folder, and ``site/`` changes only once everything,
the search index included, is there. A first build (or one that cannot reuse
the previous site) is renamed over ``site/``; a rebuild holds only what
changed, which is moved into ``site/`` (:func:`_patch`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import http.server
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen.compile.store import Saved
from lakegen.errors import Finding, LakeError
from lakegen.model.index import LakeIndex

DEFAULT_CONFIG = """\
site_name: Model lake
use_directory_urls: false
theme:
  name: material
  font: false
  features: [navigation.prune, navigation.top, toc.follow]
plugins:
  - lakegen
"""


@dataclass
class BuildReport:
    """What :func:`build_site` did: where the site is, how long it took, how many pages it has."""

    site: Path
    seconds: float
    pages: int
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts of the run: pages ``rendered`` and ``reused``, search shards indexed, timings."""


def _refuse_code(config_file: Path) -> None:
    """A lake's ``mkdocs.yml`` may not make the build run code or load scripts (hooks, plugins and
    Markdown extensions outside lakegen's allowlist, ``extra_javascript``, template overrides): the
    same rules ``lakegen check`` reports on a pull request."""
    from lakegen.errors import Finding, LakeError
    from lakegen.governance.filechanges import site_config

    errors = [f for f in site_config(config_file) if f.severity == "error"]
    if errors:
        name = config_file.name
        raise LakeError([Finding(name, f.line, "", f.message) for f in errors])


def _config(root: Path, site_dir: Path, config_file: Path | None) -> Any:
    from mkdocs.config import load_config

    from lakegen.site.plugin import default_templates

    if config_file is None and (root / "mkdocs.yml").is_file():
        config_file = root / "mkdocs.yml"
    if config_file is not None:
        _refuse_code(config_file)
        return load_config(str(config_file), site_dir=str(site_dir))
    docs = default_templates() / "docs"
    stream = io.StringIO(DEFAULT_CONFIG)
    stream.name = str(root / "mkdocs.yml")  # mkdocs resolves relative paths against this
    return load_config(stream, site_dir=str(site_dir), docs_dir=str(docs))


def build_site(
    root: Path | str,
    index: LakeIndex | Saved | None = None,
    *,
    site_dir: Path | str | None = None,
    config_file: Path | str | None = None,
    reuse: bool = True,
    pagefind: bool | None = None,
    stamp: bool | None = None,
    shard_size: int | None = None,
) -> BuildReport:
    """Render the governance site of the lake at ``root`` with mkdocs-material.

    The new site replaces the old one only once it is complete, search index included.

    Args:
        root: the lake (the folder holding ``catalog/``).
        index: the compiled lake (:func:`~lakegen.compile.compile_lake`), or the saved one unread
            (:func:`lakegen.compile.store.saved`: read only when the site needs building);
            ``None`` compiles it.
        site_dir: where the site goes; default ``root/site``.
        config_file: an mkdocs configuration that lists the ``lakegen`` plugin; default
            ``root/mkdocs.yml`` when there is one, else lakegen's own.
        reuse: link pages unchanged since the previous build in ``site_dir`` instead of rendering them.
        pagefind: build the Pagefind search index; ``None`` leaves it to the configuration (on).
        stamp: stamp pages out of one rendered shell per folder; ``None`` leaves it to the configuration.
        shard_size: entries per search shard; ``None`` leaves it to the configuration.

    Returns:
        Where the site is, its page count and the run's counts.

    Raises:
        LakeError: the lake has no ``catalog/``, or the configuration does not list the plugin.
    """
    from mkdocs.commands.build import build

    from lakegen.site import cache
    from lakegen.site.plugin import LakegenPlugin

    root = Path(root).resolve()
    final = Path(site_dir).resolve() if site_dir else root / "site"
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    start = time.perf_counter()
    # What exists now (the index above all) outlives the build: frozen, the collector's full passes
    # skip it. They walked the whole index a few times a build, which made up half the cost of the
    # site's per-entry loops at 10,000 models.
    thawed = gc.get_freeze_count() == 0
    gc.freeze()
    plugin = None
    try:
        config = _config(root, tmp, Path(config_file) if config_file else None)
        plugin = next((p for p in config.plugins.values() if isinstance(p, LakegenPlugin)), None)
        if plugin is None:
            shown = Path(os.path.relpath(config.config_file_path, root)).as_posix()
            raise LakeError(Finding(shown, 1, "plugins", "does not list the lakegen plugin"))
        if plugin.config.root is None:
            plugin.root_override = root
        plugin.reuse_from = final if reuse and final.is_dir() else None
        plugin.patch = plugin.reuse_from is not None
        if pagefind is not None:
            plugin.config.pagefind = pagefind
        if stamp is not None:
            plugin.config.stamp = stamp
        if shard_size is not None:
            plugin.config.shard_size = shard_size
        if plugin.reuse_from is not None and index is not None and plugin.config.reuse:
            plugin.on_config(config)  # as the build would (it does the same again, to the same effect)
            if isinstance(index, Saved):
                key = plugin.key_of(config, index.digest, index.options, index.generated_at)
            else:
                key = plugin.site_key(config, index)
            pages = cache.unchanged(final, key)
            if pages is not None:  # built from this very index, the same way: nothing to do
                shutil.rmtree(tmp, ignore_errors=True)
                stats = {"rendered": 0, "reused": pages, "unchanged": True}
                return BuildReport(final, time.perf_counter() - start, pages, stats)
        plugin.index = index.load() if isinstance(index, Saved) else index  # None: the plugin compiles
        with _quiet_mkdocs():
            build(config)
        if plugin.patching:
            moved = _patch(tmp, final, plugin.stale, plugin.replaced, root / ".lakegen" / "trash")
            plugin.stats.update(patched=moved, removed=len(plugin.stale))
        else:
            _swap(tmp, final, root / ".lakegen" / "trash")
    except BaseException:
        if plugin is not None:
            plugin.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if thawed:  # else the caller froze objects too, which cannot be told apart from these
            gc.unfreeze()
    stats = dict(plugin.stats)
    return BuildReport(final, time.perf_counter() - start, stats["rendered"] + stats["reused"], stats)


def _recover(final: Path) -> None:
    """Undo what a build killed mid-way left: its temporary folder, or a swap cut in half."""
    for left in final.parent.glob(f".{final.name}.*"):
        if left.name.endswith(".tmp") or (final.exists() and ".old-" in left.name):
            shutil.rmtree(left, ignore_errors=True)
    if not final.exists():
        olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if olds:
            olds[-1].rename(final)


def _swap(new: Path, final: Path, trash: Path) -> None:
    """Put ``new`` at ``final``; the old folder is removed (into ``trash``) only after the rename
    succeeded."""
    os.chmod(new, 0o755)
    if not final.exists():
        new.rename(final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    final.rename(old)
    new.rename(final)
    _discard([old], trash)


def _patch(new: Path, final: Path, stale: list[str], replaced: list[str], trash: Path) -> int:
    """Make ``final`` the site built in ``new``, which holds only what changed: ``stale`` files
    (and search shards) are removed from ``final``, ``new``'s files are moved into it, the
    ``replaced`` folders whole, and the build's record last. Returns how many were moved in.

    A rebuild of 10,000 models changes a few dozen files of 52,000: linking the others into a
    new folder, one system call each (a folder made for each model card), cost seconds, and
    removing the old site once it was swapped out tens of seconds of the disk's time. ``final``
    stays the previous site until this runs; the record goes first, so a patch cut short leaves a
    site with no record, which the next build builds whole.
    """
    from lakegen.site.cache import RECORD

    (final / RECORD).unlink(missing_ok=True)
    gone = []
    for rel in stale:
        path = final / rel
        if path.is_dir() and not path.is_symlink():
            gone.append(path)
        else:
            path.unlink(missing_ok=True)
            _prune(path.parent, final)
    moved = _move_tree(new, final, {str(new / rel) for rel in replaced}, gone, skip=RECORD)
    _discard(gone, trash)  # shards replaced or no longer built
    os.replace(new / RECORD, final / RECORD)
    shutil.rmtree(new, ignore_errors=True)
    return moved


def _move_tree(src: Path, dst: Path, whole: set[str], gone: list[Path], skip: str = "") -> int:
    """Move what ``src`` holds into ``dst`` (but ``skip``): a file over the one it replaces, a
    folder named in ``whole`` or missing from ``dst`` in one rename (what it replaces into
    ``gone``), other folders file by file."""
    moved = 0
    with os.scandir(src) as found:
        entries = [e for e in found if e.name != skip]
    for entry in entries:
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and entry.path not in whole:
            moved += _move_tree(Path(entry.path), target, whole, gone)
            continue
        if target.is_dir() and not target.is_symlink():
            aside = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(aside)
            gone.append(aside)
        elif entry.is_dir(follow_symlinks=False) and os.path.lexists(target):
            target.unlink()
        os.replace(entry.path, target)
        moved += 1
    return moved


def _prune(folder: Path, top: Path) -> None:
    """Remove ``folder`` and the folders above it, up to ``top``, while they are empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _discard(folders: list[Path], trash: Path) -> None:
    """Remove ``folders`` without waiting for them.

    A rebuild that swaps a new site in links its unchanged files from the previous site, so
    removing that one costs an unlink per file of the site (tens of thousands for a lake of 10,000
    models, seconds to a minute of waiting on the disk) and nothing depends on it: it is renamed
    into ``trash`` (in lakegen's own ``.lakegen/``, which git ignores), and removed by a detached
    low-priority process.
    """
    if not folders:
        return
    try:
        trash.mkdir(parents=True, exist_ok=True)
        for folder in folders:
            folder.rename(trash / f"{folder.name}-{time.time_ns()}")
    except OSError:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    code = "import os, shutil, sys; os.nice(10); shutil.rmtree(sys.argv[1], ignore_errors=True)"
    try:
        subprocess.Popen(
            [sys.executable, "-c", code, str(trash)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this build, and a Ctrl-C of it
        )
    except OSError:
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _quiet_mkdocs() -> Any:
    """mkdocs logs INFO lines and a banner about its future; lakegen prints its own summary."""
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    logger = logging.getLogger("mkdocs")
    level = logger.level
    logger.setLevel(logging.WARNING)
    handler = None
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("mkdocs: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def serve(site: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve a built site on ``host:port`` until interrupted."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        print(f"Serving {site} at http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
