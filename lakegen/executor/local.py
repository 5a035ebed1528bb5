"""Run independent jobs in isolated worker processes.

A :class:`Job` names a ``module:function`` and a JSON payload; the function runs
in a worker subprocess and returns JSON. Everything that fans out goes through
the :class:`Executor` protocol, so another engine (Ray, a batch queue) can take
over by implementing one method.

:class:`LocalExecutor` keeps ``workers`` long-lived subprocesses, so heavy
imports (torch) are paid once per worker, not once per job. Each job has a
timeout; a worker that hangs, crashes or is killed for memory is replaced and
the other jobs go on. Workers run under an address-space soft limit (``RLIMIT_AS``), so a
job that tries to exhaust memory fails alone instead of taking the machine.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from lakegen.executor.sandbox import Confined, Sandbox

START_TIMEOUT_S = 300.0
_TAIL = 4000


@dataclass(frozen=True)
class Job:
    """One unit of work: ``target`` (``module:function``) called with ``payload``."""

    key: str
    target: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What became of a job: its return value, or why there is none."""

    job: Job
    ok: bool
    value: Any = None
    error: Literal["", "raised", "timeout", "crashed"] = ""
    error_type: str = ""
    message: str = ""
    duration_s: float = 0.0


class Executor(Protocol):
    """Runs jobs and reports each outcome, in completion order, from the calling thread."""

    def run(self, jobs: Sequence[Job], on_done: Callable[[Outcome], None]) -> None: ...


@dataclass
class LocalExecutor:
    """Jobs in ``workers`` subprocesses on this machine, each job limited in time and memory."""

    workers: int = 1
    timeout_s: float = 600.0
    memory_limit_bytes: int | None = None
    preload: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    sandbox: Sandbox | None = None  # confine each worker (see lakegen.executor.sandbox); None: run it as is

    def run(self, jobs: Sequence[Job], on_done: Callable[[Outcome], None]) -> None:
        if not jobs:
            return
        todo: queue.Queue[Job | None] = queue.Queue()
        for job in jobs:
            todo.put(job)
        done: queue.Queue[Outcome] = queue.Queue()
        stop = threading.Event()
        slots = [
            threading.Thread(target=self._slot, args=(todo, done, stop), daemon=True)
            for _ in range(max(1, min(self.workers, len(jobs))))
        ]
        for slot in slots:
            todo.put(None)
            slot.start()
        try:
            for _ in jobs:
                on_done(done.get())
        finally:
            stop.set()
            for slot in slots:
                slot.join()

    def _slot(self, todo: queue.Queue[Job | None], done: queue.Queue[Outcome], stop: threading.Event) -> None:
        slot = Slot(self, stop)
        try:
            while not stop.is_set():
                job = todo.get()
                if job is None:
                    return
                done.put(slot.run(job))
        finally:
            slot.close()


class Slot:
    """One job at a time in a worker subprocess, replaced after a timeout or a crash.

    The unit of parallelism of :class:`LocalExecutor`, and what a Ray actor holds
    (:mod:`lakegen.executor.ray`), so both engines isolate, time out and report crashes alike.
    """

    def __init__(self, config: LocalExecutor, stop: threading.Event | None = None):
        self.config, self.stop = config, stop or threading.Event()
        self.worker: _Worker | None = None

    def run(self, job: Job) -> Outcome:
        if self.worker is None or not self.worker.alive():
            self.worker = _Worker(self.config, self.stop)
        outcome = self.worker.run(job, self.config.timeout_s)
        if outcome.error in ("timeout", "crashed"):
            self.worker.kill()
            self.worker = None
        return outcome

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


class _Worker:
    """The parent's handle on one worker subprocess: newline-delimited JSON both ways."""

    def __init__(self, config: LocalExecutor, stop: threading.Event):
        self.stop = stop
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        env = {**os.environ, **config.env}
        package_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        options = {"memory_limit_bytes": config.memory_limit_bytes, "preload": list(config.preload)}
        argv = [sys.executable, "-m", "lakegen.executor.local", json.dumps(options)]
        self.confined: Confined | None = None
        if config.sandbox is not None:
            self.confined = config.sandbox.start(
                argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr
            )
            self.proc = self.confined.proc
        else:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=env,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""
        self.error: Outcome | None = None
        self.ready = self._read_line(START_TIMEOUT_S)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: Job, timeout_s: float) -> Outcome:
        start = time.perf_counter()
        mark = self.stderr.tell()

        def failed(error: Literal["timeout", "crashed"], message: str) -> Outcome:
            return Outcome(job, False, error=error, message=message, duration_s=time.perf_counter() - start)

        if not isinstance(self.ready, dict):
            return failed("crashed", f"the worker did not start: {self._why(self.ready, mark=0)}")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"target": job.target, "payload": job.payload}).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return failed("crashed", f"the worker died: {self._why(None, mark)}")
        reply = self._read_line(timeout_s)
        duration = time.perf_counter() - start
        if reply == "timeout":
            self.kill()
            return failed("timeout", f"ran past the {timeout_s:g} s timeout and was stopped")
        if not isinstance(reply, dict):
            return failed("crashed", self._why(reply, mark))
        if reply.get("ok"):
            return Outcome(job, True, value=reply.get("value"), duration_s=duration)
        return Outcome(
            job,
            False,
            error="raised",
            error_type=str(reply.get("type", "")),
            message=str(reply.get("message", "")),
            duration_s=duration,
        )

    def _read_line(self, timeout_s: float) -> dict[str, Any] | str | None:
        """The next reply; "timeout" when none came in time; None at end of file."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop.is_set():
                return "timeout"
            if not self.selector.select(min(remaining, 0.5)):
                continue
            assert self.proc.stdout is not None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            return f"unreadable reply {line[:200]!r}"
        return reply if isinstance(reply, dict) else f"unreadable reply {line[:200]!r}"

    def _why(self, reply: object, mark: int) -> str:
        if isinstance(reply, str) and reply != "timeout":
            return reply
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code > 128 and self.confined is not None:
            code = 128 - code  # the sandbox reports its child's signal as 128 + N
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (killed; out of memory?)" if -code == signal.SIGKILL else ""
            reason = f"the worker died with signal {name}{hint}"
        else:
            reason = f"the worker exited with status {code}"
        self.stderr.seek(mark)
        tail = self.stderr.read()[-_TAIL:].decode("utf-8", "replace").strip()
        self.stderr.seek(0, os.SEEK_END)
        return f"{reason}: {tail}" if tail else reason

    def kill(self) -> None:
        if self.selector.get_map() is None:
            return
        if self.confined is not None:
            self.confined.kill()  # the whole process tree, its cgroup and its scratch folder
        elif self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._release()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _release(self) -> None:
        self.selector.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def _serve(options: Mapping[str, Any]) -> None:
    """The worker's loop: one JSON job per line on stdin, one JSON reply per line out."""
    limit = options.get("memory_limit_bytes")
    if limit:
        # The soft limit only: a job that knows better (CUDA maps huge address ranges) may lift it.
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(int(limit), hard)
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), hard))
    # Replies go to a private copy of stdout; whatever job code prints goes to stderr.
    replies: IO[str] = os.fdopen(os.dup(1), "w", encoding="utf-8")
    jobs: IO[str] = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for module in options.get("preload", []):
        importlib.import_module(module)
    _reply(replies, {"ready": True})
    for line in jobs:
        request = json.loads(line)
        try:
            module_name, function = request["target"].split(":", 1)
            value = getattr(importlib.import_module(module_name), function)(request["payload"])
            reply = {"ok": True, "value": value}
        except BaseException as e:  # the job's failure, reported, not the worker's
            if isinstance(e, KeyboardInterrupt):
                raise
            frames = e.__traceback__.tb_next if e.__traceback__ else None  # drop this loop's frame
            lines = traceback.format_exception(type(e), e, frames)
            reply = {"ok": False, "type": type(e).__name__, "message": _message(e, lines)}
        _reply(replies, reply)


def _message(error: BaseException, lines: list[str]) -> str:
    """The error on its first line, then the end of its traceback."""
    return f"{type(error).__name__}: {error}\n{''.join(lines)[-_TAIL:]}"


def _reply(stream: IO[str], reply: Mapping[str, Any]) -> None:
    try:
        text = json.dumps(reply, allow_nan=False)
    except (TypeError, ValueError) as e:
        text = json.dumps({"ok": False, "type": type(e).__name__, "message": f"the result is not JSON: {e}"})
    stream.write(text + "\n")
    stream.flush()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
