"""Great Expectations validation of one raw data frame, with the suite built from ``ValidationRules``.

``validate_frame`` turns the validation section of a pipeline source into one GX 1.x expectation
suite (``ml_assets.ingest.rules``), runs it on the frame through an ephemeral context
(``ml_assets.ingest.gx``) and groups the results into one ``CheckOutcome`` per check group
(``CHECK_GROUPS``): each becomes a blocking Dagster asset check on the raw asset.

Great Expectations, pandas and numpy are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_assets.ingest.formatting import (
    describe_days,
    example_values,
    unique_list,
)
from ml_assets.ingest.gx import GxResult, run_expectations
from ml_assets.ingest.rules import (
    Frame,
    Plan,
    RuleFailure,
    allowed_value_plans,
    min_rows_plans,
    not_null_plans,
    range_plans,
    referenced_columns,
    unique_plans,
)
from ml_assets.ingest.schema import schema_plans

if TYPE_CHECKING:
    import pandas as pd

    from ml_assets.config.tabular import ValidationRules


CHECK_GROUPS = ("schema", "not_null", "ranges", "allowed_values", "unique", "min_rows")


CHECK_DESCRIPTIONS: dict[str, str] = {
    "schema": "Every column named by the validation rules exists and has its declared type.",
    "not_null": "Required columns hold no null values.",
    "ranges": "Numeric columns stay within their declared bounds (nulls are not counted).",
    "allowed_values": "Categorical columns hold only values from their declared closed set (nulls are not counted).",
    "unique": "The entity key (or the declared unique columns) identifies at most one row per day (rows with a null key part are left to not_null).",
    "min_rows": "The data holds at least the declared minimum number of rows (per expected day when partitioned).",
}


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
            days = describe_days(f.partitions)
            where = f"column '{f.column}'" if f.column else "table"
            parts.append(f"{where}: {f.rule}: {f.observed}" + (f" on {days}" if days else ""))
        return "; ".join(parts)

    @property
    def unexpected_rows(self) -> int:
        return sum(f.unexpected_count for f in self.failures)

    def failure_rows(self) -> list[dict[str, str]]:
        """One row per failed rule: column, rule, what was observed and the days."""
        return [
            {"column": f.column or "(table)", "rule": f.rule, "observed": f.observed,
             "days": describe_days(f.partitions) or "-"}
            for f in self.failures
        ]

    def summary(self) -> str:
        """A sentence when nothing failed (how many expectations passed, or that none applies)."""
        if self.expectations:
            return f"All {self.expectations} expectation(s) passed."
        return "Nothing to check: no rule of this group applies."

    def examples(self) -> dict[str, list[dict]]:
        """Example bad rows per failed rule (``"<column>: <rule>"``)."""
        return {f"{f.column or '(table)'}: {f.rule}": f.examples for f in self.failures if f.examples}


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
            values = example_values(failure)
            if values:
                line += f" (e.g. {', '.join(values)})"
            days = describe_days(failure.partitions)
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
    required: dict[str, str] | None = None,
) -> dict[str, CheckOutcome]:
    """Validate ``df`` against ``rules`` with Great Expectations; one outcome per check group.

    ``source`` labels the data in messages. With ``partition_column`` (a column of day keys) the
    uniqueness key is per day and failures list the days with bad rows; with ``expected_partitions``
    each of those days must hold at least ``rules.min_rows`` rows. ``required`` columns (``{column:
    where the pipeline needs it}``) must exist too: the schema check names the YAML key.
    """
    if partition_column is not None and partition_column not in df.columns:
        raise ValueError(f"{source}: partition column '{partition_column}' is not in the frame")
    frame = Frame(df, entity_key, partition_column)
    plans: list[Plan] = [
        *schema_plans(frame, rules, required),
        *not_null_plans(frame, rules),
        *range_plans(frame, rules),
        *allowed_value_plans(frame, rules),
        *unique_plans(frame, rules),
        *min_rows_plans(frame, rules, expected_partitions),
    ]
    # GX copies the frame it filters for each column rule: hand it only the columns the rules use.
    used = [c for c in [*referenced_columns(frame, rules), partition_column] if c and frame.has(c)]
    results = run_expectations(
        df[unique_list(used)], [plan.expectation for plan in plans if plan.expectation is not None]
    )

    outcomes: dict[str, CheckOutcome] = {}
    for group in CHECK_GROUPS:
        group_plans = [plan for plan in plans if plan.group == group]
        failures = []
        for plan in group_plans:
            result = results.get(id(plan.expectation)) if plan.expectation is not None else None
            failure = plan.evaluate(GxResult(result))
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


def outcomes_by_day(
    outcomes: dict[str, CheckOutcome], days: list[str], validate_day
) -> dict[str, dict[str, CheckOutcome]]:
    """Each day's own outcomes, from ``outcomes`` of the whole range validated as one frame.

    A day that a failed rule names is validated again alone (``validate_day(day)``), so its
    outcomes are what a run of that one day records; every other day passes each group with the
    range's expectations, except for failures of the whole table (a missing column, a wrong type:
    they name no day), which every day shares.
    """
    named = {day for outcome in outcomes.values() for failure in outcome.failures for day in failure.partitions}
    by_day: dict[str, dict[str, CheckOutcome]] = {}
    for day in days:
        if day in named:
            by_day[day] = validate_day(day)
            continue
        by_day[day] = {}
        for group, outcome in outcomes.items():
            table = [failure for failure in outcome.failures if not failure.partitions]
            by_day[day][group] = CheckOutcome(
                name=group, passed=not table, severity=outcome.severity, failures=table,
                expectations=outcome.expectations,
            )
    return by_day
