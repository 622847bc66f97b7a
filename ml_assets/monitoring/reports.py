"""Daily drift reports of a range of days: each day's features joined to its predictions (read one
day at a time), compared with the reference (``drift.compute_drift``), and the full Evidently HTML report rendered where a
person will look. pandas and Evidently load inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.monitoring.drift import DriftConfig, DriftResult, Reference


@dataclass
class DayDrift:
    """One day's drift: its result and, when rendered, the HTML report."""

    day: str
    result: DriftResult
    html: Path | None = None

    @property
    def alarm(self) -> bool:
        return bool(self.result.data_drift or self.result.prediction_drift)


def score_rows(result: DriftResult) -> list[dict[str, Any]]:
    """One row per column: method, score (or "missing"), threshold and whether it drifted."""
    rows = list(result.columns) + ([result.prediction] if result.prediction is not None else [])
    return [
        {"column": row.column, "method": row.method,
         "score": "missing" if row.score is None else f"{row.score:.4g}",
         "threshold": f"{row.threshold:.4g}", "drifted": "yes" if row.drifted else "no"}
        for row in rows
    ]


def drift_by_day(
    reference: Reference,
    features: Any,
    predictions: Any,
    days: list[str],
    key_columns: list[str],
    config: DriftConfig,
    *,
    render: Callable[[DriftResult], bool],
    report_folder: Path,
    log: Callable[[str], None] = print,
) -> list[DayDrift]:
    """Drift of each day of ``days`` that has feature rows; ``render(result)`` says whether that
    day's HTML report is written to ``report_folder/<day>.html``.

    ``features`` and ``predictions`` are the stored partitions (``resources.partition_reader.
    StoredPartitions``): one day is read, joined to its scores, compared and released before the
    next, so memory is bounded by a day, not the range. DataFrames (with ``partition_date``) work
    too, for callers that hold a day already (the served traffic)."""
    from ml_assets.monitoring.drift import compute_drift, render_html

    score_column = reference.columns.prediction or ""
    read_features, read_predictions = day_reader(features), day_reader(predictions)
    out = []
    for day in days:
        current = read_features(day)
        if len(current):
            scored = read_predictions(day)
            wanted = [*key_columns, score_column] if score_column in scored.columns else list(key_columns)
            current = current.merge(scored[wanted], on=key_columns, how="left", validate="one_to_one")
            del scored
        if len(current) == 0:
            log(f"{day}: no feature rows, nothing to compare")
            continue
        result = compute_drift(reference, current, config)
        if result.missing_columns:
            log(f"{day}: column(s) {result.missing_columns} entirely null: reported as missing data, not drift")
        html = None
        if render(result):
            report_folder.mkdir(parents=True, exist_ok=True)
            html = render_html(reference, current, config, report_folder / f"{day}.html")
        out.append(DayDrift(day, result, html))
    return out


def day_reader(source: Any) -> Callable[[str], Any]:
    """``day -> rows of that day`` of stored partitions (their ``read``) or of a DataFrame."""
    if hasattr(source, "read"):
        return source.read

    def rows_of(day: str) -> Any:
        if not len(source):
            return source
        return source[(source[PARTITION_COLUMN].astype(str) == day).to_numpy()].reset_index(drop=True)

    return rows_of


def drift_frame(days: list[DayDrift]) -> Any:
    """The stored output: one row per monitored column and day."""
    import pandas as pd

    frames = [d.result.to_frame().assign(**{PARTITION_COLUMN: d.day}) for d in days]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({PARTITION_COLUMN: pd.Series([], dtype=object)})
    if "score" in out.columns:
        out["score"] = out["score"].astype("float64")
    return out
