"""The validation rules of a source, each a plan: an optional Great Expectations expectation plus a
function that turns its result into a ``RuleFailure`` (what was expected, what was seen, example rows
and the days with bad rows).

GX result objects do not always carry the offending rows (GX issues #10741, #11468), so every rule
also has a pandas mask that mirrors it: example rows and the partitions (days) with bad rows come
from the mask, counts from GX where GX reports them. Type rules GX cannot express (ISO-8601 datetime
strings, dtypes GX does not know such as pyarrow or nullable extension types) are judged in pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_assets.ingest.formatting import (
    MAX_DAYS_SHOWN,
    format_number,
    jsonable,
    unique_list,
)
from ml_assets.ingest.gx import MAX_EXAMPLES, GxResult, new_expectation

if TYPE_CHECKING:
    import pandas as pd

    from ml_assets.config.tabular import RangeRule, ValidationRules










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


@dataclass
class Plan:
    group: str
    expectation: Any | None
    evaluate: Callable[[GxResult], RuleFailure | None]


class Frame:
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
        wanted = unique_list(
            [*self.entity_key, *columns, *([self.partition_column] if self.partition_column else [])]
        )
        bad = self.df.loc[mask, [c for c in wanted if self.has(c)]]
        if sort:
            try:
                bad = bad.sort_values(sort, kind="stable", na_position="last")
            except TypeError:  # mixed types in a key column: keep the frame's order
                pass
        return [
            {str(key): jsonable(value) for key, value in row.items()}
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


def referenced_columns(frame: Frame, rules: ValidationRules) -> list[str]:
    return unique_list(
        [
            *rules.columns,
            *rules.not_null,
            *rules.ranges,
            *rules.allowed_values,
            *_unique_key(frame, rules),
        ]
    )














def not_null_plans(frame: Frame, rules: ValidationRules) -> list[Plan]:
    plans = []
    for column in unique_list(rules.not_null):
        if not frame.has(column):
            continue

        def evaluate(result: GxResult, column: str = column) -> RuleFailure | None:
            if result.success:
                return None
            if result.error:
                return frame.failure("not_null", column, "not null", f"not evaluated: {result.error}", 0)
            mask = frame.df[column].isna()
            count = int(result.get("unexpected_count", int(mask.sum())))
            return frame.failure("not_null", column, "not null", frame.share(count) + " null", count, mask)

        plans.append(Plan("not_null", new_expectation("ExpectColumnValuesToNotBeNull", column=column), evaluate))
    return plans


def _range_text(column: str, bounds: RangeRule) -> str:
    parts = []
    if bounds.min is not None:
        parts.append(f"{'>' if bounds.strict_min else '>='} {format_number(bounds.min)}")
    if bounds.max is not None:
        parts.append(f"{'<' if bounds.strict_max else '<='} {format_number(bounds.max)}")
    return f"{column} " + " and ".join(parts)


def _is_numeric(series: pd.Series) -> bool:
    from pandas.api import types as pdt

    return pdt.is_numeric_dtype(series.dtype) and not pdt.is_bool_dtype(series.dtype)


def range_plans(frame: Frame, rules: ValidationRules) -> list[Plan]:
    plans = []
    for column, bounds in rules.ranges.items():
        if not frame.has(column):
            continue
        rule = _range_text(column, bounds)
        series = frame.df[column]
        present = series.notna()
        if not _is_numeric(series):

            def not_numeric(_: GxResult, column: str = column, rule: str = rule, present=present):
                values = int(present.sum())
                if values == 0:
                    return None  # no values to compare
                observed = f"not numeric (dtype {frame.df[column].dtype})"
                return frame.failure("ranges", column, rule, observed, values, present)

            plans.append(Plan("ranges", None, not_numeric))
            continue

        def evaluate(
            result: GxResult, column: str = column, rule: str = rule, bounds: RangeRule = bounds
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
                + f" out of range; min {format_number(series.min())}, max {format_number(series.max())}"
            )
            return frame.failure("ranges", column, rule, observed, count, mask)

        expectation = new_expectation(
            "ExpectColumnValuesToBeBetween",
            column=column,
            min_value=bounds.min,
            max_value=bounds.max,
            strict_min=bounds.strict_min,
            strict_max=bounds.strict_max,
        )
        plans.append(Plan("ranges", expectation, evaluate))
    return plans


def _within(series: pd.Series, bounds: RangeRule) -> pd.Series:
    ok = series.notna()
    if bounds.min is not None:
        ok &= series > bounds.min if bounds.strict_min else series >= bounds.min
    if bounds.max is not None:
        ok &= series < bounds.max if bounds.strict_max else series <= bounds.max
    return ok.fillna(False).astype(bool)


def allowed_value_plans(frame: Frame, rules: ValidationRules) -> list[Plan]:
    plans = []
    for column, allowed in rules.allowed_values.items():
        if not frame.has(column):
            continue
        rule = "in [" + ", ".join(str(v) for v in allowed) + "]"

        def evaluate(
            result: GxResult, column: str = column, rule: str = rule, allowed: list = allowed
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

        expectation = new_expectation("ExpectColumnValuesToBeInSet", column=column, value_set=list(allowed))
        plans.append(Plan("allowed_values", expectation, evaluate))
    return plans


def _unique_key(frame: Frame, rules: ValidationRules) -> list[str]:
    """The declared unique columns, else the entity key (as declared, missing columns included)."""
    return unique_list(list(rules.unique) or frame.declared_entity_key)


def unique_plans(frame: Frame, rules: ValidationRules) -> list[Plan]:
    key = _unique_key(frame, rules)
    if not key or any(not frame.has(column) for column in key):
        return []  # nothing declared, or a key column is missing (reported by schema)
    columns = list(key)
    partition = frame.partition_column
    if partition is not None and partition not in columns:
        columns.append(partition)
    label = ", ".join(key)
    rule = f"unique {'per day ' if partition is not None else ''}on ({label})"

    def evaluate(result: GxResult) -> RuleFailure | None:
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
        expectation = new_expectation("ExpectColumnValuesToBeUnique", column=columns[0])
    else:
        expectation = new_expectation(
            "ExpectCompoundColumnsToBeUnique", column_list=columns, ignore_row_if="any_value_is_missing"
        )
    return [Plan("unique", expectation, evaluate)]


def min_rows_plans(
    frame: Frame, rules: ValidationRules, expected_partitions: list[str] | None
) -> list[Plan]:
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

    def evaluate(result: GxResult) -> RuleFailure | None:
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
        listed = ", ".join(f"{day} ({short[day]})" for day in days[:MAX_DAYS_SHOWN])
        more = f" and {len(days) - MAX_DAYS_SHOWN} more" if len(days) > MAX_DAYS_SHOWN else ""
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

    expectation = new_expectation("ExpectTableRowCountToBeBetween", min_value=minimum)
    return [Plan("min_rows", expectation, evaluate)]














