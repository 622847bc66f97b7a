"""Great Expectations validation of one raw data frame, with the suite built from ``ValidationRules``.

``validate_frame`` turns the validation section of a pipeline source into one GX 1.x expectation
suite, runs it on the frame through an ephemeral context (created once per process, lazily) and
groups the results into one ``CheckOutcome`` per check group (``CHECK_GROUPS``): each becomes a
blocking Dagster asset check on the raw asset.

GX result objects do not always carry the offending rows (GX issues #10741, #11468), so every rule
also has a pandas mask that mirrors it: example rows and the partitions (days) with bad rows come
from the mask, counts from GX where GX reports them. Type rules GX cannot express (ISO-8601 datetime
strings, dtypes GX does not know such as pyarrow or nullable extension types) are judged in pandas.

Great Expectations, pandas and numpy are imported inside the functions: this module is imported when
the code location loads and must stay cheap.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    import pandas as pd

    from ml_assets.pipeline_config import RangeRule, ValidationRules

CHECK_GROUPS = ("schema", "not_null", "ranges", "allowed_values", "unique", "min_rows")

CHECK_DESCRIPTIONS: dict[str, str] = {
    "schema": "Every column named by the validation rules exists and has its declared type.",
    "not_null": "Required columns hold no null values.",
    "ranges": "Numeric columns stay within their declared bounds (nulls are not counted).",
    "allowed_values": "Categorical columns hold only values from their declared closed set (nulls are not counted).",
    "unique": "The entity key (or the declared unique columns) identifies at most one row per day (rows with a null key part are left to not_null).",
    "min_rows": "The data holds at least the declared minimum number of rows (per expected day when partitioned).",
}

MAX_EXAMPLES = 5
_MAX_DAYS_SHOWN = 5

_INT_DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
]  # fmt: skip
_FLOAT_DTYPES = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype"]
# Type lists for ExpectColumnValuesToBeInTypeList. On a typed column GX compares the dtype; on an
# object column it checks each non-null value against the native type ("int", "float", ...).
_GX_TYPE_LISTS: dict[str, list[str]] = {
    "int": [*_INT_DTYPES, "int"],
    "float": [*_INT_DTYPES, *_FLOAT_DTYPES, "int", "float"],
    "number": [*_INT_DTYPES, *_FLOAT_DTYPES, "int", "float"],
    "str": ["str", "StringDtype"],
    "bool": ["bool", "BooleanDtype"],
}


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule: what was expected, what was seen, and example rows."""

    check: str
    column: str | None
    rule: str
    observed: str
    unexpected_count: int
    examples: list[dict] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check group (one Dagster asset check)."""

    name: str
    passed: bool
    severity: str
    failures: list[RuleFailure]
    expectations: int

    def describe(self, rule_text: str) -> str:
        """The check's description in the UI: ``rule_text`` when it passed, else each broken rule."""
        if not self.failures:
            return rule_text
        parts = []
        for f in self.failures:
            days = _describe_days(f.partitions)
            where = f"column '{f.column}'" if f.column else "table"
            parts.append(f"{where}: {f.rule}: {f.observed}" + (f" on {days}" if days else ""))
        return "; ".join(parts)

    def to_check_metadata(self) -> dict[str, Any]:
        """Dagster metadata: counts, a markdown table of failures and the example rows."""
        if self.failures:
            rows = [
                "| column | rule | observed | days |",
                "| --- | --- | --- | --- |",
                *(
                    "| "
                    + " | ".join(
                        _md_cell(value)
                        for value in (
                            f.column or "(table)",
                            f.rule,
                            f.observed,
                            _describe_days(f.partitions) or "-",
                        )
                    )
                    + " |"
                    for f in self.failures
                ),
            ]
            table = "\n".join(rows)
        elif self.expectations:
            table = f"All {self.expectations} expectation(s) passed."
        else:
            table = "Nothing to check: no rule of this group applies."
        examples = {
            f"{f.column or '(table)'}: {f.rule}": f.examples for f in self.failures if f.examples
        }
        return {
            "expectations_evaluated": dg.MetadataValue.int(self.expectations),
            "failed": dg.MetadataValue.int(len(self.failures)),
            "unexpected_rows": dg.MetadataValue.int(sum(f.unexpected_count for f in self.failures)),
            "failures": dg.MetadataValue.md(table),
            "examples": dg.MetadataValue.json(examples),
        }


def format_failures(outcomes: dict[str, CheckOutcome], source: str) -> str:
    """One line per failed rule, naming the source, column, rule, what was seen and the days.

    Returns an empty string when every check passed.
    """
    lines = []
    for group in CHECK_GROUPS:
        outcome = outcomes.get(group)
        if outcome is None:
            continue
        tag = group if outcome.severity == "ERROR" else f"{group}, warn only"
        for failure in outcome.failures:
            where = f"column '{failure.column}': " if failure.column else ""
            line = f"{source}: [{tag}] {where}rule '{failure.rule}': {failure.observed}"
            values = _example_values(failure)
            if values:
                line += f" (e.g. {', '.join(values)})"
            days = _describe_days(failure.partitions)
            if days:
                line += f" on {days}"
            lines.append(line)
    return "\n".join(lines)


def validate_frame(
    df: pd.DataFrame,
    rules: ValidationRules,
    entity_key: list[str],
    source: str,
    partition_column: str | None = None,
    expected_partitions: list[str] | None = None,
) -> dict[str, CheckOutcome]:
    """Validate ``df`` against ``rules`` with Great Expectations; one outcome per check group.

    ``source`` labels the data in messages. With ``partition_column`` (a column of day keys) the
    uniqueness key is per day and failures list the days with bad rows; with ``expected_partitions``
    each of those days must hold at least ``rules.min_rows`` rows.
    """
    if partition_column is not None and partition_column not in df.columns:
        raise ValueError(f"{source}: partition column '{partition_column}' is not in the frame")
    frame = _Frame(df, entity_key, partition_column)
    plans: list[_Plan] = [
        *_schema_plans(frame, rules),
        *_not_null_plans(frame, rules),
        *_range_plans(frame, rules),
        *_allowed_value_plans(frame, rules),
        *_unique_plans(frame, rules),
        *_min_rows_plans(frame, rules, expected_partitions),
    ]
    # GX copies the frame it filters for each column rule: hand it only the columns the rules use.
    used = [c for c in [*_referenced_columns(frame, rules), partition_column] if c and frame.has(c)]
    results = _run_expectations(
        df[_unique_list(used)], [plan.expectation for plan in plans if plan.expectation is not None]
    )

    outcomes: dict[str, CheckOutcome] = {}
    for group in CHECK_GROUPS:
        group_plans = [plan for plan in plans if plan.group == group]
        failures = []
        for plan in group_plans:
            result = results.get(id(plan.expectation)) if plan.expectation is not None else None
            failure = plan.evaluate(_GxResult(result))
            if failure is not None:
                failures.append(failure)
        outcomes[group] = CheckOutcome(
            name=group,
            passed=not failures,
            severity="WARN" if group in rules.warn_only else "ERROR",
            failures=failures,
            expectations=sum(1 for plan in group_plans if plan.expectation is not None),
        )
    return outcomes


# --------------------------------------------------------------------------------------------------
# Great Expectations runtime (one ephemeral context per process)


@dataclass(frozen=True)
class _GxRuntime:
    gx: Any
    expectations: Any
    batch_definition: Any


_RUNTIME: _GxRuntime | None = None
_RUNTIME_LOCK = threading.Lock()
_VALIDATE_LOCK = threading.Lock()


def _gx_runtime() -> _GxRuntime:
    """The process-wide GX context, pandas datasource and whole-frame batch definition."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            import great_expectations.expectations as gxe
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            datasource = context.data_sources.add_pandas("ml_platform_validation")
            asset = datasource.add_dataframe_asset("frame")
            batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
            _RUNTIME = _GxRuntime(gx=gx, expectations=gxe, batch_definition=batch_definition)
        return _RUNTIME


def _expectation(kind: str, **kwargs: Any) -> Any:
    """An expectation of class ``kind`` (e.g. ``ExpectColumnToExist``)."""
    return getattr(_gx_runtime().expectations, kind)(**kwargs)


def _run_expectations(df: pd.DataFrame, expectations: list[Any]) -> dict[int, Any]:
    """Validate the frame against the expectations as one suite; results keyed by ``id(expectation)``."""
    if not expectations:
        return {}
    runtime = _gx_runtime()
    suite = runtime.gx.ExpectationSuite(name="ml_platform_validation")
    tagged = {}
    for index, expectation in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), "ml_platform_rule": index}
        suite.add_expectation(expectation)
        tagged[index] = expectation
    # Every frame gets the same batch id on the shared execution engine: one validation at a time.
    with _VALIDATE_LOCK:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": df})
        report = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES}
        )
    # GX does not keep the suite's order in the results: match them by the tag in ``meta``.
    return {
        id(tagged[result.expectation_config.meta["ml_platform_rule"]]): result
        for result in report.results
    }


class _GxResult:
    """Read-only view of one ExpectationValidationResult (or of none)."""

    def __init__(self, result: Any | None) -> None:
        self.raw = result

    @property
    def success(self) -> bool:
        return bool(self.raw is not None and self.raw.success)

    @property
    def details(self) -> dict[str, Any]:
        return dict(self.raw.result or {}) if self.raw is not None else {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self.details.get(key)
        return default if value is None else value

    @property
    def error(self) -> str | None:
        """The exception message when GX could not evaluate the expectation."""
        if self.raw is None:
            return None
        info = self.raw.exception_info or {}
        entries = [info] if "raised_exception" in info else list(info.values())
        for entry in entries:
            if isinstance(entry, dict) and entry.get("raised_exception"):
                return str(entry.get("exception_message") or "unknown error")
        return None


# --------------------------------------------------------------------------------------------------
# Rule plans: an optional GX expectation plus a function that turns its result into a failure


@dataclass
class _Plan:
    group: str
    expectation: Any | None
    evaluate: Callable[[_GxResult], RuleFailure | None]


class _Frame:
    """The frame under validation with helpers for masks, examples and partitions."""

    def __init__(self, df: pd.DataFrame, entity_key: list[str], partition_column: str | None):
        self.df = df
        self.rows = len(df)
        self.declared_entity_key = list(entity_key)
        self.entity_key = [c for c in entity_key if c in df.columns]
        self.partition_column = partition_column

    def has(self, column: str) -> bool:
        return column in self.df.columns

    def share(self, count: int, of: int | None = None, noun: str = "rows") -> str:
        total = self.rows if of is None else of
        percent = 100.0 * count / total if total else 0.0
        shown = "<0.01" if 0 < percent < 0.01 else f"{percent:.2f}"
        return f"{count} of {total} {noun} ({shown}%)"

    def examples(self, mask: pd.Series, columns: list[str], sort: list[str] | None = None) -> list[dict]:
        """Up to ``MAX_EXAMPLES`` bad rows: entity key, offending column(s), partition column."""
        wanted = _unique_list(
            [*self.entity_key, *columns, *([self.partition_column] if self.partition_column else [])]
        )
        bad = self.df.loc[mask, [c for c in wanted if self.has(c)]]
        if sort:
            try:
                bad = bad.sort_values(sort, kind="stable", na_position="last")
            except TypeError:  # mixed types in a key column: keep the frame's order
                pass
        return [
            {str(key): _jsonable(value) for key, value in row.items()}
            for row in bad.head(MAX_EXAMPLES).to_dict(orient="records")
        ]

    def partitions(self, mask: pd.Series) -> list[str]:
        if self.partition_column is None:
            return []
        values = self.df.loc[mask, self.partition_column].dropna().astype(str)
        return sorted(values.unique().tolist())

    def failure(
        self,
        check: str,
        column: str | None,
        rule: str,
        observed: str,
        count: int,
        mask: pd.Series | None = None,
        example_columns: list[str] | None = None,
        sort: list[str] | None = None,
    ) -> RuleFailure:
        examples, partitions = [], []
        if mask is not None:
            examples = self.examples(mask, example_columns or ([column] if column else []), sort)
            partitions = self.partitions(mask)
        return RuleFailure(
            check=check,
            column=column,
            rule=rule,
            observed=observed,
            unexpected_count=int(count),
            examples=examples,
            partitions=partitions,
        )


def _referenced_columns(frame: _Frame, rules: ValidationRules) -> list[str]:
    return _unique_list(
        [
            *rules.columns,
            *rules.not_null,
            *rules.ranges,
            *rules.allowed_values,
            *_unique_key(frame, rules),
        ]
    )


def _schema_plans(frame: _Frame, rules: ValidationRules) -> list[_Plan]:
    plans = []
    for column in _referenced_columns(frame, rules):
        plans.append(
            _Plan("schema", _expectation("ExpectColumnToExist", column=column), _exists_check(frame, column))
        )
    for column, kind in rules.columns.items():
        if not frame.has(column):
            continue  # reported by the existence rule
        expectation = None
        if kind in _GX_TYPE_LISTS:
            expectation = _expectation(
                "ExpectColumnValuesToBeInTypeList", column=column, type_list=_GX_TYPE_LISTS[kind]
            )
        plans.append(_Plan("schema", expectation, _type_check(frame, column, kind)))
    return plans


def _exists_check(frame: _Frame, column: str) -> Callable[[_GxResult], RuleFailure | None]:
    def evaluate(result: _GxResult) -> RuleFailure | None:
        if result.success:
            return None
        observed = "column missing"
        if frame.has(column):  # GX could not evaluate it; never claim a present column is missing
            observed = f"not evaluated: {result.error or 'GX reported no result'}"
        return frame.failure("schema", column, "column exists", observed, frame.rows)

    return evaluate


def _dtype_verdict(series: pd.Series, kind: str) -> bool | None:
    """Whether the dtype satisfies ``kind``; None when only the values can tell (object dtype)."""
    from pandas.api import types as pdt

    dtype = series.dtype
    if pdt.is_object_dtype(dtype):
        return None
    if kind == "int":
        return pdt.is_integer_dtype(dtype) and not pdt.is_bool_dtype(dtype)
    if kind in ("float", "number"):
        return pdt.is_numeric_dtype(dtype) and not pdt.is_bool_dtype(dtype) and not pdt.is_complex_dtype(dtype)
    if kind == "bool":
        return pdt.is_bool_dtype(dtype)
    if kind == "str":
        return pdt.is_string_dtype(dtype)
    if kind == "datetime":
        if pdt.is_datetime64_any_dtype(dtype):
            return True
        return None if pdt.is_string_dtype(dtype) else False
    return False


def _value_matches(kind: str) -> Callable[[Any], bool]:
    """Python-level predicate for one non-null value of an object column (mirrors GX's map check)."""
    import numpy as np

    accepted = {
        "int": (int, np.integer),
        "float": (int, float, np.integer, np.floating),
        "number": (int, float, np.integer, np.floating),
        "str": (str,),
        "bool": (bool, np.bool_),
    }[kind]
    return lambda value: isinstance(value, accepted)


def _type_check(frame: _Frame, column: str, kind: str) -> Callable[[_GxResult], RuleFailure | None]:
    rule = f"type is {kind}"

    def evaluate(result: _GxResult) -> RuleFailure | None:
        series = frame.df[column]
        present = series.notna()
        values = int(present.sum())
        if values == 0:
            return None  # no values, nothing contradicts the type (not_null reports empty columns)
        dtype = str(series.dtype)
        if kind == "datetime":
            return _datetime_check(frame, column, series, present, rule)
        verdict = _dtype_verdict(series, kind)
        if verdict is True:
            return None
        if verdict is False:
            observed = f"dtype {dtype}"
            gx_type = result.get("observed_value")
            if gx_type and gx_type not in dtype:
                observed += f" (GX: {gx_type})"
            return frame.failure("schema", column, rule, observed, values, present)
        # Object dtype: the values decide. GX checks each one against the native type.
        if result.error:
            return frame.failure(
                "schema", column, rule, f"dtype {dtype}; not evaluated: {result.error}", values, present
            )
        if result.success:
            return None
        matches = _value_matches(kind)
        bad = present & ~series.map(matches, na_action="ignore").fillna(True).astype(bool)
        count = int(result.get("unexpected_count", int(bad.sum())))
        observed = f"dtype {dtype}; " + frame.share(count, values, "non-null values") + f" are not {kind}"
        return frame.failure("schema", column, rule, observed, count, bad if bad.any() else present)

    return evaluate


def _datetime_check(
    frame: _Frame, column: str, series: pd.Series, present: pd.Series, rule: str
) -> RuleFailure | None:
    """datetime64 dtype, or strings that all parse as ISO-8601 datetimes."""
    import pandas as pd

    verdict = _dtype_verdict(series, "datetime")
    dtype = str(series.dtype)
    if verdict is True:
        return None
    if verdict is False:
        return frame.failure("schema", column, rule, f"dtype {dtype}", int(present.sum()), present)
    parsed = pd.to_datetime(series.where(present), utc=True, format="ISO8601", errors="coerce")
    bad = present & parsed.isna()
    if not bad.any():
        return None
    observed = (
        f"dtype {dtype}; "
        + frame.share(int(bad.sum()), int(present.sum()), "non-null values")
        + " do not parse as ISO-8601 datetimes"
    )
    return frame.failure("schema", column, rule, observed, int(bad.sum()), bad)


def _not_null_plans(frame: _Frame, rules: ValidationRules) -> list[_Plan]:
    plans = []
    for column in _unique_list(rules.not_null):
        if not frame.has(column):
            continue

        def evaluate(result: _GxResult, column: str = column) -> RuleFailure | None:
            if result.success:
                return None
            if result.error:
                return frame.failure("not_null", column, "not null", f"not evaluated: {result.error}", 0)
            mask = frame.df[column].isna()
            count = int(result.get("unexpected_count", int(mask.sum())))
            return frame.failure("not_null", column, "not null", frame.share(count) + " null", count, mask)

        plans.append(_Plan("not_null", _expectation("ExpectColumnValuesToNotBeNull", column=column), evaluate))
    return plans


def _range_text(column: str, bounds: RangeRule) -> str:
    parts = []
    if bounds.min is not None:
        parts.append(f"{'>' if bounds.strict_min else '>='} {_num(bounds.min)}")
    if bounds.max is not None:
        parts.append(f"{'<' if bounds.strict_max else '<='} {_num(bounds.max)}")
    return f"{column} " + " and ".join(parts)


def _is_numeric(series: pd.Series) -> bool:
    from pandas.api import types as pdt

    return pdt.is_numeric_dtype(series.dtype) and not pdt.is_bool_dtype(series.dtype)


def _range_plans(frame: _Frame, rules: ValidationRules) -> list[_Plan]:
    plans = []
    for column, bounds in rules.ranges.items():
        if not frame.has(column):
            continue
        rule = _range_text(column, bounds)
        series = frame.df[column]
        present = series.notna()
        if not _is_numeric(series):

            def not_numeric(_: _GxResult, column: str = column, rule: str = rule, present=present):
                values = int(present.sum())
                if values == 0:
                    return None  # no values to compare
                observed = f"not numeric (dtype {frame.df[column].dtype})"
                return frame.failure("ranges", column, rule, observed, values, present)

            plans.append(_Plan("ranges", None, not_numeric))
            continue

        def evaluate(
            result: _GxResult, column: str = column, rule: str = rule, bounds: RangeRule = bounds
        ) -> RuleFailure | None:
            if result.success:
                return None
            if result.error:
                return frame.failure("ranges", column, rule, f"not evaluated: {result.error}", 0)
            series = frame.df[column]
            mask = series.notna() & ~_within(series, bounds)
            count = int(result.get("unexpected_count", int(mask.sum())))
            observed = (
                frame.share(count)
                + f" out of range; min {_num(series.min())}, max {_num(series.max())}"
            )
            return frame.failure("ranges", column, rule, observed, count, mask)

        expectation = _expectation(
            "ExpectColumnValuesToBeBetween",
            column=column,
            min_value=bounds.min,
            max_value=bounds.max,
            strict_min=bounds.strict_min,
            strict_max=bounds.strict_max,
        )
        plans.append(_Plan("ranges", expectation, evaluate))
    return plans


def _within(series: pd.Series, bounds: RangeRule) -> pd.Series:
    ok = series.notna()
    if bounds.min is not None:
        ok &= series > bounds.min if bounds.strict_min else series >= bounds.min
    if bounds.max is not None:
        ok &= series < bounds.max if bounds.strict_max else series <= bounds.max
    return ok.fillna(False).astype(bool)


def _allowed_value_plans(frame: _Frame, rules: ValidationRules) -> list[_Plan]:
    plans = []
    for column, allowed in rules.allowed_values.items():
        if not frame.has(column):
            continue
        rule = "in [" + ", ".join(str(v) for v in allowed) + "]"

        def evaluate(
            result: _GxResult, column: str = column, rule: str = rule, allowed: list = allowed
        ) -> RuleFailure | None:
            if result.success:
                return None
            if result.error:
                return frame.failure("allowed_values", column, rule, f"not evaluated: {result.error}", 0)
            series = frame.df[column]
            mask = series.notna() & ~series.isin(allowed)
            count = int(result.get("unexpected_count", int(mask.sum())))
            counts = result.get("partial_unexpected_counts") or [
                {"value": value, "count": int(n)}
                for value, n in series[mask].value_counts().head(MAX_EXAMPLES).items()
            ]
            seen = ", ".join(f"{item['value']!r} ({item['count']})" for item in counts)
            observed = frame.share(count) + f" not in the set: {seen}"
            return frame.failure("allowed_values", column, rule, observed, count, mask)

        expectation = _expectation("ExpectColumnValuesToBeInSet", column=column, value_set=list(allowed))
        plans.append(_Plan("allowed_values", expectation, evaluate))
    return plans


def _unique_key(frame: _Frame, rules: ValidationRules) -> list[str]:
    """The declared unique columns, else the entity key (as declared, missing columns included)."""
    return _unique_list(list(rules.unique) or frame.declared_entity_key)


def _unique_plans(frame: _Frame, rules: ValidationRules) -> list[_Plan]:
    key = _unique_key(frame, rules)
    if not key or any(not frame.has(column) for column in key):
        return []  # nothing declared, or a key column is missing (reported by schema)
    columns = list(key)
    partition = frame.partition_column
    if partition is not None and partition not in columns:
        columns.append(partition)
    label = ", ".join(key)
    rule = f"unique {'per day ' if partition is not None else ''}on ({label})"

    def evaluate(result: _GxResult) -> RuleFailure | None:
        if result.success:
            return None
        if result.error:
            return frame.failure("unique", label, rule, f"not evaluated: {result.error}", 0)
        keys = frame.df[columns]
        considered = keys.notna().all(axis=1)  # rows with an incomplete key are not_null's business
        mask = considered & keys.duplicated(keep=False)
        count = int(result.get("unexpected_count", int(mask.sum())))
        duplicated_keys = int(keys[mask].drop_duplicates().shape[0])
        observed = frame.share(count) + f" share a key with another row ({duplicated_keys} duplicated keys)"
        return frame.failure("unique", label, rule, observed, count, mask, columns, sort=columns)

    if len(columns) == 1:
        expectation = _expectation("ExpectColumnValuesToBeUnique", column=columns[0])
    else:
        expectation = _expectation(
            "ExpectCompoundColumnsToBeUnique", column_list=columns, ignore_row_if="any_value_is_missing"
        )
    return [_Plan("unique", expectation, evaluate)]


def _min_rows_plans(
    frame: _Frame, rules: ValidationRules, expected_partitions: list[str] | None
) -> list[_Plan]:
    minimum = rules.min_rows
    if minimum <= 0:
        return []
    noun = "row" if minimum == 1 else "rows"
    rule = f"at least {minimum} {noun}"

    def short_partitions() -> dict[str, int]:
        if not expected_partitions or frame.partition_column is None:
            return {}
        counts = frame.df[frame.partition_column].astype(str).value_counts()
        return {
            day: int(counts.get(day, 0))
            for day in expected_partitions
            if int(counts.get(day, 0)) < minimum
        }

    def evaluate(result: _GxResult) -> RuleFailure | None:
        short = short_partitions()
        observed_rows = int(result.get("observed_value", frame.rows))
        if not result.success:
            if frame.partition_column is not None and expected_partitions:
                days = sorted(short)
            else:
                days = list(expected_partitions or [])
            observed = f"{observed_rows} {'row' if observed_rows == 1 else 'rows'}"
            if result.error:
                observed = f"not evaluated: {result.error}"
            return RuleFailure(
                check="min_rows",
                column=None,
                rule=rule,
                observed=observed,
                unexpected_count=max(minimum - observed_rows, 0),
                examples=[{"partition": day, "rows": short[day]} for day in days[:MAX_EXAMPLES] if day in short],
                partitions=days,
            )
        if not short:
            return None
        days = sorted(short)
        listed = ", ".join(f"{day} ({short[day]})" for day in days[:_MAX_DAYS_SHOWN])
        more = f" and {len(days) - _MAX_DAYS_SHOWN} more" if len(days) > _MAX_DAYS_SHOWN else ""
        observed = (
            f"{len(days)} of {len(expected_partitions or [])} expected days have fewer rows: {listed}{more}"
        )
        return RuleFailure(
            check="min_rows",
            column=None,
            rule=f"{rule} per day",
            observed=observed,
            unexpected_count=len(days),
            examples=[{"partition": day, "rows": short[day]} for day in days[:MAX_EXAMPLES]],
            partitions=days,
        )

    expectation = _expectation("ExpectTableRowCountToBeBetween", min_value=minimum)
    return [_Plan("min_rows", expectation, evaluate)]


# --------------------------------------------------------------------------------------------------
# Small helpers


def _unique_list(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _num(value: Any) -> str:
    """A number without a pointless ``.0``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return str(number)
    return f"{number:g}" if number != int(number) or abs(number) >= 1e15 else str(int(number))


def _jsonable(value: Any) -> Any:
    """A plain JSON value (None for nulls, Python scalars, ISO strings for timestamps)."""
    import pandas as pd

    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _describe_days(days: list[str]) -> str:
    if not days:
        return ""
    shown = ", ".join(days[:_MAX_DAYS_SHOWN])
    if len(days) > _MAX_DAYS_SHOWN:
        shown += f" and {len(days) - _MAX_DAYS_SHOWN} more days"
    return shown


def _example_values(failure: RuleFailure) -> list[str]:
    """The offending column's values in the example rows, for one-line messages."""
    column = failure.column
    if column is None or "," in column:
        return []
    values = [row[column] for row in failure.examples if column in row]
    shown = []
    for value in _unique_values(values)[:3]:
        if isinstance(value, str):
            shown.append(repr(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown.append(_num(value))
        else:
            shown.append(str(value))
    return shown


def _unique_values(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
