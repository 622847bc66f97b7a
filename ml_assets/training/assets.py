"""Dagster definitions of the training stage: the training set (feature days of the train, validate
and test windows) and the model (tuned LightGBM, logged to MLflow and registered as a new version).
The evaluation gate that moves aliases lives in ``ml_assets.evaluation``; the training job runs all
three. pandas, LightGBM and MLflow load inside the asset bodies.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN, PipelineSpec
from ml_assets.execution import launch_tags, small_run_executor
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import MLFLOW_RETRY, data_failure, float_value, markdown_table, retry_only_unreachable, code_version
from ml_assets.training.windows import SPLITS
from resources.partition_reader import LAZY_LOAD
from resources.tracking import MlflowTracking, MlflowUnavailableError


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
TRAINING_CODE_VERSION = "1"


class TrainingSetConfig(dg.Config):
    """Run configuration of the training set: overrides of the YAML's windows for one run (the
    drift sensor and the weekly schedule retrain on ``mode: rolling``)."""

    mode: str | None = None  # "fixed" or "rolling"; default the YAML's
    end: str | None = None  # last test day of the rolling windows (ISO date); default the last feature day


def rolling_run_config(spec: PipelineSpec, end: str | None = None) -> dict[str, Any]:
    """Run config of ``<name>_training_job`` that trains on the rolling windows (ending on ``end``,
    default the last feature day): what the weekly schedule and the drift sensor launch."""
    config: dict[str, Any] = {"mode": "rolling"}
    if end is not None:
        config["end"] = end
    step = "__".join(pipeline_keys(spec).training_set.path)
    return {"ops": {step: {"config": config}}}


def windows_summary(frame: Any, spec: PipelineSpec, resolved: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per window: dates, days, rows and the positive rate (or target mean)."""
    rows = []
    for name in SPLITS:
        part = frame[frame[SPLIT_COLUMN] == name]
        row: dict[str, Any] = {"window": name, "first day": resolved[name][0], "last day": resolved[name][1],
                               "days": int(part[PARTITION_COLUMN].nunique()), "rows": len(part)}
        if spec.target.task == "multiclass":
            counts = part[spec.target.name].value_counts()
            row["classes"] = ", ".join(f"{k} {v}" for k, v in counts.items())
        else:
            column = "positive rate" if spec.target.task == "classification" else "target mean"
            row[column] = float(part[spec.target.name].mean())
        rows.append(row)
    return rows


def build_training_set_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)
    windows = spec.model.windows
    fractions = windows.fractions
    shares = f"{fractions.train:.0%} / {fractions.validate_:.0%} / {fractions.test:.0%}"
    if spec.partitioning is None:
        when = (f"by `{windows.time_column}`, {shares} of the rows (earliest train)" if windows.time_column
                else f"a seeded random split, {shares} of the rows (stratified on the class)"
                if spec.target.task != "regression" else f"a seeded random split, {shares} of the rows")
    elif windows.mode == "fixed" and windows.dated:
        when = (f"train {windows.train.start}..{windows.train.end}, validate {windows.validation.start}.."
                f"{windows.validation.end}, test {windows.test.start}..{windows.test.end}")
    elif windows.mode == "fixed":
        when = f"{shares} of the partition days, in time order (train, validate, test)"
    else:
        when = (f"the last {windows.rolling.train_days} + {windows.rolling.validate_days} +"
                f" {windows.rolling.test_days} days (train, validate, test)")

    @dg.asset(
        key=keys.training_set,
        group_name=keys.training_group,
        code_version=code_version(TRAINING_CODE_VERSION, spec.target, spec.features, spec.model),
        kinds={"pandas", "parquet"},
        # daily features are read one day at a time (resources.partition_reader)
        ins={"features": dg.AssetIn(key=keys.features, metadata=LAZY_LOAD)},
        io_manager_key="parquet_io_manager",
        description=(
            f"Labelled feature rows of the {spec.name} pipeline split by time: {when}. Rows with an"
            f" unknown `{spec.target.name}` are dropped. Column `{SPLIT_COLUMN}` says which window a row"
            " belongs to."
        ),
    )
    def _training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, features):
        from ml_assets.training.windows import WindowError, build_training_set, build_training_set_by_day
        from resources.partition_reader import StoredPartitions

        build = build_training_set_by_day if isinstance(features, StoredPartitions) else build_training_set
        try:
            frame, resolved = build(features, spec, config.mode, config.end)
        except WindowError as exc:
            raise data_failure(f"training set of pipeline '{spec.name}': {exc}") from None
        rows = windows_summary(frame, spec, resolved)
        context.log.info("training set: " + ", ".join(f"{r['window']} {r['rows']} rows" for r in rows))
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "windows": dg.MetadataValue.md(markdown_table(rows)),
            **{f"{r['window']}_rows": dg.MetadataValue.int(r["rows"]) for r in rows},
        }
        if spec.target.task == "classification":
            metadata |= {f"{r['window']}_positive_rate": float_value(r["positive rate"]) for r in rows}
        metadata["label_known_rows"] = dg.MetadataValue.int(int(frame[spec.target.name].notna().sum()))
        return dg.Output(frame, metadata=metadata)

    return _training_set


def model_metadata(registered: Any, fitted: Any, tracking: MlflowTracking, tags: dict[str, str]) -> dict[str, Any]:
    bundle, tuned = fitted.bundle, fitted.tuning
    metric = "rmse" if registered.task == "regression" else "roc_auc"
    metadata: dict[str, Any] = {
        "registered_model": dg.MetadataValue.text(registered.name),
        "model_version": dg.MetadataValue.text(registered.version),
        "model_uri": dg.MetadataValue.text(registered.model_uri),
        **tracking.run_links(registered.experiment_id, registered.run_id),
        "mlflow_tracking_uri": dg.MetadataValue.text(tracking.display_uri()),
        f"validate_{metric}": float_value(bundle.validation_metrics[metric]),
        "best_iteration": dg.MetadataValue.int(bundle.best_iteration),
        "threshold": float_value(bundle.threshold),
        "trials": dg.MetadataValue.int(len(tuned.trials) if tuned else 0),
        "fit_seconds": dg.MetadataValue.float(round(fitted.fit_seconds, 2)),
        "train_rows": dg.MetadataValue.int(fitted.train_rows),
        "fitted_rows": dg.MetadataValue.int(fitted.fitted_rows),
        "train_sample": dg.MetadataValue.text(
            f"a {'' if registered.task == 'regression' else 'stratified '}random sample of"
            f" {fitted.fitted_rows:,} of the {fitted.train_rows:,} train rows"
            f" (seed {bundle.seed}; model.max_train_rows)" if fitted.sampled
            else f"every train row ({fitted.train_rows:,})"),
        "git_commit": dg.MetadataValue.text(tags["git_commit"]),
        "pipeline_yaml_sha256": dg.MetadataValue.text(tags["pipeline_yaml_sha256"]),
        "top_features": dg.MetadataValue.md(markdown_table(
            [{"feature": n, "gain": g} for n, g in list(bundle.feature_importance.items())[:10]])),
    }
    if tuned:
        metadata["best_params"] = dg.MetadataValue.json(
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in tuned.best_params.items()}
        )
    version_url = tracking.model_version_url(registered.name, registered.version)
    if version_url:
        metadata["model_version_url"] = dg.MetadataValue.url(version_url)
    return metadata


def build_model_asset(spec: PipelineSpec, pipeline_file: Path, retry_policy: dg.RetryPolicy = MLFLOW_RETRY) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)
    model_cfg, task, tuning = spec.model, spec.target.task, spec.model.tuning
    description = (
        f"LightGBM {task} model of `{spec.target.name}` for the {spec.name} pipeline, registered as a"
        f" new version of `{spec.registered_model_name}` in the MLflow Model Registry. Native categorical"
        f" handling, early stopping on the validation window, seed {model_cfg.seed}."
        + (f" Tuned with Optuna: up to {tuning.n_trials} trials or {tuning.timeout_seconds:g} s."
           if tuning.n_trials else " Not tuned (fixed parameters from the YAML).")
        + " The preprocessing travels inside the logged model, a standard MLflow pyfunc."
    )

    @dg.asset(
        key=keys.model,
        group_name=keys.training_group,
        code_version=code_version(TRAINING_CODE_VERSION, spec.target, spec.features, spec.model),
        kinds={"lightgbm", "mlflow"},
        # only the columns the fit needs are read from the stored training set
        ins={"training_set": dg.AssetIn(key=keys.training_set, metadata=LAZY_LOAD)},
        retry_policy=retry_policy,
        description=description,
    )
    @retry_only_unreachable
    def _model(context: dg.AssetExecutionContext, tracking: MlflowTracking, training_set) -> dg.Output:
        from ml_assets.memory import release_freed_memory
        from ml_assets.training.fitting import file_sha256, fit_model, git_commit, log_and_register
        from ml_assets.training.registry import abandon_stale_candidates

        # in process after the training set's step (the training job): its freed frames go back first
        release_freed_memory()
        try:
            tracking.check_reachable()
        except MlflowUnavailableError as exc:
            raise MlflowUnavailableError(f"model of pipeline '{spec.name}': {exc}") from None

        def on_trial(record: Any) -> None:
            context.log.info(
                f"trial {record.number}: validation {'-RMSE' if task == 'regression' else 'ROC-AUC'}"
                f" {record.value:.4f} in {record.duration_s:.1f} s ({record.best_iteration} rounds)"
            )

        from ml_assets.training.windows import model_columns
        from resources.partition_reader import read_columns

        training_set = read_columns(training_set, model_columns(spec))
        try:
            fitted = fit_model(training_set, spec, on_trial)
        except ValueError as exc:
            raise data_failure(f"model of pipeline '{spec.name}': {exc}") from None
        tags = {"pipeline": spec.name, **tracking.dagster_tags(context.run.run_id), "git_commit": git_commit(),
                "pipeline_yaml_sha256": file_sha256(pipeline_file)}
        for stale in abandon_stale_candidates(tracking, spec.registered_model_name, _run_finished(context),
                                              current_run=context.run.run_id):
            context.log.warning(f"model version {stale} was left unevaluated by a run that ended; tagged abandoned")
        registered = log_and_register(tracking, fitted, training_set, spec, pipeline_file, tags)
        context.log.info(f"registered {registered.name} version {registered.version} (MLflow run {registered.run_id})")
        return dg.Output(registered, metadata=model_metadata(registered, fitted, tracking, tags))

    return _model


def _run_finished(context: dg.AssetExecutionContext):
    """``run_id -> bool``: whether the instance knows the run as finished (or not at all)."""

    def finished(run_id: str) -> bool:
        run = context.instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    return finished


def build_training_defs(spec: PipelineSpec, pipeline_file: Path) -> dg.Definitions:
    """Training set and model of ``spec``, and the training job: every asset of the training group,
    the evaluation (``ml_assets.evaluation``) included."""
    keys = pipeline_keys(spec)
    training_job = dg.define_asset_job(
        name=keys.training_job,
        selection=dg.AssetSelection.groups(keys.training_group),
        # Three steps one after another: in one process, LightGBM, scikit-learn and MLflow are
        # imported once and no step process is started (unless ML_EXECUTOR chooses otherwise).
        executor_def=small_run_executor(),
        tags=launch_tags(),
        description=(
            f"Train, register and evaluate a new version of {spec.registered_model_name}: training set,"
            " model (tuned LightGBM in MLflow) and the evaluation gate that moves the champion alias."
        ),
    )
    assets = [build_training_set_asset(spec), build_model_asset(spec, pipeline_file)]
    return dg.Definitions(assets=assets, jobs=[training_job])
