"""A budget on the number of values in a JSON body, checked on the raw bytes before anything is parsed.

A body's byte size does not bound what parsing it costs: 9.6 MB of tiny chat messages (600,000 of them) cost half
a gigabyte once parsed and validated, and a schema's `max_length` on a list is checked only after every item was
validated. `json_values` counts a body's values (an upper bound: one per comma, opening bracket or brace outside
strings, plus one) with a few passes of C-speed byte operations and no parsing, so a schema can refuse a body
that holds too many before building a single object.
"""

from __future__ import annotations

_KEEP = frozenset(b'"{[,')
_DELETE = bytes(b for b in range(256) if b not in _KEEP)


def json_values(raw: bytes | bytearray | str, *, limit: int | None = None) -> int:
    """How many values `raw` (JSON text) holds, at most (an empty array or object counts twice). With `limit`, an
    answer over it may be a lower bound instead, but is over it only when the body is: that keeps the work on a
    hostile body to a few copies of it."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    # Escaped backslashes, then escaped quotes, so that every quote left opens or closes a string.
    marks = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DELETE)
    # Two quotes side by side now enclose a string without separators: dropping the pair keeps the parity (inside
    # or outside a string) of every character after it, and leaves quotes only around strings with separators.
    marks = marks.replace(b'""', b"")
    quoted = marks.count(b'"') // 2
    upper = len(marks) - 2 * quoted + 1  # as if every separator stood outside a string
    if limit is None or upper <= limit:
        return upper
    if quoted > limit:  # that many strings with separators in them: each is a value itself
        return quoted
    outside = b"".join(marks.split(b'"')[::2])
    return outside.count(b",") + outside.count(b"{") + outside.count(b"[") + 1
