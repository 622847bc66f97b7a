"""Named feature functions that pipeline YAML files refer to (``features.function``).

Every feature function has the signature::

    fn(sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec, **params) -> pd.DataFrame

``sources[spec.primary_source]`` holds the primary rows of the target ``days`` and of up to
``spec.features.history_days`` earlier days; the other sources hold at least the target days. ``days``
are ISO dates, local to ``spec.partitioning.timezone`` (``None``: unpartitioned, every row). The result
has one row per primary row of the target days (history-only rows are never returned) with the
primary entity key, ``partition_date``, every feature the spec lists and the target, sorted by
``partition_date`` then the entity key. Categorical features are ``object`` columns of ``str``.

Only the standard library is imported at module level: pandas and numpy load inside the functions,
so importing this module with the Dagster code location stays cheap.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ml_assets.pipeline_config import PipelineSpec, Target

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FeatureFunction = Callable[..., "pd.DataFrame"]
FEATURE_FUNCTIONS: dict[str, FeatureFunction] = {}

PARTITION_COLUMN = "partition_date"

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


# --------------------------------------------------------------------------- registry


def register_feature_function(name: str) -> Callable[[FeatureFunction], FeatureFunction]:
    """Decorator registering a feature function under ``name`` (re-registering the same one is a no-op)."""

    def decorator(fn: FeatureFunction) -> FeatureFunction:
        existing = FEATURE_FUNCTIONS.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(
                f"feature function '{name}' is already registered"
                f" ({existing.__module__}.{existing.__qualname__})"
            )
        FEATURE_FUNCTIONS[name] = fn
        return fn

    return decorator


def get_feature_function(name: str) -> FeatureFunction:
    """The feature function registered as ``name``; a ValueError lists the known names otherwise."""
    try:
        return FEATURE_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown feature function '{name}'; known: {sorted(FEATURE_FUNCTIONS)}") from None


# --------------------------------------------------------------------------- target


def target_values(df: pd.DataFrame, target: Target) -> pd.Series:
    """The label for every row: the rule applied to ``target.column`` (float 1.0/0.0, NaN when the
    column is null), or a copy of the column when there is no rule."""
    import pandas as pd

    if target.column not in df.columns:
        raise ValueError(f"target column '{target.column}' is missing from the data")
    column = df[target.column]
    rule = target.parsed_rule()
    if rule is None:
        return column.copy()
    op, threshold = rule
    try:
        values = pd.to_numeric(column).astype("float64")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"target column '{target.column}' must be numeric for the rule '{target.rule}': {exc}"
        ) from exc
    labels = _OPERATORS[op](values, threshold).astype("float64")
    return labels.where(values.notna())


def add_target(df: pd.DataFrame, target: Target) -> pd.DataFrame:
    """Copy of ``df`` with the label column ``target.name`` added (see ``target_values``)."""
    return df.assign(**{target.name: target_values(df, target)})


# --------------------------------------------------------------------------- shared helpers


def _utc_times(values: pd.Series) -> pd.Series:
    """UTC timestamps from datetimes (naive ones are UTC) or ISO-8601 strings."""
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed")


def _epoch_ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of tz-aware timestamps (NaT gives the int64 minimum)."""
    return times.dt.as_unit("ns").dt.tz_localize(None).to_numpy().view("int64")


def _local_day_numbers(times: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local day of each UTC timestamp as days since 1970-01-01, and the mask of non-null times."""
    local = times.dt.tz_convert(timezone).dt.tz_localize(None)
    day_numbers = local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    valid = ~local.isna().to_numpy()
    return day_numbers.astype("int64"), valid


def _day_numbers_of(days: Iterable[str]) -> np.ndarray:
    import numpy as np

    try:
        return np.array(list(days), dtype="datetime64[D]").astype("int64")
    except ValueError as exc:
        raise ValueError(f"days must be ISO dates (YYYY-MM-DD): {exc}") from exc


def _day_strings(day_numbers: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """ISO date strings for day numbers (None where not valid), formatting each distinct day once."""
    import numpy as np

    result = np.full(len(day_numbers), None, dtype=object)
    if valid.any():
        distinct, inverse = np.unique(day_numbers[valid], return_inverse=True)
        labels = np.datetime_as_string(distinct.astype("datetime64[D]"), unit="D").astype(object)
        result[valid] = labels[inverse]
    return result


def _as_str(values: pd.Series) -> pd.Series:
    """Object column of ``str`` values, missing values kept missing."""
    return values.astype(object).where(values.isna(), values.astype(str))


def _primary_frame(sources: dict[str, pd.DataFrame], spec: PipelineSpec) -> pd.DataFrame:
    primary = spec.primary_source
    if primary not in sources:
        raise ValueError(f"primary source '{primary}' is missing from the inputs; got {sorted(sources)}")
    return sources[primary]


def _timezone(spec: PipelineSpec) -> str:
    return spec.partitioning.timezone if spec.partitioning is not None else "UTC"


def _check_params(function: str, params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"feature function '{function}' got unknown params: {sorted(params)}")


def output_columns(spec: PipelineSpec) -> list[str]:
    """Columns of every feature frame of ``spec``, in order, without duplicates.

    Entity-key columns are identifiers and are kept even when ``exclude`` lists them (``flight`` in
    the flights pipeline): ``exclude`` keeps them out of the features, not out of the row identity.
    """
    key = spec.sources[spec.primary_source].entity_key
    columns = [*key, PARTITION_COLUMN, *spec.features.numeric, *spec.features.categorical, spec.target.name]
    return list(dict.fromkeys(columns))


def _finish(frame: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """Select the output columns and sort by (partition_date, entity key), deterministically."""
    key = spec.sources[spec.primary_source].entity_key
    result = frame[output_columns(spec)]
    order = list(dict.fromkeys([PARTITION_COLUMN, *key]))
    return result.sort_values(order, kind="mergesort", na_position="last").reset_index(drop=True)


def _rows_for_days(
    frame: pd.DataFrame, spec: PipelineSpec, days: list[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Series | None]:
    """Day numbers, valid-time mask and target-row mask of the primary rows, and their UTC times.

    With no time column (unpartitioned pipeline) every row is a target row and has no day.
    """
    import numpy as np

    time_column = spec.time_column_for(spec.primary_source)
    if time_column is None:
        if days is not None:
            raise ValueError(
                f"days {days[:3]}... were given but pipeline '{spec.name}' has no partitioning time column"
            )
        n = len(frame)
        return np.zeros(n, dtype="int64"), np.zeros(n, dtype=bool), np.ones(n, dtype=bool), None
    if time_column not in frame.columns:
        raise ValueError(
            f"primary source '{spec.primary_source}' has no time column '{time_column}'"
        )
    times = _utc_times(frame[time_column])
    day_numbers, valid = _local_day_numbers(times, _timezone(spec))
    if days is None:
        target = np.ones(len(frame), dtype=bool)
    else:
        target = valid & np.isin(day_numbers, _day_numbers_of(days))
    return day_numbers, valid, target, times


# --------------------------------------------------------------------------- passthrough


@register_feature_function("passthrough")
def passthrough(
    sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec, **params: Any
) -> pd.DataFrame:
    """Primary rows of the target days with their entity key, features (as is) and target."""
    _check_params("passthrough", params)
    frame = _primary_frame(sources, spec)
    key = spec.sources[spec.primary_source].entity_key
    needed = list(dict.fromkeys([*key, *spec.features.numeric, *spec.features.categorical]))
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ValueError(
            f"passthrough: primary source '{spec.primary_source}' has no column(s) {missing}"
            " needed as entity key or features"
        )
    day_numbers, valid, target, _ = _rows_for_days(frame, spec, days)
    rows = frame.loc[target].copy()
    rows[PARTITION_COLUMN] = _day_strings(day_numbers[target], valid[target])
    for column in spec.features.categorical:
        rows[column] = _as_str(rows[column])
    rows = add_target(rows, spec.target)
    return _finish(rows, spec)


# --------------------------------------------------------------------------- flights

#: Known only after departure: never a flights feature, whatever the YAML says.
POST_DEPARTURE_COLUMNS = frozenset({"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"})
_CALENDAR_FEATURES = ("sched_dep_hour", "sched_dep_minute", "weekday", "day_of_year")
_HISTORY_ENTITIES: dict[str, tuple[str, ...]] = {
    "carrier": ("carrier",),
    "route": ("origin", "dest"),
    "origin": ("origin",),
    "dest": ("dest",),
}
_HISTORY_NAME = re.compile(
    r"^(?P<entity>carrier|route|origin|dest)_(?P<kind>delay_rate|flights)_(?P<days>\d+)d$"
)
_WEATHER_NON_FEATURES = frozenset({"origin", "year", "month", "day", "hour", "time_hour"})


def _history_features(
    flights: pd.DataFrame,
    labels: np.ndarray,
    day_numbers: np.ndarray,
    valid: np.ndarray,
    target: np.ndarray,
    wanted: list[tuple[str, str, str, int]],
) -> dict[str, np.ndarray]:
    """Per target row, rates and counts over the ``n`` local days strictly before the row's day.

    Daily counts per entity are tallied once on a (day x entity) grid covering every calendar day of
    the data; a cumulative sum over days then gives any window as a difference of two rows.
    """
    import numpy as np

    n_target = int(target.sum())
    rows = valid  # rows with a known day feed the history
    result: dict[str, np.ndarray] = {}
    if not rows.any():
        for name, _, kind, _ in wanted:
            result[name] = (
                np.full(n_target, np.nan) if kind == "delay_rate" else np.zeros(n_target, dtype="int64")
            )
        return result
    first_day = int(day_numbers[rows].min())
    n_days = int(day_numbers[rows].max()) - first_day + 1
    relative = day_numbers - first_day
    target_day = relative[target]
    known = ~np.isnan(labels)
    positive = known & (labels > 0.5)

    for entity in dict.fromkeys(entity for _, entity, _, _ in wanted):
        columns = list(_HISTORY_ENTITIES[entity])
        codes = flights.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
        n_entities = int(codes.max()) + 1
        cell = relative[rows] * n_entities + codes[rows]
        size = n_days * n_entities

        def cumulative(weights: np.ndarray | None) -> np.ndarray:
            daily = np.bincount(cell, weights=weights, minlength=size).reshape(n_days, n_entities)
            totals = np.zeros((n_days + 1, n_entities), dtype=daily.dtype)
            np.cumsum(daily, axis=0, out=totals[1:])
            return totals  # totals[d] = sum over grid days < d

        sums: dict[str, np.ndarray] = {}
        target_code = codes[target]
        for name, row_entity, kind, window in wanted:
            if row_entity != entity:
                continue
            lower = np.maximum(target_day - window, 0)
            if kind == "flights":
                if "all" not in sums:
                    sums["all"] = cumulative(None)
                total = sums["all"]
                result[name] = (total[target_day, target_code] - total[lower, target_code]).astype("int64")
            else:
                if "known" not in sums:
                    sums["known"] = cumulative(known[rows].astype("float64"))
                    sums["positive"] = cumulative(positive[rows].astype("float64"))
                denominator = sums["known"][target_day, target_code] - sums["known"][lower, target_code]
                numerator = sums["positive"][target_day, target_code] - sums["positive"][lower, target_code]
                with np.errstate(invalid="ignore", divide="ignore"):
                    result[name] = np.where(denominator > 0, numerator / denominator, np.nan)
    return result


def _weather_features(
    weather: pd.DataFrame,
    weather_time_column: str,
    origins: pd.Series,
    times: pd.Series,
    columns: list[str],
) -> pd.DataFrame:
    """Weather of each flight's origin at its scheduled UTC hour; NaN when that hour is missing."""
    import pandas as pd

    if weather_time_column not in weather.columns or "origin" not in weather.columns:
        raise ValueError(f"the weather source needs 'origin' and '{weather_time_column}' columns")
    table = pd.DataFrame(
        {
            "origin": _as_str(weather["origin"]).to_numpy(),
            "_hour": _epoch_ns(_utc_times(weather[weather_time_column])),
        }
    )
    for column in columns:
        table[column] = pd.to_numeric(weather[column], errors="coerce").astype("float64").to_numpy()
    table = table.drop_duplicates(["origin", "_hour"], keep="first")
    keys = pd.DataFrame({"origin": _as_str(origins).to_numpy(), "_hour": _epoch_ns(times)})
    joined = keys.merge(table, on=["origin", "_hour"], how="left", sort=False)
    return joined[columns]


@register_feature_function("flights_features")
def flights_features(
    sources: dict[str, pd.DataFrame],
    days: list[str] | None,
    spec: PipelineSpec,
    *,
    history_windows: Iterable[int] = (7, 28),
    weather_source: str = "weather",
    **params: Any,
) -> pd.DataFrame:
    """Leakage-free flight features: what is known at scheduled departure.

    Produces the calendar features (``sched_dep_hour``, ``sched_dep_minute``, ``weekday`` 0=Monday,
    ``day_of_year``, all from the scheduled local time), pre-departure flight columns as is
    (``distance``, ``carrier``, ``origin``, ``dest``, ...), origin weather at the scheduled UTC hour,
    and history over the ``n`` days strictly before each row's local day, for ``n`` in
    ``history_windows``: ``{carrier,route,origin,dest}_delay_rate_{n}d`` (share of known target
    labels that are positive, NaN without history) and ``{...}_flights_{n}d`` (scheduled flights,
    cancelled ones included; 0 without history). Only the names the spec lists are returned.
    """
    import numpy as np
    import pandas as pd

    _check_params("flights_features", params)
    windows = sorted({int(n) for n in history_windows})
    if not windows or windows[0] < 1:
        raise ValueError(f"history_windows must be positive day counts, got {list(history_windows)}")
    flights = _primary_frame(sources, spec)
    weather = sources.get(weather_source)
    weather_time_column = spec.time_column_for(weather_source) if weather_source in spec.sources else None
    weather_time_column = weather_time_column or "time_hour"
    forbidden = POST_DEPARTURE_COLUMNS | {spec.target.column}

    calendar: list[str] = []
    history: list[tuple[str, str, str, int]] = []
    from_flights: list[str] = []
    from_weather: list[str] = []
    problems: list[str] = []
    for name in dict.fromkeys([*spec.features.numeric, *spec.features.categorical]):
        match = _HISTORY_NAME.match(name)
        if name in _CALENDAR_FEATURES:
            calendar.append(name)
        elif match:
            window = int(match["days"])
            if window not in windows:
                problems.append(f"'{name}': window {window}d is not in history_windows {windows}")
            elif match["kind"] == "delay_rate" and spec.target.rule is None:
                problems.append(f"'{name}': delay rates need a target rule (such as '> 15')")
            else:
                history.append((name, match["entity"], match["kind"], window))
        elif name in forbidden:
            problems.append(f"'{name}': known only after departure (leakage)")
        elif name in flights.columns:
            from_flights.append(name)
        elif weather is not None and name not in _WEATHER_NON_FEATURES and name in weather.columns:
            from_weather.append(name)
        else:
            problems.append(
                f"'{name}': not a column of the flights or '{weather_source}' source, nor a derived feature"
            )
    needed_flight_columns = {"sched_dep_time"} if {"sched_dep_hour", "sched_dep_minute"} & set(calendar) else set()
    needed_flight_columns |= {c for _, entity, _, _ in history for c in _HISTORY_ENTITIES[entity]}
    needed_flight_columns |= {"origin"} if from_weather else set()
    needed_flight_columns |= set(spec.sources[spec.primary_source].entity_key)
    missing_columns = sorted(needed_flight_columns - set(flights.columns))
    if missing_columns:
        problems.append(f"the flights source has no column(s) {missing_columns}")
    if problems:
        raise ValueError(
            f"flights_features cannot produce the features of pipeline '{spec.name}': " + "; ".join(problems)
        )

    day_numbers, valid, target, times = _rows_for_days(flights, spec, days)
    if times is None:  # unpartitioned spec: fall back to time_hour for days and the weather join
        if "time_hour" not in flights.columns:
            raise ValueError("flights_features needs the scheduled hour column 'time_hour'")
        times = _utc_times(flights["time_hour"])
        day_numbers, valid = _local_day_numbers(times, _timezone(spec))

    labels = target_values(flights, spec.target)
    key = spec.sources[spec.primary_source].entity_key
    keep = list(dict.fromkeys([*key, *from_flights]))
    out = flights.loc[target, keep].reset_index(drop=True)
    target_days = day_numbers[target]
    out[PARTITION_COLUMN] = _day_strings(target_days, valid[target])

    if calendar:
        scheduled = pd.to_numeric(flights.loc[target, "sched_dep_time"]).to_numpy()
        dates = target_days.astype("datetime64[D]")
        year_start = dates.astype("datetime64[Y]").astype("datetime64[D]")
        derived = {
            "sched_dep_hour": scheduled // 100,
            "sched_dep_minute": scheduled % 100,
            "weekday": (target_days + 3) % 7,  # 1970-01-01 was a Thursday
            "day_of_year": (dates - year_start).astype("int64") + 1,
        }
        for name in calendar:
            out[name] = derived[name]
    for name in from_flights:
        if name in spec.features.categorical:
            out[name] = _as_str(out[name])
        elif name in spec.features.numeric:
            out[name] = pd.to_numeric(out[name]).astype("float64")
    if from_weather:
        joined = _weather_features(
            weather, weather_time_column, flights.loc[target, "origin"], times[target], from_weather
        )
        for name in from_weather:
            out[name] = joined[name].to_numpy()
    if history:
        if spec.target.rule is None:
            label_array = np.full(len(flights), np.nan)
        else:
            label_array = labels.to_numpy(dtype="float64")
        computed = _history_features(flights, label_array, day_numbers, valid, target, history)
        for name, *_ in history:
            out[name] = computed[name]
    out[spec.target.name] = labels[target].to_numpy()
    return _finish(out, spec)
