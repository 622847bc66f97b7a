"""Request-side features over plain columns: what a scoring request's rows compute alone, without
building pandas frames.

The online service computes a request row's own features (calendar parts, the row's own columns, the
feature function's row-local arithmetic) with the pipeline's feature code. Run as a feature function
on a frame of one row, that code spends milliseconds on frame overhead (selection, concatenation,
casts, a sort, about a hundred small pandas operations) for microseconds of arithmetic.
``row_features`` computes the same columns from the request's columns (``{column: values}``) by
calling the same pieces the feature function calls on its frame, each on one column:

- declared timestamp parts: ``declared.timestamp_part_columns`` (what ``with_declared_features`` runs);
- the partition date: ``utc_times``, ``local_day_numbers`` and ``day_strings`` (as ``rows_for_days``);
  what a row's times give depends on those values alone, so each distinct time value (few: scheduled
  hours) is converted once and its day and parts kept in the plan (``RowPlan.time_cache``);
- the feature function's own row-local features: the function registered for it with
  ``register_row_features``, which the feature function itself calls on its frame's columns (for
  flights, ``flights.sched_dep_minute``);
- source columns used as features as they are: categorical ones as text (``as_str``), numeric ones
  as float64, the entity key as sent (the contract of ``flights_features`` and ``passthrough``).

A feature function without registered row features, a pipeline without a time column, or a feature
none of these computes has no row plan (``row_plan`` returns None): the service then runs the feature
function on a frame of the rows. Tested equal to the frame path on the real rows of several days and
on edge cases (``tests/serving/test_rows.py``). pandas and numpy load inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.features.functions import (
    as_str,
    day_strings,
    local_day_numbers,
    output_columns,
    pipeline_timezone,
    utc_times,
)

if TYPE_CHECKING:
    import numpy as np

#: ``fn(columns, spec, names) -> {name: values}``: a feature function's own features that one row
#: computes alone, from plain columns (``{column: array}``), for the ``names`` asked.
RowFeatureFunction = Callable[[Mapping[str, Any], PipelineSpec, Sequence[str]], dict[str, "np.ndarray"]]

#: Distinct time values whose derived columns a plan keeps (cleared when full).
TIME_CACHE_SIZE = 50_000

#: Per feature function name: (its row-local feature names, the function computing them).
ROW_FEATURE_FUNCTIONS: dict[str, tuple[frozenset[str], RowFeatureFunction]] = {}


def register_row_features(function: str, names: Sequence[str] = ()) -> Callable[[RowFeatureFunction], RowFeatureFunction]:
    """Decorator registering the row-local features ``names`` of the feature function ``function``
    (which must compute them with the registered function too, so both paths are one code)."""

    def decorator(fn: RowFeatureFunction) -> RowFeatureFunction:
        ROW_FEATURE_FUNCTIONS[function] = (frozenset(names), fn)
        return fn

    return decorator


@dataclass(frozen=True)
class RowPlan:
    """How the request-side features of ``spec`` come from a request's columns."""

    spec: PipelineSpec
    time_column: str
    key: tuple[str, ...]
    parts: tuple[str, ...]
    own: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    output: tuple[str, ...]
    own_function: RowFeatureFunction
    #: ``{time values of a row: (partition date, *parts)}``, filled as requests arrive (``row_features``)
    time_cache: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict, compare=False, repr=False)

    def time_columns(self) -> list[str]:
        """The time column and the columns of the timestamp parts."""
        parts = self.spec.features.timestamp_parts
        return list(dict.fromkeys([self.time_column, *(parts[name].column for name in self.parts)]))


def row_plan(spec: PipelineSpec, req_spec: PipelineSpec, request_columns: Sequence[str]) -> RowPlan | None:
    """The plan of the request-side features of ``req_spec`` (the features a row computes alone), or
    None when some of them can only come from the feature function on a frame."""
    registered = ROW_FEATURE_FUNCTIONS.get(spec.features.function)
    time_column = spec.time_column_for(spec.primary_source)
    if registered is None or time_column is None or spec.features.params:
        return None
    own_names, own_function = registered
    features = req_spec.features
    parts, own, numeric, categorical = [], [], [], []
    for name in dict.fromkeys([*features.numeric, *features.categorical]):
        if name in features.timestamp_parts:
            parts.append(name)
        elif name in own_names:
            own.append(name)
        elif name in features.declared():
            return None  # history or as-of: not a row feature
        elif name in request_columns:
            (categorical if name in features.categorical else numeric).append(name)
        else:
            return None
    key = tuple(spec.sources[spec.primary_source].entity_key)
    parts_from = {features.timestamp_parts[name].column for name in parts}
    if not {*key, time_column, *parts_from, *numeric, *categorical} <= set(request_columns):
        return None
    return RowPlan(spec=req_spec, time_column=time_column, key=key, parts=tuple(parts), own=tuple(own),
                   numeric=tuple(n for n in numeric if n in features.numeric),
                   categorical=tuple(categorical), output=tuple(output_columns(req_spec)),
                   own_function=own_function)


def row_features(columns: Mapping[str, Sequence[Any]], plan: RowPlan) -> dict[str, np.ndarray]:
    """``{column: values}`` of the request-side feature frame of the rows in ``columns`` (request
    order; the columns of ``output_columns`` in their order): the entity key, ``partition_date``,
    the features and the (missing) target."""
    import numpy as np
    import pandas as pd

    spec = plan.spec
    n = len(columns[plan.time_column])
    computed: dict[str, Any] = {c: pd.Series(columns[c]).to_numpy() for c in plan.key}
    # what a row's times give (its local day, the timestamp parts) depends on those values alone, and
    # times take few distinct values (scheduled hours): each distinct value is converted once and kept
    time_columns = plan.time_columns()
    keys = list(zip(*(columns[c] for c in time_columns)))
    cache = plan.time_cache
    new = [k for k in dict.fromkeys(keys) if k not in cache]
    if new:
        if len(cache) + len(new) > TIME_CACHE_SIZE:
            cache.clear()
        cache.update(zip(new, time_values({c: [k[i] for k in new] for i, c in enumerate(time_columns)}, plan)))
    derived = [cache[k] for k in keys]
    computed[PARTITION_COLUMN] = np.array([d[0] for d in derived], dtype=object)
    for j, name in enumerate(plan.parts, start=1):
        computed[name] = np.array([d[j] for d in derived], dtype="float64")
    if plan.own:
        computed.update(plan.own_function(columns, spec, plan.own))
    for name in plan.categorical:
        computed[name] = as_str(pd.Series(columns[name])).to_numpy()
    for name in plan.numeric:
        computed[name] = pd.to_numeric(pd.Series(columns[name])).to_numpy(dtype="float64")
    computed[spec.target.name] = np.full(n, np.nan)
    out = {}
    for column in plan.output:
        values = computed[column]
        if column in spec.features.numeric and column not in plan.key:
            values = np.asarray(values, dtype="float64")
        out[column] = values
    return out


def time_values(columns: Mapping[str, list[Any]], plan: RowPlan) -> list[tuple[Any, ...]]:
    """Per row of ``columns`` (the time columns of ``plan``), its partition date and its timestamp
    parts in ``plan.parts`` order, by the feature code's own functions on the columns."""
    import pandas as pd

    from ml_assets.features.declared import timestamp_part_columns

    spec = plan.spec
    utc = {c: utc_times(pd.Series(values)) for c, values in columns.items()}
    day_numbers, valid = local_day_numbers(utc[plan.time_column], pipeline_timezone(spec))
    days = day_strings(day_numbers, valid).tolist()
    parts = timestamp_part_columns(utc, spec, plan.parts, utc=utc) if plan.parts else {}
    return list(zip(days, *(parts[name].tolist() for name in plan.parts)))


@register_row_features("passthrough")
def passthrough_row_features(columns: Mapping[str, Any], spec: PipelineSpec, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``passthrough`` has no features of its own: its features are source columns and declared ones."""
    return {}
