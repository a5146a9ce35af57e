"""Jinja2 templates, opt-in per prompt, inside `ImmutableSandboxedEnvironment` and tighter limits of our own.

Layers, each of which alone refuses the known escapes (`''.__class__.__mro__`, `cycler.__init__.__globals__`,
`{{ self }}`, `"{0.__class__}".format(x)`, `|attr('__class__')`):
- at save time the template's tokens and syntax tree are checked: at most MAX_TEMPLATE_TOKENS tokens and
  MAX_NESTING nested brackets, no attribute, item or name starting with `_`, no `self`, no macros, call blocks,
  imports, includes or extends, and only filters from an allow-list;
- the environment's only globals are `range` (Jinja2's bounded one: at most 100,000 items) and `dict`; the names
  of Jinja2's other globals (`cycler`, `joiner`, `namespace`, `lipsum`) are refused at save time, so no template is
  saved that could never render, and no global is ever listed among a template's variables; strict
  undefined variables, no loader, no constant folding (nothing runs at compile time), and the sandbox's own
  attribute checks;
- at run time only a few plain methods of strings, dicts and the loop may be called (no `format`), and `%` on
  strings is refused;
- no single operation may build a huge value, because one C call (`[x] * n`, `9 ** 4096 ** 64`, `str()` of a
  list that holds itself many times over) cannot be interrupted once it starts. So sizes are checked *before*
  the operation (`plugins.prompts.budget`): an integer result above MAX_INT_BITS bits, a repetition or
  concatenation past the output budget, a value printed, joined or passed to a text filter whose text would pass
  the budget, a `{% set %}` or `{% filter %}` block whose captured output passes it, and the filters taking a size
  (`batch`, `slice`, `tojson`'s indent, `sum`'s start, `round`'s precision) are refused: RenderLimitExceeded for
  a size, TemplateRefused for an argument out of range;
- output streams through the same budget.

What is left (a slow loop, a comparison of two huge structures, memory grown a piece at a time) is stopped by the
worker process the template runs in: a time limit and a memory cap, past which the process is killed
(`plugins.prompts.worker`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from io import StringIO
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS, do_batch, do_round, do_tojson, sync_do_slice, sync_do_sum
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import _PassArg, pass_environment, pass_eval_context

from plugins.prompts import budget
from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused, TemplateVariablesError

MAX_OUTPUT_CHARS = 256 * 1024
MAX_JSON_INDENT = 16
MAX_ROUND_DIGITS = 64
# Per prompt (all messages). Compiling 20,000 tokens takes ~0.3 s and ~45 MB at its peak (50,000: a second, 100 MB).
MAX_TEMPLATE_TOKENS = 20_000
MAX_NESTING = 64  # brackets inside one tag; deeper nesting would exhaust the parser's recursion
MAX_DETAIL_CHARS = 500

_ALLOWED_FILTERS = (
    "abs batch capitalize count d default dictsort e escape first float groupby int items join last length list "
    "lower map max min reject rejectattr replace reverse round select selectattr slice sort string striptags sum "
    "title tojson trim truncate unique upper urlencode wordcount"
).split()
# Filters that turn their input into text: a container is weighed before it is stringified.
_TEXT_FILTERS = "capitalize e escape lower string striptags title trim truncate upper urlencode wordcount".split()
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
# Plain functions over the template's own values: `range` is Jinja2's sandboxed one (OverflowError past
# jinja2.sandbox.MAX_RANGE items), so neither can build a value larger than what the budget checks already bound.
GLOBALS: dict[str, Any] = {"range": safe_range, "dict": dict}
# Jinja2's other default globals: objects with state, or text generators, that this sandbox does not offer.
_REFUSED_GLOBALS = frozenset({"cycler", "joiner", "namespace", "lipsum"})
_OPEN_BRACKETS = frozenset("([{")
_CLOSE_BRACKETS = frozenset(")]}")


class _CodeGenerator(CodeGenerator):
    """Our code generator: `a ~ b` goes through the environment's size check instead of an unchecked join, block
    captures use a bounded buffer, and the names a template reads from its context are collected while the code is
    generated (what `jinja2.meta` would find with a second generation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undeclared_identifiers: set[str] = set()

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for _, (action, param) in frame.symbols.loads.items():
            if action == "resolve" and param not in self.environment.globals:
                self.undeclared_identifiers.add(param)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.limited_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


@pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Any:
    # Everything printed with {{ }} passes here before `str()`. Taking the eval context (not nothing) also keeps
    # Jinja2 from evaluating constant output at compile time.
    env: PromptSandbox = eval_ctx.environment  # type: ignore[assignment]
    if not isinstance(value, str):
        env.check_text(value, "a printed value")
    return value


class PromptSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _CodeGenerator

    def __init__(self, max_output_chars: int = MAX_OUTPUT_CHARS) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            cache_size=0,
            optimized=False,
            finalize=_finalize,
        )
        self.max_output_chars = max_output_chars
        self.globals.clear()
        self.globals.update(GLOBALS)
        self.filters = {name: FILTERS[name] for name in _ALLOWED_FILTERS}
        for name in _TEXT_FILTERS:
            self.filters[name] = self._weighing(name, self.filters[name])
        self.filters["join"] = self._join
        self.filters["replace"] = self._replace
        self.filters["batch"] = self._batch
        self.filters["slice"] = self._slice
        self.filters["tojson"] = self._tojson
        self.filters["sum"] = _sum
        self.filters["round"] = _round

    # --- size checks -------------------------------------------------------------------------------------------

    def check_text(self, value: Any, what: str, *, indent: int = 0, limit: int | None = None) -> None:
        """Refuse `value` before it is turned into text if that text would pass `limit` (the output budget)."""
        limit = self.max_output_chars if limit is None else limit
        size = budget.weight(value, limit, text=True, indent=indent)
        if size > limit:
            raise budget.too_big(limit, size, f"{what} as text")

    def _text(self, value: Any, limit: int) -> str:
        if not isinstance(value, str):
            self.check_text(value, "a joined value", limit=limit)
        return str(value)

    def limited_buffer(self) -> budget.LimitedBuffer:
        return budget.LimitedBuffer(self.max_output_chars)

    def limited_concat(self, parts: Iterable[Any]) -> str:
        limit = self.max_output_chars
        texts: list[str] = []
        size = 0
        for part in parts:
            texts.append(self._text(part, limit - size))
            size += len(texts[-1])
            if size > limit:
                raise budget.too_big(limit, size)
        return "".join(texts)

    # --- filters that build text or take a size ------------------------------------------------------------------

    def _weighing(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        skip = 1 if _PassArg.from_obj(func) is not None else 0  # the environment or context comes first

        @functools.wraps(func)
        def filtered(*args: Any, **kwargs: Any) -> Any:
            if len(args) > skip and not isinstance(args[skip], str):
                self.check_text(args[skip], f"the input of |{name}")
            return func(*args, **kwargs)

        return filtered

    def _join(self, value: Iterable[Any], d: Any = "", attribute: Any = None) -> str:
        if attribute is not None:
            raise SecurityError("join(attribute=...) is not allowed: use map(attribute=...) first")
        limit = self.max_output_chars
        sep = self._text(d, limit)
        items: list[str] = []
        size = 0
        for v in value:
            items.append(self._text(v, limit - size))
            size += len(items[-1]) + (len(sep) if len(items) > 1 else 0)
            if size > limit:
                raise budget.too_big(limit, size)
        return sep.join(items)

    def _replace(self, s: Any, old: Any, new: Any, count: int | None = None) -> str:
        limit = self.max_output_chars
        text, old_text, new_text = (self._text(x, limit) for x in (s, old, new))
        size = len(text) + text.count(old_text) * len(new_text)
        if size > limit:
            raise budget.too_big(limit, size)
        return text.replace(old_text, new_text, -1 if count is None else count)

    def _cap_size(self, filter_name: str, size: Any) -> None:
        if isinstance(size, int) and size > self.max_output_chars:
            raise RenderLimitExceeded(f"{filter_name}() takes a size of at most {self.max_output_chars}, not {size}")

    def _batch(self, value: Any, linecount: int, fill_with: Any = None) -> Any:
        self._cap_size("batch", linecount)  # do_batch pads with `[fill_with] * (linecount - n)` in one C call
        return do_batch(value, linecount, fill_with)

    def _slice(self, value: Any, slices: int, fill_with: Any = None) -> Any:
        self._cap_size("slice", slices)
        return sync_do_slice(value, slices, fill_with)

    @pass_eval_context
    def _tojson(self, eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
        # json.dumps writes `indent` once per nesting level on every line.
        width = len(indent) if isinstance(indent, str) else indent
        if width is not None and (not isinstance(width, int) or not 0 <= width <= MAX_JSON_INDENT):
            raise SecurityError(f"tojson(indent=...) must be a number from 0 to {MAX_JSON_INDENT}")
        self.check_text(value, "the input of |tojson", indent=width or 0)
        return do_tojson(eval_ctx, value, indent)

    # --- operators and calls -----------------------------------------------------------------------------------

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' string formatting is not allowed: use ~ to join strings")
        if operator == "*":
            budget.check_product(left, right, self.max_output_chars)
        elif operator == "+":
            budget.check_concatenation(left, right, self.max_output_chars)
        elif operator == "**":
            budget.check_power(left, right)
        result = super().call_binop(context, operator, left, right)
        budget.check_int(result)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, Undefined):
            __obj._fail_with_undefined_error()  # report the missing name, not "calling Undefined"
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        allowed = next((names for kind, names in _CALLABLE_METHODS.items() if isinstance(owner, kind)), frozenset())
        if name not in allowed and not any(__obj is g for g in GLOBALS.values()):
            raise SecurityError(f"calling {name or type(__obj).__name__!r} is not allowed in a prompt template")
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # The stock sandbox returns an Undefined that only fails when printed; `|list` would print "[Undefined]".
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} value is not allowed")


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    # sum(start=[]) or start='' concatenates in one quadratic C call.
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError("sum(start=...) must be a number")
    return sync_do_sum(environment, iterable, attribute, start)


def _round(value: Any, precision: Any = 0, method: str = "common") -> Any:
    # round(n, -10**9) computes 10 ** 10**9 for an integer n; `ceil`/`floor` compute 10 ** precision.
    if not budget.is_int(precision) or abs(precision) > MAX_ROUND_DIGITS:
        limit = MAX_ROUND_DIGITS
        raise SecurityError(f"round(precision=...) must be a whole number from -{limit} to {limit}")
    return do_round(value, precision, method)  # type: ignore[arg-type]


def _refuse(detail: str) -> TemplateRefused:
    return TemplateRefused(f"the template is refused by the sandbox: {detail}")


def _vet_tokens(env: PromptSandbox, source: str, budget: int) -> int:
    """Count the template's tokens and its bracket depth without parsing it (the lexer is iterative); return the
    count. Refused past `budget` tokens or MAX_NESTING brackets, before the recursive parser sees it."""
    count = depth = 0
    for lineno, kind, value in env.lexer.tokeniter(source, None):
        count += 1
        if count > budget:
            raise TemplateRefused(
                f"the template has more than {MAX_TEMPLATE_TOKENS:,} tokens (tags, names, operators and text "
                "between them, all messages together): split it or move data into variables"
            )
        if kind == "operator":
            if value in _OPEN_BRACKETS:
                depth += 1
                if depth > MAX_NESTING:
                    raise TemplateRefused(f"line {lineno}: brackets are nested more than {MAX_NESTING} deep")
            elif value in _CLOSE_BRACKETS:
                depth = max(depth - 1, 0)
    return count


def compile_checked(env: PromptSandbox, source: str, *, tokens_left: int = MAX_TEMPLATE_TOKENS) -> Checked:
    """Vet `source` (tokens, syntax tree) and compile it once; or raise TemplateRefused."""
    try:
        tokens = _vet_tokens(env, source, tokens_left)
        tree = env.parse(source)
        _vet_tree(env, tree)
        stream = StringIO()
        generator = _CodeGenerator(env, "<template>", None, stream, False, env.optimized)
        generator.visit(tree)
        code = compile(stream.getvalue(), "<template>", "exec")
    except TemplateSyntaxError as exc:
        raise TemplateRefused(f"line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise TemplateRefused(_short(str(exc))) from None
    except (RecursionError, SyntaxError) as exc:
        # Python's own limits on the generated code (nested blocks, parentheses) or on the parser's recursion.
        raise TemplateRefused(f"the template is nested too deeply to compile ({type(exc).__name__})") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer literal of more than 4,300 digits
        raise TemplateRefused(f"the template failed to compile: {_short(str(exc))}") from None
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    return Checked(sorted(generator.undeclared_identifiers), template, tokens)


class Checked:
    __slots__ = ("template", "tokens", "variables")

    def __init__(self, variables: list[str], template: Template, tokens: int) -> None:
        self.variables = variables
        self.template = template
        self.tokens = tokens


def _vet_tree(env: PromptSandbox, tree: nodes.Template) -> None:
    for node in tree.find_all(nodes.Node):
        where = f"line {node.lineno}"
        if type(node) in _REFUSED_NODES:
            raise _refuse(f"{where}: {_REFUSED_NODES[type(node)]} is not allowed")
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise _refuse(f"{where}: attribute {node.attr!r} is private")
        if isinstance(node, nodes.Name) and (node.name.startswith("_") or node.name == "self"):
            raise _refuse(f"{where}: the name {node.name!r} is not available")
        if isinstance(node, nodes.Name) and node.name in _REFUSED_GLOBALS:
            raise _refuse(
                f"{where}: Jinja2's {node.name!r} is not available in this sandbox (its globals are "
                f"{', '.join(sorted(GLOBALS))}); name variables otherwise"
            )
        if isinstance(node, nodes.Getitem | nodes.Filter | nodes.Test):
            for const in node.find_all(nodes.Const):
                if isinstance(const.value, str) and const.value.startswith("_") and _names_attribute(node, const):
                    raise _refuse(f"{where}: {const.value!r} names a private attribute")
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            raise _refuse(f"{where}: filter {node.name!r} is not allowed (allowed: {', '.join(_ALLOWED_FILTERS)})")


def _names_attribute(node: nodes.Node, const: nodes.Const) -> bool:
    if isinstance(node, nodes.Getitem):
        return const is node.arg
    # Filters and tests such as map/selectattr/sort take attribute names as arguments.
    assert isinstance(node, nodes.Filter | nodes.Test)
    return any(const is a for a in node.args) or any(const is k.value for k in node.kwargs)


def _short(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."


def translate(exc: BaseException) -> BaseException:
    """The problem to answer for an exception raised while a template renders."""
    if isinstance(exc, TemplateRefused | RenderLimitExceeded | TemplateVariablesError):
        return exc
    if isinstance(exc, UndefinedError):
        m = re.match(r"'([^']{1,200})' is undefined", exc.message or "")
        if m:
            return TemplateVariablesError(f"missing variable: {m.group(1)}", missing=[m.group(1)], unknown=[])
        return TemplateVariablesError(
            f"a variable lacks a field the template uses: {_short(exc.message or '')}", missing=[], unknown=[]
        )
    if isinstance(exc, SecurityError):
        return _refuse(_short(str(exc)))
    if isinstance(exc, MemoryError):
        return RenderLimitExceeded("rendering needed more memory than a prompt may use")
    if isinstance(exc, RecursionError):
        return TemplateRefused("the template failed while rendering: it recursed too deeply")
    if isinstance(exc, Exception):
        return TemplateRefused(f"the template failed while rendering: {type(exc).__name__}: {_short(str(exc))}")
    return exc
