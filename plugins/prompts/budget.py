"""What a value or an operation would cost, known before it runs: the sizes the Jinja2 sandbox checks.

A single C call (`[x] * n`, `a * b` on integers, `str()` of a list that holds itself many times over) cannot be
interrupted once it starts, so its result's size is worked out from its operands first and refused past the
budget: characters for text and sequences (`weight`), bits for integers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from plugins.prompts.errors import RenderLimitExceeded

MAX_INT_BITS = 4096  # ~1,233 decimal digits: any arithmetic on such numbers takes microseconds
_CONTAINERS = (list, tuple, set, frozenset, dict)


def weight(value: Any, limit: int, *, text: bool = False, indent: int = 0) -> int:
    """How big `value` is, counted only until it passes `limit` (so the cost is bounded by `limit`).

    Every reference is followed, so `[a, a]` weighs twice `a`: that is what a filter or `str()` would produce.
    Without `text`: characters of strings plus items of containers (what a repetition allocates). With `text`:
    an upper bound, up to escaping, of the length of its `str()` or JSON text, numbers and punctuation included,
    with `indent` spaces per nesting level and item.
    """
    total = _scalar_weight(value, text)
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    while stack and total <= limit:
        item, depth = stack.pop()
        total += len(item) * ((4 + indent * depth) if text else 1) + (2 if text else 0)
        if total > limit:
            break
        for child in [*item.keys(), *item.values()] if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
            elif isinstance(child, str):
                total += len(child) + (2 if text else 0)
            elif text:
                total += _scalar_weight(child, text)
    return total


def _scalar_weight(value: Any, text: bool) -> int:
    if isinstance(value, str | bytes):
        return len(value) + (2 if text else 0)
    if not text or isinstance(value, _CONTAINERS):
        return 0
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    return 32  # a float, the loop, an Undefined: short fixed representations


def too_big(limit: int, size: int | None = None, what: str = "the rendered output") -> RenderLimitExceeded:
    at_least = "" if size is None else f" ({size:,}+)"
    return RenderLimitExceeded(f"{what} would exceed {limit:,} characters{at_least}")


def too_many_bits(bits: int) -> RenderLimitExceeded:
    shown = f"{bits:,}" if bits < 10**15 else "more than 10^15"
    return RenderLimitExceeded(f"an integer result would have about {shown} bits; at most {MAX_INT_BITS} are allowed")


class LimitedBuffer(list[str]):
    """The output captured by `{% set %}...{% endset %}` and `{% filter %}` blocks, refused past the budget."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._left = limit
        self._limit = limit

    def append(self, item: str) -> None:
        self._left -= len(item)
        if self._left < 0:
            raise too_big(self._limit, what="a captured block")
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            self.append(item)


def is_int(value: Any) -> bool:
    return isinstance(value, int)


def check_product(left: Any, right: Any, limit: int) -> None:
    """`left * right`: integers by bits, repetitions by content against `limit` characters."""
    if is_int(left) and is_int(right):
        bits = abs(left).bit_length() + abs(right).bit_length() - 1
        if bits > MAX_INT_BITS:
            raise too_many_bits(bits)
        return
    # Weighed by content, not length: `[s] * n` holds n references, but every filter (map, join, string)
    # turns it into n copies of s.
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and is_int(n) and n > 0:
            size = min(weight(seq, limit), limit + 1) * min(n, limit + 1)
            if size > limit:
                raise too_big(limit, size)


def check_concatenation(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        size = weight(left, limit) + weight(right, limit)
        if size > limit:
            raise too_big(limit, size)


def check_power(base: Any, exponent: Any) -> None:
    # |base| ** exponent has floor(exponent * log2|base|) + 1 bits: known before a single multiplication is done.
    if is_int(base) and is_int(exponent) and exponent > 0 and abs(base) > 1:
        if exponent >= MAX_INT_BITS:
            raise too_many_bits(exponent)
        bits = exponent * math.log2(abs(base))
        if bits >= MAX_INT_BITS:
            raise too_many_bits(int(bits))


def check_int(result: Any) -> None:
    """No integer past MAX_INT_BITS leaves an operation (`+` and `-` grow by a bit at a time)."""
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise too_many_bits(result.bit_length())


def stream_limited(chunks: Iterator[str], budget: int, limit: int) -> str:
    """Join `chunks`, refusing as soon as they pass `budget` characters (what is left of `limit`)."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > budget:
            raise too_big(limit, size + limit - budget)
        out.append(chunk)
    return "".join(out)
