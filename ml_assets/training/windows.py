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


def fraction_windows(first: dt.date, last: dt.date, fractions: Any) -> dict[str, tuple[str, str]]:
    """Consecutive train, validate and test windows covering ``first`` .. ``last`` in the YAML's
    ``fractions`` of the days (each at least one day)."""
    total = (last - first).days + 1
    if total < 3:
        raise WindowError(f"training windows: {first}..{last} has {total} day(s), fewer than 3 (train, validate, test)")
    n_train = max(1, round(total * fractions.train))
    n_validate = max(1, round(total * fractions.validate_))
    n_train = min(n_train, total - n_validate - 1)
    result, start = {}, first
    for name, days in (("train", n_train), ("validate", n_validate), ("test", total - n_train - n_validate)):
        end = start + dt.timedelta(days=days - 1)
        result[name] = (start.isoformat(), end.isoformat())
        start = end + dt.timedelta(days=1)
    return result


def resolve_windows(
    windows: TrainingWindows, available_days: list[str], mode: str | None = None, end: str | None = None,
    partition_range: tuple[dt.date, dt.date | None] | None = None,
) -> dict[str, tuple[str, str]]:
    """``{split: (first_day, last_day)}`` of the windows (rolling: ending on the last available day).

    ``mode`` and ``end`` override the YAML's ``windows.mode`` and ``windows.rolling.end``. Fixed
    windows without dates are ``windows.fractions`` of ``partition_range`` (an open end: the last
    available day)."""
    mode = mode or windows.mode
    if mode not in ("fixed", "rolling"):
        raise WindowError(f"training windows: mode must be 'fixed' or 'rolling', got {mode!r}")
    if mode == "fixed" and windows.dated:
        dated = {"train": windows.train, "validate": windows.validation, "test": windows.test}
        return {name: (w.start.isoformat(), w.end.isoformat()) for name, w in dated.items()}
    if mode == "fixed":
        if partition_range is None:
            raise WindowError("training windows: no dates and no partition range to take fractions of")
        first, last = partition_range
        if last is None:
            if not available_days:
                raise WindowError("training windows: there are no feature days to take fractions of")
            last = dt.date.fromisoformat(max(available_days))
        return fraction_windows(first, last, windows.fractions)
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


def class_counts(rows: Any, target: str) -> dict[str, int]:
    """Rows per class of a label column (0/1 labels as ``0``/``1``, others as text)."""
    values = rows[target].dropna()
    if values.dtype != object:
        values = values.astype("int64")
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def check_window(name: str, rows: Any, start: Any, end: Any, target: str, min_rows: int,
                 require_both_classes: bool) -> None:
    """``WindowError`` when a window has fewer than ``min_rows`` rows or (classification) one class."""
    n = len(rows)
    counts = class_counts(rows, target) if require_both_classes and n else {}
    if counts and set(counts) <= {"0", "1"}:
        shown = f"{counts.get('1', 0)} positive and {counts.get('0', 0)} negative"
    else:
        shown = ", ".join(f"{count} of class {label}" for label, count in counts.items())
    if n < min_rows:
        raise WindowError(
            f"window '{name}' ({start}..{end}) has {n} rows with a known '{target}', fewer than "
            f"min_rows={min_rows}" + (f" ({shown})" if shown else "")
        )
    if require_both_classes and len(counts) < 2:
        raise WindowError(
            f"window '{name}' ({start}..{end}) has a single class: {shown} of {n} rows with a"
            f" known '{target}'"
        )


def parsed_windows(windows: dict[str, tuple[Any, Any]]) -> list[tuple[str, dt.date, dt.date]]:
    """``[(name, start, end)]``; ``WindowError`` unless each window ends after it starts and the
    windows are in time order without overlap."""
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
    return parsed


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
    parsed = parsed_windows(windows)
    days = day_strings(frame, date_column)
    known = frame[target].notna()
    result = {}
    for name, start, end in parsed:
        mask = (days >= start.isoformat()) & (days <= end.isoformat()) & known
        rows = frame.loc[mask.to_numpy()].reset_index(drop=True)
        check_window(name, rows, start, end, target, min_rows, require_both_classes)
        result[name] = rows
    return result


def random_split(frame: Any, fractions: Any, *, target: str, seed: int, stratify: bool) -> dict[str, Any]:
    """A seeded random split of ``frame`` into train, validate and test (stratified on ``target``
    when ``stratify``), with scikit-learn's ``train_test_split``."""
    from sklearn.model_selection import train_test_split

    n = len(frame)
    if n < 3:
        raise WindowError(f"random split: {n} labelled rows, fewer than 3 (train, validate, test)")
    labels = frame[target] if stratify else None
    rest_share = fractions.validate_ + fractions.test
    try:
        train, rest = train_test_split(frame, test_size=rest_share, random_state=seed, stratify=labels)
        validate, test = train_test_split(
            rest, test_size=fractions.test / rest_share, random_state=seed,
            stratify=rest[target] if stratify else None,
        )
    except ValueError as exc:  # a class too small to stratify
        counts = class_counts(frame, target) if stratify else {}
        raise WindowError(f"random split of {n} labelled rows failed ({exc}); classes: {counts}") from None
    return {"train": train, "validate": validate, "test": test}


def time_split(frame: Any, fractions: Any, *, time_column: str) -> dict[str, Any]:
    """The earliest rows train, the next validate, the latest test (``fractions`` of the rows)."""
    from ml_assets.features.functions import utc_times

    if time_column not in frame.columns:
        raise WindowError(f"the features have no time column '{time_column}' (model.windows.time_column)")
    ordered = frame.assign(_time=utc_times(frame[time_column])).sort_values("_time", kind="mergesort")
    n = len(ordered)
    n_train, n_validate = round(n * fractions.train), round(n * fractions.validate_)
    parts = {"train": ordered.iloc[:n_train], "validate": ordered.iloc[n_train:n_train + n_validate],
             "test": ordered.iloc[n_train + n_validate:]}
    return {name: part.drop(columns="_time") for name, part in parts.items()}


def build_unpartitioned_training_set(frame: Any, spec: PipelineSpec) -> tuple[Any, dict[str, tuple[str, str]]]:
    """Labelled rows of an unpartitioned pipeline, split by time or at random (see ``TrainingWindows``).
    The windows are described as row ranges (time split) or ``random``."""
    import pandas as pd

    windows, target = spec.model.windows, spec.target.name
    labelled = frame[frame[target].notna()].reset_index(drop=True)
    if windows.time_column is not None:
        parts = time_split(labelled, windows.fractions, time_column=windows.time_column)
    else:
        parts = random_split(labelled, windows.fractions, target=target, seed=spec.model.seed,
                             stratify=spec.target.task != "regression")
    resolved = {}
    for name in SPLITS:
        part = parts[name]
        if windows.time_column is not None and len(part):
            times = part[windows.time_column].astype(str)
            resolved[name] = (times.iloc[0], times.iloc[-1])
        else:
            resolved[name] = ("random", f"{len(part)} rows")
        check_window(name, part, *resolved[name], target, windows.min_rows, spec.target.task != "regression")
    parts = [parts[name].assign(**{SPLIT_COLUMN: name}) for name in SPLITS]
    return pd.concat(parts, ignore_index=True), resolved


def build_training_set(
    frame: Any, spec: PipelineSpec, mode: str | None = None, end: str | None = None
) -> tuple[Any, dict[str, tuple[str, str]]]:
    """Labelled rows of the pipeline's three windows with a ``split`` column, and the windows."""
    import pandas as pd

    target = spec.target.name
    if target not in frame.columns:
        raise WindowError(f"the features of pipeline '{spec.name}' have no target column '{target}'")
    if spec.partitioning is None:
        return build_unpartitioned_training_set(frame, spec)
    if PARTITION_COLUMN not in frame.columns:
        raise WindowError(f"the features of pipeline '{spec.name}' have no column '{PARTITION_COLUMN}'")
    days = sorted(frame[PARTITION_COLUMN].dropna().astype(str).unique().tolist())
    windows = resolve_windows(spec.model.windows, days, mode, end,
                              (spec.partitioning.start, spec.partitioning.end))
    splits = split_by_time(
        frame, windows, target=target, min_rows=spec.model.windows.min_rows,
        require_both_classes=spec.target.task != "regression",
    )
    parts = [part.assign(**{SPLIT_COLUMN: name}) for name, part in splits.items()]
    return pd.concat(parts, ignore_index=True), windows


def capped_positions(n: int, max_rows: int | None, *, seed: int, labels: Any = None) -> Any:
    """Positions (sorted) of the ``capped_sample`` of an ``n``-row frame, or None when every row is
    kept; ``labels`` (a Series of the stratifying column, ``n`` values) stratifies the draw."""
    import numpy as np

    if max_rows is None or n <= max_rows:
        return None
    rng = np.random.default_rng(seed)
    if labels is None:
        picked = rng.choice(n, size=max_rows, replace=False)
    else:
        import pandas as pd

        codes = pd.factorize(labels)[0]  # missing values: code -1, a stratum of their own
        strata = [np.flatnonzero(codes == code) for code in np.unique(codes)]
        exact = np.array([len(s) * max_rows / n for s in strata])
        take = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - take), kind="stable")[: max_rows - int(take.sum())]:
            take[i] += 1
        picked = np.concatenate([rng.choice(s, size=k, replace=False) for s, k in zip(strata, take)])
    return np.sort(picked)


def capped_sample(frame: Any, max_rows: int | None, *, seed: int, stratify: str | None = None) -> Any:
    """``frame`` when it has at most ``max_rows`` rows, else a seeded sample of ``max_rows`` rows in
    their original order; with ``stratify`` (a column) each value keeps its share of the rows (largest
    remainders; missing values are a stratum of their own)."""
    picked = capped_positions(len(frame), max_rows, seed=seed,
                              labels=frame[stratify] if stratify is not None else None)
    if picked is None:
        return frame
    return frame.iloc[picked].reset_index(drop=True)


def model_columns(spec: PipelineSpec) -> list[str]:
    """The training-set columns that training and evaluation read: the features, the target, the
    split and day columns and the columns of the YAML's naive baselines (nothing else is loaded)."""
    baselines = [c for b in (spec.evaluation.baselines if spec.evaluation else []) for c in b.mean_of]
    return list(dict.fromkeys([*spec.features.numeric, *spec.features.categorical, spec.target.name,
                               SPLIT_COLUMN, PARTITION_COLUMN, *baselines]))


def build_training_set_by_day(
    features: Any, spec: PipelineSpec, mode: str | None = None, end: str | None = None
) -> tuple[Any, dict[str, tuple[str, str]]]:
    """``build_training_set`` of stored daily features (``resources.partition_reader.StoredPartitions``)
    read one day at a time: only the labelled rows of days inside a window are kept, so memory is the
    training set's, not the feature range's (plus one day). Same rows, order and checks."""
    import pandas as pd

    if spec.partitioning is None:
        return build_training_set(features.read_all(), spec, mode, end)
    target = spec.target.name
    days = [day for day in features.keys if features.num_rows(day)]
    windows = resolve_windows(spec.model.windows, days, mode, end, (spec.partitioning.start, spec.partitioning.end))
    parsed = parsed_windows(windows)
    parts = []
    for day in days:
        name = next((n for n, start, stop in parsed if start.isoformat() <= day <= stop.isoformat()), None)
        if name is None:
            continue
        frame = features.read(day)
        if target not in frame.columns:
            raise WindowError(f"the features of pipeline '{spec.name}' have no target column '{target}'")
        parts.append(frame[frame[target].notna().to_numpy()].assign(**{SPLIT_COLUMN: name}))
        del frame
    if parts:
        out = pd.concat(parts, ignore_index=True)
    else:
        out = pd.DataFrame(columns=[*features.schema_names(), SPLIT_COLUMN])
    del parts
    for name, start, stop in parsed:
        rows = out.loc[(out[SPLIT_COLUMN] == name).to_numpy(), [target]]
        check_window(name, rows, start, stop, target, spec.model.windows.min_rows, spec.target.task != "regression")
    return out, windows


def split_rows(frame: Any, name: str) -> Any:
    """The rows of one window of a training set."""
    return frame[frame[SPLIT_COLUMN] == name].reset_index(drop=True)
