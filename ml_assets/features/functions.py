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

import functools
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec, Target

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FeatureFunction = Callable[..., "pd.DataFrame"]


FEATURE_FUNCTIONS: dict[str, FeatureFunction] = {}

#: Per feature function, ``fn(spec) -> {feature: key columns}``: the features a single request row
#: cannot compute alone (history, context sources, counts over the day), each with the columns of
#: the feature frame that determine its value within one day. Online serving stores them per key.
ONLINE_KEY_FUNCTIONS: dict[str, Callable[[PipelineSpec], dict[str, tuple[str, ...]]]] = {}


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def register_feature_function(name: str) -> Callable[[FeatureFunction], FeatureFunction]:
    """Decorator registering a feature function under ``name`` (re-registering the same one is a no-op).

    The registered function (and the name the decorator returns) first adds the YAML's declarative
    features (``timestamp_parts``, ``history``, ``asof``; ``ml_assets.features.declared``) to the
    primary frame as columns, so the function itself takes them like source columns.
    """

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

        @functools.wraps(fn)
        def with_declared(sources, days, spec, **params):
            from ml_assets.features.declared import with_declared_features

            return fn(with_declared_features(sources, days, spec), days, spec, **params)

        FEATURE_FUNCTIONS[name] = with_declared
        return with_declared

    return decorator


def build_features(sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec) -> pd.DataFrame:
    """The feature frame of ``days``: the pipeline's feature function (with its declarative features
    and YAML ``params``) applied to ``sources``."""
    return get_feature_function(spec.features.function)(sources, days, spec, **spec.features.params)


def register_online_keys(name: str):
    """Decorator registering the online keys function of the feature function ``name``."""

    def decorator(fn):
        ONLINE_KEY_FUNCTIONS[name] = fn
        return fn

    return decorator


def online_feature_keys(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """``{feature: key columns}`` of the features of ``spec`` that need more than the request row
    (empty for a feature function without online keys: every feature comes from the row itself)."""
    from ml_assets.features.declared import declared_online_keys

    fn = ONLINE_KEY_FUNCTIONS.get(spec.features.function)
    declared = declared_online_keys(spec)
    from_function = fn(spec) if fn is not None else {}
    return {**{k: v for k, v in from_function.items() if k not in declared}, **declared}


def get_feature_function(name: str) -> FeatureFunction:
    """The feature function registered as ``name``; a ValueError lists the known names otherwise."""
    try:
        return FEATURE_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown feature function '{name}'; known: {sorted(FEATURE_FUNCTIONS)}") from None


def target_values(df: pd.DataFrame, target: Target) -> pd.Series:
    """The label for every row (missing where the column is null):

    * binary classification: float 1.0/0.0 from the ``rule`` (on numbers or strings), from
      ``positive`` (the positive value(s), compared as text: ``"YES"``, ``true``), or from a column
      that already holds 0/1 or booleans;
    * multiclass: the column's values as text;
    * regression: the column as float64.
    """
    import numpy as np
    import pandas as pd

    if target.column not in df.columns:
        raise ValueError(f"target column '{target.column}' is missing from the data")
    column = df[target.column]
    known = column.notna()
    if target.task == "multiclass":
        return as_str(column)
    if not known.any():  # no outcome yet (scoring requests): every label missing, whatever the rule
        return pd.Series(np.nan, index=column.index, dtype="float64", name=column.name)
    if target.task == "regression":
        try:
            return pd.to_numeric(column).astype("float64")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"target column '{target.column}' must be numeric for a regression: {exc}") from None
    rule, positive = target.parsed_rule(), target.positive_values()
    if rule is not None and isinstance(rule[1], str):
        op, text = rule
        labels = _OPERATORS[op](column.astype(str), text).astype("float64")
        return labels.where(known)
    if positive is not None:
        wanted = {text for v in positive for text in _positive_texts(v)}
        labels = column.map(lambda v: float(_as_text(v) in wanted), na_action="ignore")
        return labels.astype("float64").where(known)
    if rule is None:
        if pd.api.types.is_bool_dtype(column) or column.dtype == object and column.dropna().map(type).eq(bool).all():
            return column.map(float, na_action="ignore").astype("float64")
        values = pd.to_numeric(column, errors="coerce")
        bad = known & ~values.isin([0, 1])
        if bad.any():
            examples = sorted(map(str, column[bad].unique()[:3]))
            raise ValueError(
                f"target column '{target.column}' must hold 0/1 or booleans for a classification without a"
                f" rule; found {examples}: add 'positive' (e.g. positive: \"{examples[0]}\") or a 'rule'"
            )
        return values.astype("float64")
    op, threshold = rule
    try:
        values = pd.to_numeric(column).astype("float64")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"target column '{target.column}' must be numeric for the rule '{target.rule}': {exc}"
        ) from exc
    labels = _OPERATORS[op](values, threshold).astype("float64")
    return labels.where(values.notna())


def _as_text(value: Any) -> str:
    """A label value compared as lower-case text: booleans as ``true``/``false``, 1.0 as ``1``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _positive_texts(value: Any) -> set[str]:
    """The texts a YAML ``positive`` value matches. YAML reads an unquoted ``YES`` as ``true``, so a
    boolean also matches yes/y/1 (and ``false`` no/n/0)."""
    if isinstance(value, bool):
        return {"true", "yes", "y", "1"} if value else {"false", "no", "n", "0"}
    return {_as_text(value)}


def add_target(df: pd.DataFrame, target: Target) -> pd.DataFrame:
    """Copy of ``df`` with the label column ``target.name`` added (see ``target_values``)."""
    return df.assign(**{target.name: target_values(df, target)})


def utc_times(values: pd.Series) -> pd.Series:
    """UTC timestamps from datetimes (naive ones are UTC) or ISO-8601 strings."""
    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed")


def epoch_ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of tz-aware timestamps (NaT gives the int64 minimum)."""
    return times.dt.as_unit("ns").dt.tz_localize(None).to_numpy().view("int64")


def local_day_numbers(times: pd.Series, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local day of each UTC timestamp as days since 1970-01-01, and the mask of non-null times."""
    local = times.dt.tz_convert(timezone).dt.tz_localize(None)
    day_numbers = local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    valid = ~local.isna().to_numpy()
    return day_numbers.astype("int64"), valid


def day_numbers_of(days: Iterable[str]) -> np.ndarray:
    import numpy as np

    try:
        return np.array(list(days), dtype="datetime64[D]").astype("int64")
    except ValueError as exc:
        raise ValueError(f"days must be ISO dates (YYYY-MM-DD): {exc}") from exc


def day_strings(day_numbers: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """ISO date strings for day numbers (None where not valid), formatting each distinct day once."""
    import numpy as np

    result = np.full(len(day_numbers), None, dtype=object)
    if valid.any():
        distinct, inverse = np.unique(day_numbers[valid], return_inverse=True)
        labels = np.datetime_as_string(distinct.astype("datetime64[D]"), unit="D").astype(object)
        result[valid] = labels[inverse]
    return result


def as_str(values: pd.Series) -> pd.Series:
    """Object column of ``str`` values, missing values kept missing. A column that already holds only
    text (and None or NaN) is copied as it is: the same result without converting every value."""
    if values.dtype == object:
        items = values.tolist()
        kinds = set(map(type, items))  # the types first, at C speed; the floats checked only if any
        if kinds <= {str, type(None), float} and (
                float not in kinds or all(v != v for v in items if type(v) is float)):
            return values.astype(object)
    return values.astype(object).where(values.isna(), values.astype(str))


def primary_frame(sources: dict[str, pd.DataFrame], spec: PipelineSpec) -> pd.DataFrame:
    primary = spec.primary_source
    if primary not in sources:
        raise ValueError(f"primary source '{primary}' is missing from the inputs; got {sorted(sources)}")
    return sources[primary]


def pipeline_timezone(spec: PipelineSpec) -> str:
    return spec.partitioning.timezone if spec.partitioning is not None else "UTC"


def check_params(function: str, params: dict[str, Any]) -> None:
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


def finish(frame: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    """Select the output columns, numeric features as float64 (one dtype whatever the day's data:
    a count with no missing value and a rate with some are stored alike, so every stored day matches
    the model's signature), and sort by (partition_date, entity key), deterministically."""
    import pandas as pd

    key = spec.sources[spec.primary_source].entity_key
    columns = output_columns(spec)
    cast = {c for c in spec.features.numeric if c not in key and frame[c].dtype != "float64"}
    order = sort_order(frame, list(dict.fromkeys([PARTITION_COLUMN, *key])))
    # one new frame from its columns (cast and ordered one by one): no intermediate frames, which
    # cost more than the work itself on the few rows of a scoring request
    data = {}
    for column in columns:
        values = frame[column].astype("float64") if column in cast else frame[column]
        data[column] = values.array.copy() if order is None else values.array.take(order)
    return pd.DataFrame(data, index=pd.RangeIndex(len(frame)), copy=False)


def sort_order(frame: pd.DataFrame, columns: list[str]):
    """Stable row order sorting ``frame`` by ``columns`` (missing values last), or None when it is
    already sorted. Computed on integer codes of the sort columns only (each column factorised with
    sorted uniques), so no other column is moved and text keys are not compared row by row."""
    import numpy as np
    import pandas as pd

    if len(frame) < 2:
        return None
    codes = []
    for column in columns:
        values, _ = pd.factorize(frame[column], sort=True, use_na_sentinel=True)
        codes.append(np.where(values < 0, np.iinfo("int64").max, values))  # missing last
    order = np.lexsort(codes[::-1])
    if (order[1:] > order[:-1]).all():
        return None
    return order


def rows_for_days(
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
    times = utc_times(frame[time_column])
    day_numbers, valid = local_day_numbers(times, pipeline_timezone(spec))
    if days is None:
        target = np.ones(len(frame), dtype=bool)
    else:
        target = valid & np.isin(day_numbers, day_numbers_of(days))
    return day_numbers, valid, target, times


def timestamp_part(values: pd.Series, part: str, timezone: str) -> pd.Series:
    """One part of timestamps (datetimes or ISO strings) in local time of ``timezone``, as float64
    (missing where the time is missing): hour, minute, weekday (Monday 0), month, day_of_year."""
    return timestamp_part_of(utc_times(values).dt.tz_convert(timezone), part)


def timestamp_part_of(local: pd.Series, part: str) -> pd.Series:
    """One part of local tz-aware timestamps as float64 (see ``timestamp_part``)."""
    accessor = {"hour": "hour", "minute": "minute", "weekday": "weekday", "month": "month",
                "day_of_year": "dayofyear"}[part]
    return getattr(local.dt, accessor).astype("float64")


@register_feature_function("passthrough")
def passthrough(
    sources: dict[str, pd.DataFrame], days: list[str] | None, spec: PipelineSpec, **params: Any
) -> pd.DataFrame:
    """Primary rows of the target days with their entity key, features (source columns as is and the
    declared features) and target."""
    check_params("passthrough", params)
    frame = primary_frame(sources, spec)
    key = spec.sources[spec.primary_source].entity_key
    needed = list(dict.fromkeys([*key, *spec.features.numeric, *spec.features.categorical]))
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ValueError(
            f"passthrough: primary source '{spec.primary_source}' has no column(s) {missing}"
            " needed as entity key or features"
        )
    day_numbers, valid, target, _ = rows_for_days(frame, spec, days)
    if spec.target.column not in frame.columns:
        raise ValueError(f"target column '{spec.target.column}' is missing from the data")
    rows = frame.loc[target, list(dict.fromkeys([*needed, spec.target.column]))].copy()
    rows[PARTITION_COLUMN] = day_strings(day_numbers[target], valid[target])
    for column in spec.features.categorical:
        rows[column] = as_str(rows[column])
    rows = add_target(rows, spec.target)
    return finish(rows, spec)


def mask_out_of_range(frame, rules) -> tuple[Any, dict[str, int]]:
    """Copy of ``frame`` with values outside a range rule set to missing, and counts per column.

    Used for sources whose ``ranges`` rules only warn: an implausible sensor reading (the packaged
    weather has a 1048 mph wind speed) must not feed the model, but it does not stop the pipeline.
    """
    import pandas as pd

    result = frame.copy()
    masked: dict[str, int] = {}
    for column, rule in rules.ranges.items():
        if column not in result or not pd.api.types.is_numeric_dtype(result[column]):
            continue
        values = result[column]
        bad = pd.Series(False, index=values.index)
        if rule.min is not None:
            bad |= values <= rule.min if rule.strict_min else values < rule.min
        if rule.max is not None:
            bad |= values >= rule.max if rule.strict_max else values > rule.max
        if bad.any():
            result[column] = values.where(~bad)
            masked[column] = int(bad.sum())
    return result, masked
