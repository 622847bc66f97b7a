"""Dagster definitions of the evaluation stage: the new model version on the test window, against
baselines and the current champion, and the gate that moves the ``champion`` / ``challenger``
aliases. Its blocking quality check (``min_roc_auc``, or ``min_r2`` for a regression) is evaluated
in the same step before any alias moves, so a model below the floor is never promoted.
"""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.config.tabular import PipelineSpec
from ml_assets.keys import MIN_R2_CHECK, MIN_ROC_AUC_CHECK, pipeline_keys
from ml_assets.metadata import (
    code_version,
    MLFLOW_RETRY,
    data_failure,
    float_value,
    markdown_table,
    png_markdown,
    retry_only_unreachable,
    rounded,
)
from ml_assets.training.registry import CHALLENGER, CHAMPION, EVALUATION_TAG
from resources.partition_reader import LAZY_LOAD
from resources.tracking import MlflowTracking


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
EVALUATION_CODE_VERSION = "1"


def log_report(tracking: MlflowTracking, run_id: str, report: Any) -> None:
    """The evaluation's metrics, decision, calibration and plots on the model's MLflow run."""
    with tracking.resume_run(run_id):
        import mlflow

        tracking.log_metrics({f"test_{k}": float(v) for k, v in report.metrics.items() if isinstance(v, (int, float))})
        tracking.log_dict({"metrics": report.metrics, "baselines": report.baseline_rows, "comparison": report.comparison,
                           "versus_baselines": report.versus, "decision": report.decision.to_dict()},
                          "evaluation/evaluation.json")
        if report.calibration is not None:
            tracking.log_dict({"bins": report.calibration}, "evaluation/calibration.json")
        for path in report.plots.values():
            mlflow.log_artifact(str(path), "evaluation/plots")


def shown_p_value(p_value: float, resamples: int | None = None) -> str:
    """A p-value for people: ``< 1/B`` when none of B bootstrap resamples reached the observed
    difference (the estimate is then 1/(B+1)), ``< 1e-16`` for an underflow, else 4 digits."""
    if resamples and p_value <= 1.0 / (resamples + 1) + 1e-15:
        return f"< 1/{resamples} (no resample reached the observed difference)"
    if p_value < 1e-16:
        return "< 1e-16"
    return f"{rounded(p_value):g}"


def report_metadata(report: Any, classification: bool) -> dict[str, Any]:
    """Typed, rounded metadata of an evaluation report: each metric once, as its own number."""
    metrics = report.metrics
    columns = ["model", *[c for c in ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier", "rmse", "mae", "r2")
                          if c in report.baseline_rows[0]]]
    metadata: dict[str, Any] = {
        "decision": dg.MetadataValue.text(report.decision.reason),
        "baselines": dg.MetadataValue.md(markdown_table([{c: r.get(c) for c in columns} for r in report.baseline_rows])),
    }
    if report.baseline_fit:
        metadata["baseline_fit_rows"] = dg.MetadataValue.int(int(report.baseline_fit["rows"]))
        metadata["baseline_fit_sample"] = dg.MetadataValue.text(str(report.baseline_fit["how"]))
    names = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1", "accuracy", "ece", "threshold") \
        if classification else ("rmse", "mae", "r2")
    for name in names:
        if metrics.get(name) is not None:
            metadata[f"test_{name}"] = float_value(metrics[name])
    headline = "roc_auc" if classification else "r2"
    rows = []
    for row in report.baseline_rows[1:]:
        name = row["key"]
        if row.get(headline) is not None and row[headline] == row[headline]:
            metadata[f"{name}_baseline_{headline}"] = float_value(row[headline])
        if report.versus and name in report.versus:
            versus = report.versus[name]
            metadata[f"vs_{name}_delta_auc"] = float_value(versus["delta_auc"])
            metadata[f"vs_{name}_p_value"] = float_value(versus["p_value"])
            rows.append({"baseline": name, f"baseline {headline}": row.get(headline),
                         "delta auc": versus["delta_auc"], "p-value (DeLong)": shown_p_value(versus["p_value"])})
    if rows:
        metadata["versus_baselines"] = dg.MetadataValue.md(markdown_table(rows))
    comparison = report.comparison
    if comparison is not None:
        effect = "delta_auc" if classification else "delta_mse"
        resamples = comparison.get("n_boot") if comparison["method"] == "paired_bootstrap" else None
        metadata |= {
            "comparison_method": dg.MetadataValue.text(str(comparison["method"])),
            "effect_size": float_value(comparison[effect]),
            "p_value": float_value(comparison["p_value"]),
            "p_value_shown": dg.MetadataValue.text(shown_p_value(float(comparison["p_value"]), resamples)),
        }
        if "ci_low" in comparison:
            metadata["ci_low"] = float_value(comparison["ci_low"])
            metadata["ci_high"] = float_value(comparison["ci_high"])
    return metadata


def record_decision(tracking: MlflowTracking, model: Any, reason: str, dagster_run_id: str) -> None:
    """The gate's decision appended to the model version's and the run's descriptions, and the
    evaluating Dagster run tagged on the version."""
    client = tracking.client()
    version = client.get_model_version(model.name, model.version)
    description = f"{version.description or ''}\n\nEvaluation gate: {reason}".strip()
    client.update_model_version(model.name, model.version, description=description)
    client.set_tag(model.run_id, "mlflow.note.content", description)
    for key, value in tracking.dagster_tags(dagster_run_id).items():
        client.set_model_version_tag(model.name, model.version, f"evaluation_{key}", value)


def build_evaluation_asset(spec: PipelineSpec, retry_policy: dg.RetryPolicy = MLFLOW_RETRY) -> dg.AssetsDefinition:
    keys, evaluation, name = pipeline_keys(spec), spec.evaluation, spec.registered_model_name
    classification = spec.target.task != "regression"  # binary or multiclass: the ROC-AUC floor
    gate_name = MIN_ROC_AUC_CHECK if classification else MIN_R2_CHECK
    gate_floor = evaluation.min_roc_auc if classification else evaluation.min_r2
    gate_metric = "ROC-AUC" if classification else "R^2"
    check = dg.AssetCheckSpec(
        name=gate_name, asset=keys.evaluation, blocking=True,
        description=(
            f"Quality gate: test {gate_metric} of the new model must be at least {gate_floor:g}. Evaluated"
            " before any alias moves, so a model below it is never promoted; blocking, so downstream"
            " assets do not run after a failure."
        ),
    )
    comparison_name = {
        "paired_bootstrap": f"a paired bootstrap of the AUC difference ({evaluation.bootstrap_samples} resamples)",
        "delong": "DeLong's test of the AUC difference",
        "mcnemar": "McNemar's test on the thresholded predictions",
    }[evaluation.comparison] if spec.target.task == "classification" else (
        "McNemar's test on the rows each model classifies correctly" if classification
        else "a paired t-test of the squared errors")

    @dg.asset(
        key=keys.evaluation,
        group_name=keys.training_group,
        code_version=code_version(EVALUATION_CODE_VERSION, spec.target, spec.model, spec.evaluation),
        kinds={"mlflow"},
        # only the columns the evaluation needs are read from the stored training set
        ins={"model": dg.AssetIn(key=keys.model),
             "training_set": dg.AssetIn(key=keys.training_set, metadata=LAZY_LOAD)},
        check_specs=[check],
        retry_policy=retry_policy,
        description=(
            f"Evaluates the new version of `{name}` on the test window and decides promotion."
            f" It is compared with the `{CHAMPION}` version on the same rows by {comparison_name}; it"
            f" becomes `{CHAMPION}` only if it is significantly better at alpha {evaluation.alpha:g}"
            f" (or there is no champion), otherwise `{CHALLENGER}`. Baselines, plots (also in MLflow)"
            " and the decision are in the metadata."
        ),
    )
    @retry_only_unreachable
    def _evaluation(context: dg.AssetExecutionContext, tracking: MlflowTracking, model, training_set):
        from ml_assets.evaluation.report import evaluate_version
        from ml_assets.memory import release_freed_memory
        from ml_assets.training.registry import ModelLoadError, load_model

        # in process after the model's step (the training job): its freed frames go back first
        release_freed_memory()
        tracking.check_reachable()
        new_model = load_model(tracking, model.model_uri)
        before = tracking.alias_version(name, CHAMPION)
        champion = None
        if before is not None and str(before.version) != model.version:
            try:
                champion = (str(before.version), load_model(tracking, f"models:/{name}/{before.version}"))
            except ModelLoadError as exc:
                raise data_failure(f"alias '{CHAMPION}' of '{name}': {exc}. Re-point the alias"
                                   " (MlflowClient.set_registered_model_alias) or delete it.") from None
        from ml_assets.training.windows import model_columns
        from resources.partition_reader import read_columns

        training_set = read_columns(training_set, model_columns(spec))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                report = evaluate_version(spec, training_set, new_model, model.version, champion, Path(tmp))
            except ValueError as exc:  # a data problem: retrying cannot help (MLflow errors still retry)
                raise data_failure(f"evaluation of pipeline '{spec.name}': {exc}") from None
            log_report(tracking, model.run_id, report)
            plots = png_markdown(report.plots)
        client = tracking.client()
        moved = report.decision.alias if report.passed and report.decision.alias is not None else None
        if moved:
            client.set_registered_model_alias(name, moved, model.version)
        client.set_model_version_tag(name, model.version, EVALUATION_TAG, report.decision.reason)
        record_decision(tracking, model, report.decision.reason, context.run.run_id)
        context.log.info(report.decision.reason)
        metadata = {
            "model_version": dg.MetadataValue.text(model.version),
            "test_rows": dg.MetadataValue.int(int(report.metrics.get("n", report.metrics.get("rows", 0)))),
            **report_metadata(report, classification),
            "promoted": dg.MetadataValue.bool(moved == CHAMPION),
            "alias": dg.MetadataValue.text(moved or "none"),
            "champion_before": dg.MetadataValue.text(str(before.version) if before is not None else "none"),
            "plots": dg.MetadataValue.md(plots),
        }
        metadata |= tracking.run_links(model.experiment_id, model.run_id)
        links = {"model_version_url": tracking.model_version_url(name, model.version),
                 "plots_url": tracking.artifacts_url(model.experiment_id, model.run_id, "evaluation/plots")}
        metadata |= {key: dg.MetadataValue.url(url) for key, url in links.items() if url}
        check_result = dg.AssetCheckResult(
            check_name=gate_name, passed=bool(report.passed), severity=dg.AssetCheckSeverity.ERROR,
            metadata={f"test_{'roc_auc' if classification else 'r2'}": float_value(report.headline),
                      "minimum": dg.MetadataValue.float(float(gate_floor)),
                      "model_version": dg.MetadataValue.text(model.version)},
            description=(f"test {gate_metric} {report.headline:.4f} >= {gate_floor:g}" if report.passed
                         else f"test {gate_metric} {report.headline:.4f} is below the minimum {gate_floor:g}: not promoted"),
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check_result])

    return _evaluation


def build_evaluation_defs(spec: PipelineSpec) -> dg.Definitions:
    return dg.Definitions(assets=[build_evaluation_asset(spec)])
