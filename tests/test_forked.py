"""lakegen's own work split over forks of the process (:mod:`lakegen.executor.forked`): the same
results as one process, in the same order, whatever a fork does; and the same compiled lake."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_incremental import demo_lake, dumped

from lakegen.attribution import recover
from lakegen.catalog import parsecache
from lakegen.executor import forked
from lakegen.executor.forked import map_forked, workers
from lakegen.lineage import declared, fingerprinting

FRESH = "LAKEGEN_TEST_FRESH_PROCESS"


def _ran_in_a_fresh_process(request: pytest.FixtureRequest) -> bool:
    """Whether this test ran, and passed, in a fresh interpreter rather than here. ``map_forked``
    makes no fork while another thread runs, and a test run before this one in the same worker
    (a Ray driver, a test server) can leave threads behind, which would make the forks' tests
    test one process alone."""
    if threading.active_count() == 1 or os.environ.get(FRESH):
        return False
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        cwd=request.config.rootpath,
        env={**os.environ, FRESH: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    return True


def test_forks_give_the_results_of_one_process_in_the_items_order(request: pytest.FixtureRequest) -> None:
    if _ran_in_a_fresh_process(request):
        return
    held = {i: i * i for i in range(50)}  # what the forks read from this process's memory
    parent = os.getpid()
    items = list(range(50))
    got = map_forked(lambda i: (held[i], os.getpid() != parent), items, 3)
    assert [v for v, _ in got] == [held[i] for i in items]
    assert sum(in_fork for _, in_fork in got) == 50 - len(range(0, 50, 3))  # all but every third


def test_a_fork_that_dies_has_its_items_computed_here(
    capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    if _ran_in_a_fresh_process(request):
        return
    parent = os.getpid()

    def square_unless_forked(i: int) -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel kills a fork out of memory
        return i * i

    assert map_forked(square_unless_forked, range(10), 2) == [i * i for i in range(10)]
    assert capfd.readouterr() == ("", "")  # a fork prints nothing, nor runs the parent's exit


def test_the_first_item_that_raises_raises_as_one_process_would() -> None:
    def fail_from_three(i: int) -> int:
        if i >= 3:
            raise ValueError(f"item {i}")
        return i

    # item 4 is this process's share; item 3 a fork's, raised there and computed again here
    with pytest.raises(ValueError, match="item 3"):
        map_forked(fail_from_three, range(8), 2)


def test_the_environment_sets_the_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forked.ENV, "3")
    assert workers(1, 1000) == 3
    monkeypatch.setenv(forked.ENV, "1")
    assert workers(10**6, 1) == 1
    monkeypatch.delenv(forked.ENV)
    monkeypatch.setattr(forked, "cores", lambda: 2)
    assert (workers(10, 64), workers(64, 64)) == (1, 2)


def _compiled(tmp_path: Path, name: str, processes: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo lake's index compiled cold with ``processes``, in a copy of one committed lake (the
    same commits); asserts that many forks were made: the manifests', the fingerprints', the
    families' and the audits'."""
    first = tmp_path / "demo"
    if not first.exists():
        demo_lake(first)
    root = tmp_path / name
    shutil.copytree(first, root)
    monkeypatch.setenv(forked.ENV, str(processes))
    forks = []
    fork = os.fork

    def counted() -> int:
        pid = fork()
        forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted)
    index, _ = dumped(root / "lake")
    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.delenv(forked.ENV)
    assert len(forks) == 4 * (processes - 1)
    return index


@pytest.mark.slow
def test_a_compile_split_over_forks_equals_one_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if _ran_in_a_fresh_process(request):
        return
    # the demo lake is small: attributed family by family, as a large lake is, so the manifests,
    # the fingerprints, the families and the audits all go to forks
    monkeypatch.setattr(recover, "PARTITION_FROM", 2)
    one = _compiled(tmp_path, "one", 1, monkeypatch)
    assert "verified" in {e["status"] for e in one["edges"]}  # audits ran
    assert _compiled(tmp_path, "three", 3, monkeypatch) == one


@pytest.mark.slow
def test_a_compile_whose_forks_crash_equals_one_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if _ran_in_a_fresh_process(request):
        return
    monkeypatch.setattr(recover, "PARTITION_FROM", 2)
    one = _compiled(tmp_path, "one", 1, monkeypatch)
    parent = os.getpid()
    audit_edge, attribute, computed = declared.audit_edge, recover._attribute, fingerprinting.computed
    parse = parsecache.parse

    def dies_in_a_fork(real: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            if os.getpid() != parent:
                os._exit(3)
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(declared, "audit_edge", dies_in_a_fork(audit_edge))
    monkeypatch.setattr(recover, "_attribute", dies_in_a_fork(attribute))
    monkeypatch.setattr(fingerprinting, "computed", dies_in_a_fork(computed))
    monkeypatch.setattr(parsecache, "parse", dies_in_a_fork(parse))
    assert _compiled(tmp_path, "crashing", 2, monkeypatch) == one


def test_in_fork_runs_aside_and_says_whether_it_returned(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if _ran_in_a_fresh_process(request):
        return
    parent, out = os.getpid(), tmp_path / "out"
    held: list[int] = []

    def writes() -> None:
        held.append(1)  # lost with the fork
        out.write_text(str(os.getpid() != parent))

    assert forked.in_fork(writes) and out.read_text() == "True" and held == []

    def raises() -> None:
        raise RuntimeError("no")

    assert not forked.in_fork(raises)
    assert not forked.in_fork(lambda: os.kill(os.getpid(), signal.SIGKILL))  # killed


def test_start_runs_aside_while_this_process_goes_on(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if _ran_in_a_fresh_process(request):
        return
    parent, gate = os.getpid(), tmp_path / "gate"
    held = {"base": 40}

    def waits_then_adds() -> tuple[int, bool]:
        while not gate.exists():  # the fork goes on only once this process has gone on
            time.sleep(0.01)
        return held["base"] + 2, os.getpid() != parent

    pending = forked.start(waits_then_adds)
    gate.write_text("")  # had start() run it here first, it would never have returned
    assert pending.result() == (42, True)


def test_start_computes_here_what_a_failed_fork_did_not(request: pytest.FixtureRequest) -> None:
    if _ran_in_a_fresh_process(request):
        return
    parent = os.getpid()

    def killed_there() -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return 7

    assert forked.start(killed_there).result() == 7

    def raises_there() -> int:
        if os.getpid() != parent:
            raise RuntimeError("fork")
        raise ValueError("here")

    with pytest.raises(ValueError, match="here"):  # raised as fn() here raises it
        forked.start(raises_there).result()


def test_a_cancelled_start_leaves_no_process_and_writes_nothing_more(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if _ran_in_a_fresh_process(request):
        return
    out, parent = tmp_path / "out", os.getpid()

    def writes_late() -> int:
        if os.getpid() != parent:
            time.sleep(2)
            out.write_text("late")
        return os.getpid()

    pending = forked.start(writes_late)
    fork = pending._fork
    assert fork is not None
    pending.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(fork[0], os.WNOHANG)  # reaped
    time.sleep(2.5)
    assert not out.exists()


def test_start_forks_nothing_while_another_thread_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        pending = forked.start(os.getpid)
        assert pending._fork is None and pending.result() == parent
    finally:
        stop.set()
        other.join()
    monkeypatch.setenv(forked.ENV, "1")
    assert forked.start(os.getpid)._fork is None


@pytest.mark.slow
def test_a_whole_compile_in_a_fork_gives_the_index_of_one_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """``lakegen build`` compiles aside (its peak leaves with the fork) and reads the saved index
    back: the same index and the same lake.json as a compile here; a fork that dies has the
    compile done here, with the same result."""
    if _ran_in_a_fresh_process(request):
        return
    from lakegen.compile import compile_or_reuse
    from lakegen.compile.store import INDEX_FILE

    demo_lake(tmp_path / "demo")
    here, aside, dies = (tmp_path / n for n in ("here", "aside", "dies"))
    for copy in (here, aside, dies):
        shutil.copytree(tmp_path / "demo", copy)
    one, _ = dumped(here / "lake")
    parent = os.getpid()
    index, reused = compile_or_reuse(aside / "lake", isolate=True)
    assert reused  # saved by the fork: nothing left to save
    assert index.model_dump(mode="json") == one
    assert (aside / "lake" / INDEX_FILE).read_bytes() == (here / "lake" / INDEX_FILE).read_bytes()

    real = forked.os.fork

    def dying() -> int:
        pid = real()
        if pid == 0 and os.getpid() != parent:
            os._exit(3)
        return pid

    monkeypatch.setattr(forked.os, "fork", dying)
    index, reused = compile_or_reuse(dies / "lake", isolate=True)
    assert not reused and index.model_dump(mode="json") == one


def test_an_index_saved_aside_is_the_one_saved_here_and_a_failed_save_is_done_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """``lakegen build`` writes the compiled index in a fork while the site is built
    (:func:`store.save_aside`): the same files as a save here, known to :func:`store.saved_as`
    without reading the inputs record back; a fork that dies has the save done here when settled,
    and a ``lake.json`` replaced since is not taken for the one saved."""
    if _ran_in_a_fresh_process(request):
        return
    from lakegen.compile import compile_or_reuse, inputs, store
    from lakegen.compile.store import INDEX_FILE, SPANS_FILE

    root = demo_lake(tmp_path / "demo").root
    index, _ = compile_or_reuse(root)
    store.save(index, root)
    names = (INDEX_FILE, SPANS_FILE, inputs.INPUTS_FILE)

    def saved() -> dict[str, Any]:
        """The three files, but what names the moment they were written (the spans record's
        lake.json mtime, the snapshot's time)."""
        out: dict[str, Any] = {INDEX_FILE: (root / INDEX_FILE).read_bytes()}
        out[SPANS_FILE] = json.loads((root / SPANS_FILE).read_bytes())["spans"]
        out[inputs.INPUTS_FILE] = {
            k: v for k, v in json.loads((root / inputs.INPUTS_FILE).read_bytes()).items() if k != "taken_ns"
        }
        return out

    here = saved()
    parent = os.getpid()
    real = forked.os.fork

    forks: list[int] = []
    for dies in (False, True):
        for name in names:
            (root / name).unlink()
        forks.clear()

        def counted(dies: bool = dies) -> int:
            pid = real()
            if pid == 0 and dies and os.getpid() != parent:
                os._exit(3)
            forks.append(pid)
            return pid

        monkeypatch.setattr(forked.os, "fork", counted)
        store.save_aside(index, root)
        assert forks  # begun in a fork
        monkeypatch.setattr(inputs.fastjson, "loads", lambda _: pytest.fail("the record was read back"))
        assert store.saved_as(root, index) == root / INDEX_FILE  # settles it first
        monkeypatch.undo()
        assert saved() == here, dies
    # another lake.json in its place (written by another process) is not known to be the one saved
    # here: the inputs record is asked, as for a save of another process
    data = (root / INDEX_FILE).read_bytes()
    (root / INDEX_FILE).unlink()
    (root / INDEX_FILE).write_bytes(data)
    asked: list[Path] = []
    recorded = inputs.recorded
    monkeypatch.setattr(store.inputs, "recorded", lambda r: asked.append(r) or recorded(r))
    assert store.saved_as(root, index) == root / INDEX_FILE and asked == [root]
    other = index.model_copy(update={"generated_at": "1970-01-01T00:00:00+00:00"})
    assert store.saved_as(root, other) is None


def test_a_delta_compile_whose_snapshot_is_taken_in_a_fork_equals_one_taken_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A compile that may start from the saved index takes its snapshot of the working tree in a
    fork while it reads that index: the same index as with no fork, or with a fork that dies."""
    if _ran_in_a_fresh_process(request):
        return
    from test_incremental import _edit

    from lakegen.compile import compile_or_reuse
    from lakegen.compile.delta import changed_since
    from lakegen.compile.store import save

    root = demo_lake(tmp_path / "demo").root
    save(compile_or_reuse(root)[0], root)
    _edit(root / "catalog/models/digits-mlp-base.yaml", "The root of the digits family", "The root")
    parent, real = os.getpid(), forked.os.fork
    made: list[int] = []

    def counted() -> int:
        pid = real()
        made.append(pid)
        return pid

    def dying() -> int:
        pid = real()
        if pid == 0 and os.getpid() != parent:
            os._exit(3)
        return pid

    found = {}
    for how in ("fork", "one process", "dying fork"):
        made.clear()
        with monkeypatch.context() as m:
            if how == "one process":
                m.setenv(forked.ENV, "1")
            m.setattr(forked.os, "fork", dying if how == "dying fork" else counted)
            index, reused = compile_or_reuse(root)
        assert not reused and changed_since(index) is not None, how  # a delta compile
        assert bool(made) == (how == "fork"), how
        found[how] = (index.model_dump(mode="json"), index.inputs.digest)
    assert found["fork"] == found["one process"] == found["dying fork"]
