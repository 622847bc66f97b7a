"""Training windows, resolved once: which feature days train, validate and test a model.

``resolve_windows`` turns the YAML's ``model.windows`` (fixed dates, or the last N days in
``rolling`` mode) into ``{split: (first_day, last_day)}``; ``split_by_time`` selects the labelled
rows of each window and checks each has enough rows and both classes; ``build_training_set`` does
both for a pipeline and adds the ``split`` column. Every problem is a ``WindowError`` naming the
window, its dates and its counts. pandas loads inside the functions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN, PipelineSpec, TrainingWindows

SPLITS = ("train", "validate", "test")


class WindowError(ValueError):
    """A training window that cannot be used (bad dates, too few rows, a single class)."""


def as_date(value: Any) -> dt.date:
    """A ``datetime.date`` from a date, datetime, pandas Timestamp or ISO string."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date") and callable(value.date):  # pandas Timestamp
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def resolve_windows(
    windows: TrainingWindows, available_days: list[str], mode: str | None = None, end: str | None = None
) -> dict[str, tuple[str, str]]:
    """``{split: (first_day, last_day)}`` of the windows (rolling: ending on the last available day).

    ``mode`` and ``end`` override the YAML's ``windows.mode`` and ``windows.rolling.end``."""
    mode = mode or windows.mode
    if mode not in ("fixed", "rolling"):
        raise WindowError(f"training windows: mode must be 'fixed' or 'rolling', got {mode!r}")
    if mode == "fixed":
        dated = {"train": windows.train, "validate": windows.validation, "test": windows.test}
        return {name: (w.start.isoformat(), w.end.isoformat()) for name, w in dated.items()}
    rolling = windows.rolling
    if end is not None:
        try:
            last = dt.date.fromisoformat(end)
        except ValueError:
            raise WindowError(f"training windows: end {end!r} is not an ISO date (YYYY-MM-DD)") from None
    elif rolling.end is not None:
        last = rolling.end
    elif available_days:
        last = dt.date.fromisoformat(max(available_days))
    else:
        raise WindowError("rolling windows: there are no feature days to end on")
    result: dict[str, tuple[str, str]] = {}
    for name, days in (("test", rolling.test_days), ("validate", rolling.validate_days), ("train", rolling.train_days)):
        start = last - dt.timedelta(days=days - 1)
        result[name] = (start.isoformat(), last.isoformat())
        last = start - dt.timedelta(days=1)
    return {name: result[name] for name in SPLITS}


def day_strings(frame: Any, date_column: str) -> Any:
    """The date column as ISO ``YYYY-MM-DD`` strings (cheap when it already is)."""
    import pandas as pd

    if date_column not in frame.columns:
        raise WindowError(f"the frame has no date column '{date_column}'")
    values = frame[date_column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d")
    return values.astype(str).str.slice(0, 10)


def check_window(name: str, rows: Any, start: dt.date, end: dt.date, target: str, min_rows: int,
                 require_both_classes: bool) -> None:
    """``WindowError`` when a window has fewer than ``min_rows`` rows or (classification) one class."""
    n = len(rows)
    positives = int((rows[target] > 0.5).sum()) if n else 0
    if n < min_rows:
        raise WindowError(
            f"window '{name}' ({start}..{end}) has {n} rows with a known '{target}', fewer than "
            f"min_rows={min_rows} ({positives} positive, {n - positives} negative)"
        )
    if require_both_classes and (positives == 0 or positives == n):
        raise WindowError(
            f"window '{name}' ({start}..{end}) has a single class: {positives} positive and "
            f"{n - positives} negative of {n} rows with a known '{target}'"
        )


def split_by_time(
    frame: Any,
    windows: dict[str, tuple[Any, Any]],
    *,
    target: str,
    date_column: str = PARTITION_COLUMN,
    min_rows: int = 100,
    require_both_classes: bool = True,
) -> dict[str, Any]:
    """The labelled rows of each window (``{name: (start, end)}``, both days inclusive, in time order
    and not overlapping). Rows whose target is unknown (NaN) are dropped."""
    if target not in frame.columns:
        raise WindowError(f"the frame has no target column '{target}'")
    parsed = [(name, as_date(start), as_date(end)) for name, (start, end) in windows.items()]
    for name, start, end in parsed:
        if end < start:
            raise WindowError(f"window '{name}' ends ({end}) before it starts ({start})")
    for (name_a, _, end_a), (name_b, start_b, _) in zip(parsed, parsed[1:]):
        if start_b <= end_a:
            raise WindowError(
                f"window '{name_b}' starts on {start_b}, not after the end of '{name_a}' ({end_a}): "
                "windows must be in time order and must not overlap"
            )
    days = day_strings(frame, date_column)
    known = frame[target].notna()
    result = {}
    for name, start, end in parsed:
        mask = (days >= start.isoformat()) & (days <= end.isoformat()) & known
        rows = frame.loc[mask.to_numpy()].reset_index(drop=True)
        check_window(name, rows, start, end, target, min_rows, require_both_classes)
        result[name] = rows
    return result


def build_training_set(
    frame: Any, spec: PipelineSpec, mode: str | None = None, end: str | None = None
) -> tuple[Any, dict[str, tuple[str, str]]]:
    """Labelled rows of the pipeline's three windows with a ``split`` column, and the windows."""
    import pandas as pd

    target = spec.target.name
    missing = [c for c in (PARTITION_COLUMN, target) if c not in frame.columns]
    if missing:
        raise WindowError(f"the features of pipeline '{spec.name}' have no column(s) {missing}")
    days = sorted(frame[PARTITION_COLUMN].dropna().astype(str).unique().tolist())
    windows = resolve_windows(spec.model.windows, days, mode, end)
    splits = split_by_time(
        frame, windows, target=target, min_rows=spec.model.windows.min_rows,
        require_both_classes=spec.target.task == "classification",
    )
    parts = [part.assign(**{SPLIT_COLUMN: name}) for name, part in splits.items()]
    return pd.concat(parts, ignore_index=True), windows


def split_rows(frame: Any, name: str) -> Any:
    """The rows of one window of a training set."""
    return frame[frame[SPLIT_COLUMN] == name].reset_index(drop=True)
