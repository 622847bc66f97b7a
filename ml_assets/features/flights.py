"""The flights pipeline's named feature function, ``flights_features``: what YAML alone cannot say.

Registered under its name when ``ml_assets.features`` is imported. pandas and numpy load inside the
functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ml_assets.config.tabular import PipelineSpec
from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.features.functions import (
    as_str,
    check_params,
    day_strings,
    finish,
    local_day_numbers,
    pipeline_timezone,
    primary_frame,
    register_feature_function,
    register_online_keys,
    rows_for_days,
    target_values,
    utc_times,
)
from ml_assets.features.weather import weather_at_hour, weather_window_features

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


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

    check_params("flights_features", params)
    windows = sorted({int(n) for n in history_windows})
    if not windows or windows[0] < 1:
        raise ValueError(f"history_windows must be positive day counts, got {list(history_windows)}")
    flights = primary_frame(sources, spec)
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

    day_numbers, valid, target, times = rows_for_days(flights, spec, days)
    if times is None:  # unpartitioned spec: fall back to time_hour for days and the weather join
        if "time_hour" not in flights.columns:
            raise ValueError("flights_features needs the scheduled hour column 'time_hour'")
        times = utc_times(flights["time_hour"])
        day_numbers, valid = local_day_numbers(times, pipeline_timezone(spec))

    labels = target_values(flights, spec.target)
    key = spec.sources[spec.primary_source].entity_key
    keep = list(dict.fromkeys([*key, *from_flights]))
    out = flights.loc[target, keep].reset_index(drop=True)
    target_days = day_numbers[target]
    out[PARTITION_COLUMN] = day_strings(target_days, valid[target])

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
            out[name] = as_str(out[name])
        elif name in spec.features.numeric:
            out[name] = pd.to_numeric(out[name]).astype("float64")
    if from_weather:
        joined = weather_at_hour(
            weather, weather_time_column, flights.loc[target, "origin"], times[target], from_weather
        )
        for name in from_weather:
            out[name] = joined[name].to_numpy()
    if weather_windows:
        computed = weather_window_features(
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
    return finish(out, spec)


@register_online_keys("flights_features")
def flights_online_keys(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """The flights features a request row cannot compute alone, with the feature-frame columns that
    fix their value within a day: history features by their entity (``carrier``, ``route`` =
    origin and dest, ``flight`` = carrier and flight number, ``origin``, ``dest``, ``origin_hour``),
    the day's schedule counts by origin (and scheduled hour), and origin weather (at the scheduled
    hour, or over the hours before it) by origin and scheduled hour. Every other feature (calendar
    parts, flight columns such as ``distance``, ``carrier``) comes from the request row."""
    request = set(spec.sources[spec.primary_source].validation.columns) | set(
        spec.sources[spec.primary_source].entity_key
    )
    keys: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys([*spec.features.numeric, *spec.features.categorical]):
        match = _HISTORY_NAME.match(name)
        if name in _CALENDAR_FEATURES:
            continue
        if match:
            keys[name] = _HISTORY_ENTITIES[match["entity"]]
        elif name == "sched_origin_day_flights":
            keys[name] = ("origin",)
        elif name == "sched_origin_hour_flights":
            keys[name] = ("origin", "sched_dep_hour")
        elif name not in request:  # a weather reading or window at the origin's scheduled hour
            keys[name] = ("origin", "sched_dep_hour")
    return keys
