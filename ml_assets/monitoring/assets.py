"""Monitoring assets of a tabular pipeline with a ``monitoring`` section: reference and daily drift.

* ``<name>/reference`` (monitoring group, after the evaluation; Declarative Automation rebuilds it
  when an evaluation lands): the baseline the monitors compare against, built from the training window of the current ``champion`` (a fixed-size sample with the
  champion's scores, and per-column statistics). It is versioned with the champion: when the
  training job leaves the champion unchanged, the reference is left as it is.
* ``<name>/drift_report`` (daily, monitoring group): the day's features and predictions against the
  reference with ``ml_assets.monitoring.drift`` (Evidently metrics, effect-size methods and thresholds from the
  YAML): per-column scores stored per day, share of drifted columns, prediction drift, entirely-null
  columns reported as missing data. The full Evidently HTML report is rendered on days that alarm
  (``monitoring.drift.html``) or on request (run config ``render_html: true``), saved under
  ``<data dir>/reports`` and logged to MLflow. Two checks, ``data_drift`` and ``prediction_drift``
  (WARN: they inform the drift sensor and the alerts, they do not block scoring).
* Without partitions (``build_table_drift_asset``): the reference is the training split's rows, its
  thresholds calibrated on equal row chunks of it, and ``<name>/drift_report`` compares the current
  table's latest chunk by the time column (or, without one, every consecutive chunk of the table)
  with it, with the same checks; Declarative Automation rebuilds it when the predictions change
  (``ml_assets.monitoring.chunks``).

pandas and Evidently are imported inside the functions.
"""

import datetime as dt
from typing import Any

import dagster as dg

from ml_assets.config.paths import data_dir
from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN, PipelineSpec
from ml_assets.execution import backfill_policy, launch_tags, small_run_executor
from ml_assets.keys import DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK, pipeline_keys
from ml_assets.metadata import (
    add_run_summary,
    code_version,
    data_failure,
    float_value,
    markdown_table,
    partition_check_results,
    partition_keys,
)
from ml_assets.monitoring.checks import daily_drift_check_specs, day_metadata, drift_checks
from ml_assets.training.registry import CHAMPION
from resources.partition_reader import LAZY_LOAD
from resources.tracking import MlflowTracking


# --------------------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------------------


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
MONITORING_CODE_VERSION = "1"


def build_reference_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    settings = spec.monitoring.drift
    key = pipeline_keys(spec).reference

    @dg.asset(
        key=key,
        group_name=pipeline_keys(spec).monitoring_group,
        code_version=code_version(MONITORING_CODE_VERSION, spec.target, spec.features, spec.monitoring),
        kinds={"pandas", "evidently"},
        # rebuilt after every training run (its own check decides whether the champion changed)
        automation_condition=dg.AutomationCondition.eager(),
        # both read lazily (resources.partition_reader): the split column of the training set, then
        # the window's feature days one at a time
        ins={"training_set": dg.AssetIn(key=pipeline_keys(spec).training_set, metadata=LAZY_LOAD),
             "features": dg.AssetIn(key=pipeline_keys(spec).features, metadata=LAZY_LOAD)},
        deps=[pipeline_keys(spec).evaluation],
        output_required=False,
        description=(
            f"The drift baseline: a {settings.reference_rows:,}-row sample of every feature row (labelled or"
            f" not) of the training window of the `{CHAMPION}` version of `{spec.registered_model_name}`,"
            " drawn (seeded) before scoring, then scored; per-column statistics of the whole window and"
            " per-column thresholds calibrated on the window's own day-to-day variation (the YAML's"
            " thresholds take precedence). Rebuilt when the champion changes; otherwise left as it is."
        ),
    )
    def _reference(context: dg.AssetExecutionContext, tracking: MlflowTracking, training_set, features):
        from ml_assets.monitoring.drift import drift_settings
        from ml_assets.monitoring.sampling import sample_reference
        from ml_assets.training.registry import champion_model

        version, model = champion_model(tracking, spec)
        previous = context.instance.get_latest_materialization_event(key)
        if previous is not None and previous.asset_materialization is not None:
            built_for = previous.asset_materialization.metadata.get("model_version")
            if built_for is not None and built_for.value == version:
                context.log.info(f"the reference already belongs to champion version {version}: kept")
                return
        columns, config = drift_settings(spec)
        if spec.partitioning is None:
            from ml_assets.monitoring.chunks import table_reference_window
            from ml_assets.monitoring.drift import build_reference, calibrate_thresholds

            # the training split's rows (by time: every row up to the last training time), in memory:
            # an unpartitioned table is one stored file
            window = table_reference_window(features.read(None), training_set.read(None), spec)
            try:
                scored = window.assign(**{columns.prediction: model.score(window)["score"].to_numpy()})
                reference = build_reference(scored, columns, sample_size=settings.reference_rows, seed=spec.model.seed)
                reference = calibrate_thresholds(reference, scored, config, day_column=None)
            except ValueError as exc:
                raise data_failure(f"reference of pipeline '{spec.name}': {exc}") from None
            window_text = f"the training split: {len(window)} rows, in chunks of {reference.calibration['chunk_rows']}"
            labelled_rows, scored_rows = int(window[spec.target.name].notna().sum()), len(window)
            sampling = (f"{len(reference.sample):,} of the training split's {len(window):,} rows drawn at random"
                        f" (seed {spec.model.seed}); every row of the split was scored.")
        else:
            splits = training_set.read(None, columns=[SPLIT_COLUMN, PARTITION_COLUMN])
            train_days = splits.loc[splits[SPLIT_COLUMN] == "train", PARTITION_COLUMN].astype(str)
            first, last = train_days.min(), train_days.max()
            del splits, train_days
            # every row of the window, labelled or not: each day is scored on all its rows too
            window_days = [day for day in features.keys if first <= day <= last]
            try:
                built = sample_reference(features, window_days, model, columns, config, target=spec.target.name,
                                         sample_size=settings.reference_rows, seed=spec.model.seed)
            except ValueError as exc:
                raise data_failure(f"reference of pipeline '{spec.name}': {exc}") from None
            reference = built.reference
            window_text = f"{built.window[0]} .. {built.window[1]}"
            labelled_rows, scored_rows = built.labelled_rows, built.scored_rows
            sampling = (f"{len(reference.sample):,} of the window's {reference.source_rows:,} rows drawn at random"
                        f" (seed {spec.model.seed}) before scoring; only they and the {len(built.calibration_days)}"
                        f" calibration days ({built.scored_rows:,} rows) were scored. Column statistics cover every"
                        " row of the window; those of the prediction column cover the sample.")
        used = {c: config.threshold_for(c, "prediction" if c == columns.prediction else columns.type_of(c),
                                        reference.thresholds)
                for c in [*columns.features, columns.prediction]}
        threshold_rows = [{"column": c, "threshold": t,
                           "source": "YAML" if c in config.thresholds or (c == columns.prediction and config.prediction_threshold)
                           else "calibrated" if c in reference.thresholds else "fallback",
                           **{k: v for k, v in reference.calibration["columns"].get(c, {}).items() if k != "threshold"}}
                          for c, t in used.items()]
        context.log.info(f"reference for champion version {version}: {len(reference.sample)} sampled rows")
        yield dg.Output(
            reference,
            metadata={
                "model_version": dg.MetadataValue.text(version),
                "window": dg.MetadataValue.text(window_text),
                "source_rows": dg.MetadataValue.int(reference.source_rows),
                "labelled_rows": dg.MetadataValue.int(labelled_rows),
                "sampling": dg.MetadataValue.md(sampling),
                "scored_rows": dg.MetadataValue.int(scored_rows),
                "thresholds": dg.MetadataValue.md(markdown_table(threshold_rows)),
                "calibration": dg.MetadataValue.json({k: v for k, v in reference.calibration.items() if k != "columns"}),
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


def publish_reports(reports: list[Any], pipeline: str, folder: str) -> dict[str, str]:
    """Copy each rendered HTML report to ``<storage root>/reports/<pipeline>/<folder>/<day>.html``
    when ``ML_STORAGE_ROOT`` is set (one PUT on an object store); ``{day: where}``."""
    from ml_assets.config.paths import storage_root
    from resources.storage import put_atomic, root_path

    root = storage_root()
    if root is None:
        return {}
    stored = {}
    for day in reports:
        if day.html is not None:
            target = root_path(root, "reports", pipeline, folder, day.html.name)
            put_atomic(target, day.html.read_bytes())
            stored[day.day] = str(target)
    return stored


def build_drift_asset(
    spec: PipelineSpec, features_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    key = pipeline_keys(spec).drift_report
    settings = spec.monitoring.drift
    checks = daily_drift_check_specs(key, partitions_def)

    @dg.asset(
        key=key,
        group_name=pipeline_keys(spec).monitoring_group,
        code_version=code_version(MONITORING_CODE_VERSION, spec.target, spec.features, spec.monitoring),
        kinds={"evidently", "parquet"},
        ins={
            # read one day at a time (resources.partition_reader), not the range in one frame
            "features": dg.AssetIn(key=features_key, metadata=LAZY_LOAD),
            "predictions": dg.AssetIn(key=pipeline_keys(spec).predictions, metadata=LAZY_LOAD),
            "reference": dg.AssetIn(key=pipeline_keys(spec).reference),
        },
        check_specs=checks,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec),
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
        from ml_assets.monitoring.drift import drift_settings
        from ml_assets.monitoring.reports import drift_by_day, drift_frame

        _, drift_config = drift_settings(spec)
        days = partition_keys(context) or []

        def render(result: Any) -> bool:
            alarm = result.data_drift or result.prediction_drift
            return config.render_html or settings.html == "always" or (settings.html == "alarms" and alarm)

        reports = drift_by_day(
            reference, features, predictions, days, spec.sources[spec.primary_source].entity_key, drift_config,
            render=render, report_folder=data_dir() / "reports" / spec.name / "drift", log=context.log.warning,
        )
        html = [d.html for d in reports if d.html is not None]
        stored = publish_reports(reports, spec.name, "drift")
        links: dict[str, str] = {}
        if html:
            with tracking.start_run(f"{spec.name}-monitoring", run_name=f"drift-{days[0]}..{days[-1]}",
                                    tags={"pipeline": spec.name, **tracking.dagster_tags(context.run.run_id)}) as run:
                import mlflow

                for path in html:
                    mlflow.log_artifact(str(path), "drift_reports")
            for day in reports:
                url = day.html and tracking.artifacts_url(run.info.experiment_id, run.info.run_id,
                                                          f"drift_reports/{day.html.name}")
                if url:
                    links[day.day] = url
        alarms = {"data": [d.day for d in reports if d.result.data_drift],
                  "prediction": [d.day for d in reports if d.result.prediction_drift]}
        checked = len(reports)
        output_metadata: dict[str, Any] = {}
        if len(days) > 1:
            # each day its own figures; the run's totals once, on the last day
            for day in reports:
                context.add_asset_metadata(day_metadata(day, links.get(day.day), stored.get(day.day)),
                                           partition_key=day.day)
            add_run_summary(context, days, {
                "days checked": checked, "html reports": len(html),
                "data drift days": ", ".join(alarms["data"]) or "none",
                "prediction drift days": ", ".join(alarms["prediction"]) or "none",
            })
        elif reports:
            output_metadata = day_metadata(reports[0], links.get(reports[0].day), stored.get(reports[0].day))
        yield dg.Output(drift_frame(reports), metadata=output_metadata)
        by_day = {d.day: d for d in reports}
        yield from partition_check_results(context, {day: drift_checks(day, by_day.get(day)) for day in days})

    return _drift


# --------------------------------------------------------------------------------------------------
# drift report of a table without partitions
# --------------------------------------------------------------------------------------------------


def table_metadata(chunks: list[Any], time_column: str | None) -> dict[str, Any]:
    """The table's drift as typed metadata: the verdict of its compared chunks (``chunks.table_summary``),
    the per-chunk table and, for one chunk, its per-column score table."""
    from ml_assets.monitoring.chunks import table_summary
    from ml_assets.monitoring.reports import score_rows

    summary = table_summary(chunks)
    metadata: dict[str, Any] = {
        "compared": dg.MetadataValue.text(
            f"the latest {chunks[0].result.current_rows} rows by `{time_column}`" if time_column
            else f"{len(chunks)} consecutive chunk(s) of the table"),
        "chunks": dg.MetadataValue.int(len(chunks)),
        "share_drifted": float_value(summary["share_drifted"]),
        "data_drift": dg.MetadataValue.bool(summary["data_drift"]),
        "drifted_columns": dg.MetadataValue.text(", ".join(summary["drifted_columns"]) or "none"),
        "prediction_drift": dg.MetadataValue.bool(summary["prediction_drift"]),
        "missing_columns": dg.MetadataValue.text(", ".join(summary["missing_columns"]) or "none"),
        "rows": dg.MetadataValue.int(int(summary["rows"])),
        "alarm_chunks": dg.MetadataValue.int(sum(c.alarm for c in chunks)),
        "chunk_verdicts": dg.MetadataValue.md(markdown_table([
            {"chunk": c.day, "rows": c.result.current_rows, "share drifted": round(c.result.share_drifted, 3),
             "drifted columns": ", ".join(c.result.drifted_columns) or "none",
             "prediction score": "n/a" if c.result.prediction_score is None else f"{c.result.prediction_score:.4g}",
             "prediction drift": "yes" if c.result.prediction_drift else "no"} for c in chunks])),
    }
    if summary["prediction_score"] is not None:
        metadata["prediction_score"] = float_value(summary["prediction_score"])
    if len(chunks) == 1:
        metadata["scores"] = dg.MetadataValue.md(markdown_table(score_rows(chunks[0].result)))
    html = [c.html for c in chunks if c.html is not None]
    if html:
        metadata["html_report_file"] = dg.MetadataValue.path(str(html[0]))
    return metadata


def build_table_drift_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """The drift report of an unpartitioned pipeline (``ml_assets.monitoring.chunks``)."""
    keys = pipeline_keys(spec)
    key, settings = keys.drift_report, spec.monitoring.drift
    time_column = spec.model.windows.time_column
    compared = (f"its latest rows by `{time_column}`" if time_column
                else "the whole table in consecutive chunks")
    checks = [
        dg.AssetCheckSpec(DATA_DRIFT_CHECK, asset=key,
                          description="No compared chunk's share of drifted feature columns reaches the share threshold."),
        dg.AssetCheckSpec(PREDICTION_DRIFT_CHECK, asset=key,
                          description="No compared chunk's prediction scores are further from the reference than the threshold."),
    ]

    @dg.asset(
        key=key,
        group_name=keys.monitoring_group,
        kinds={"evidently", "parquet"},
        ins={"features": dg.AssetIn(key=keys.features), "predictions": dg.AssetIn(key=keys.predictions),
             "reference": dg.AssetIn(key=keys.reference)},
        check_specs=checks,
        # the report follows the table: new predictions (or a new reference) bring a new report
        automation_condition=dg.AutomationCondition.eager(),
        io_manager_key="parquet_io_manager",
        description=(
            f"Drift of the current {spec.name} table against the reference: {compared}, each chunk as"
            " large as the chunks the thresholds were calibrated on, scored like a day of a daily"
            " pipeline (Evidently metrics, effect sizes, calibrated thresholds). One row per monitored"
            f" column and chunk. The table alarms when any compared chunk does. HTML report: {settings.html}."
        ),
    )
    def _table_drift(context: dg.AssetExecutionContext, config: DriftRunConfig, features, predictions, reference):
        from ml_assets.monitoring.chunks import drift_by_chunk
        from ml_assets.monitoring.drift import drift_settings
        from ml_assets.monitoring.reports import drift_frame

        _, drift_config = drift_settings(spec)

        def render(result: Any) -> bool:
            alarm = result.data_drift or result.prediction_drift
            return config.render_html or settings.html == "always" or (settings.html == "alarms" and alarm)

        try:
            chunks = drift_by_chunk(
                reference, features, predictions, spec.sources[spec.primary_source].entity_key, drift_config,
                time_column, render=render, report_folder=data_dir() / "reports" / spec.name / "drift" / context.run.run_id,
            )
        except ValueError as exc:
            raise data_failure(f"drift report of pipeline '{spec.name}': {exc}") from None
        if not chunks:
            raise data_failure(f"drift report of pipeline '{spec.name}': the features table has 0 rows")
        context.log.info(f"{len(chunks)} chunk(s) compared, {sum(c.alarm for c in chunks)} alarm(s)")
        yield dg.Output(drift_frame(chunks), metadata=table_metadata(chunks, time_column))
        for check, name in ((DATA_DRIFT_CHECK, "data"), (PREDICTION_DRIFT_CHECK, "prediction")):
            failing = [c.day for c in chunks if (c.result.data_drift if name == "data" else c.result.prediction_drift)]
            yield dg.AssetCheckResult(
                check_name=check, passed=not failing, severity=dg.AssetCheckSeverity.WARN,
                metadata={"chunks_checked": dg.MetadataValue.int(len(chunks)),
                          "alarm_chunks": dg.MetadataValue.text("; ".join(failing) or "none"),
                          "alarm_count": dg.MetadataValue.int(len(failing))},
                description=(f"{name} drift in {len(failing)} of {len(chunks)} chunk(s): {'; '.join(failing[:10])}"
                             if failing else f"no {name} drift in {len(chunks)} chunk(s)"),
            )

    return _table_drift


def build_monitoring_assets(
    spec: PipelineSpec, features_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None
) -> list[dg.AssetsDefinition]:
    """The reference and drift report of ``spec`` (which has ``model`` and ``monitoring``): daily, or
    of the whole table when ``partitions_def`` is None."""
    if partitions_def is None:
        return [build_reference_asset(spec), build_table_drift_asset(spec)]
    return [build_reference_asset(spec), build_drift_asset(spec, features_key, partitions_def)]


def freshness_policy(spec: PipelineSpec) -> dg.FreshnessPolicy:
    """The YAML's daily deadline: materialized since ``deadline - lower_bound`` by each deadline."""
    freshness = spec.monitoring.freshness
    return dg.FreshnessPolicy.cron(
        deadline_cron=freshness.deadline_cron,
        lower_bound_delta=dt.timedelta(hours=freshness.lower_bound_hours),
        timezone=spec.partitioning.timezone,
    )


def monitoring_jobs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None) -> list[Any]:
    """``<name>_drift_job`` (drift reports for a day or a range; the table's report when unpartitioned)
    and, for a daily pipeline, ``<name>_daily_job`` (a day's ingest, validation, features, predictions
    and drift: what the daily schedule runs)."""
    drift_job = dg.define_asset_job(
        name=pipeline_keys(spec).drift_job,
        selection=dg.AssetSelection.assets(pipeline_keys(spec).drift_report),
        tags=launch_tags(),
        description=(f"Drift reports of the {spec.name} pipeline for a day or a range of days." if partitions_def
                     else f"The drift report of the {spec.name} table."),
    )
    if partitions_def is None:
        return [drift_job]  # no days: no daily job
    daily_job = dg.define_asset_job(
        name=pipeline_keys(spec).daily_job,
        selection=dg.AssetSelection.groups(pipeline_keys(spec).ingest_group, pipeline_keys(spec).scoring_group)
        | dg.AssetSelection.assets(pipeline_keys(spec).drift_report),
        # a day's steps in one process: pandas, Great Expectations, MLflow and Evidently are imported
        # once and no step process is started (unless ML_EXECUTOR chooses otherwise)
        executor_def=small_run_executor(),
        tags=launch_tags(),
        description=(
            f"One day of the {spec.name} pipeline: ingest and validate the raw data, build features,"
            " score them with the champion and report drift."
        ),
    )
    return [drift_job, daily_job]


def build_monitoring_defs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None) -> dg.Definitions:
    """The reference, the drift report (daily, or of the whole table), the drift job and (daily) the
    daily job of ``spec``."""
    return dg.Definitions(
        assets=build_monitoring_assets(spec, pipeline_keys(spec).features, partitions_def),
        jobs=monitoring_jobs(spec, partitions_def),
    )
