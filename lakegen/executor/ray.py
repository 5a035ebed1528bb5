"""Run jobs on a Ray cluster, with the local executor's isolation, timeouts and crash reports.

:class:`RayExecutor` starts ``workers`` Ray actors (one CPU each), each running one job at a time.
An actor holds a :class:`~lakegen.executor.local.Slot`: the same worker subprocess, memory limit,
timeout and sandbox (for contributed code) as :class:`~lakegen.executor.local.LocalExecutor`, only
on a cluster node, so an outcome reads the same whichever engine ran it. Outcomes come back to the
calling thread as each job finishes, which is how progress is reported.

A job is one call to an actor, and each actor has :data:`IN_FLIGHT` of them queued, so it never
waits for the driver between two (a call costs a millisecond or two: callers with many small jobs
batch them, as fingerprinting does). An actor lost with its jobs (its node gone, its process killed
from outside) is replaced: the job it was running runs once more, and the jobs queued behind it,
which never started, go to the replacement as they were. Jobs are keyed by content and write
content-addressed results (fingerprints, benchmark results), so a job run twice does no harm. A
job's second loss is reported as a crash.

The cluster is ``address``, else ``$RAY_ADDRESS`` (read by ``ray.init``), else a Ray started for
this process. Every node must see the lake and its cache at the same paths and run the same
lakegen (docs/scale.md). Ray is imported only when a run asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakegen.executor.local import Job, LocalExecutor, Outcome, Slot
from lakegen.executor.sandbox import Sandbox

CLOSE_TIMEOUT_S = 30.0
IN_FLIGHT = 2  # jobs sent to an actor at once: it starts the next while the driver takes one's outcome
STARTED = "Ray runtime started"  # what ``ray start`` prints once the head node is up
_TOKEN = secrets.token_hex(32)  # one per process: Ray's driver keeps the first token it reads


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass
class RayExecutor:
    """Jobs on Ray actors, each job limited in time and memory as on the local executor."""

    workers: int | None = None  # None: one per CPU of the cluster
    timeout_s: float = 600.0
    memory_limit_bytes: int | None = None
    preload: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    address: str | None = None

    def run(self, jobs: Sequence[Job], on_done: Callable[[Outcome], None]) -> None:
        if not jobs:
            return
        ray = connect(self.address)
        config = LocalExecutor(
            workers=1,
            timeout_s=self.timeout_s,
            memory_limit_bytes=self.memory_limit_bytes,
            preload=self.preload,
            env=self.env,
            sandbox=self.sandbox,
        )
        # More actors than the cluster has CPUs would wait for a CPU forever, holding their jobs.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        count = max(1, min(self.workers or cpus, cpus, len(jobs)))
        actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_RaySlot)
        actors = [actor_class.remote(config) for _ in range(count)]
        todo = [(job, 1) for job in reversed(jobs)]  # (job, attempt), the next one last
        calls: dict[Any, list[tuple[Any, Job, int]]] = {actor: [] for actor in actors}  # in order
        owner: dict[Any, Any] = {}  # call -> its actor

        def top_up(actor: Any) -> None:
            while todo and len(calls[actor]) < IN_FLIGHT:
                job, attempt = todo.pop()
                ref = actor.run.remote(job)
                calls[actor].append((ref, job, attempt))
                owner[ref] = actor

        def lost(actor: Any) -> None:
            """Replace ``actor``: the job it was running (its first unfinished call) runs once more,
            the jobs queued behind it (they never started) go back as they were."""
            pending = calls.pop(actor)
            for ref, _, _ in pending:
                del owner[ref]
            actors.remove(actor)
            actors.append(actor_class.remote(config))
            calls[actors[-1]] = []
            culprit = True
            for ref, job, attempt in pending:
                try:
                    outcome = ray.get(ref, timeout=CLOSE_TIMEOUT_S)  # done before the loss
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                    if not culprit:
                        todo.append((job, attempt))
                        continue
                    culprit = False
                    if attempt == 1:
                        todo.append((job, 2))
                        continue
                    outcome = Outcome(job, False, error="crashed", message=f"the Ray worker died: {e}")
                on_done(outcome)
            top_up(actors[-1])

        try:
            for actor in actors:
                top_up(actor)
            while owner:
                (ref,), _ = ray.wait(list(owner), num_returns=1)
                actor = owner[ref]
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayActorError:
                    lost(actor)
                    continue
                del owner[ref]
                calls[actor] = [c for c in calls[actor] if c[0] != ref]
                on_done(outcome)
                top_up(actor)
        finally:
            _close(ray, actors, wait=self.sandbox is not None)


class _RaySlot:
    """A Ray actor's state: one worker subprocess, kept between jobs as the local executor keeps it."""

    def __init__(self, config: LocalExecutor):
        self.slot = Slot(config)

    def run(self, job: Job) -> Outcome:
        return self.slot.run(job)

    def close(self) -> None:
        self.slot.close()


def _close(ray: Any, actors: list[Any], wait: bool) -> None:
    """Kill the actors; with ``wait``, once their worker subprocesses (and sandboxes) are stopped.

    A worker whose actor is killed sees its stdin close and leaves by itself (after the job it runs,
    if any), so without a sandbox nothing waits for it: the round trip to every actor and then to
    its worker cost a run 0.1 to 0.3 s on a busy machine. A sandbox's scratch folder and memory
    cgroup are removed by its slot's close, so a sandboxed run waits for that.
    """
    if wait:
        with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
            ray.get([a.close.remote() for a in actors], timeout=CLOSE_TIMEOUT_S)
    for actor in actors:
        ray.kill(actor)


def connect(address: str | None) -> Any:
    """The ``ray`` module, connected to the cluster (once per process)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "the ray executor needs Ray: pip install 'lakegen[ray]' (or pip install 'ray[default]')"
        ) from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnavailable(f"cannot reach the Ray cluster: {e}") from None
    return ray


@contextlib.contextmanager
def head_node(cpus: int, port: int | None = None) -> Iterator[str]:
    """A Ray cluster of this machine alone (``ray start --head --block``), for tests and benchmarks;
    yields its address and stops it, its process group and nothing else, on leaving.

    Ray listens on every interface, so the cluster takes a token (Ray's token authentication);
    this process gets it in ``$RAY_AUTH_MODE`` and ``$RAY_AUTH_TOKEN`` while the cluster runs, as
    ``ray.init`` needs to connect.
    """
    port = port or _free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or _TOKEN}
    before = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    if "ray" in sys.modules:  # Ray reads the mode when imported; the same refresh ray.init makes
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")
    scratch = tempfile.mkdtemp(prefix="lgray", dir="/tmp")  # Ray's socket paths must stay short
    ray_cli = Path(sys.executable).with_name("ray")
    argv = [str(ray_cli), "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0"]
    argv += ["--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"]
    # lakegen never shows the workers' logs (log_to_driver=False): nothing reads what it would tail
    argv += ["--include-log-monitor=false"]
    argv += [f"--temp-dir={scratch}", "--block"]
    log = open(Path(scratch) / "head.log", "wb")  # noqa: SIM115 (closed below)
    head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while STARTED not in (said := (Path(scratch) / "head.log").read_text(errors="replace")):
            if head.poll() is not None or time.monotonic() > deadline:
                raise RayUnavailable(f"ray start did not start: {said[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # a SIGTERM drains for 30 s
        head.wait()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
