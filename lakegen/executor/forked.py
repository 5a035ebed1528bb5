"""lakegen's own independent computations on every core: this process and forks of it.

The local executor (:mod:`lakegen.executor.local`) starts fresh interpreters and speaks JSON: right
for contributed code and for jobs that name their inputs by path. A computation over what this
process already holds (every fingerprint, the views of a family) would have to send all of it
across first; a fork shares it, copy-on-write. :func:`map_forked` runs a function over items here
and in ``workers - 1`` forks, each taking every ``workers``-th item (costs vary along a list, so a
stride evens them out), and returns the results in the items' order: the list
``[fn(x) for x in items]`` would be, whatever the scheduling. A fork that fails (it raised, crashed
or was killed) has its items computed again here, in order, so a failure costs time, never another
result, and an item that raises raises here as it would in that loop.

What runs in a fork must be a function of its arguments (what it writes into this process's
objects, a memo, is lost with it) and return what pickle carries: the bytes come from a fork of
this very process, so they are no more trusted than its own memory. This is lakegen's own code
only; contributed code runs in the sandboxed executor.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

ENV = "LAKEGEN_FORKS"  # processes to split the work over; 1: none
MAX_WORKERS = 4  # each fork's pages are shared until written: memory grows with them all the same

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def workers(items: int, least: int) -> int:
    """How many processes share ``items`` computations: ``$LAKEGEN_FORKS`` when set (1: this one
    alone), else one a core (at most :data:`MAX_WORKERS`) when there are at least ``least`` items,
    below which starting a fork costs more than it saves."""
    given = os.environ.get(ENV, "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            return 1
    return min(cores(), MAX_WORKERS) if items >= least else 1


def map_forked(fn: Callable[[T], R], items: Sequence[T], processes: int) -> list[R]:
    """``[fn(x) for x in items]``, computed by ``processes`` processes: this one and forks of it."""
    items = list(items)
    processes = min(processes, len(items))
    if processes <= 1 or not _may_fork():
        return [fn(x) for x in items]
    shares = [range(w, len(items), processes) for w in range(processes)]
    forks: list[tuple[int, int, range]] = []
    thawed = gc.get_freeze_count() == 0
    gc.freeze()  # so that a fork's collections do not write to (and copy) every page it shares
    try:
        for share in shares[1:]:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                _compute_and_exit(fn, items, share, write)
            os.close(write)
            forks.append((pid, read, share))
    finally:
        if thawed:
            gc.unfreeze()
    out: dict[int, R] = {}
    try:
        with contextlib.suppress(Exception):  # raised again below, in the items' order
            for i in shares[0]:
                out[i] = fn(items[i])
        while forks:
            pid, read, share = forks.pop(0)
            values: list[R] | None = _collect(
                pid, read, len(share)
            )  # closes the pipe and reaps the fork, come what may
            if values is not None:  # else the fork failed: its share is computed below
                out.update(zip(share, values, strict=True))
    finally:
        for pid, read, _ in forks:  # not collected: this process was interrupted
            with contextlib.suppress(OSError):
                os.close(read)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    # what a fork failed at, or this process, is computed (again) here, in order: the first item
    # that raises raises as it would one item after another
    return [out[i] if i in out else fn(items[i]) for i in range(len(items))]


def _compute_and_exit(fn: Callable[[T], R], items: list[T], share: range, fd: int) -> None:
    """In the fork: its share's results, pickled into ``fd``; then the fork ends at once (no exit
    handler or buffered output of the parent's runs twice)."""
    code = 1
    try:
        data = pickle.dumps([fn(items[i]) for i in share], protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        code = 0
    finally:
        os._exit(code)


def _collect(pid: int, fd: int, count: int) -> list[R] | None:
    """What the fork ``pid`` sent through ``fd``: its ``count`` results, or None when it failed."""
    try:
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    try:
        values = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError):
        return None
    return values if isinstance(values, list) and len(values) == count else None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _may_fork() -> bool:
    # a fork copies only the thread that made it: a lock another thread holds stays held there
    return hasattr(os, "fork") and threading.active_count() == 1


def in_fork(fn: Callable[[], object]) -> bool:
    """Run ``fn`` in a fork of this process and wait for it; whether it returned (False also where
    this process cannot fork safely: no ``fork``, or another thread running). What ``fn`` leaves in
    memory goes with the fork: it is for work whose result it writes to disk, so that this process
    never holds the work's peak beside what it does next."""
    if not _may_fork():
        return False
    _flush()  # else the fork would write this process's buffered output again
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            pass
        finally:
            _flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


class Pending(Generic[R]):
    """``fn()`` begun in a fork of this process (:func:`start`): :meth:`result` waits for it."""

    def __init__(self, fn: Callable[[], R]):
        self._fn = fn
        self._fork: tuple[int, int] | None = None

    def result(self) -> R:
        """What ``fn()`` returned in the fork; computed here instead when the fork failed (it
        raised, crashed or was killed) or none was made, so an error is raised here as it would be
        by ``fn()`` itself."""
        if self._fork is not None:
            pid, read = self._fork
            self._fork = None
            values: list[R] | None = _collect(pid, read, 1)
            if values is not None:
                return values[0]
        return self._fn()

    def cancel(self) -> None:
        """Kill the fork, if one runs, and reap it: its result is no longer wanted."""
        if self._fork is not None:
            pid, read = self._fork
            self._fork = None
            with contextlib.suppress(OSError):
                os.close(read)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def start(fn: Callable[[], R]) -> Pending[R]:
    """Begin ``fn()`` in a fork, to run on another core while this process goes on; where no fork
    can be made safely (another thread runs, or ``LAKEGEN_FORKS=1``), it runs when its result is
    asked for. ``fn`` is a function of what this process holds now, and what it writes to disk
    must be what running it here would write (a fork that fails has it run again here)."""
    pending = Pending(fn)
    if not _may_fork() or os.environ.get(ENV, "").strip() == "1":
        return pending
    _flush()  # else the fork would write this process's buffered output again
    thawed = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _compute_and_exit(lambda _: fn(), [None], range(1), write)
        os.close(write)
        pending._fork = (pid, read)
    finally:
        if thawed:
            gc.unfreeze()
    return pending
