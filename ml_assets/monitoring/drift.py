"""Daily drift of a pipeline's features and predictions against a reference, with thresholds
calibrated on the reference period's own variation, as a retraining trigger.

Pure library (no Dagster assets). Only the standard library is imported at module level: pandas,
numpy and evidently are imported inside the functions, so the Dagster code location stays cheap to
import.

Typical use::

    reference = build_reference(window_rows_with_scores, DriftColumns(numeric, categorical, "y_score"))
    reference = calibrate_thresholds(reference, window_rows_with_scores, DriftConfig(), day_column="partition_date")
    result = compute_drift(reference, features_of_the_day, DriftConfig())
    result.data_drift, result.drifted_columns, result.prediction_drift, result.missing_columns
    render_html(reference, features_of_the_day, DriftConfig(), "drift.html")  # on request only

Why these methods (measured on the flights pipeline, ``bench/drift_calibration.py``: 2013 features and
predictions, reference = a 20,000-row sample of 2013-01-01..2013-08-31, every day of 2013 against it):

* Evidently's defaults (p-value tests, drift_share 0.5) flag half the columns on 86% of days: with
  ~900 rows against 20,000 every small difference is "significant". We use effect sizes instead:
  normalized Wasserstein distance (distance in reference standard deviations) for numeric columns and
  Jensen-Shannon distance for categorical ones, with per-column thresholds set above the largest
  value seen on ordinary 2013 days.
* Weather is one set of hourly readings per airport per day: a single day's temperature, dew point,
  humidity, pressure or wind is always far from a multi-month pool (median normalized Wasserstein
  0.5-1.0 on every day of the year, also inside the training window), i.e. they differ by
  construction, like month or weekday. They are left out. Weather is monitored through the two
  shift-robust columns whose ordinary-day distribution does not depend on the season: ``visib``
  (capped at 10 miles, clear on most hours; compared as categorical over its reported values) and
  ``precip`` (zero on most hours). A feed or unit
  problem (visibility halved, precipitation offset) moves them far beyond ordinary days; genuine
  storms (2013-03-08 snow, fog days) also show up, and are listed by the calibration.
* Calendar columns (month, weekday, day of year) are left out: one value per day.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: Fallback thresholds for a column that has neither a YAML threshold nor a calibrated one (a
#: reference built without calibration): 0.25 reference standard deviations (normalized Wasserstein),
#: Jensen-Shannon distance 0.15, prediction scores 1.5 standard deviations.
FALLBACK_NUMERIC_THRESHOLD = 0.25
FALLBACK_CATEGORICAL_THRESHOLD = 0.15
FALLBACK_PREDICTION_THRESHOLD = 1.5

#: Evidently 0.7 imports litestar and its own legacy modules lazily while it runs a report; both
#: warn of their own deprecations (litestar's Dependency, numpy.core). Silenced by exact message
#: around Evidently calls only; every other warning still shows.
EVIDENTLY_IMPORT_WARNINGS = (
    r"Call to deprecated function 'Dependency'",
    r"Use of deprecated class 'DependencyKwarg'",
    r"numpy\.core(\.numeric)? is deprecated",
)


@contextmanager
def evidently_import_warnings_silenced() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        for message in EVIDENTLY_IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        yield


# Methods where a larger score means more drift (effect sizes). Any other Evidently method is
# treated as a p-value: drift when score < threshold.
DISTANCE_METHODS = frozenset({"wasserstein", "psi", "jensenshannon", "kl_div", "hellinger", "ed"})

@dataclass(frozen=True)
class DriftColumns:
    """Which columns are compared. ``prediction`` is compared separately (prediction drift) and is
    optional: when the reference or the current frame lacks it, prediction drift is not computed."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    prediction: str | None = None

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.numeric) + tuple(self.categorical)

    def type_of(self, column: str) -> str:
        if column in self.categorical:
            return "categorical"
        return "numeric"


@dataclass(frozen=True)
class DriftConfig:
    """How drift is scored and when it alarms. Nothing here is specific to a data set: a column's
    threshold is the YAML's (``thresholds``, then ``numeric_threshold`` / ``categorical_threshold`` /
    ``prediction_threshold``), else the one calibrated on the reference period
    (``calibrate_thresholds``), else a fallback.

    numeric_method / categorical_method:
        Evidently stat-test names. "wasserstein" (normalized: distance in reference std units) and
        "jensenshannon" are effect sizes that do not grow with the sample size, unlike the default
        p-value tests (which flag half the columns on 86% of 2013 flight days).
    share_threshold:
        ``data_drift`` when share_drifted >= this (0.1: any one of up to 10 columns). Each threshold
        is already above ordinary variation, and a retraining trigger must react to a single broken
        column (a doubled distance or a carrier-mix change drift one column only).
    calibration_quantile / calibration_margin / calibration_chunks / chunk_rows / min_chunk_rows:
        The calibration (``calibrate_thresholds``): every day of the reference period (up to
        ``calibration_chunks``; a sample of 30 days estimates the 95th percentile too poorly), or
        equal row chunks of ``chunk_rows`` (default the period split in ``calibration_chunks``, at
        least ``min_chunk_rows``), each scored against the period without it; a column's threshold
        is ``margin`` x the ``quantile`` of its chunk scores, for a bounded distance at most halfway
        to the bound. Measured on flights 2013 and Minneapolis 2017: ``bench/drift_calibration.py``.
    min_numeric_threshold / min_categorical_threshold / min_prediction_threshold:
        The smallest calibrated threshold of each type (a minimum effect worth an alarm; 0: none).
    max_current_rows:
        A current partition above this is sampled down (``seed``, deterministic) before scoring.
        Scores are effect sizes, so sampling changes them only by sampling noise; it bounds the
        runtime (about 0.3 s for 900 rows, 0.45 s for 20,000 rows against 20,000 reference rows).
    """

    numeric_method: str = "wasserstein"
    categorical_method: str = "jensenshannon"
    numeric_threshold: float | None = None
    categorical_threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    share_threshold: float = 0.1
    prediction_method: str = "wasserstein"
    prediction_threshold: float | None = None
    max_current_rows: int = 20_000
    seed: int = 0
    calibration_quantile: float = 0.95
    calibration_margin: float = 1.5
    calibration_chunks: int = 365
    chunk_rows: int | None = None
    min_chunk_rows: int = 50
    min_numeric_threshold: float = 0.0
    min_categorical_threshold: float = 0.0
    min_prediction_threshold: float = 0.0

    def min_threshold_for(self, column_type: str) -> float:
        """The smallest calibrated threshold of a column type (the minimum effect worth an alarm)."""
        if column_type == "prediction":
            return self.min_prediction_threshold
        return self.min_categorical_threshold if column_type == "categorical" else self.min_numeric_threshold

    def method_for(self, column_type: str) -> str:
        return self.categorical_method if column_type == "categorical" else self.numeric_method

    def threshold_for(self, column: str, column_type: str, calibrated: Mapping[str, float] | None = None) -> float:
        """The YAML's threshold for ``column`` (per column, then per type), else the one calibrated on
        the reference, else the fallback of the type."""
        if column in self.thresholds:
            return float(self.thresholds[column])
        if column_type == "prediction":
            own, fallback = self.prediction_threshold, FALLBACK_PREDICTION_THRESHOLD
        elif column_type == "categorical":
            own, fallback = self.categorical_threshold, FALLBACK_CATEGORICAL_THRESHOLD
        else:
            own, fallback = self.numeric_threshold, FALLBACK_NUMERIC_THRESHOLD
        if own is not None:
            return float(own)
        if calibrated and column in calibrated:
            return float(calibrated[column])
        return fallback


@dataclass
class Reference:
    """A fixed-size sample of the reference window plus per-column statistics (stored pickled)."""

    columns: DriftColumns
    sample: Any  # pandas.DataFrame
    stats: dict[str, dict[str, Any]]
    source_rows: int
    seed: int
    #: thresholds calibrated on the reference period's own variation (``calibrate_thresholds``)
    thresholds: dict[str, float] = field(default_factory=dict)
    #: how: chunks compared, quantile, margin and each column's chunk scores (p50 / quantile / max)
    calibration: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    type: str  # numeric / categorical / prediction
    method: str
    score: float | None  # None when the column is entirely null in the current data
    threshold: float
    drifted: bool
    current_rows: int
    missing_share: float


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    share_drifted: float
    data_drift: bool
    prediction_score: float | None
    prediction_drift: bool
    missing_columns: list[str]
    current_rows: int  # rows of the partition before sampling
    sampled_rows: int  # rows actually compared (<= max_current_rows)
    seconds: float
    prediction: ColumnDrift | None = None

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_frame(self):
        import pandas as pd

        rows = [asdict(c) for c in self.columns]
        if self.prediction is not None:
            rows.append(asdict(self.prediction))
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for Dagster metadata)."""
        return {
            "share_drifted": self.share_drifted, "data_drift": self.data_drift,
            "drifted_columns": self.drifted_columns, "missing_columns": self.missing_columns,
            "prediction_score": self.prediction_score, "prediction_drift": self.prediction_drift,
            "current_rows": self.current_rows, "sampled_rows": self.sampled_rows,
            "seconds": round(self.seconds, 3),
            "columns": {c.column: {"score": c.score, "threshold": c.threshold, "drifted": c.drifted,
                                   "method": c.method, "missing_share": c.missing_share}
                        for c in self.columns},
        }


# ---------------------------------------------------------------------------------------- helpers


def _normalize(frame, columns: DriftColumns, present: list[str]):
    """Only the compared columns; categoricals as strings (NaN kept), numerics as float."""
    import pandas as pd

    out = pd.DataFrame(index=range(len(frame)))
    for c in present:
        values = frame[c].reset_index(drop=True)
        if c in columns.categorical:
            out[c] = values.astype("object").where(values.notna(), None).map(
                lambda v: v if v is None else str(v))
        else:
            out[c] = pd.to_numeric(values, errors="coerce").astype("float64")
    return out


def _column_stats(series, column_type: str) -> dict[str, Any]:
    stats: dict[str, Any] = {"rows": int(len(series)), "missing_share": float(series.isna().mean())}
    values = series.dropna()
    if column_type == "categorical":
        shares = values.value_counts(normalize=True)
        stats.update({"levels": int(len(shares)),
                      "top": {str(k): round(float(v), 5) for k, v in shares.head(20).items()}})
    elif len(values):
        stats.update({k: float(v) for k, v in
                      {"mean": values.mean(), "std": values.std(), "min": values.min(),
                       "p50": values.median(), "max": values.max()}.items()})
    return stats


def _is_drift(method: str, score: float, threshold: float) -> bool:
    if method in DISTANCE_METHODS:
        return bool(score >= threshold)
    return bool(score < threshold)  # p-value tests


# -------------------------------------------------------------------------------------------- API


def build_reference(frame, columns: DriftColumns = DriftColumns(), sample_size: int = 20_000,
                    seed: int = 0) -> Reference:
    """A reference from ``frame`` (the model's training window, with its scores if available):
    per-column statistics of the whole frame and a fixed-size random sample (``seed``)."""
    missing = [c for c in columns.features if c not in frame.columns]
    if missing:
        raise ValueError(f"reference frame lacks drift columns {missing}")
    if len(frame) == 0:
        raise ValueError("reference frame has 0 rows")
    present = list(columns.features)
    prediction = columns.prediction if columns.prediction and columns.prediction in frame.columns else None
    if prediction:
        present.append(prediction)
    data = _normalize(frame, columns, present)
    stats = {c: _column_stats(data[c], columns.type_of(c) if c != prediction else "numeric")
             for c in present}
    empty = [c for c in present if stats[c]["missing_share"] == 1.0]
    if empty:
        raise ValueError(f"reference columns entirely null: {empty}")
    sample = data.sample(n=sample_size, random_state=seed) if len(data) > sample_size else data
    used = DriftColumns(tuple(columns.numeric), tuple(columns.categorical), prediction)
    return Reference(columns=used, sample=sample.reset_index(drop=True), stats=stats,
                     source_rows=int(len(frame)), seed=seed)


def window_stats(frame, columns: DriftColumns) -> dict[str, dict[str, Any]]:
    """The per-column statistics ``build_reference`` records (``columns.features`` only), computed
    one column at a time: the same values without a normalised copy of the whole frame."""
    missing = [c for c in columns.features if c not in frame.columns]
    if missing:
        raise ValueError(f"reference frame lacks drift columns {missing}")
    if len(frame) == 0:
        raise ValueError("reference frame has 0 rows")
    stats = {c: _column_stats(_normalize(frame, columns, [c])[c], columns.type_of(c)) for c in columns.features}
    empty = [c for c in columns.features if stats[c]["missing_share"] == 1.0]
    if empty:
        raise ValueError(f"reference columns entirely null: {empty}")
    return stats


#: Upper bounds of bounded distances: Evidently's Jensen-Shannon distance (natural logarithm) is at
#: most sqrt(ln 2), reached when the two distributions share no value.
DISTANCE_BOUNDS = {"jensenshannon": math.sqrt(math.log(2)), "hellinger": 1.0}


def margin_above(quantile_score: float, margin: float, method: str) -> float:
    """A threshold ``margin`` x the quantile of the ordinary scores; for a bounded distance, at most
    halfway from the quantile to the bound. Without the cap, a column whose ordinary days already
    reach two thirds of the bound would get a threshold above anything it can score, and its
    monitor would be silently off (flights' visibility: ordinary days up to 0.57 of 0.83)."""
    threshold = quantile_score * margin
    bound = DISTANCE_BOUNDS.get(method)
    if bound is not None and quantile_score < bound:
        threshold = min(threshold, quantile_score + (bound - quantile_score) / 2)
    return threshold


def calibration_chunks(frame, day_column: str | None, config: DriftConfig) -> tuple[list[Any], int | None]:
    """Row positions of the pieces of the reference period that are scored to calibrate, and the
    chunk size (None for days): its days (``day_column``; at most ``calibration_chunks`` of them,
    drawn with ``seed``), or, without days (unpartitioned data), consecutive chunks of ``chunk_rows``
    rows in the frame's order (default: the frame split in ``calibration_chunks``, but at least
    ``min_chunk_rows`` rows each)."""
    import numpy as np

    if day_column is not None and day_column in frame.columns and frame[day_column].notna().any():
        labels = frame[day_column].astype(str).to_numpy()
        groups = [np.flatnonzero(labels == day) for day in sorted(set(labels[frame[day_column].notna().to_numpy()]))]
        if len(groups) > config.calibration_chunks:
            pick = np.random.default_rng(config.seed).choice(len(groups), size=config.calibration_chunks, replace=False)
            groups = [groups[i] for i in sorted(pick)]
        return groups, None
    size = config.chunk_rows or max(config.min_chunk_rows, len(frame) // config.calibration_chunks)
    return [np.arange(i, i + size) for i in range(0, len(frame) - size + 1, size)], size


def drift_scores(reference: Reference, current, config: DriftConfig) -> dict[str, float]:
    """Each compared column's score (features and prediction) of ``current`` against ``reference``;
    columns that could not be scored (entirely null) are left out."""
    result = compute_drift(reference, current, config)
    rows = list(result.columns) + ([result.prediction] if result.prediction is not None else [])
    return {row.column: row.score for row in rows if row.score is not None}


def left_out_pool(data, rest, size: int, seed: int):
    """The rows of ``data`` where ``rest`` is true, or beyond ``size`` of them the very rows, in the
    same order and with the same index, that ``data[rest].sample(n=size, random_state=seed)``
    draws, without copying every row of ``rest`` first (in a calibration it is the whole window less
    one day)."""
    import numpy as np

    kept = np.flatnonzero(rest)
    if len(kept) > size:
        kept = kept[np.random.RandomState(seed).choice(len(kept), size=size, replace=False)]
    return data.iloc[kept]


def calibrate_thresholds(reference: Reference, frame, config: DriftConfig = DriftConfig(),
                         day_column: str | None = None,
                         scorer: Callable[[Reference, Any, DriftConfig], Mapping[str, float]] = drift_scores,
                         pool=None) -> Reference:
    """Per-column thresholds from the reference period's own variation.

    Each chunk of ``frame`` (a day, or an equal row chunk: ``calibration_chunks``) is scored like a
    current day, against a pool of the reference period **without that chunk** (a random sample of
    the other rows, as large as the reference sample): a future day is never part of the reference,
    so a chunk must not be compared with itself (in-sample scores are too low when the period has
    few days or chunks). A column's threshold is ``calibration_margin`` x the
    ``calibration_quantile`` of its chunk scores (for a bounded distance at most halfway to the
    bound: ``margin_above``), and at least the ``min_*_threshold`` of its type (``DriftConfig``). Stored on the reference (``thresholds``, ``calibration``, with
    ``chunk_rows`` for row chunks); YAML thresholds still take precedence. ``scorer`` scores a chunk
    (``drift_scores``: ``compute_drift``; the benchmark passes a vectorised equivalent).

    ``pool`` (optional, with ``day_column``): a scored random sample of the whole reference period,
    when ``frame`` holds only the calibration days (the reference asset scores no more than that);
    each day is then compared with the pool's rows of the other days."""
    import numpy as np

    chunks, chunk_rows = calibration_chunks(frame, day_column, config)
    if len(chunks) < 2:
        raise ValueError(f"drift calibration needs at least 2 chunks of the reference period, got {len(chunks)}"
                         f" ({len(frame)} rows{'' if chunk_rows is None else f', chunks of {chunk_rows} rows'})")
    columns = reference.columns
    present = list(columns.features) + ([columns.prediction] if columns.prediction else [])
    data = _normalize(frame, columns, present)
    plain_config = DriftConfig(
        numeric_method=config.numeric_method, categorical_method=config.categorical_method,
        prediction_method=config.prediction_method, max_current_rows=config.max_current_rows, seed=config.seed)
    pool_size = max(len(reference.sample), 1)
    if pool is not None:
        if day_column is None or day_column not in pool.columns or day_column not in frame.columns:
            raise ValueError(f"a calibration pool needs the day column {day_column!r} in the pool and the frame")
        pool_data = _normalize(pool, columns, present)
        pool_days = pool[day_column].astype(str).to_numpy()
        frame_days = frame[day_column].astype(str).to_numpy()
    scores: dict[str, list[float]] = {}
    for positions in chunks:
        if pool is None:
            rest = np.ones(len(data), dtype=bool)
            rest[positions] = False
            source = data
        else:
            rest = ~np.isin(pool_days, np.unique(frame_days[positions]))
            source = pool_data
        others = left_out_pool(source, rest, pool_size, config.seed)
        # score every chunk with the fallbacks only: the scores do not depend on thresholds
        left_out = Reference(columns, others.reset_index(drop=True), reference.stats, int(rest.sum()), reference.seed)
        for column, score in scorer(left_out, frame.iloc[positions], plain_config).items():
            scores.setdefault(column, []).append(float(score))
    thresholds, summary = {}, {}
    quantile = f"q{config.calibration_quantile:g}"
    for column, values in scores.items():
        arr = np.asarray(values, dtype="float64")
        high = float(np.quantile(arr, config.calibration_quantile))
        kind = "prediction" if column == columns.prediction else columns.type_of(column)
        floor = config.min_threshold_for(kind)
        method = config.prediction_method if kind == "prediction" else config.method_for(kind)
        thresholds[column] = round(max(margin_above(high, config.calibration_margin, method), floor, 1e-3), 4)
        summary[column] = {"p50": round(float(np.median(arr)), 4), quantile: round(high, 4),
                           "max": round(float(arr.max()), 4), "threshold": thresholds[column]}
    reference.thresholds = thresholds
    reference.calibration = {"chunks": len(chunks), "by": "day" if chunk_rows is None else "row chunk",
                             "chunk_rows": chunk_rows, "left_out": True,
                             "quantile": config.calibration_quantile, "margin": config.calibration_margin,
                             "columns": summary}
    return reference


def _prepare(reference: Reference, current, config: DriftConfig):
    if current is None or len(current) == 0:
        raise ValueError("current partition has 0 rows: nothing to compare (no drift can be computed "
                         "for an empty day; check the upstream partition)")
    columns = reference.columns
    absent = [c for c in columns.features if c not in current.columns]
    if absent:
        raise ValueError(f"current partition lacks drift columns {absent}")
    total = len(current)
    if total > config.max_current_rows:
        current = current.sample(n=config.max_current_rows, random_state=config.seed)
    present = list(columns.features)
    prediction = columns.prediction if columns.prediction and columns.prediction in current.columns else None
    if prediction:
        present.append(prediction)
    return _normalize(current, columns, present), total, prediction


def prepared_current(reference: Reference, current, config: DriftConfig):
    """``current`` as ``compute_drift`` compares it: sampled down to ``max_current_rows``, only the
    compared columns, categoricals as strings, numerics as float."""
    return _prepare(reference, current, config)[0]


def _definition(numeric: list[str], categorical: list[str]):
    with evidently_import_warnings_silenced():
        from evidently import DataDefinition

    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)


def compute_drift(reference: Reference, current, config: DriftConfig = DriftConfig()) -> DriftResult:
    """Drift of one partition against the reference, with Evidently's ``ValueDrift`` per column.

    Columns entirely null in ``current`` are reported in ``missing_columns`` (score None, not
    drifted, not counted in ``share_drifted``): Evidently cannot score an empty column.
    Raises ValueError for an empty partition or absent columns."""
    with evidently_import_warnings_silenced():
        from evidently import Dataset, Report  # the first call pays the import (~3 s), not counted below
        from evidently.metrics import ValueDrift

    start = time.perf_counter()
    data, total, prediction = _prepare(reference, current, config)
    columns = reference.columns
    n = len(data)
    missing_share = {c: float(data[c].isna().mean()) for c in data.columns}
    missing_columns = [c for c in data.columns if missing_share[c] == 1.0]

    plan: list[tuple[str, str, str, float]] = []  # column, type, method, threshold
    calibrated = getattr(reference, "thresholds", None)
    for c in columns.features:
        kind = columns.type_of(c)
        plan.append((c, kind, config.method_for(kind), config.threshold_for(c, kind, calibrated)))
    if prediction:
        plan.append((prediction, "prediction", config.prediction_method,
                     config.threshold_for(prediction, "prediction", calibrated)))

    scored = [p for p in plan if p[0] not in missing_columns]
    scores: dict[str, float] = {}
    if scored:
        numeric = [c for c, kind, _, _ in scored if kind != "categorical"]
        categorical = [c for c, kind, _, _ in scored if kind == "categorical"]
        definition = _definition(numeric, categorical)
        keep = numeric + categorical
        metrics = [ValueDrift(column=c, method=m, threshold=t) for c, _, m, t in scored]
        with evidently_import_warnings_silenced():
            snapshot = Report(metrics).run(
                Dataset.from_pandas(data[keep], data_definition=definition),
                Dataset.from_pandas(reference.sample[keep], data_definition=definition),
            )
        for item in snapshot.dict()["metrics"]:
            scores[item["config"]["column"]] = float(item["value"])

    rows: list[ColumnDrift] = []
    pred_row = None
    for c, kind, method, threshold in plan:
        score = scores.get(c)
        row = ColumnDrift(column=c, type=kind, method=method if score is not None else "missing",
                          score=score, threshold=threshold,
                          drifted=score is not None and _is_drift(method, score, threshold),
                          current_rows=n, missing_share=missing_share[c])
        if kind == "prediction":
            pred_row = row
        else:
            rows.append(row)
    evaluated = [r for r in rows if r.score is not None]
    share = sum(r.drifted for r in evaluated) / len(evaluated) if evaluated else 0.0
    return DriftResult(
        columns=rows, share_drifted=share,
        data_drift=bool(evaluated) and share >= config.share_threshold,
        prediction_score=pred_row.score if pred_row else None,
        prediction_drift=bool(pred_row and pred_row.drifted),
        missing_columns=missing_columns, current_rows=total, sampled_rows=n,
        seconds=time.perf_counter() - start, prediction=pred_row,
    )


def render_html(reference: Reference, current, config: DriftConfig = DriftConfig(),
                path: str | Path = "drift_report.html") -> Path:
    """The full Evidently report (DataDriftPreset with the configured methods and thresholds, plus
    the prediction column), written to ``path``. Entirely-null columns are left out. Slow (plots):
    call on request only, not in the daily check."""
    with evidently_import_warnings_silenced():
        from evidently import Dataset, Report
        from evidently.metrics import ValueDrift
        from evidently.presets import DataDriftPreset

    data, _, prediction = _prepare(reference, current, config)
    columns = reference.columns
    keep = [c for c in data.columns if data[c].notna().any()]
    numeric = [c for c in keep if c not in columns.categorical]
    categorical = [c for c in keep if c in columns.categorical]
    # The preset's headline ("Dataset Drift is detected") counts the feature columns only, with the
    # asset's methods, thresholds and share: the same verdict as ``compute_drift``. The prediction
    # column is its own metric beside it, as the asset's ``prediction_drift``.
    features = [c for c in keep if c != prediction]
    calibrated = getattr(reference, "thresholds", None)
    per_method = {c: config.method_for(columns.type_of(c)) for c in features}
    per_threshold = {c: config.threshold_for(c, columns.type_of(c), calibrated) for c in features}
    definition = _definition(numeric, categorical)
    metrics: list[Any] = [DataDriftPreset(columns=features, drift_share=config.share_threshold,
                                          per_column_method=per_method, per_column_threshold=per_threshold)]
    if prediction in keep:
        metrics.append(ValueDrift(column=prediction, method=config.prediction_method,
                                  threshold=config.threshold_for(prediction, "prediction", calibrated)))
    with evidently_import_warnings_silenced():
        import warnings

        # the preset correlates every pair of columns; a column constant on the day (visibility 10 on a
        # clear day) divides by zero in numpy and its correlation is shown empty: expected, not a fault
        warnings.filterwarnings("ignore", message="invalid value encountered in divide", category=RuntimeWarning)
        snapshot = Report(metrics).run(
            Dataset.from_pandas(data[keep], data_definition=definition),
            Dataset.from_pandas(reference.sample[keep], data_definition=definition),
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(path))
    return path


def drift_settings(spec: Any) -> tuple[DriftColumns, DriftConfig]:
    """``(DriftColumns, DriftConfig)`` of a pipeline spec's ``monitoring.drift`` section. Columns
    default to the model's features; thresholds absent from the YAML are calibrated on the reference.
    The prediction column is ``<target>_score``."""
    settings = spec.monitoring.drift
    numeric = settings.numeric if settings.numeric is not None else spec.features.numeric
    categorical = settings.categorical if settings.categorical is not None else spec.features.categorical
    columns = DriftColumns(tuple(numeric), tuple(categorical), prediction=f"{spec.target.name}_score")
    config_args = settings.model_dump(exclude_none=True, exclude={"numeric", "categorical", "reference_rows", "html"})
    return columns, DriftConfig(**config_args)
