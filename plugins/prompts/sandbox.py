"""Jinja2 templates, opt-in per prompt, inside `ImmutableSandboxedEnvironment` and tighter limits of our own.

Layers, each of which alone refuses the known escapes (`''.__class__.__mro__`, `cycler.__init__.__globals__`,
`{{ self }}`, `"{0.__class__}".format(x)`, `|attr('__class__')`):
- at save time the template's syntax tree is checked: no attribute, item or name starting with `_`, no `self`,
  no macros, call blocks, imports, includes or extends, and only filters from an allow-list;
- the environment has no globals (no `range`, `cycler`, `joiner`, `namespace`, `lipsum`, `dict`), strict
  undefined variables, no loader, and the sandbox's own attribute checks;
- at run time only a few plain methods of strings, dicts and the loop may be called (no `format`), `%` on
  strings is refused, and `*`, `+`, `~`, `**` and the filters taking a size (`batch`, `slice`, `tojson`'s
  indent, `sum`'s start) cannot build huge values: a single C call such as `[x] * n` would allocate it all
  before the deadline below could interrupt it (a MemoryError that gets through is reported as a render limit);
- output is capped while it streams and the render runs in its own thread under a deadline: past it the thread
  receives an exception at its next bytecode and stops.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS, do_batch, do_tojson, sync_do_slice, sync_do_sum
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_environment, pass_eval_context

from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused, TemplateVariablesError

MAX_OUTPUT_CHARS = 256 * 1024
MAX_JSON_INDENT = 16
RENDER_SECONDS = 1.0

_ALLOWED_FILTERS = (
    "abs batch capitalize count d default dictsort e escape first float groupby int items join last length list "
    "lower map max min reject rejectattr replace reverse round select selectattr slice sort string striptags sum "
    "title tojson trim truncate unique upper urlencode wordcount"
).split()
_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
}
_CALLABLE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        "capitalize casefold count endswith find isalnum isalpha isdigit islower isspace istitle isupper lower "
        "lstrip rfind rsplit rstrip split splitlines startswith strip swapcase title upper".split()
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    LoopContext: frozenset({"cycle", "changed"}),
}


class _Timeout(BaseException):
    """Raised inside a render thread when its deadline passes (BaseException: templates cannot catch it)."""


def _too_big(size: int) -> RenderLimitExceeded:
    return RenderLimitExceeded(f"the rendered output would exceed {MAX_OUTPUT_CHARS} characters ({size})")


def _weight(value: Any) -> int:
    """Characters of strings plus items of containers in `value`, counted only until past MAX_OUTPUT_CHARS."""
    total = 0
    stack = [value]
    while stack and total <= MAX_OUTPUT_CHARS:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += len(item)
            if total <= MAX_OUTPUT_CHARS:
                stack.extend(item.values() if isinstance(item, dict) else item)
                if isinstance(item, dict):
                    stack.extend(item.keys())
    return total


def _cap_size(filter_name: str, size: Any) -> None:
    if isinstance(size, int) and size > MAX_OUTPUT_CHARS:
        raise RenderLimitExceeded(f"{filter_name}() takes a size of at most {MAX_OUTPUT_CHARS}, not {size}")


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    _cap_size("batch", linecount)  # do_batch pads with `[fill_with] * (linecount - n)` in one C call
    return do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _cap_size("slice", slices)
    return sync_do_slice(value, slices, fill_with)


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
    # json.dumps builds `" " * indent` (or repeats a string indent) once per nesting level.
    width = len(indent) if isinstance(indent, str) else indent
    if width is not None and (not isinstance(width, int) or not 0 <= width <= MAX_JSON_INDENT):
        raise SecurityError(f"tojson(indent=...) must be a number from 0 to {MAX_JSON_INDENT}")
    return do_tojson(eval_ctx, value, indent)


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    # sum(start=[]) or start='' concatenates in one quadratic C call.
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError("sum(start=...) must be a number")
    return sync_do_sum(environment, iterable, attribute, start)


def _concat(parts: Iterable[Any]) -> str:
    texts = [str(p) for p in parts]
    size = sum(map(len, texts))
    if size > MAX_OUTPUT_CHARS:
        raise _too_big(size)
    return "".join(texts)


class _CodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to the environment's size-checked `limited_concat` instead of an unchecked `str_join`."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _join(value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = [str(v) for v in value] if attribute is None else None
    if items is not None:
        size = sum(map(len, items)) + len(str(d)) * max(len(items) - 1, 0)
        if size > MAX_OUTPUT_CHARS:
            raise _too_big(size)
        return str(d).join(items)
    raise SecurityError("join(attribute=...) is not allowed: use map(attribute=...) first")


def _replace(s: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(s)
    size = len(text) + text.count(str(old)) * len(str(new))
    if size > MAX_OUTPUT_CHARS:
        raise _too_big(size)
    return text.replace(str(old), str(new), -1 if count is None else count)


class PromptSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "+", "**", "%"})
    code_generator_class = _CodeGenerator
    limited_concat = staticmethod(_concat)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, cache_size=0)
        self.globals.clear()
        self.filters = {name: FILTERS[name] for name in _ALLOWED_FILTERS}
        self.filters["join"] = _join
        self.filters["replace"] = _replace
        self.filters["batch"] = _batch
        self.filters["slice"] = _slice
        self.filters["tojson"] = _tojson
        self.filters["sum"] = _sum

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # The stock sandbox returns an Undefined that only fails when printed; `|list` would print "[Undefined]".
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} value is not allowed")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' string formatting is not allowed: use ~ to join strings")
        if operator == "*":
            # Weighed by content, not length: `[s] * n` holds n references, but every filter (map, join, string)
            # turns it into n copies of s.
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and _weight(seq) * n > MAX_OUTPUT_CHARS:
                    raise _too_big(_weight(seq) * n)
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            size = _weight(left) + _weight(right)
            if size > MAX_OUTPUT_CHARS:
                raise _too_big(size)
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponents above 64 are not allowed")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, Undefined):
            __obj._fail_with_undefined_error()  # report the missing name, not "calling Undefined"
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        allowed = next((names for kind, names in _CALLABLE_METHODS.items() if isinstance(owner, kind)), frozenset())
        if name not in allowed:
            raise SecurityError(f"calling {name or type(__obj).__name__!r} is not allowed in a prompt template")
        return super().call(__context, __obj, *args, **kwargs)


def _refuse(detail: str) -> TemplateRefused:
    return TemplateRefused(f"the template is refused by the sandbox: {detail}")


def check(env: PromptSandbox, source: str) -> list[str]:
    """Parse and vet `source`; return its undeclared variables (sorted), or raise TemplateRefused."""
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRefused(f"line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all(nodes.Node):
        where = f"line {node.lineno}"
        if type(node) in _REFUSED_NODES:
            raise _refuse(f"{where}: {_REFUSED_NODES[type(node)]} is not allowed")
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise _refuse(f"{where}: attribute {node.attr!r} is private")
        if isinstance(node, nodes.Name) and (node.name.startswith("_") or node.name == "self"):
            raise _refuse(f"{where}: the name {node.name!r} is not available")
        if isinstance(node, nodes.Getitem | nodes.Filter | nodes.Test):
            for const in node.find_all(nodes.Const):
                if isinstance(const.value, str) and const.value.startswith("_") and _names_attribute(node, const):
                    raise _refuse(f"{where}: {const.value!r} names a private attribute")
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            raise _refuse(f"{where}: filter {node.name!r} is not allowed (allowed: {', '.join(_ALLOWED_FILTERS)})")
    try:
        env.compile(tree)
    except TemplateError as exc:
        raise TemplateRefused(str(exc)) from None
    return sorted(meta.find_undeclared_variables(tree))


def _names_attribute(node: nodes.Node, const: nodes.Const) -> bool:
    if isinstance(node, nodes.Getitem):
        return const is node.arg
    # Filters and tests such as map/selectattr/sort take attribute names as arguments.
    assert isinstance(node, nodes.Filter | nodes.Test)
    return any(const is a for a in node.args) or any(const is k.value for k in node.kwargs)


def stream_limited(chunks: Iterator[str], budget: int) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > budget:
            raise _too_big(size)
        out.append(chunk)
    return "".join(out)


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, UndefinedError):
        m = re.match(r"'([^']+)' is undefined", exc.message or "")
        if m:
            return TemplateVariablesError(f"missing variable: {m.group(1)}", missing=[m.group(1)], unknown=[])
        return TemplateVariablesError(
            f"a variable lacks a field the template uses: {exc.message}", missing=[], unknown=[]
        )
    if isinstance(exc, SecurityError):
        return _refuse(str(exc))
    if isinstance(exc, MemoryError):
        return RenderLimitExceeded("rendering needed more memory than a prompt may use")
    if isinstance(exc, TemplateError | TypeError | ValueError | ArithmeticError | LookupError | RecursionError):
        return TemplateRefused(f"the template failed while rendering: {type(exc).__name__}: {exc}")
    return exc


async def run_limited(job: Callable[[], Any], *, seconds: float = RENDER_SECONDS) -> Any:
    """Run the synchronous `job` in a fresh thread; past `seconds`, stop it and raise RenderLimitExceeded."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    lock = threading.Lock()
    state = {"done": False, "killed": False}

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def attempt() -> tuple[Any, BaseException | None]:
        try:
            try:
                return job(), None
            finally:
                with lock:
                    state["done"] = True
        except _Timeout:
            raise
        except BaseException as exc:
            return None, _translate(exc)

    def target() -> None:
        # A _Timeout is sent at most once and only before `done` is set, so it surfaces inside this try.
        try:
            value, error = attempt()
            loop.call_soon_threadsafe(settle, value, error)
        except _Timeout:
            pass  # the waiter has already answered

    thread = threading.Thread(target=target, name="prompt-render", daemon=True)
    thread.start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), seconds)
    except TimeoutError:
        with lock:
            if not state["done"] and thread.ident is not None:
                state["killed"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Timeout))
        if state["killed"]:
            raise RenderLimitExceeded(f"rendering took longer than {seconds:g} s and was stopped") from None
        return await future  # finished at the deadline: its answer is on the way
