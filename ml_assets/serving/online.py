"""Online features from the offline feature code: what is stored per key, and how a request joins it.

The offline features of a day (the pipeline's own feature function, run by the features asset) hold,
for every feature a request row cannot compute alone, a value that depends only on a few key columns
within that day (``online_feature_keys``: a carrier's delay rate over 28 days depends on the carrier,
the origin's weather at 14:00 on the origin and the hour). ``online_records`` splits the day's feature
frame into one record per (group, key) and refuses a feature whose value is not constant within its
key. At request time the same feature code computes everything else on the request rows alone
(calendar parts, flight columns): ``ml_assets.features.rows`` on the request's columns, or
``request_features`` (the feature function on a frame of the rows); ``join_columns`` /
``join_online`` fill in the stored values, so both paths compute every feature with one piece of code.

Store keys are ``<pipeline>|<day>|<group>|<key values>``: a request row's day (its partition date)
picks the records of that day. No Dagster here; pandas loads inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.features.functions import get_feature_function, online_feature_keys

if TYPE_CHECKING:
    import pandas as pd

    from resources.online_store import KeyValueStore


def request_columns(spec: PipelineSpec) -> dict[str, str]:
    """``{column: type}`` a caller may send: the primary source's validated columns and entity key,
    without the target's column and the excluded columns that are not part of the entity key
    (outcomes known only later)."""
    source = spec.sources[spec.primary_source]
    key = set(source.entity_key)
    banned = {spec.target.column} | (set(spec.features.exclude) - key)
    columns = {c: t for c, t in source.validation.columns.items() if c not in banned}
    for column in source.entity_key:
        columns.setdefault(column, "str")
    return columns


def required_columns(spec: PipelineSpec) -> list[str]:
    """Request columns that may not be missing: the entity key, the time column and ``not_null``
    columns, plus any column a request-side feature reads directly."""
    source = spec.sources[spec.primary_source]
    allowed = request_columns(spec)
    wanted = [*source.entity_key, *source.validation.not_null]
    time_column = spec.time_column_for(spec.primary_source)
    if time_column:
        wanted.append(time_column)
    return [c for c in dict.fromkeys(wanted) if c in allowed]


def group_name(columns: tuple[str, ...]) -> str:
    return "+".join(columns)


def key_text(value: Any) -> str:
    """One key value as text, the same for an int and the equal float (``7`` and ``7.0``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalar
        return key_text(value.item())
    return str(value)


def store_key(pipeline: str, day: str, group: str, values: tuple[Any, ...]) -> str:
    return "|".join([pipeline, day, group, *(key_text(v) for v in values)])


def namespace(pipeline: str, day: str) -> str:
    return f"{pipeline}|{day}"


def stored_days(store: KeyValueStore, pipeline: str) -> list[str]:
    """The days of ``pipeline`` the store holds records of, oldest first."""
    prefix = f"{pipeline}|"
    return sorted(ns[len(prefix):] for ns in store.namespaces() if ns.startswith(prefix))


def retained_days(stored: list[str], new: list[str], keep: int) -> list[str]:
    """The days the store keeps once ``new`` days are written: the newest ``keep`` of both."""
    return sorted(set(stored) | set(new))[-keep:]


def prune_days(store: KeyValueStore, pipeline: str, keep: list[str]) -> list[str]:
    """Remove the records of every stored day of ``pipeline`` not in ``keep``; the days removed."""
    removed = [day for day in stored_days(store, pipeline) if day not in set(keep)]
    for day in removed:
        store.delete_namespace(namespace(pipeline, day))
    return removed


def groups_of(spec: PipelineSpec) -> dict[tuple[str, ...], list[str]]:
    """``{key columns: features}`` of the online features of ``spec``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for feature, columns in online_feature_keys(spec).items():
        groups.setdefault(columns, []).append(feature)
    return groups


def json_value(value: Any) -> Any:
    """A JSON-safe number (None for NaN) or text."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def online_records(features: pd.DataFrame, spec: PipelineSpec) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Records of one day's offline feature frame: ``{store key: {feature: value}}`` per group key,
    and the number of keys per group. A ValueError names a feature whose value differs within its
    key on that day (the online key would be wrong)."""
    days = features[PARTITION_COLUMN].dropna().unique().tolist()
    if len(days) != 1:
        raise ValueError(f"online_records takes the features of exactly one day, got {sorted(days)[:5]}")
    (day,) = days
    records: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for columns, names in groups_of(spec).items():
        missing = [c for c in [*columns, *names] if c not in features.columns]
        if missing:
            raise ValueError(f"the features of {day} have no column(s) {missing} needed online")
        frame = features[[*columns, *names]]
        grouped = frame.groupby(list(columns), dropna=False, sort=False)
        distinct = grouped[names].nunique(dropna=False)
        varying = [n for n in names if (distinct[n] > 1).any()]
        if varying:
            raise ValueError(
                f"features {varying} of {day} take more than one value for the same"
                f" {group_name(columns)}: they cannot be served by that key"
            )
        first = grouped[names].first().reset_index()
        group = group_name(columns)
        for row in first.itertuples(index=False):
            values = tuple(row[: len(columns)])
            records[store_key(spec.name, day, group, values)] = {
                n: json_value(v) for n, v in zip(names, row[len(columns):])
            }
        counts[group] = len(first)
    return records, counts


def request_spec(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` with only the features a request row computes alone (for ``request_features``)."""
    online = online_feature_keys(spec)
    features = spec.features.model_copy(update={
        "numeric": [f for f in spec.features.numeric if f not in online],
        "categorical": [f for f in spec.features.categorical if f not in online],
    })
    return spec.model_copy(update={"features": features})


def request_features(rows: pd.DataFrame, spec: PipelineSpec, req_spec: PipelineSpec) -> pd.DataFrame:
    """The request-side features of ``rows`` (raw primary-source columns), in request order, by the
    pipeline's own feature function on the rows alone (every row is a target row; its day is its
    partition date; the outcome column is absent, so the label is missing)."""
    import numpy as np

    from ml_assets.features.functions import day_strings, rows_for_days

    frame = rows.reset_index(drop=True)
    frame[spec.target.column] = np.nan
    sources = {spec.primary_source: frame}
    out = get_feature_function(spec.features.function)(sources, None, req_spec, **spec.features.params)
    if len(out) != len(frame):
        raise ValueError(f"the feature function returned {len(out)} rows for {len(frame)} request rows")
    if len(frame) == 1:
        return out
    # the function sorts by (day, entity key), stably: the same sort of the request rows tells where
    # each output row came from
    day_numbers, valid, _, _ = rows_for_days(frame, spec, None)
    order = list(dict.fromkeys([PARTITION_COLUMN, *spec.sources[spec.primary_source].entity_key]))
    keyed = frame.assign(**{PARTITION_COLUMN: day_strings(day_numbers, valid)})[order]
    origin = keyed.sort_values(order, kind="mergesort", na_position="last").index.to_numpy()
    out.index = origin
    return out.sort_index()


@dataclass
class JoinStats:
    """What a request's join found: rows, and per group the rows whose key had no stored record."""

    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    #: per row, the groups whose key had no record
    missing_by_row: list[list[str]] = field(default_factory=list)


def column_values(values: Any) -> list[Any]:
    """A column (pandas Series, NumPy array or list) as a list of Python values."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def key_texts(values: list[Any]) -> list[str]:
    """``key_text`` of each value, computed once per distinct value (by type and value: ``True`` and
    ``1`` are equal in Python but not the same key text)."""
    memo: dict[tuple[type, Any], str] = {}
    out = []
    for value in values:
        token = (value.__class__, value)
        text = memo.get(token)
        if text is None:
            text = memo[token] = key_text(value)
        out.append(text)
    return out


def key_tokens(values: list[Any]) -> list[Any]:
    """Values standing for their key texts in a dict: the values themselves when they all have one
    type (equal values then have equal texts), else their key texts."""
    kinds = {value.__class__ for value in values}
    return values if len(kinds) == 1 and kinds <= {str, int, float} else key_texts(values)


def group_positions(
    features: Mapping[str, Any], groups: dict[tuple[str, ...], list[str]]
) -> dict[tuple[str, ...], tuple[list[tuple[Any, ...]], Any]]:
    """Per group, its distinct (day, key values) and each row's position among them: the key text
    work is then done per distinct key, not per row."""
    import numpy as np

    days = column_values(features[PARTITION_COLUMN])
    tokens = {c: key_tokens(column_values(features[c])) for columns in groups for c in columns}
    out = {}
    for columns in groups:
        position: dict[tuple[Any, ...], int] = {}
        codes = np.array([position.setdefault(t, len(position)) for t in zip(days, *(tokens[c] for c in columns))],
                         dtype="int64")
        out[columns] = (list(position), codes)
    return out


def join_columns(
    features: Mapping[str, Any], n: int, spec: PipelineSpec, store: KeyValueStore,
    groups: dict[tuple[str, ...], list[str]],
) -> tuple[dict[str, Any], JoinStats]:
    """The online features of ``n`` rows of request-side features (a frame or ``{column: values}``):
    ``{feature: values}`` read from ``store`` by the row's day and key (float64 for numeric features,
    NaN where the key has no record), and what the join found. Each distinct key is read once."""
    import numpy as np
    import pandas as pd

    stats = JoinStats(rows=n, missing_by_row=[[] for _ in range(n)])
    # each group's distinct keys, and each row's position among them
    positions = group_positions(features, groups)
    keys = {columns: [store_key(spec.name, str(day), group_name(columns), values) for day, *values in distinct]
            for columns, (distinct, _) in positions.items()}
    distinct_keys = list(dict.fromkeys(k for group_keys in keys.values() for k in group_keys))
    found = dict(zip(distinct_keys, store.get_many(distinct_keys)))
    numeric = set(spec.features.numeric)
    columns: dict[str, Any] = {}
    for group_columns, names in groups.items():
        group = group_name(group_columns)
        codes = positions[group_columns][1]
        records = [found[k] for k in keys[group_columns]]
        absent = np.array([r is None for r in records], dtype=bool)[codes]
        for i in absent.nonzero()[0].tolist():
            stats.missing_by_row[i].append(group)
        stats.missing[group] = int(absent.sum())
        for name in names:
            values = [None if r is None else r.get(name) for r in records]
            if name in numeric:
                try:
                    distinct_values = np.array([np.nan if v is None else v for v in values], dtype="float64")
                except (TypeError, ValueError):
                    distinct_values = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy("float64")
            else:
                distinct_values = np.empty(len(values), dtype=object)
                distinct_values[:] = values
            columns[name] = distinct_values[codes]
    return columns, stats


def joined_columns(features: Mapping[str, Any], online: dict[str, Any]) -> dict[str, Any]:
    """Request-side columns with the online ones: a joined column replaces a request-side one in
    place, the others follow in their order."""
    data = {c: online[c] if c in online else features[c] for c in features}
    data.update({c: v for c, v in online.items() if c not in data})
    return data


def join_online(
    features: pd.DataFrame, spec: PipelineSpec, store: KeyValueStore, groups: dict[tuple[str, ...], list[str]]
) -> tuple[pd.DataFrame, JoinStats]:
    """``features`` with every online feature filled from ``store`` by the row's day and key; a key
    with no record (no history, or a day without online features) leaves the features missing (NaN,
    which the model scores as missing) and is counted per group (``join_columns``)."""
    import pandas as pd

    columns, stats = join_columns(features, len(features), spec, store, groups)
    # one frame from its columns, not a drop, a concatenation and a reorder: on a request's few rows
    # those cost more than the join
    data = joined_columns({c: features[c].array for c in features.columns}, columns)
    return pd.DataFrame(data, index=features.index), stats
