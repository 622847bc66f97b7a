"""The daily drift checks and per-day drift metadata, shared by every daily drift report: the batch
``<name>/drift_report`` (``ml_assets.monitoring.assets``) and the served traffic's
``<name>/served_drift_report`` (``ml_assets.serving.assets``). Each day's verdict comes from
``ml_assets.monitoring.reports.drift_by_day``; the drift sensor and the alerts sensor (``sensors``)
read what these write.
"""

from typing import Any

import dagster as dg

from ml_assets.keys import DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK
from ml_assets.metadata import float_value, markdown_table, rounded


def daily_drift_check_specs(key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The ``data_drift`` and ``prediction_drift`` checks of the daily drift report ``key``, partitioned
    like it: each day its own verdict (see ``ml_assets.metadata.partition_check_results``)."""
    return [
        dg.AssetCheckSpec(
            DATA_DRIFT_CHECK, asset=key, partitions_def=partitions_def,
            description="The day's share of drifted feature columns stays below the YAML's share threshold.",
        ),
        dg.AssetCheckSpec(
            PREDICTION_DRIFT_CHECK, asset=key, partitions_def=partitions_def,
            description="The day's prediction scores are no further from the reference scores than the threshold.",
        ),
    ]


def day_metadata(day: Any, report_url: str | None = None, stored_at: str | None = None) -> dict[str, Any]:
    """One day's drift as typed metadata (``day`` is a ``reports.DayDrift``): verdicts, the
    per-column score table (method, score, threshold, drifted yes/no) and, when rendered, the HTML
    report: ``html_report`` links to it in the MLflow UI (``report_url``), ``html_report_file`` is
    the local copy."""
    from ml_assets.monitoring.reports import score_rows

    result = day.result
    metadata: dict[str, Any] = {
        "share_drifted": float_value(result.share_drifted),
        "data_drift": dg.MetadataValue.bool(bool(result.data_drift)),
        "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted_columns) or "none"),
        "prediction_drift": dg.MetadataValue.bool(bool(result.prediction_drift)),
        "missing_columns": dg.MetadataValue.text(", ".join(result.missing_columns) or "none"),
        "rows": dg.MetadataValue.int(int(result.current_rows)),
        "compute_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "scores": dg.MetadataValue.md(markdown_table(score_rows(result))),
    }
    if result.prediction_score is not None:
        metadata["prediction_score"] = float_value(result.prediction_score)
    if report_url:
        metadata["html_report"] = dg.MetadataValue.url(report_url)
    if day.html is not None:
        metadata["html_report_file"] = dg.MetadataValue.path(str(day.html))
        metadata["html_bytes"] = dg.MetadataValue.int(day.html.stat().st_size)
    if stored_at:
        metadata["html_report_stored"] = dg.MetadataValue.path(stored_at)
    return metadata


def drift_checks(day: str, drift: Any | None) -> list[dg.AssetCheckResult]:
    """The day's ``data_drift`` and ``prediction_drift`` checks (WARN) from its drift (a
    ``reports.DayDrift``, or ``None`` when the day has no feature rows to compare)."""
    if drift is None:
        return [dg.AssetCheckResult(check_name=check, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"rows": dg.MetadataValue.int(0)},
                                    description=f"{day}: no feature rows, nothing to compare")
                for check in (DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK)]
    result = drift.result
    drifted = ", ".join(result.drifted_columns)
    score = {} if result.prediction_score is None else {"prediction_score": float_value(result.prediction_score)}
    return [
        dg.AssetCheckResult(
            check_name=DATA_DRIFT_CHECK, passed=not result.data_drift, severity=dg.AssetCheckSeverity.WARN,
            metadata={"share_drifted": float_value(result.share_drifted),
                      "drifted_columns": dg.MetadataValue.text(drifted or "none"),
                      "rows": dg.MetadataValue.int(int(result.current_rows))},
            description=(f"{day}: data drift in {drifted} (share {rounded(result.share_drifted)})"
                         if result.data_drift else f"{day}: no data drift"),
        ),
        dg.AssetCheckResult(
            check_name=PREDICTION_DRIFT_CHECK, passed=not result.prediction_drift,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={**score, "rows": dg.MetadataValue.int(int(result.current_rows))},
            description=(f"{day}: prediction drift (score {rounded(result.prediction_score)})"
                         if result.prediction_drift else f"{day}: no prediction drift"),
        ),
    ]
