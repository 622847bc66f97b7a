"""The flights pipeline's named feature function, ``flights_features``: only what YAML cannot say.

Most flights features are declared in ``pipelines/flights.yaml`` (timestamp parts, per-key history
of earlier days, the as-of join of the origin's weather) and arrive here as columns of the flights
frame (``ml_assets.features.declared``). What stays in code:

- ``sched_dep_minute``: the minutes of the HHMM number ``sched_dep_time`` (arithmetic on a column,
  which no declarative kind does);
- ``sched_origin_hour_flights`` / ``sched_origin_day_flights``: counts of the row's *own* day from
  the published schedule. Declarative history reads only earlier days, because for most tables the
  other rows of the same day are not known in advance; a flight schedule is, so this stays a
  flights-specific function.

Registered under its name when ``ml_assets.features`` is imported. pandas and numpy load inside the
functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
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
from ml_assets.features.rows import register_row_features

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


#: Known only after departure: never a flights feature, whatever the YAML says.
POST_DEPARTURE_COLUMNS = frozenset({"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"})

#: The features this function computes itself (everything else is a column or declared in the YAML).
OWN_FEATURES = ("sched_dep_minute", "sched_origin_hour_flights", "sched_origin_day_flights")

_SCHEDULE_FEATURES = ("sched_origin_hour_flights", "sched_origin_day_flights")


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


def sched_dep_minute(sched_dep_time: Any) -> np.ndarray:
    """Minutes of the HHMM numbers ``sched_dep_time`` (float64; missing stays missing). The one
    definition: ``flights_features`` calls it on its frame's column, the online request path on the
    request's column (``flights_row_features``)."""
    import numpy as np
    import pandas as pd

    return np.asarray(pd.to_numeric(sched_dep_time), dtype="float64") % 100


@register_row_features("flights_features", names=("sched_dep_minute",))
def flights_row_features(columns: Mapping[str, Any], spec: PipelineSpec, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The function's own features one row computes alone, from plain request columns
    (``ml_assets.features.rows``): ``sched_dep_minute``."""
    return {"sched_dep_minute": sched_dep_minute(columns["sched_dep_time"])} if "sched_dep_minute" in names else {}


@register_feature_function("flights_features")
def flights_features(
    sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec, **params: Any
) -> pd.DataFrame:
    """Leakage-free flight features: what is known at scheduled departure.

    Returns, for the names the spec lists: the YAML's declared features (already columns of the
    flights frame), pre-departure flight columns as is (``distance``, ``carrier``, ``origin``,
    ``dest``, ...), ``sched_dep_minute`` (``sched_dep_time % 100``) and the published-schedule
    counts of the row's own local day, ``sched_origin_hour_flights`` (departures from the row's
    origin in its scheduled hour) and ``sched_origin_day_flights`` (from its origin that day),
    cancelled flights included. A column known only after departure is refused.
    """
    import pandas as pd

    check_params("flights_features", params)
    flights = primary_frame(sources, spec)
    forbidden = POST_DEPARTURE_COLUMNS | {spec.target.column}
    declared = spec.features.declared()
    own: list[str] = []
    from_flights: list[str] = []
    problems: list[str] = []
    for name in dict.fromkeys([*spec.features.numeric, *spec.features.categorical]):
        if name in declared:
            from_flights.append(name)
        elif name in OWN_FEATURES:
            own.append(name)
        elif name in forbidden:
            problems.append(f"'{name}': known only after departure (leakage)")
        elif name in flights.columns:
            from_flights.append(name)
        else:
            problems.append(
                f"'{name}': not a column of the flights source, not declared in features.timestamp_parts,"
                f" history or asof, and not one of flights_features' own {list(OWN_FEATURES)}"
            )
    needed = set(spec.sources[spec.primary_source].entity_key)
    if own:
        needed |= {"sched_dep_time"} | ({"origin"} if set(own) & set(_SCHEDULE_FEATURES) else set())
    missing_columns = sorted(needed - set(flights.columns))
    if missing_columns:
        problems.append(f"the flights source has no column(s) {missing_columns}")
    if problems:
        raise ValueError(
            f"flights_features cannot produce the features of pipeline '{spec.name}': " + "; ".join(problems)
        )

    day_numbers, valid, target, times = rows_for_days(flights, spec, days)
    if times is None:  # unpartitioned spec: the scheduled hour gives the local day
        if "time_hour" not in flights.columns:
            raise ValueError("flights_features needs the scheduled hour column 'time_hour'")
        day_numbers, valid = local_day_numbers(utc_times(flights["time_hour"]), pipeline_timezone(spec))

    key = spec.sources[spec.primary_source].entity_key
    keep = list(dict.fromkeys([*key, *from_flights]))
    # the columns are gathered first and make one frame (on a scoring request's single row, adding
    # columns to a frame one by one costs more than computing them)
    out = {column: pd.Series(flights[column].to_numpy()[target]) for column in keep}
    out[PARTITION_COLUMN] = day_strings(day_numbers[target], valid[target])
    for name in from_flights:
        if name in spec.features.categorical:
            out[name] = as_str(out[name])
        elif name in spec.features.numeric:
            out[name] = pd.to_numeric(out[name]).astype("float64")
    if "sched_dep_minute" in own:
        out["sched_dep_minute"] = sched_dep_minute(flights["sched_dep_time"].to_numpy()[target])
    schedule = [name for name in own if name in _SCHEDULE_FEATURES]
    if schedule:
        counts = _schedule_features(flights, day_numbers, valid, target, schedule)
        for name in schedule:
            out[name] = counts[name]
    out[spec.target.name] = target_values(flights, spec.target).to_numpy()[target]
    return finish(pd.DataFrame(out), spec)


@register_online_keys("flights_features")
def flights_online_keys(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """The function's own features a request row cannot compute alone, with the feature-frame
    columns that fix their value within a day: the day's schedule counts by origin (and scheduled
    hour). Declared history and as-of features have their own keys (``declared_online_keys``);
    ``sched_dep_minute`` and flight columns come from the request row."""
    listed = set(spec.features.numeric) | set(spec.features.categorical)
    keys: dict[str, tuple[str, ...]] = {}
    if "sched_origin_day_flights" in listed:
        keys["sched_origin_day_flights"] = ("origin",)
    if "sched_origin_hour_flights" in listed:
        keys["sched_origin_hour_flights"] = ("origin", "sched_dep_hour")
    return keys
