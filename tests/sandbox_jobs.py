"""Job functions for tests/test_sandbox.py: what contributed code would try, run in a sandboxed worker."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from typing import Any


def environment(payload: dict[str, Any]) -> dict[str, str]:
    return dict(os.environ)


def connect(payload: dict[str, Any]) -> str:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", payload["port"]))
        s.sendall(os.environ.get("GITHUB_TOKEN", "no token").encode())
        return "connected"
    except OSError as e:
        return f"refused: {e}"
    finally:
        s.close()


def write(payload: dict[str, Any]) -> dict[str, str]:
    out = {}
    for path in payload["paths"]:
        try:
            with open(path, "a") as f:
                f.write("✅ passed <!--\n")
            out[path] = "written"
        except OSError as e:
            out[path] = type(e).__name__
    return out


def touch_memory(payload: dict[str, Any]) -> int:
    import resource

    with contextlib.suppress(ValueError, OSError):  # a soft limit would be lifted like this
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    chunks = []
    for _ in range(payload["chunks"]):
        chunk = bytearray(64 << 20)
        chunk[::4096] = b"x" * len(chunk[::4096])
        chunks.append(chunk)
    return len(chunks)


def escape_and_hang(payload: dict[str, Any]) -> None:
    subprocess.Popen(["setsid", "sleep", payload["marker"]], start_new_session=True)
    time.sleep(3600)
