"""Drift of a table without partitions: its reference window and the chunks compared.

An unpartitioned pipeline has no days, so the unit of comparison is a **chunk** of rows, of the size
its thresholds were calibrated on (``Reference.calibration["chunk_rows"]``: distances depend on the
number of rows compared, so a chunk of the current table is only comparable with chunks of the same
size):

* the reference window is the training split's rows: with ``model.windows.time_column``, every row of
  the features (labelled or not) up to the last training time, in time order; without one, the rows
  of the random training split, in the table's own order;
* the current table is cut the same way: with a time column, only its **latest chunk** by time is
  compared (the newest rows: what "today" is for a daily pipeline); without one, the whole table in
  consecutive equal-size chunks, each compared (the table alarms when any chunk alarms, as a range of
  days alarms when any day does).

Pure library: pandas is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_assets.config.tabular import SPLIT_COLUMN, PipelineSpec
from ml_assets.monitoring.drift import DriftConfig, DriftResult, Reference
from ml_assets.monitoring.reports import DayDrift


def table_reference_window(features: Any, training_set: Any, spec: PipelineSpec) -> Any:
    """The rows of ``features`` in the training window of an unpartitioned pipeline (see module)."""
    from ml_assets.features.functions import utc_times

    train = training_set[training_set[SPLIT_COLUMN] == "train"]
    time_column = spec.model.windows.time_column
    if time_column is not None:
        times = utc_times(features[time_column])
        last = utc_times(train[time_column]).max()
        order = times.sort_values(kind="mergesort").index
        window = features.loc[order]
        return window[(times.loc[order] <= last).to_numpy()].reset_index(drop=True)
    key = spec.sources[spec.primary_source].entity_key
    wanted = train[key].drop_duplicates()
    return features.merge(wanted, on=key, how="inner", validate="one_to_one").reset_index(drop=True)


def chunk_label(frame: Any, start: int, end: int, time_column: str | None) -> str:
    """``rows 0-49`` (positions in the compared order), with the time range when there is one."""
    label = f"rows {start}-{end - 1}"
    if time_column is not None and end > start:
        times = frame[time_column].iloc[[start, end - 1]].astype(str).tolist()
        label += f" ({times[0]} .. {times[1]})"
    return label


def current_chunks(frame: Any, chunk_rows: int, time_column: str | None) -> list[tuple[str, Any]]:
    """The pieces of the current table compared with the reference: its latest ``chunk_rows`` rows by
    ``time_column``, or (no time column) consecutive chunks of about ``chunk_rows`` rows covering the
    whole table (the remainder is spread over them, so none is smaller than ``chunk_rows``). A table
    smaller than one chunk is one chunk."""
    import numpy as np

    if len(frame) == 0:
        return []
    if time_column is not None:
        from ml_assets.features.functions import utc_times

        ordered = frame.loc[utc_times(frame[time_column]).sort_values(kind="mergesort").index].reset_index(drop=True)
        start = max(0, len(ordered) - chunk_rows)
        return [(chunk_label(ordered, start, len(ordered), time_column), ordered.iloc[start:].reset_index(drop=True))]
    frame = frame.reset_index(drop=True)
    pieces = np.array_split(np.arange(len(frame)), max(1, len(frame) // chunk_rows))
    return [(chunk_label(frame, int(p[0]), int(p[-1]) + 1, None), frame.iloc[p].reset_index(drop=True))
            for p in pieces]


def drift_by_chunk(
    reference: Reference,
    features: Any,
    predictions: Any,
    key_columns: list[str],
    config: DriftConfig,
    time_column: str | None,
    *,
    render: Callable[[DriftResult], bool],
    report_folder: Path,
) -> list[DayDrift]:
    """Drift of each compared chunk of the current table (``current_chunks``) against the reference;
    ``render(result)`` says whether a chunk's HTML report is written to ``report_folder``."""
    from ml_assets.monitoring.drift import compute_drift, render_html

    chunk_rows = int(reference.calibration.get("chunk_rows") or config.min_chunk_rows)
    score_column = reference.columns.prediction or ""
    joined = features
    if score_column in predictions.columns and len(features):
        joined = features.merge(predictions[[*key_columns, score_column]], on=key_columns, how="left",
                                validate="one_to_one")
    out = []
    for number, (label, current) in enumerate(current_chunks(joined, chunk_rows, time_column), start=1):
        result = compute_drift(reference, current, config)
        html = None
        if render(result):
            report_folder.mkdir(parents=True, exist_ok=True)
            html = render_html(reference, current, config, report_folder / f"chunk-{number:03d}.html")
        out.append(DayDrift(label, result, html))
    return out


def table_summary(chunks: list[DayDrift]) -> dict[str, Any]:
    """The table's verdict from its chunks: data (prediction) drift when any chunk has it; the columns
    that drifted in any chunk; the largest share and prediction score."""
    drifted = sorted({c for chunk in chunks for c in chunk.result.drifted_columns})
    scores = [c.result.prediction_score for c in chunks if c.result.prediction_score is not None]
    return {
        "data_drift": any(c.result.data_drift for c in chunks),
        "prediction_drift": any(c.result.prediction_drift for c in chunks),
        "drifted_columns": drifted,
        "share_drifted": max((c.result.share_drifted for c in chunks), default=0.0),
        "prediction_score": max(scores) if scores else None,
        "missing_columns": sorted({c for chunk in chunks for c in chunk.result.missing_columns}),
        "rows": sum(c.result.current_rows for c in chunks),
    }
