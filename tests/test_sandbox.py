"""Contributed code in the sandbox (lakegen.executor.sandbox): each attack a pull request's code entry tried."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from lakegen.bench.run import BenchError, Options, default_executor
from lakegen.executor import sandbox
from lakegen.executor.local import Job, LocalExecutor, Outcome
from lakegen.executor.sandbox import MemoryCgroup, Sandbox

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(
    sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}"
)


def run(job: str, payload: dict[str, Any], box: Sandbox | None = None, timeout_s: float = 60) -> Outcome:
    executor = LocalExecutor(timeout_s=timeout_s, sandbox=box or Sandbox(), env={"PYTHONPATH": str(TESTS)})
    outcomes: list[Outcome] = []
    executor.run([Job(job, f"sandbox_jobs:{job}", payload)], outcomes.append)
    (outcome,) = outcomes
    return outcome


def test_the_job_sees_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_for_contributed_code")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not for it either")
    outcome = run("environment", {})
    assert outcome.ok, outcome.message
    assert not {k for k in outcome.value if k.startswith(("GITHUB_", "AWS_"))}
    assert set(outcome.value) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "PYTHONPATH",
        "LANG",
        "LC_ALL",
        "PWD",
        "PYTHONHASHSEED",
    }


def test_the_job_has_no_network() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    try:
        outcome = run("connect", {"port": server.getsockname()[1]})
        assert outcome.ok and outcome.value.startswith("refused"), outcome
        with pytest.raises(TimeoutError):
            server.accept()  # nothing came in
    finally:
        server.close()


def test_the_job_writes_nowhere_but_its_scratch(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "catalog/results").mkdir(parents=True)
    (lake / ".lakegen/cache").mkdir(parents=True)
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    targets = [
        lake / "catalog/results/other-model.json",
        lake / ".lakegen/cache/forged.json",
        summary,
        Path("/tmp") / f"lakegen-sandbox-test-{os.getpid()}",
    ]
    outcome = run("write", {"paths": [str(p) for p in targets]}, Sandbox(visible=[lake]))
    assert outcome.ok, outcome.message
    assert set(outcome.value.values()) == {"OSError"}, outcome.value
    assert not any(p.exists() for p in targets[:2] + targets[3:]) and summary.read_text() == ""


def test_memory_touched_past_the_limit_kills_the_job_whatever_it_does_to_its_rlimit() -> None:
    probe = MemoryCgroup.make(1 << 30)
    if probe is None:
        pytest.skip("no memory cgroup can be made here (not root, or no delegation)")
    probe.remove()
    # no address-space cap: the cgroup alone must hold the job to 256 MiB of resident memory
    outcome = run("touch_memory", {"chunks": 16}, Sandbox(memory_limit_bytes=256 << 20, address_space=False))
    assert not outcome.ok and outcome.error == "crashed"
    assert "SIGKILL (killed; out of memory?)" in outcome.message


def test_the_address_space_cap_cannot_be_lifted() -> None:
    outcome = run("touch_memory", {"chunks": 64}, Sandbox(memory_limit_bytes=1 << 30))
    assert not outcome.ok and outcome.error_type == "MemoryError", outcome


@pytest.mark.slow
def test_a_timeout_kills_the_whole_process_tree() -> None:
    marker = f"4{time.time_ns() % 10**8}.5"  # a unique `sleep` argument to look for
    start = time.perf_counter()
    outcome = run("escape_and_hang", {"marker": marker}, timeout_s=3)
    assert outcome.error == "timeout" and time.perf_counter() - start < 20
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == "", f"a process the job started outlived it: {left.stdout}"


def test_without_a_sandbox_contributed_code_runs_only_when_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "unavailable", lambda: "bubblewrap (bwrap) is not installed")
    import lakegen.bench.run as bench

    monkeypatch.setattr(bench, "unavailable", sandbox.unavailable)
    with pytest.raises(BenchError, match=r"run only in a sandbox, but bubblewrap .* --trust-code runs them"):
        default_executor(Options())
    assert default_executor(Options(trust_code=True)).sandbox is None
