"""The page templates' environment: its quicker calls give what Jinja's own context gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, pass_environment, pass_eval_context

from lakegen.site.environment import page_environment

TEMPLATE = """\
{% macro row(x) %}<{{ x }}>{% endmacro %}{% macro wrap(x) %}[{{ x }}|{{ caller() }}]{% endmacro %}
{% for x in items %}{{ plain(x) }} {{ ctx(x) }} {{ env_name(x) }} {{ evalctx(x) }} {{ obj(x) }} {{ bound(x) }}
{{ m.get("k") }} {{ row(x) }}{% call wrap(x) %}{{ ctx(loop.index) }}{% endcall %} {{ stop() is undefined }}
{% endfor %}{% set local = "set here" %}{{ ctx("after") }}
"""


class _Callable:
    @pass_context
    def __call__(self, context: Any, x: object) -> str:
        return f"callable {x} {context.get('local', '-')}"


class _Holder:
    def __init__(self) -> None:
        self.prefix = "bound"

    def method(self, x: object) -> str:
        return f"{self.prefix} {x}"


@pass_context
def _ctx(context: Any, x: object) -> str:
    return f"ctx {x} {context.get('local', '-')} {context.get('x', '-')}"


@pass_environment
def _env_name(environment: Environment, x: object) -> str:
    return f"env {x} {environment.trim_blocks}"


@pass_eval_context
def _evalctx(eval_ctx: Any, x: object) -> str:
    return f"eval {x} {eval_ctx.autoescape}"


def _stop() -> str:
    raise StopIteration


def _render(env: Environment) -> str:
    return env.get_template("page.html").render(
        items=["<a>", 2],
        plain=lambda x: f"plain {x}",
        ctx=_ctx,
        env_name=_env_name,
        evalctx=_evalctx,
        obj=_Callable(),
        bound=_Holder().method,
        m={"k": "<v>"},
        stop=_stop,
    )


def test_template_calls_give_what_jinjas_own_context_gives(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "page.html").write_text(TEMPLATE, encoding="utf-8")
    ours = page_environment(tmp_path)
    theirs = Environment(
        loader=FileSystemLoader(str(tmp_path / "pages")),
        autoescape=True,
        undefined=ours.undefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    assert ours.context_class is not theirs.context_class
    expected = _render(theirs)
    assert "ctx 1" in expected and "callable &lt;a&gt;" in expected and "&lt;v&gt;" in expected
    assert _render(ours) == expected
