"""Where contributed code runs: a bubblewrap sandbox with a hard memory limit.

A lake's code entries (model builders, metrics) come from pull requests, so
running them is running the contributor's code. :class:`Sandbox` wraps a worker
command in Debian's ``bwrap``:

- no network (a private network namespace: not even the host's loopback);
- the whole file system read-only but for one scratch folder (also its ``TMPDIR``)
  and the home folder hidden (it holds credentials; what the job reads stays), so no cache, result
  or manifest of the lake can be written;
- a clean environment: only what the job needs (no tokens, no ``GITHUB_*``);
- every capability dropped, a private PID namespace that dies with its parent,
  so killing the worker on a timeout kills every process it started, ``setsid``
  or not;
- a hard memory limit: the worker joins a memory cgroup of its own (cgroup v2,
  or v1's memory controller) before ``bwrap`` starts, so all it forks is held to
  the limit; and, off GPUs, a hard ``RLIMIT_AS`` that the job, without
  capabilities, cannot raise (the only limit where no cgroup can be made).

Without ``bwrap`` there is no sandbox: :func:`unavailable` says why, and the
bench refuses to run contributed code unless told to trust it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BWRAP = "bwrap"
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@functools.cache
def unavailable() -> str | None:
    """Why no sandbox can be made here (None when one can)."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bubblewrap (bwrap) is not installed; on Debian or Ubuntu: apt-get install bubblewrap"
    probe = [exe, *_isolation(Path(tempfile.gettempdir()), ()), "--", "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap did not run: {e}"
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        return f"bwrap cannot make a sandbox here ({first}); user namespaces may be disabled"
    return None


def _isolation(scratch: Path, visible: Sequence[Path]) -> list[str]:
    """The bwrap options: ``visible`` paths stay readable even where they lie in the hidden home."""
    args = [
        "--unshare-all",  # network, PID, IPC, UTS and cgroup namespaces (and user where unprivileged)
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    home = Path.home().resolve()
    if home != Path("/") and home.is_dir():
        args += ["--tmpfs", str(home)]
        for path in sorted({Path(p).resolve() for p in visible}):
            if path.exists() and path.is_relative_to(home) and path != home:
                args += ["--ro-bind", str(path), str(path)]
    return [*args, "--bind", str(scratch), str(scratch), "--chdir", str(scratch)]


@dataclass
class Sandbox:
    """How a worker is confined; :meth:`start` wraps one worker command."""

    memory_limit_bytes: int | None = None
    gpus: bool = False  # bind the host's /dev, so CUDA devices are there
    visible: Sequence[Path] = ()  # what the job reads (the lake), kept readable inside a hidden home
    address_space: bool = True  # also cap the address space (CPU jobs), not only resident memory
    keep_env: Sequence[str] = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "LANG", "LC_ALL")

    def start(self, argv: Sequence[str], env: Mapping[str, str], **popen: object) -> Confined:
        """Start ``argv`` confined; ``env`` is the environment it would have had, of which only
        ``PYTHONPATH`` and :attr:`keep_env` pass in."""
        why = unavailable()
        if why is not None:
            raise RuntimeError(f"no sandbox: {why}")
        scratch = Path(tempfile.mkdtemp(prefix="lakegen-sandbox-"))
        cgroup = MemoryCgroup.make(self.memory_limit_bytes) if self.memory_limit_bytes else None
        # The file system is read-only, /tmp too: temporary files go to the scratch folder.
        (scratch / "tmp").mkdir()
        inside = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch / "tmp"),
        }
        for name in ("PYTHONPATH", *self.keep_env):
            if name in env:
                inside[name] = env[name]
        python_path = [Path(p) for p in inside.get("PYTHONPATH", "").split(os.pathsep) if p]
        visible = [Path(sys.prefix), Path(sys.base_prefix), Path(argv[0]).parent, *python_path, *self.visible]
        bwrap = [str(shutil.which(BWRAP)), *_isolation(scratch, visible), "--clearenv"]
        for name, value in sorted(inside.items()):
            bwrap += ["--setenv", name, value]
        if self.gpus:
            bwrap += ["--dev-bind", "/dev", "/dev"]
        command = list(argv)
        if self.memory_limit_bytes and self.address_space and not self.gpus:
            # Also a hard address-space limit, which no process without CAP_SYS_RESOURCE (all
            # capabilities are dropped) can raise: a huge allocation then fails at once instead
            # of paging the cgroup to its limit. Not with GPUs: CUDA maps address space far
            # beyond the memory it uses.
            kib = int(self.memory_limit_bytes) // 1024
            command = ["/bin/sh", "-c", f'ulimit -v {kib} && exec "$@"', "sh", *command]
        bwrap += ["--", *command]
        if cgroup is not None:
            # Join the cgroup first, then become bwrap: everything it forks stays inside.
            bwrap = ["/bin/sh", "-c", f'echo $$ > "{cgroup.procs}" && exec "$@"', "sh", *bwrap]
        proc = subprocess.Popen(bwrap, env=dict(inside), start_new_session=True, **popen)  # type: ignore[call-overload]
        return Confined(proc, scratch, cgroup)


@dataclass
class Confined:
    """A running sandboxed command, with what must go when it does."""

    proc: subprocess.Popen[bytes]
    scratch: Path
    cgroup: MemoryCgroup | None

    def kill(self) -> None:
        """Kill the command and every process it started; remove its scratch folder and cgroup."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.remove()
        shutil.rmtree(self.scratch, ignore_errors=True)


@dataclass
class MemoryCgroup:
    """A memory cgroup of this process's own (v2 ``memory.max``, or v1 ``memory.limit_in_bytes``)."""

    path: Path
    version: int

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    @classmethod
    def make(cls, limit: int) -> MemoryCgroup | None:
        """A new cgroup limited to ``limit`` bytes, or None where none can be made (not root, no
        delegation)."""
        name = f"lakegen-{os.getpid()}-{next(_serial)}"
        for version, parent, files in _candidates():
            try:
                path = parent / name
                path.mkdir()
            except OSError:
                continue
            try:
                for file in files:
                    (path / file).write_text(str(limit) if file != "memory.swap.max" else "0")
                return cls(path, version)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def kill_all(self) -> None:
        kill = self.path / "cgroup.kill"
        if self.version == 2 and kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
        for _ in range(50):
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill_all()


def _own_cgroup(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return path
    except OSError:
        return None
    return None


def _candidates() -> list[tuple[int, Path, tuple[str, ...]]]:
    out: list[tuple[int, Path, tuple[str, ...]]] = []
    v2 = _own_cgroup("")
    unified = _CGROUP_ROOT if (_CGROUP_ROOT / "cgroup.controllers").exists() else _CGROUP_ROOT / "unified"
    if v2 is not None and (unified / "cgroup.controllers").exists():
        controllers = (unified / v2.lstrip("/") / "cgroup.controllers").read_text() if v2 else ""
        if "memory" in controllers.split():
            out.append((2, unified / v2.lstrip("/"), ("memory.max", "memory.swap.max")))
    v1 = _own_cgroup("memory")
    if v1 is not None and (_CGROUP_ROOT / "memory").is_dir():
        out.append((1, _CGROUP_ROOT / "memory" / v1.lstrip("/"), ("memory.limit_in_bytes",)))
    return out


_serial = itertools.count(1)
