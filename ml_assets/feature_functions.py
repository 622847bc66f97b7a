"""Named feature functions that pipeline YAML files refer to (``features.function``).

Every feature function has the signature::

    fn(sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec, **params) -> pd.DataFrame

``sources[spec.primary_source]`` holds the primary rows of the target ``days`` and of up to
``spec.features.history_days`` earlier days; the other sources hold at least the target days (and
the ``spec.features.context_days[source]`` days before them). ``days``
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
#: History entities: the columns (or ``sched_dep_hour`` = ``sched_dep_time // 100``) whose values
#: together identify one entity.
_HISTORY_ENTITIES: dict[str, tuple[str, ...]] = {
    "carrier": ("carrier",),
    "route": ("origin", "dest"),
    "origin": ("origin",),
    "dest": ("dest",),
    "flight": ("carrier", "flight"),
    "origin_hour": ("origin", "sched_dep_hour"),
}
_HISTORY_KINDS = ("delay_rate", "dep_delay_rate", "evening_delay_rate", "flights")
#: Kinds that are shares of earlier flights (NaN without history); the others are counts.
_RATE_KINDS = frozenset({"delay_rate", "dep_delay_rate", "evening_delay_rate"})
_HISTORY_NAME = re.compile(
    r"^(?P<entity>origin_hour|flight|carrier|route|origin|dest)"
    r"_(?P<kind>evening_delay_rate|dep_delay_rate|delay_rate|flights)_(?P<days>\d+)d$"
)
#: ``dep_delay`` above this many minutes counts as a late departure (``dep_delay_rate``).
DEP_DELAY_THRESHOLD = 15.0
#: ``evening_delay_rate`` uses flights scheduled at this local time (HHMM) or later.
EVENING_FROM = 1800
_SCHEDULE_FEATURES = ("sched_origin_hour_flights", "sched_origin_day_flights")
_WEATHER_WINDOW_NAME = re.compile(r"^(?P<column>.+)_(?P<agg>sum|min|max|mean|change)_(?P<hours>\d+)h$")
_HOUR_NS = 3_600_000_000_000
_WEATHER_NON_FEATURES = frozenset({"origin", "year", "month", "day", "hour", "time_hour"})


def _sched_hours(flights: pd.DataFrame) -> np.ndarray:
    """Scheduled local departure hour of every row (``sched_dep_time // 100``; -1 when unknown)."""
    import numpy as np
    import pandas as pd

    scheduled = pd.to_numeric(flights["sched_dep_time"], errors="coerce").to_numpy(dtype="float64")
    return np.where(np.isnan(scheduled), -1, scheduled // 100).astype("int64")


def _group_codes(parts: list[np.ndarray]) -> np.ndarray:
    """Dense codes 0..k-1 of the distinct combinations of the arrays in ``parts`` (nulls are a value)."""
    import pandas as pd

    frame = pd.DataFrame({str(i): part for i, part in enumerate(parts)})
    return frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()


def _entity_codes(flights: pd.DataFrame, entity: str, sched_hours: np.ndarray | None) -> np.ndarray:
    parts = [
        sched_hours if column == "sched_dep_hour" else flights[column].to_numpy()
        for column in _HISTORY_ENTITIES[entity]
    ]
    return _group_codes(parts)


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
    the data; a cumulative sum over days then gives any window as a difference of two rows, so a
    row's own day (and later days) never enter its window. Kinds: ``delay_rate`` (share of known
    labels that are positive), ``dep_delay_rate`` (share of known ``dep_delay`` above
    ``DEP_DELAY_THRESHOLD``), ``evening_delay_rate`` (``delay_rate`` of the flights scheduled at
    ``EVENING_FROM`` or later) and ``flights`` (every scheduled flight, cancelled ones included).
    """
    import numpy as np
    import pandas as pd

    n_target = int(target.sum())
    rows = valid  # rows with a known day feed the history
    result: dict[str, np.ndarray] = {}
    if not rows.any():
        for name, _, kind, _ in wanted:
            result[name] = (
                np.full(n_target, np.nan) if kind in _RATE_KINDS else np.zeros(n_target, dtype="int64")
            )
        return result
    first_day = int(day_numbers[rows].min())
    n_days = int(day_numbers[rows].max()) - first_day + 1
    relative = day_numbers - first_day
    target_day = relative[target]
    kinds = {kind for _, _, kind, _ in wanted}
    needs_hours = "evening_delay_rate" in kinds or any(e == "origin_hour" for _, e, _, _ in wanted)
    sched_hours = _sched_hours(flights) if needs_hours else None

    # (known, positive) indicator pairs of each rate kind, over every row; the grid only ever sums
    # the days before a row's own day.
    indicators: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    known = ~np.isnan(labels)
    if kinds & {"delay_rate", "evening_delay_rate"}:
        positive = known & (labels > 0.5)
        indicators["delay_rate"] = (known, positive)
    if "evening_delay_rate" in kinds:
        scheduled = pd.to_numeric(flights["sched_dep_time"], errors="coerce").to_numpy(dtype="float64")
        evening = scheduled >= EVENING_FROM
        indicators["evening_delay_rate"] = (known & evening, positive & evening)
    if "dep_delay_rate" in kinds:
        dep_delay = pd.to_numeric(flights["dep_delay"], errors="coerce").to_numpy(dtype="float64")
        dep_known = ~np.isnan(dep_delay)
        indicators["dep_delay_rate"] = (dep_known, dep_known & (dep_delay > DEP_DELAY_THRESHOLD))

    for entity in dict.fromkeys(entity for _, entity, _, _ in wanted):
        codes = _entity_codes(flights, entity, sched_hours)
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
                if kind not in sums:
                    known_rows, positive_rows = indicators[kind]
                    sums[kind] = (
                        cumulative(known_rows[rows].astype("float64")),
                        cumulative(positive_rows[rows].astype("float64")),
                    )
                known_sum, positive_sum = sums[kind]
                denominator = known_sum[target_day, target_code] - known_sum[lower, target_code]
                numerator = positive_sum[target_day, target_code] - positive_sum[lower, target_code]
                with np.errstate(invalid="ignore", divide="ignore"):
                    result[name] = np.where(denominator > 0, numerator / denominator, np.nan)
    return result


def _schedule_features(
    flights: pd.DataFrame,
    day_numbers: np.ndarray,
    valid: np.ndarray,
    target: np.ndarray,
    wanted: list[str],
) -> dict[str, np.ndarray]:
    """Published-schedule counts of each target row's own local day: departures from its origin in
    its scheduled hour (``sched_origin_hour_flights``) and in the whole day
    (``sched_origin_day_flights``). Every row counts, cancelled flights included: the schedule is
    known in advance. Rows of the same day are all target rows, so only those are tallied."""
    import numpy as np

    days = np.where(valid, day_numbers, np.iinfo("int64").min)[target]
    origins = flights["origin"].to_numpy()[target]
    result: dict[str, np.ndarray] = {}
    for name in wanted:
        parts = [days, origins]
        if name == "sched_origin_hour_flights":
            parts.append(_sched_hours(flights.loc[target]))
        codes = _group_codes(parts) if len(days) else np.zeros(0, dtype="int64")
        counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype="int64")
        result[name] = counts[codes].astype("int64")
    return result


def _weather_table(weather: pd.DataFrame, weather_time_column: str, columns: list[str]) -> pd.DataFrame:
    """Origin, epoch-ns hour and numeric ``columns`` of the weather rows, first row per (origin, hour)."""
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
    return table.drop_duplicates(["origin", "_hour"], keep="first")


def _weather_window_features(
    weather: pd.DataFrame,
    weather_time_column: str,
    origins: pd.Series,
    times: pd.Series,
    wanted: list[tuple[str, str, str, int]],
) -> dict[str, np.ndarray]:
    """Per flight, an aggregate of its origin's hourly weather over the ``n`` hours up to its
    scheduled UTC hour ``t``: ``sum``/``min``/``max``/``mean`` over the readings in ``(t - n h, t]``
    (missing hours skipped, NaN when none) and ``change`` = reading at ``t`` minus reading at
    ``t - n h`` (NaN if either is missing). Never a reading after ``t``.

    Readings go on a dense (origin x hour) grid; each window is accumulated one lag at a time, in
    the same order for every flight, so a flight's value does not depend on the other rows.
    """
    import numpy as np
    import pandas as pd

    columns = list(dict.fromkeys(column for _, column, _, _ in wanted))
    table = _weather_table(weather, weather_time_column, columns)
    n_rows = len(origins)
    result: dict[str, np.ndarray] = {}
    if table.empty or n_rows == 0:
        for name, *_ in wanted:
            result[name] = np.full(n_rows, np.nan)
        return result
    table = table[table["_hour"] != np.iinfo("int64").min]
    origin_index = pd.Index(pd.unique(table["origin"].to_numpy()))
    origin_codes = origin_index.get_indexer(table["origin"].to_numpy())
    hours = table["_hour"].to_numpy() // _HOUR_NS
    first_hour = int(hours.min()) if len(hours) else 0
    n_hours = int(hours.max()) - first_hour + 1 if len(hours) else 0
    flight_ns = _epoch_ns(times)
    flight_origin = origin_index.get_indexer(_as_str(origins).to_numpy())
    usable = (flight_ns != np.iinfo("int64").min) & (flight_origin >= 0)
    flight_hour = np.where(usable, flight_ns // _HOUR_NS - first_hour, 0)

    def at_lag(grid: np.ndarray, lag: int) -> np.ndarray:
        """Reading ``lag`` hours before each flight's hour (NaN outside the grid)."""
        position = flight_hour - lag
        inside = usable & (position >= 0) & (position < n_hours)
        values = np.full(n_rows, np.nan)
        values[inside] = grid[flight_origin[inside], position[inside]]
        return values

    for column in columns:
        grid = np.full((len(origin_index), n_hours), np.nan)
        grid[origin_codes, hours - first_hour] = table[column].to_numpy()
        for name, row_column, agg, n in wanted:
            if row_column != column:
                continue
            if agg == "change":
                result[name] = at_lag(grid, 0) - at_lag(grid, n)
                continue
            total = np.zeros(n_rows)
            count = np.zeros(n_rows, dtype="int64")
            low = np.full(n_rows, np.inf)
            high = np.full(n_rows, -np.inf)
            for lag in range(n):
                values = at_lag(grid, lag)
                present = ~np.isnan(values)
                count += present
                if agg in ("sum", "mean"):
                    total += np.where(present, values, 0.0)
                elif agg == "min":
                    low = np.where(present, np.minimum(low, values), low)
                else:
                    high = np.where(present, np.maximum(high, values), high)
            aggregate = {"sum": total, "min": low, "max": high}.get(agg)
            if agg == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    aggregate = total / count
            result[name] = np.where(count > 0, aggregate, np.nan)
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

    table = _weather_table(weather, weather_time_column, columns)
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

    Produces, for the names the spec lists (only those are returned):

    - calendar features ``sched_dep_hour``, ``sched_dep_minute``, ``weekday`` (0=Monday) and
      ``day_of_year``, all from the scheduled local time;
    - pre-departure flight columns as is (``distance``, ``carrier``, ``origin``, ``dest``, ...);
    - origin weather at the scheduled UTC hour (any weather column: ``temp``, ``precip``, ...);
    - origin weather over the hours up to the scheduled UTC hour ``t``, ``{column}_{agg}_{n}h``:
      ``sum``/``min``/``max``/``mean`` of the hourly readings in ``(t - n h, t]`` (missing hours
      skipped, NaN when none) or ``change`` = reading at ``t`` minus reading at ``t - n h`` (NaN if
      either is missing), e.g. ``precip_sum_3h``, ``pressure_change_6h``. Readings after ``t`` are
      never used; early-morning windows reach the previous local day when the weather input holds it
      (``features.context_days: {weather: 1}``);
    - published-schedule counts of the row's own local day: ``sched_origin_hour_flights``
      (departures from the row's origin in its scheduled hour) and ``sched_origin_day_flights``
      (from its origin that day), cancelled flights included;
    - history over the ``n`` local days strictly before each row's day, for ``n`` in
      ``history_windows`` (1 = yesterday): ``{entity}_{kind}_{n}d`` with entity ``carrier``,
      ``route`` (origin, dest), ``origin``, ``dest``, ``flight`` (carrier, flight number) or
      ``origin_hour`` (origin, scheduled hour), and kind ``delay_rate`` (share of known target labels
      that are positive), ``dep_delay_rate`` (share of known ``dep_delay`` above 15 minutes),
      ``evening_delay_rate`` (``delay_rate`` of the flights scheduled at 18:00 or later) or
      ``flights`` (scheduled flights, cancelled ones included). Rates are NaN without history,
      counts 0. The outcomes of a row's own day and of later days never enter its features.
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
    schedule: list[str] = []
    from_flights: list[str] = []
    from_weather: list[str] = []
    weather_windows: list[tuple[str, str, str, int]] = []
    problems: list[str] = []
    weather_columns = set(weather.columns) - _WEATHER_NON_FEATURES if weather is not None else set()
    for name in dict.fromkeys([*spec.features.numeric, *spec.features.categorical]):
        match = _HISTORY_NAME.match(name)
        window_match = _WEATHER_WINDOW_NAME.match(name)
        if name in _CALENDAR_FEATURES:
            calendar.append(name)
        elif name in _SCHEDULE_FEATURES:
            schedule.append(name)
        elif match:
            window = int(match["days"])
            if window not in windows:
                problems.append(f"'{name}': window {window}d is not in history_windows {windows}")
            elif match["kind"] in {"delay_rate", "evening_delay_rate"} and spec.target.rule is None:
                problems.append(f"'{name}': delay rates need a target rule (such as '> 15')")
            else:
                history.append((name, match["entity"], match["kind"], window))
        elif name in forbidden:
            problems.append(f"'{name}': known only after departure (leakage)")
        elif name in flights.columns:
            from_flights.append(name)
        elif name in weather_columns:
            from_weather.append(name)
        elif window_match and window_match["column"] in weather_columns:
            hours = int(window_match["hours"])
            if hours < 1:
                problems.append(f"'{name}': a weather window needs at least 1 hour")
            else:
                weather_windows.append((name, window_match["column"], window_match["agg"], hours))
        else:
            problems.append(
                f"'{name}': not a column of the flights or '{weather_source}' source, nor a derived feature"
            )
    needed_flight_columns = {"sched_dep_time"} if {"sched_dep_hour", "sched_dep_minute"} & set(calendar) else set()
    for _, entity, kind, _ in history:
        for column in _HISTORY_ENTITIES[entity]:
            needed_flight_columns.add("sched_dep_time" if column == "sched_dep_hour" else column)
        if kind == "dep_delay_rate":
            needed_flight_columns.add("dep_delay")
        elif kind == "evening_delay_rate":
            needed_flight_columns.add("sched_dep_time")
    if schedule:
        needed_flight_columns |= {"origin", "sched_dep_time"}
    needed_flight_columns |= {"origin"} if from_weather or weather_windows else set()
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
    if weather_windows:
        computed = _weather_window_features(
            weather, weather_time_column, flights.loc[target, "origin"], times[target], weather_windows
        )
        for name, *_ in weather_windows:
            out[name] = computed[name]
    if schedule:
        counts = _schedule_features(flights, day_numbers, valid, target, schedule)
        for name in schedule:
            out[name] = counts[name]
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
