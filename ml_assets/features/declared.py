"""Declarative features of a pipeline YAML, computed before its named feature function runs.

``features.timestamp_parts`` (parts of a timestamp of the same row), ``features.history`` (per key,
count / target rate or mean / mean or rate of a column over the last N days strictly before the
row's own day) and ``features.asof`` (the latest reading of a second source by key at or before the
row's time, and aggregates over the hours before it) are added as columns to the primary frame, so
every feature function (``passthrough`` or a named one) takes them like source columns.

Leakage-free by construction: history tallies only rows of earlier local days (the partition-mapping
lineage of the features asset loads ``history_days`` of them), and an as-of join never reads a row
of the second source later than the row's time. Every computation is vectorised and linear in the
rows (hash group codes, one sort of the distinct (key, day) cells or of the second source's rows,
binary searches): no per-row loops, no lag-by-lag lookups over the rows, no reorder of the frame.

pandas and numpy load inside the functions.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ml_assets.config.tabular import AsofJoin, HistoryFeature, PipelineSpec, RowRule
from ml_assets.features.functions import (
    as_str,
    epoch_ns,
    output_columns,
    rows_for_days,
    target_values,
    pipeline_timezone,
    timestamp_part_of,
    utc_times,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

HOUR_NS = 3_600_000_000_000

_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
              "==": operator.eq, "!=": operator.ne}


def listed(spec: PipelineSpec) -> set[str]:
    return set(spec.features.numeric) | set(spec.features.categorical)


def with_declared_features(
    sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec
) -> dict[str, pd.DataFrame]:
    """``sources`` with the primary frame extended by the declared features (a shallow copy: the
    caller's frame is untouched). Timestamp parts are computed for every row (a history key may be
    one); history and as-of features only for the rows of ``days`` (missing on history-only rows,
    which no feature function returns), and only those the spec lists as features."""
    import numpy as np

    features = spec.features
    wanted = listed(spec)
    history = {n: h for n, h in features.history.items() if n in wanted}
    joins = {n: j for n, j in features.asof.items() if set(j.feature_names()) & wanted}
    if not features.timestamp_parts and not history and not joins:
        return sources
    primary = spec.primary_source
    if primary not in sources:
        raise ValueError(f"primary source '{primary}' is missing from the inputs; got {sorted(sources)}")
    import pandas as pd

    frame = sources[primary]
    added: dict[str, np.ndarray] = {}
    clash = sorted(features.declared() & set(frame.columns))
    if clash:
        raise ValueError(
            f"declared feature(s) {clash} of pipeline '{spec.name}' are already columns of source"
            f" '{primary}': give them other names"
        )
    added.update(timestamp_part_columns(frame, spec))
    if history or joins:
        day_numbers, valid, target, _ = rows_for_days(frame, spec, days)
        n = len(frame)
        # keys of a history feature may be timestamp parts: a frame with those next to the source's columns
        keyed = frame.assign(**added) if added else frame
        computed: dict[str, np.ndarray] = {}
        if history:
            computed.update(history_features(keyed, spec, day_numbers, valid, target, history))
        for join_name, join in joins.items():
            computed.update(asof_features(frame.loc[target], sources, spec, join_name, join))
        for name, values in computed.items():
            column = np.full(n, np.nan)
            column[target] = values
            added[name] = column
    # one concatenation (not a column at a time: a frame of many single-column blocks is slow to slice)
    extended = pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)
    return {**sources, primary: extended}


def timestamp_part_columns(
    columns: Mapping[str, pd.Series], spec: PipelineSpec, names: Iterable[str] | None = None,
    utc: Mapping[str, pd.Series] | None = None,
) -> dict[str, np.ndarray]:
    """``{name: float64 values}`` of the declared timestamp parts (all, or only ``names``) of a frame
    or of plain columns (``{column: Series}``: the online request path, which builds no frame).
    ``utc`` may hold time columns already converted by ``utc_times``."""
    primary = spec.primary_source
    wanted = spec.features.timestamp_parts if names is None else {
        n: spec.features.timestamp_parts[n] for n in names}
    local_times: dict[str, pd.Series] = {}  # each time column converted once, for all its parts
    added: dict[str, np.ndarray] = {}
    for name, part in wanted.items():
        if part.column not in columns:
            raise ValueError(f"features.timestamp_parts.{name}: source '{primary}' has no column '{part.column}'")
        if part.column not in local_times:
            times = utc[part.column] if utc and part.column in utc else utc_times(columns[part.column])
            local_times[part.column] = times.dt.tz_convert(pipeline_timezone(spec))
        added[name] = timestamp_part_of(local_times[part.column], part.part).to_numpy()
    return added


def declared_online_keys(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """``{feature: key columns}`` of the listed history and as-of features: history by its keys when
    they are all columns of the feature frame, as-of features by ``online_key``; otherwise by the
    primary entity key (one record per row). Timestamp parts come from the request row itself."""
    wanted = listed(spec)
    frame_columns = set(output_columns(spec))
    entity = tuple(spec.sources[spec.primary_source].entity_key)
    keys: dict[str, tuple[str, ...]] = {}
    for name, history in spec.features.history.items():
        if name in wanted:
            keys[name] = tuple(history.keys) if set(history.keys) <= frame_columns else entity
    for join in spec.features.asof.values():
        key = tuple(join.online_key) if join.online_key else entity
        for name in join.feature_names():
            if name in wanted:
                keys[name] = key
    return keys


# --------------------------------------------------------------------------- helpers


def group_codes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Dense codes of the distinct combinations of ``columns`` (nulls are a value), by hashing."""
    return frame.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()


def condition_mask(frame: pd.DataFrame, rule: RowRule, where: str) -> np.ndarray:
    """Where ``rule`` holds on ``frame[rule.column]`` (False where the value is missing)."""
    import numpy as np
    import pandas as pd

    if rule.column not in frame.columns:
        raise ValueError(f"{where}: the primary source has no column '{rule.column}'")
    op, value = rule.parsed()
    column = frame[rule.column]
    known = column.notna().to_numpy()
    if isinstance(value, str):
        return known & _OPERATORS[op](column.astype(str), value).to_numpy(dtype=bool)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        return ~np.isnan(numbers) & _OPERATORS[op](numbers, value)


# --------------------------------------------------------------------------- history


def history_features(
    frame: pd.DataFrame,
    spec: PipelineSpec,
    day_numbers: np.ndarray,
    valid: np.ndarray,
    target: np.ndarray,
    wanted: dict[str, HistoryFeature],
) -> dict[str, np.ndarray]:
    """Per target row, each history feature over the ``days`` local days strictly before its day.

    Rows with a known day are tallied once per (key, day) cell (hash factorisation, ``bincount``);
    the distinct cells are sorted by (key, day) and summed cumulatively, so a window is the difference
    of two cumulative sums found by binary search: ``S(key, day - 1) - S(key, day - N - 1)``. The
    row's own day and later days never enter its window. Sums are of 0/1 indicators and of values
    in a fixed order, so a range of days gives the same values as each day alone.
    """
    import numpy as np
    import pandas as pd

    n_target = int(target.sum())
    result: dict[str, np.ndarray] = {}
    rows = valid
    labels = None
    if not rows.any():
        return {name: (np.zeros(n_target) if h.stat == "count" else np.full(n_target, np.nan))
                for name, h in wanted.items()}
    first_day = int(day_numbers[rows].min())
    span = int(day_numbers[rows].max()) - first_day + 2  # room for day -1 of the next key
    relative = np.where(rows, day_numbers - first_day, -1)
    target_day = relative[target]
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for name, history in wanted.items():
        missing = [k for k in history.keys if k not in frame.columns]
        if missing:
            raise ValueError(f"features.history.{name}.keys: the primary source has no column(s) {missing}")
        by_keys.setdefault(tuple(history.keys), []).append(name)
    for keys, names in by_keys.items():
        codes = group_codes(frame, list(keys)).astype("int64")
        cell_of_row = codes * span + relative  # relative in [0, span - 2] on history rows
        inverse, cells = pd.factorize(cell_of_row[rows])
        order = np.argsort(cells, kind="stable")
        sorted_cells = cells[order]
        target_base = codes[target] * span
        upper = target_base + target_day - 1
        lower_cache: dict[int, np.ndarray] = {}
        upper_at = np.searchsorted(sorted_cells, upper, side="right")

        def window_sum(weights: np.ndarray | None, days: int) -> np.ndarray:
            per_cell = np.bincount(inverse, weights=weights, minlength=len(cells))[order]
            totals = np.concatenate([[0.0], np.cumsum(per_cell, dtype="float64")])
            if days not in lower_cache:
                lower = target_base + np.maximum(target_day - days, 0) - 1
                lower_cache[days] = np.searchsorted(sorted_cells, lower, side="right")
            return totals[upper_at] - totals[lower_cache[days]]

        for name in names:
            history = wanted[name]
            where = f"features.history.{name}"
            keep = rows.copy()
            if history.where is not None:
                keep &= condition_mask(frame, history.where, f"{where}.where")
            if history.stat == "count":
                result[name] = window_sum(keep[rows].astype("float64"), history.days)
                continue
            if history.stat in ("target_rate", "target_mean"):
                if labels is None:
                    labels = target_values(frame, spec.target).to_numpy(dtype="float64")
                values = labels
            elif history.column not in frame.columns:
                raise ValueError(f"{where}.column: the primary source has no column '{history.column}'")
            elif history.stat == "rate":  # any known value (text too) counts; the rule says which are positive
                values = np.where(frame[history.column].isna().to_numpy(), np.nan,
                                  condition_mask(frame, history.condition(), where).astype("float64"))
            else:
                try:
                    values = pd.to_numeric(frame[history.column]).to_numpy(dtype="float64")
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{where}.column: '{history.column}' must be numeric for stat 'mean': {exc}") from None
            known = keep & ~np.isnan(values)
            denominator = window_sum(known[rows].astype("float64"), history.days)
            numerator = window_sum(np.where(known, values, 0.0)[rows], history.days)
            with np.errstate(invalid="ignore", divide="ignore"):
                result[name] = np.where(denominator > 0, numerator / denominator, np.nan)
    return result


# --------------------------------------------------------------------------- as-of join


def _key_values(column: pd.Series) -> pd.Series:
    """Key values comparable across the two sources: numbers as float64, anything else as text."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.astype("float64")
    return as_str(column)


def asof_features(
    rows: pd.DataFrame,
    sources: dict[str, pd.DataFrame],
    spec: PipelineSpec,
    join_name: str,
    join: AsofJoin,
) -> dict[str, np.ndarray]:
    """The features of one as-of join for ``rows`` (primary rows), in row order.

    The second source's readings (first per key and time) are sorted by (key, time); each distinct
    (key, time) of the rows finds the position of its latest reading at or before ``t`` and at or
    before ``t - hours`` with ``pd.merge_asof``. A window is then the positions between the two;
    aggregates walk the window's readings newest first in the same order for every row (so a value
    never depends on the other rows), over the distinct (key, time) pairs, not over the rows.
    """
    import numpy as np
    import pandas as pd

    where = f"features.asof.{join_name}"
    if join.source not in sources:
        raise ValueError(f"{where}: source '{join.source}' is missing from the inputs; got {sorted(sources)}")
    other = sources[join.source]
    time_column = join.time or spec.time_column_for(spec.primary_source)
    source_time = join.source_time or spec.time_column_for(join.source)
    for label, frame, columns in (
        (f"source '{spec.primary_source}'", rows, [time_column, *join.by]),
        (f"source '{join.source}'", other, [source_time, *join.by.values(), *join.value_columns().values(),
                                            *(w.column for w in join.windows.values())]),
    ):
        missing = sorted({c for c in columns if c not in frame.columns})
        if missing:
            raise ValueError(f"{where}: {label} has no column(s) {missing}")
    n = len(rows)
    value_columns = join.value_columns()
    needed = list(dict.fromkeys([*value_columns.values(), *(w.column for w in join.windows.values())]))

    # one key code over both sides
    left_keys = pd.DataFrame({f"k{i}": _key_values(rows[c]).to_numpy() for i, c in enumerate(join.by)})
    right_keys = pd.DataFrame({f"k{i}": _key_values(other[c]).to_numpy() for i, c in enumerate(join.by.values())})
    codes = group_codes(pd.concat([right_keys, left_keys], ignore_index=True), list(left_keys.columns))
    right_code, left_code = codes[: len(other)], codes[len(other):]
    readings = pd.DataFrame({"_key": right_code, "_t": epoch_ns(utc_times(other[source_time]))})
    for i, column in enumerate(needed):
        readings[f"v{i}"] = pd.to_numeric(other[column], errors="coerce").astype("float64").to_numpy()
    readings = readings[readings["_t"] != np.iinfo("int64").min]
    readings = readings.drop_duplicates(["_key", "_t"], keep="first")
    readings = readings.sort_values(["_key", "_t"], kind="stable").reset_index(drop=True)
    readings["_pos"] = np.arange(len(readings))
    by_time = readings[["_t", "_key", "_pos"]].sort_values("_t", kind="stable")
    key_start = np.searchsorted(readings["_key"].to_numpy(), np.arange(int(codes.max()) + 2 if len(codes) else 1))
    read_t = readings["_t"].to_numpy()
    values = [readings[f"v{i}"].to_numpy() for i in range(len(needed))]

    # distinct (key, time) queries of the rows
    row_t = epoch_ns(utc_times(rows[time_column])) if n else np.zeros(0, dtype="int64")
    usable = row_t != np.iinfo("int64").min
    pairs = pd.DataFrame({"_key": left_code, "_t": np.where(usable, row_t, 0)})
    query_of_row = group_codes(pairs, ["_key", "_t"]) if n else np.zeros(0, dtype="int64")
    first = pd.Series(np.arange(n)).groupby(query_of_row).first().to_numpy() if n else np.zeros(0, dtype="int64")
    q_key = left_code[first]
    q_t = pairs["_t"].to_numpy()[first]
    q_usable = usable[first]

    def latest_position(times: np.ndarray) -> np.ndarray:
        """Position of the latest reading of each query's key at or before ``times`` (-1 if none)."""
        if len(times) == 0 or len(readings) == 0:
            return np.full(len(times), -1)
        left = pd.DataFrame({"_t": times, "_key": q_key, "_q": np.arange(len(times))}).sort_values("_t", kind="stable")
        merged = pd.merge_asof(left, by_time, on="_t", by="_key", direction="backward", allow_exact_matches=True)
        position = np.full(len(times), -1)
        found = merged["_pos"].notna().to_numpy()
        position[merged["_q"].to_numpy()[found]] = merged["_pos"].to_numpy()[found].astype("int64")
        return position

    max_age = None if join.max_age_hours is None else int(round(join.max_age_hours * HOUR_NS))

    def asof_values(times: np.ndarray) -> list[np.ndarray]:
        position = latest_position(times)
        ok = (position >= 0) & q_usable
        if not len(read_t):
            return [np.full(len(times), np.nan) for _ in values]
        at = np.maximum(position, 0)
        if max_age is not None:
            ok &= read_t[at] >= times - max_age
        return [np.where(ok, v[at], np.nan) for v in values]

    result: dict[str, np.ndarray] = {}
    at_t = asof_values(q_t)
    index = {column: i for i, column in enumerate(needed)}
    for name, column in value_columns.items():
        result[name] = at_t[index[column]][query_of_row]
    upper = latest_position(q_t) + 1  # window positions [lower, upper)
    block_start = key_start[q_key] if len(readings) else np.zeros(len(q_key), dtype="int64")
    upper = np.maximum(upper, block_start)
    for name, window in join.windows.items():
        shift = int(round(window.hours * HOUR_NS))
        v = values[index[window.column]] if len(readings) else np.zeros(0)
        if window.agg == "change":
            before = asof_values(q_t - shift)[index[window.column]]
            result[name] = (at_t[index[window.column]] - before)[query_of_row]
            continue
        lower = np.maximum(latest_position(q_t - shift) + 1, block_start)
        length = np.where(q_usable, upper - lower, 0)
        total = np.zeros(len(q_t))
        count = np.zeros(len(q_t), dtype="int64")
        low = np.full(len(q_t), np.inf)
        high = np.full(len(q_t), -np.inf)
        for step in range(int(length.max()) if len(length) else 0):  # newest reading first
            inside = step < length
            value = np.full(len(q_t), np.nan)
            value[inside] = v[upper[inside] - 1 - step]
            present = ~np.isnan(value)
            count += present
            if window.agg in ("sum", "mean"):
                total += np.where(present, value, 0.0)
            elif window.agg == "min":
                low = np.where(present, np.minimum(low, value), low)
            elif window.agg == "max":
                high = np.where(present, np.maximum(high, value), high)
        if window.agg == "count":
            aggregate = count.astype("float64")
        else:
            aggregate = {"sum": total, "min": low, "max": high}.get(window.agg)
            if window.agg == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    aggregate = total / count
            aggregate = np.where(count > 0, aggregate, np.nan)
        result[name] = aggregate[query_of_row]
    return result
