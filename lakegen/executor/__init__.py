"""Where jobs run: the :class:`~lakegen.executor.local.Executor` interface, its local pool of worker
subprocesses (:mod:`.local`), confined by the sandbox (:mod:`.sandbox`) when the code is contributed,
and the same on a Ray cluster (:mod:`.ray`).

An engine is chosen by name (``--executor``, or ``$LAKEGEN_EXECUTOR``); each stage that fans out
makes its executor with :func:`make_executor` and the settings its jobs need.
"""

from __future__ import annotations

import os
from typing import Any, Literal, cast

from lakegen.executor.local import Executor, LocalExecutor

Engine = Literal["local", "ray"]
ENGINES: tuple[Engine, ...] = ("local", "ray")
ENGINE_ENV = "LAKEGEN_EXECUTOR"


class EngineError(ValueError):
    """An engine name that is not one of :data:`ENGINES`."""


def engine_named(name: str | None) -> Engine:
    """The engine ``name`` (``--executor``), else ``$LAKEGEN_EXECUTOR``, else ``local``."""
    name = name or os.environ.get(ENGINE_ENV) or "local"
    if name not in ENGINES:
        raise EngineError(f"unknown executor '{name}': choose one of {', '.join(ENGINES)}")
    return cast(Engine, name)


def make_executor(engine: Engine, **settings: Any) -> Executor:
    """An executor of ``engine`` with :class:`LocalExecutor`'s settings (``workers=None``: the
    engine's default, one worker here or one per CPU of a Ray cluster)."""
    if engine == "ray":
        from lakegen.executor.ray import RayExecutor

        return RayExecutor(**settings)
    if settings.get("workers") is None:
        settings["workers"] = 1
    return LocalExecutor(**settings)
