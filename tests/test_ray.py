"""The Ray executor on a real cluster of this machine (``ray start --head``, two CPUs), against the
local executor: the same lake index, the same outcomes and findings for jobs that fail, crash or
hang, and contributed code still in the sandbox on the Ray worker."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import LAKEGEN

from lakegen.executor import sandbox
from lakegen.executor.local import Job, LocalExecutor, Outcome

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install ray"
    ),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from lakegen.executor.ray import head_node

    with head_node(cpus=2) as address:
        import ray

        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        try:
            yield address
        finally:
            ray.shutdown()


def versions(lake: Path) -> int:
    """How many model versions of the lake have weights to fingerprint."""
    from lakegen.catalog.loader import load_catalog
    from lakegen.lineage.recover import artifact_paths

    return len(artifact_paths(load_catalog(lake, verify_artifacts=False))[0])


def outcomes(executor: Any, jobs: list[Job]) -> dict[str, Outcome]:
    seen: list[Outcome] = []
    executor.run(jobs, seen.append)
    assert len(seen) == len(jobs)
    return {o.job.key: o for o in seen}


def test_the_lake_index_is_the_same_with_either_executor(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.compile import compile_lake

    root = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", root / "catalog")
    compiled, prints = {}, {}
    for engine in ("local", "ray"):
        monkeypatch.setenv("LAKEGEN_CACHE", str(tmp_path / f"cache-{engine}"))  # nothing read from the other
        index = compile_lake(root, engine=engine).model_dump(mode="json")  # type: ignore[arg-type]
        del index["generated_at"]
        compiled[engine] = json.dumps(index, sort_keys=True, indent=1)
        prints[engine] = {p.name for p in (tmp_path / f"cache-{engine}" / "fingerprints").glob("*/*.lgfp")}
    assert prints["ray"] == prints["local"] and len(prints["ray"]) > 1  # each engine read every artifact
    assert "verified" in compiled["ray"]
    assert compiled["ray"] == compiled["local"]


def test_jobs_run_in_worker_processes_of_ray_actors(cluster: str) -> None:
    from lakegen.executor.ray import RayExecutor

    env = {"PYTHONPATH": str(TESTS)}
    jobs = [Job(f"p{i}", "executor_jobs:parent", {}) for i in range(4)]
    jobs += [Job(f"s{i}", "executor_jobs:square", {"n": i}) for i in range(6)]
    done = outcomes(RayExecutor(workers=2, env=env), jobs)
    assert all(o.ok for o in done.values()), [o.message for o in done.values() if not o.ok]
    assert {done[f"s{i}"].value for i in range(6)} == {i * i for i in range(6)}
    assert all(done[f"p{i}"].value.startswith("ray::_RaySlot") for i in range(4)), done["p0"].value


def test_the_workers_of_a_finished_run_leave_without_being_waited_for(cluster: str) -> None:
    from lakegen.executor.ray import RayExecutor

    jobs = [Job(f"w{i}", "executor_jobs:pid", {}) for i in range(4)]
    done = outcomes(RayExecutor(workers=2, env={"PYTHONPATH": str(TESTS)}), jobs)
    pids = {o.value for o in done.values()}
    assert len(pids) == 2, pids  # one worker subprocess an actor, kept between its jobs
    deadline = time.monotonic() + 30
    while (left := {p for p in pids if running(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"worker subprocesses {left} outlived their actors"


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has left
    except FileNotFoundError:
        return False


def test_failing_crashing_and_hanging_jobs_read_the_same_on_either_executor(cluster: str) -> None:
    from lakegen.executor.ray import RayExecutor

    settings: dict[str, Any] = {"workers": 2, "timeout_s": 2.0, "env": {"PYTHONPATH": str(TESTS)}}
    jobs = [Job(name, f"executor_jobs:{name}", {}) for name in ("fail", "die", "hang")]
    jobs.append(Job("square", "executor_jobs:square", {"n": 3}))
    local = outcomes(LocalExecutor(**settings), jobs)
    on_ray = outcomes(RayExecutor(**settings), jobs)

    def reading(o: Outcome) -> tuple[Any, ...]:
        return (o.ok, o.value, o.error, o.error_type, o.message.split("\n", 1)[0])

    assert {k: reading(o) for k, o in on_ray.items()} == {k: reading(o) for k, o in local.items()}
    assert on_ray["die"].error == "crashed" and "status 7" in on_ray["die"].message
    assert on_ray["hang"].error == "timeout" and 2.0 <= on_ray["hang"].duration_s < 6
    assert on_ray["fail"].error == "raised" and on_ray["square"].value == 9


def test_a_job_whose_actor_is_lost_runs_once_more_then_counts_as_crashed(
    cluster: str, tmp_path: Path
) -> None:
    from lakegen.executor.ray import RayExecutor

    executor = RayExecutor(workers=1, env={"PYTHONPATH": str(TESTS)})
    once = Job("once", "executor_jobs:kill_parent_once", {"marker": str(tmp_path / "once")})
    done = outcomes(executor, [once, Job("after", "executor_jobs:square", {"n": 4})])
    assert done["once"].ok and done["once"].value == "ran again"  # on a fresh actor
    assert done["after"].value == 16
    # the job takes its actor down every time: the second loss is reported, the run goes on, and
    # the jobs queued behind it at the lost actors (they never started) are not counted as lost
    always = Job("always", "executor_jobs:kill_parent_once", {})
    queued = [Job(f"n{n}", "executor_jobs:square", {"n": n}) for n in (5, 6)]
    done = outcomes(executor, [always, *queued])
    lost = done["always"]
    assert not lost.ok and lost.error == "crashed" and lost.message.startswith("the Ray worker died")
    assert (done["n5"].value, done["n6"].value) == (25, 36), done


@pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}")
def test_contributed_code_runs_in_the_sandbox_on_the_ray_worker(
    cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.executor.ray import RayExecutor

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_for_contributed_code")
    executor = RayExecutor(workers=1, sandbox=sandbox.Sandbox(), env={"PYTHONPATH": str(TESTS)})
    done = outcomes(
        executor,
        [Job("env", "sandbox_jobs:environment", {}), Job("net", "sandbox_jobs:connect", {"port": 1})],
    )
    assert done["env"].ok, done["env"].message
    # neither the Ray cluster's token nor the driver's secrets reach the job
    assert not {k for k in done["env"].value if k.startswith(("RAY_", "GITHUB_"))}, sorted(done["env"].value)
    assert done["net"].value.startswith("refused")


def test_a_crashing_evaluation_gives_the_same_findings_on_ray(cluster: str, tmp_path: Path) -> None:
    from test_bench import build_lake, options

    from lakegen.bench.run import evaluate_catalog, result_findings
    from lakegen.catalog.loader import load_catalog

    root = tmp_path / "lake"
    build_lake(root)
    catalog = load_catalog(root)
    findings = {}
    for engine in ("local", "ray"):
        opts = options(root, engine=engine, force=True, write_results=False, timeout_s=3.0)
        report = evaluate_catalog(catalog, ["crashy", "dies", "hangs"], opts, run=True)
        findings[engine] = [(f.entry, f.rule, f.line, f.message) for f in result_findings(report)]
    assert findings["ray"] == findings["local"]
    messages = " | ".join(m for *_, m in findings["ray"])
    assert "evaluator crashed on purpose" in messages and "exited with status 7" in messages
    assert "ran past the 3 s timeout" in messages


def test_lakegen_build_runs_on_the_cluster_ray_address_names(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakegen.compile.store import INDEX_FILE

    lake = tmp_path / "lake"
    shutil.copytree(REPO / "catalog", lake / "catalog")
    monkeypatch.setenv("LAKEGEN_CACHE", str(tmp_path / "cache"))
    env = {**os.environ, "RAY_ADDRESS": cluster}  # with the cluster's token, which head_node set
    done = subprocess.run(
        [str(LAKEGEN), "--root", str(lake), "build", "--executor", "ray", "--no-search", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((lake / INDEX_FILE).read_text())
    assert index["stages"]["attribution"].startswith(f"ran ({versions(lake)} model versions")
    assert list((tmp_path / "cache" / "fingerprints").glob("*/*.lgfp"))
