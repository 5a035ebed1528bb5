"""The Jinja environment the page templates run in, and a quicker call for it.

A 10,000-model site makes about 1.4 million calls from its templates (``link``, ``badge``,
``href``, the macros). Jinja sends each through :meth:`jinja2.runtime.Context.call`, which looks
twice for a ``pass_context``-style marker, on the callable and on its ``__call__``, before calling
it: a fifth of the model pages' cost. A function, a bound method, a builtin or a macro without the
marker is called directly here; anything else goes through Jinja's own path, so the result is
the same for every callable.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.runtime import Context, Macro
from jinja2.utils import internalcode

from lakegen.site.templatecache import template_cache

# What Jinja marks with ``jinja_pass_arg`` is a function (or a method of one), never its
# ``__call__`` slot; builtins cannot carry the marker at all.
_DIRECT = frozenset({types.FunctionType, types.MethodType, types.BuiltinFunctionType, Macro})


class _Context(Context):
    @internalcode
    def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if type(__obj) not in _DIRECT or hasattr(__obj, "jinja_pass_arg"):
            return super().call(__obj, *args, **kwargs)
        if kwargs:
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
        try:
            return __obj(*args, **kwargs)
        except StopIteration:
            return __self.environment.undefined(
                "value was undefined because a callable raised a StopIteration exception"
            )


def page_environment(templates: Path) -> Environment:
    """The environment of the page templates in ``templates/pages``: autoescaped, strict about
    undefined names, its compiled templates kept between builds."""
    env = Environment(
        loader=FileSystemLoader(str(templates / "pages")),
        autoescape=True,
        auto_reload=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=template_cache(),
    )
    env.context_class = _Context
    return env
