"""Job functions for tests/test_ray.py: one that succeeds, one for each way a job fails, and one that
says which process ran it."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def square(payload: dict[str, Any]) -> int:
    return int(payload["n"]) ** 2


def parent(payload: dict[str, Any]) -> str:
    """The command line of the process that started this worker (a Ray actor's is ray::...)."""
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace")


def pid(payload: dict[str, Any]) -> int:
    return os.getpid()


def fail(payload: dict[str, Any]) -> None:
    raise ValueError("this job fails on purpose")


def die(payload: dict[str, Any]) -> None:
    os._exit(7)


def hang(payload: dict[str, Any]) -> None:
    time.sleep(3600)


def kill_parent_once(payload: dict[str, Any]) -> str:
    """Kill the process that started this worker (on Ray, the actor) unless the file ``marker`` says
    it was done before (no marker: every time): a node lost in the middle of a job."""
    marker = payload.get("marker")
    if marker is None or not os.path.exists(marker):
        if marker is not None:
            with open(marker, "w") as f:
                f.write("killed once")
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    return "ran again"
