"""The memory a command and every process it starts hold together, sampled while it runs.

``ru_maxrss`` of a command is the largest resident set of any one process it waited for, and a
forked worker's resident set counts every page it shares copy-on-write with its parent: a build
that forks two workers from a 3 GB parent reads as 3 GB each, though the three share most of it.
This sums each process's proportional set size (``Pss`` in ``/proc/<pid>/smaps_rollup``: a
shared page counted once across the processes sharing it) over the command's process tree, a
few times a second, and keeps the largest sum and when it was seen.

    .venv/bin/python benchmarks/memtree.py [--every 0.2] [--spy] -- lakegen --root LAKE build

``--spy`` dumps the main process's Python stack (py-spy, when installed) each time the peak grows
by 100 MB, to show where the peak sits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant alive now."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreePeak:
    """Samples the summed Pss of ``pid``'s process tree in a thread until :meth:`stop`."""

    def __init__(self, pid: int, every: float = 0.2, spy: bool = False):
        self.pid, self.every, self.spy = pid, every, spy
        self.peak_kib, self.at_s, self.processes = 0, 0.0, 0
        self.stacks: list[str] = []
        self._start = time.perf_counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        spied = 0
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        while not self._done.wait(self.every):
            pids = tree(self.pid)
            total = sum(pss_kib(p) for p in pids)
            if total > self.peak_kib:
                self.peak_kib, self.processes = total, len(pids)
                self.at_s = time.perf_counter() - self._start
                if self.spy and total - spied > 100 * 1024 and os.path.exists(spy):
                    spied = total
                    dump = subprocess.run(
                        [spy, "dump", "--pid", str(self.pid)], capture_output=True, text=True
                    )
                    self.stacks.append(
                        f"--- {total / 1024:.0f} MB at {self.at_s:.1f} s\n{dump.stdout[-3000:]}"
                    )

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join()
        return {
            "peak_pss_mb": round(self.peak_kib / 1024, 1),
            "at_s": round(self.at_s, 1),
            "processes": self.processes,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=0.2)
    ap.add_argument("--spy", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    peak = TreePeak(proc.pid, args.every, args.spy)
    _, status, usage = os.wait4(proc.pid, 0)
    figures = peak.stop()
    for stack in peak.stacks:
        print(stack, file=sys.stderr)
    print(
        f"exit {os.waitstatus_to_exitcode(status)}  wall {time.perf_counter() - start:.1f} s  "
        f"peak Pss of the tree {figures['peak_pss_mb']} MB at {figures['at_s']} s "
        f"({figures['processes']} processes)  ru_maxrss {usage.ru_maxrss / 1024:.1f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
