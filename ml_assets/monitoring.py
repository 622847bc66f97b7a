"""Monitoring assets of a tabular pipeline with a ``monitoring`` section: reference and daily drift.

* ``<name>/reference`` (monitoring group, after the evaluation; Declarative Automation rebuilds it
  when an evaluation lands): the baseline the monitors compare against, built from the training window of the current ``champion`` (a fixed-size sample with the
  champion's scores, and per-column statistics). It is versioned with the champion: when the
  training job leaves the champion unchanged, the reference is left as it is.
* ``<name>/drift_report`` (daily, monitoring group): the day's features and predictions against the
  reference with ``ml_assets.drift`` (Evidently metrics, effect-size methods and thresholds from the
  YAML): per-column scores stored per day, share of drifted columns, prediction drift, entirely-null
  columns reported as missing data. The full Evidently HTML report is rendered on days that alarm
  (``monitoring.drift.html``) or on request (run config ``render_html: true``), saved under
  ``<data dir>/reports`` and logged to MLflow. Two checks, ``data_drift`` and ``prediction_drift``
  (WARN: they inform the drift sensor and the alerts, they do not block scoring).

pandas and Evidently are imported inside the functions.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.feature_functions import PARTITION_COLUMN
from ml_assets.model_lifecycle import (
    CHAMPION,
    SPLIT_COLUMN,
    asset_key,
    champion_model,
    scoring_group,
)
from ml_assets.pipeline_config import PipelineSpec
from resources.tracking import MlflowTracking

DATA_DRIFT_CHECK = "data_drift"
PREDICTION_DRIFT_CHECK = "prediction_drift"


def monitoring_group(spec: PipelineSpec) -> str:
    return f"{spec.name}_monitoring"


def drift_settings(spec: PipelineSpec) -> tuple[Any, Any]:
    """``(DriftColumns, DriftConfig)`` from the YAML; absent keys keep the calibrated defaults."""
    from ml_assets.drift import DriftColumns, DriftConfig

    settings = spec.monitoring.drift
    column_args = {k: tuple(v) for k, v in (("numeric", settings.numeric), ("categorical", settings.categorical))
                   if v is not None}
    columns = DriftColumns(**column_args, prediction=f"{spec.target.name}_score")
    config_args = settings.model_dump(exclude_none=True, exclude={"numeric", "categorical", "reference_rows", "html"})
    return columns, DriftConfig(**config_args)


def reports_dir() -> Path:
    from resources import data_dir

    return data_dir() / "reports"


# --------------------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------------------


def build_reference_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    settings = spec.monitoring.drift
    key = asset_key(spec, "reference")

    @dg.asset(
        key=key,
        group_name=monitoring_group(spec),
        kinds={"pandas", "evidently"},
        # rebuilt after every training run (its own check decides whether the champion changed)
        automation_condition=dg.AutomationCondition.eager(),
        ins={"training_set": dg.AssetIn(key=asset_key(spec, "training_set"))},
        deps=[asset_key(spec, "evaluation")],
        output_required=False,
        description=(
            f"The drift baseline: a {settings.reference_rows:,}-row sample of the training window of the"
            f" `{CHAMPION}` version of `{spec.registered_model_name}`, with its scores, and per-column"
            " statistics. Rebuilt when the champion changes; otherwise left as it is."
        ),
    )
    def _reference(context: dg.AssetExecutionContext, tracking: MlflowTracking, training_set):
        from ml_assets.drift import build_reference
        from ml_assets.mlflow_model import score_frame

        version, bundle = champion_model(tracking, spec)
        previous = context.instance.get_latest_materialization_event(key)
        if previous is not None and previous.asset_materialization is not None:
            built_for = previous.asset_materialization.metadata.get("model_version")
            if built_for is not None and built_for.value == version:
                context.log.info(f"the reference already belongs to champion version {version}: kept")
                return
        train = training_set[training_set[SPLIT_COLUMN] == "train"].reset_index(drop=True)
        columns, _ = drift_settings(spec)
        scored = train.assign(**{columns.prediction: score_frame(bundle, train)["score"].to_numpy()})
        try:
            reference = build_reference(scored, columns, sample_size=settings.reference_rows, seed=spec.model.seed)
        except ValueError as exc:
            raise dg.Failure(f"reference of pipeline '{spec.name}': {exc}", allow_retries=False) from None
        days = train[PARTITION_COLUMN].astype(str)
        context.log.info(f"reference for champion version {version}: {len(reference.sample)} sampled rows")
        yield dg.Output(
            reference,
            metadata={
                "model_version": dg.MetadataValue.text(version),
                "window": dg.MetadataValue.text(f"{days.min()} .. {days.max()}"),
                "source_rows": dg.MetadataValue.int(reference.source_rows),
                "sample_rows": dg.MetadataValue.int(len(reference.sample)),
                "columns": dg.MetadataValue.json(
                    {"numeric": list(columns.numeric), "categorical": list(columns.categorical),
                     "prediction": reference.columns.prediction}
                ),
                "stats": dg.MetadataValue.json(reference.stats),
            },
        )

    return _reference


# --------------------------------------------------------------------------------------------------
# daily drift report
# --------------------------------------------------------------------------------------------------


class DriftRunConfig(dg.Config):
    """Run configuration of the drift report."""

    render_html: bool = False  # render the full HTML report for every day of the run


def _day_table(result: Any) -> str:
    lines = ["| column | method | score | threshold | drifted |", "| --- | --- | --- | --- | --- |"]
    rows = list(result.columns) + ([result.prediction] if result.prediction is not None else [])
    for row in rows:
        score = "missing" if row.score is None else f"{row.score:.3f}"
        lines.append(f"| {row.column} | {row.method} | {score} | {row.threshold:g} | {'yes' if row.drifted else ''} |")
    return "\n".join(lines)


def build_drift_asset(
    spec: PipelineSpec, features_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    key = asset_key(spec, "drift_report")
    settings = spec.monitoring.drift
    checks = [
        dg.AssetCheckSpec(
            DATA_DRIFT_CHECK, asset=key,
            description="No day's share of drifted feature columns reaches the YAML's share threshold.",
        ),
        dg.AssetCheckSpec(
            PREDICTION_DRIFT_CHECK, asset=key,
            description="No day's prediction scores are further from the reference scores than the threshold.",
        ),
    ]

    @dg.asset(
        key=key,
        group_name=monitoring_group(spec),
        kinds={"evidently", "parquet"},
        ins={
            "features": dg.AssetIn(key=features_key),
            "predictions": dg.AssetIn(key=asset_key(spec, "predictions")),
            "reference": dg.AssetIn(key=asset_key(spec, "reference")),
        },
        check_specs=checks,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="parquet_io_manager",
        metadata={"partition_column": PARTITION_COLUMN},
        description=(
            "Daily drift of the features and predictions against the reference (Evidently metrics,"
            " effect-size methods and thresholds from the YAML). One row per monitored column and day"
            f" with its score. HTML report: {settings.html} (and on request)."
        ),
    )
    def _drift(context: dg.AssetExecutionContext, config: DriftRunConfig, tracking: MlflowTracking,
               features, predictions, reference):
        import pandas as pd

        from ml_assets.drift import compute_drift, render_html
        from ml_assets.factory import _partition_keys

        columns, drift_config = drift_settings(spec)
        key_columns = spec.sources[spec.primary_source].entity_key
        score_column = columns.prediction
        days = _partition_keys(context) or []
        joined = features.merge(
            predictions[[*key_columns, score_column]], on=key_columns, how="left", validate="one_to_one"
        ) if len(features) else features.assign(**{score_column: []})
        by_day = {day: part for day, part in joined.groupby(PARTITION_COLUMN)} if len(joined) else {}
        frames, alarms, html_paths = [], {"data": [], "prediction": []}, {}
        single_day: dict[str, Any] = {}
        report_folder = reports_dir() / spec.name / "drift"
        for day in days:
            current = by_day.get(day)
            if current is None or len(current) == 0:
                context.log.warning(f"{day}: no feature rows, nothing to compare")
                continue
            result = compute_drift(reference, current.reset_index(drop=True), drift_config)
            frame = result.to_frame().assign(**{PARTITION_COLUMN: day})
            frames.append(frame)
            if result.data_drift:
                alarms["data"].append(day)
            if result.prediction_drift:
                alarms["prediction"].append(day)
            metadata: dict[str, Any] = {
                "share_drifted": dg.MetadataValue.float(float(result.share_drifted)),
                "data_drift": dg.MetadataValue.bool(bool(result.data_drift)),
                "drifted_columns": dg.MetadataValue.text(", ".join(result.drifted_columns) or "none"),
                "prediction_drift": dg.MetadataValue.bool(bool(result.prediction_drift)),
                "missing_columns": dg.MetadataValue.text(", ".join(result.missing_columns) or "none"),
                "rows": dg.MetadataValue.int(int(result.current_rows)),
                "compute_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
                "scores": dg.MetadataValue.md(_day_table(result)),
            }
            if result.prediction_score is not None:
                metadata["prediction_score"] = dg.MetadataValue.float(float(result.prediction_score))
            if result.missing_columns:
                context.log.warning(
                    f"{day}: column(s) {result.missing_columns} entirely null: reported as missing data, not drift"
                )
            alarm = result.data_drift or result.prediction_drift
            if config.render_html or settings.html == "always" or (settings.html == "alarms" and alarm):
                report_folder.mkdir(parents=True, exist_ok=True)
                path = render_html(reference, current.reset_index(drop=True), drift_config, report_folder / f"{day}.html")
                html_paths[day] = path
                metadata["html_report"] = dg.MetadataValue.path(str(path))
                metadata["html_bytes"] = dg.MetadataValue.int(path.stat().st_size)
            if len(days) > 1:
                context.add_asset_metadata(metadata, partition_key=day)
            else:
                single_day = metadata
        if html_paths:
            with tracking.start_run(f"{spec.name}-monitoring", run_name=f"drift-{days[0]}..{days[-1]}",
                                    tags={"pipeline": spec.name, "dagster_run_id": context.run_id}):
                import mlflow

                for path in html_paths.values():
                    mlflow.log_artifact(str(path), "drift_reports")
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            {PARTITION_COLUMN: pd.Series([], dtype=object)}
        )
        if "score" in out.columns:
            out["score"] = out["score"].astype("float64")
        checked = len([d for d in days if d in by_day])
        yield dg.Output(out, metadata={
            **single_day,
            "run_days" if len(days) > 1 else "days": dg.MetadataValue.int(checked),
            "data_drift_days": dg.MetadataValue.text(", ".join(alarms["data"]) or "none"),
            "prediction_drift_days": dg.MetadataValue.text(", ".join(alarms["prediction"]) or "none"),
            "html_reports": dg.MetadataValue.int(len(html_paths)),
        })
        for check, name in ((DATA_DRIFT_CHECK, "data"), (PREDICTION_DRIFT_CHECK, "prediction")):
            failing = alarms[name]
            yield dg.AssetCheckResult(
                check_name=check,
                passed=not failing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "days_checked": dg.MetadataValue.int(checked),
                    "alarm_days": dg.MetadataValue.text(", ".join(failing) or "none"),
                    "alarm_count": dg.MetadataValue.int(len(failing)),
                },
                description=(
                    f"{name} drift on {len(failing)} of {checked} day(s): {', '.join(failing[:10])}"
                    if failing else f"no {name} drift on {checked} day(s)"
                ),
            )

    return _drift


def build_monitoring_assets(
    spec: PipelineSpec, features_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """The reference and daily drift report of ``spec`` (which has ``model`` and ``monitoring``)."""
    return [build_reference_asset(spec), build_drift_asset(spec, features_key, partitions_def)]


def freshness_policy(spec: PipelineSpec) -> dg.FreshnessPolicy:
    """The YAML's daily deadline: materialized since ``deadline - lower_bound`` by each deadline."""
    freshness = spec.monitoring.freshness
    return dg.FreshnessPolicy.cron(
        deadline_cron=freshness.deadline_cron,
        lower_bound_delta=dt.timedelta(hours=freshness.lower_bound_hours),
        timezone=spec.partitioning.timezone,
    )


def monitoring_jobs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> list[Any]:
    """``<name>_drift_job`` (drift reports for a day or a range) and ``<name>_daily_job`` (a day's
    ingest, validation, features, predictions and drift: what the daily schedule runs)."""
    drift_job = dg.define_asset_job(
        name=f"{spec.name}_drift_job",
        selection=dg.AssetSelection.assets(asset_key(spec, "drift_report")),
        partitions_def=partitions_def,
        description=f"Drift reports of the {spec.name} pipeline for a day or a range of days.",
    )
    daily_job = dg.define_asset_job(
        name=f"{spec.name}_daily_job",
        selection=dg.AssetSelection.groups(spec.name, scoring_group(spec))
        | dg.AssetSelection.assets(asset_key(spec, "drift_report")),
        partitions_def=partitions_def,
        description=(
            f"One day of the {spec.name} pipeline: ingest and validate the raw data, build features,"
            " score them with the champion and report drift."
        ),
    )
    return [drift_job, daily_job]
