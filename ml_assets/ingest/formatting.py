"""Small formatting helpers of the validation messages: numbers without a pointless ``.0``, JSON-safe
example values, markdown cells, day lists and example values of a failed rule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_assets.ingest.rules import RuleFailure

MAX_DAYS_SHOWN = 5


def unique_list(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def format_number(value: Any) -> str:
    """A number without a pointless ``.0``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(number)
    return f"{number:g}" if number != int(number) or abs(number) >= 1e15 else str(int(number))


def jsonable(value: Any) -> Any:
    """A plain JSON value (None for nulls, Python scalars, ISO strings for timestamps)."""
    import pandas as pd

    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def describe_days(days: list[str]) -> str:
    if not days:
        return ""
    shown = ", ".join(days[:MAX_DAYS_SHOWN])
    if len(days) > MAX_DAYS_SHOWN:
        shown += f" and {len(days) - MAX_DAYS_SHOWN} more days"
    return shown


def example_values(failure: RuleFailure) -> list[str]:
    """The offending column's values in the example rows, for one-line messages."""
    column = failure.column
    if column is None or "," in column:
        return []
    values = [row[column] for row in failure.examples if column in row]
    shown = []
    for value in unique_values(values)[:3]:
        if isinstance(value, str):
            shown.append(repr(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown.append(format_number(value))
        else:
            shown.append(str(value))
    return shown


def unique_values(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
