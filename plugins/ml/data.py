"""Training data as a model sees it: columns with a type each, checked before a job is queued (pure, no I/O).

`dataset(...)` turns JSON rows or CSV text into a `Dataset`: the feature columns (numbers or categories) and the
target, with every problem a request can have named precisely (a missing value, a column that mixes numbers and
text, too few rows, too many categories). Size limits raise `PayloadTooLarge` with the limit; the rest `InvalidInput`.
The result travels to the training job as ASCII-escaped JSON (`encode`/`decode`), so any client text survives the
job queue's jsonb unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.codec import ascii_json
from app.errors import InvalidInput, PayloadTooLarge
from plugins.ml.schemas import MAX_FEATURES

MIN_ROWS = 10
MAX_CATEGORIES = 1_000  # distinct values of one categorical feature
MAX_CLASSES = 100


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "number" or "category"
    values: list[Any]  # floats for numbers, strings for categories


@dataclass(frozen=True)
class Dataset:
    features: list[Column]
    target: Column | None
    rows: int

    def encode(self) -> str:
        def col(c: Column) -> dict[str, Any]:
            return {"name": c.name, "kind": c.kind, "values": c.values}

        return ascii_json(
            {
                "features": [col(c) for c in self.features],
                "target": None if self.target is None else col(self.target),
                "rows": self.rows,
            }
        )

    @staticmethod
    def decode(text: str) -> Dataset:
        raw = json.loads(text)

        def col(c: dict[str, Any]) -> Column:
            return Column(name=c["name"], kind=c["kind"], values=c["values"])

        return Dataset(
            features=[col(c) for c in raw["features"]],
            target=None if raw["target"] is None else col(raw["target"]),
            rows=raw["rows"],
        )


def _invalid(detail: str, **extra: Any) -> InvalidInput:
    return InvalidInput(detail, extra=extra)


def _check_text(value: str, column: str, row: int) -> str:
    if "\x00" in value:
        raise _invalid(f"row {row}, column {column!r}: a value cannot hold a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"row {row}, column {column!r}: a value holds a lone surrogate, which is not text") from None
    return value


def _number(value: float, column: str, row: int) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer past float64 (JSON allows any number of digits)
        number = math.inf
    if not math.isfinite(number):
        raise _invalid(f"row {row}, column {column!r}: {value} is not a finite number")
    return number


def from_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Column names (the first row's keys) and the cells column by column, every row with the same keys."""
    names = list(rows[0])
    if len(names) > MAX_FEATURES + 1:
        raise PayloadTooLarge(f"at most {MAX_FEATURES + 1} columns", extra={"limit": MAX_FEATURES + 1})
    expected = set(names)
    columns: list[list[Any]] = [[] for _ in names]
    for i, row in enumerate(rows):
        if len(row) != len(names) or row.keys() != expected:
            missing, extra = sorted(expected - row.keys()), sorted(row.keys() - expected)
            raise _invalid(
                f"row {i} does not have the first row's columns (missing {missing}, unexpected {extra})",
                row=i,
            )
        for j, name in enumerate(names):
            columns[j].append(row[name])
    return names, columns


def from_csv(text: str, *, max_rows: int, max_cells: int) -> tuple[list[str], list[list[Any]]]:
    """Column names (the header) and the cells column by column, as strings."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise _invalid("the CSV has no header line") from None
    except csv.Error as exc:
        raise _invalid(f"the CSV header is not valid CSV: {exc}") from None
    names = [h.strip() for h in header]
    if len(names) > MAX_FEATURES + 1:
        raise PayloadTooLarge(f"at most {MAX_FEATURES + 1} columns", extra={"limit": MAX_FEATURES + 1})
    for name in names:
        if not name or len(name) > 128:
            raise _invalid("every CSV header name is 1 to 128 characters")
    if len(set(names)) != len(names):
        raise _invalid("the CSV header names a column twice")
    columns: list[list[Any]] = [[] for _ in names]
    count = 0
    try:
        for line in reader:
            if not line or (len(line) == 1 and not line[0].strip()):
                continue  # a blank line
            if len(line) != len(names):
                raise _invalid(
                    f"CSV line {reader.line_num} has {len(line)} fields, the header {len(names)}", line=reader.line_num
                )
            count += 1
            if count > max_rows:
                raise PayloadTooLarge(f"at most {max_rows:,} rows per training request", extra={"limit": max_rows})
            if count * len(names) > max_cells:
                raise PayloadTooLarge(f"at most {max_cells:,} values per training request", extra={"limit": max_cells})
            for j, cell in enumerate(line):
                columns[j].append(cell.strip())
    except csv.Error as exc:
        raise _invalid(f"CSV line {reader.line_num} is not valid CSV: {exc}") from None
    return names, columns


def _typed(name: str, cells: list[Any], *, from_text: bool) -> Column:
    """A column as numbers when every cell is one (a number, or in a CSV, text that reads as one), else categories."""
    for i, cell in enumerate(cells):
        if cell == "" and from_text:
            raise _invalid(f"row {i}, column {name!r}: the value is missing (fill or drop the row)")
    if from_text:
        try:
            return Column(name, "number", [_number(float(c), name, i) for i, c in enumerate(cells)])
        except ValueError:
            pass
        return Column(name, "category", [_check_text(c, name, i) for i, c in enumerate(cells)])
    strings = [isinstance(c, str) for c in cells]
    if not any(strings):
        return Column(name, "number", [_number(c, name, i) for i, c in enumerate(cells)])
    if all(strings):
        return Column(name, "category", [_check_text(c, name, i) for i, c in enumerate(cells)])
    first = strings.index(not strings[0])
    raise _invalid(f"column {name!r} mixes numbers and text (row 0 and row {first}): use one kind per column")


def _target(column: Column, task: str) -> Column:
    if task == "regression":
        if column.kind != "number":
            raise _invalid(f"the regression target {column.name!r} must be numbers")
        return column
    # classification: labels are integers or text
    if column.kind == "number":
        if not all(float(v).is_integer() for v in column.values):
            raise _invalid(
                f"the classification target {column.name!r} holds fractional numbers: classes are integers or text "
                "(for a numeric target, use task regression)"
            )
        column = Column(column.name, "number", [int(v) for v in column.values])
    classes = set(column.values)
    if len(classes) < 2:
        raise _invalid(f"the target {column.name!r} has a single class: a classifier needs at least two")
    if len(classes) > MAX_CLASSES:
        raise _invalid(f"the target {column.name!r} has {len(classes)} classes; at most {MAX_CLASSES}")
    return column


def dataset(
    *,
    rows: Sequence[Mapping[str, Any]] | None,
    csv_text: str | None,
    target: str | None,
    task: str,
    max_rows: int,
    max_cells: int,
) -> Dataset:
    """The checked training data (see the module docstring). CPU-bound on a large CSV: call it off the event loop."""
    if rows is not None:
        if len(rows) > max_rows:
            raise PayloadTooLarge(f"at most {max_rows:,} rows per training request", extra={"limit": max_rows})
        names, cells = from_rows(rows)
        if len(rows) * len(names) > max_cells:
            raise PayloadTooLarge(f"at most {max_cells:,} values per training request", extra={"limit": max_cells})
        from_text = False
    else:
        assert csv_text is not None
        names, cells = from_csv(csv_text, max_rows=max_rows, max_cells=max_cells)
        from_text = True
    count = len(cells[0]) if cells else 0
    if count < MIN_ROWS:
        raise _invalid(f"at least {MIN_ROWS} rows are needed to train and hold some out (got {count})")
    if target is not None and target not in names:
        raise _invalid(f"the target {target!r} is not a column (columns: {', '.join(names[:20])})")
    features: list[Column] = []
    target_column: Column | None = None
    for name, column_cells in zip(names, cells, strict=True):
        column = _typed(name, column_cells, from_text=from_text)
        if name == target:
            target_column = _target(column, task) if task != "anomaly" else None
            continue
        if column.kind == "category" and len(set(column.values)) > MAX_CATEGORIES:
            raise _invalid(f"column {name!r} has more than {MAX_CATEGORIES:,} distinct values")
        features.append(column)
    if not features:
        raise _invalid("no feature columns: the data holds the target only")
    if len(features) > MAX_FEATURES:
        raise PayloadTooLarge(f"at most {MAX_FEATURES} feature columns", extra={"limit": MAX_FEATURES})
    return Dataset(features=features, target=target_column, rows=count)
