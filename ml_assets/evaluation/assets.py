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
from ml_assets.metadata import MLFLOW_RETRY, data_failure, markdown_table, png_markdown
from ml_assets.training.registry import CHALLENGER, CHAMPION, EVALUATION_TAG
from resources.tracking import MlflowTracking


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


def report_metadata(report: Any, classification: bool) -> dict[str, Any]:
    metrics = report.metrics
    columns = ["model", *[c for c in ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier", "rmse", "mae", "r2")
                          if c in report.baseline_rows[0]]]
    metadata: dict[str, Any] = {
        "decision": dg.MetadataValue.text(report.decision.reason),
        "metrics": dg.MetadataValue.json(dict(metrics)),
        "baselines": dg.MetadataValue.md(markdown_table([{c: r.get(c) for c in columns} for r in report.baseline_rows])),
    }
    names = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall", "f1", "accuracy", "ece", "threshold") \
        if classification else ("rmse", "mae", "r2")
    for name in names:
        if metrics.get(name) is not None:
            metadata[f"test_{name}"] = dg.MetadataValue.float(float(metrics[name]))
    headline = "roc_auc" if classification else "r2"
    for row in report.baseline_rows[1:]:
        name = row["key"]
        if row.get(headline) is not None and row[headline] == row[headline]:
            metadata[f"{name}_baseline_{headline}"] = dg.MetadataValue.float(float(row[headline]))
        if report.versus and name in report.versus:
            metadata[f"vs_{name}_delta_auc"] = dg.MetadataValue.float(float(report.versus[name]["delta_auc"]))
            metadata[f"vs_{name}_p_value"] = dg.MetadataValue.float(float(report.versus[name]["p_value"]))
    comparison = report.comparison
    if comparison is not None:
        effect = "delta_auc" if classification else "delta_mse"
        metadata |= {
            "comparison_method": dg.MetadataValue.text(str(comparison["method"])),
            "effect_size": dg.MetadataValue.float(float(comparison[effect])),
            "p_value": dg.MetadataValue.float(float(comparison["p_value"])),
        }
        if "ci_low" in comparison:
            metadata["ci_low"] = dg.MetadataValue.float(float(comparison["ci_low"]))
            metadata["ci_high"] = dg.MetadataValue.float(float(comparison["ci_high"]))
    return metadata


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
        kinds={"mlflow"},
        ins={"model": dg.AssetIn(key=keys.model), "training_set": dg.AssetIn(key=keys.training_set)},
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
    def _evaluation(context: dg.AssetExecutionContext, tracking: MlflowTracking, model, training_set):
        from ml_assets.evaluation.report import evaluate_version
        from ml_assets.training.registry import ModelLoadError, load_model

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
        url = tracking.model_version_url(name, model.version)
        if url:
            metadata["model_version_url"] = dg.MetadataValue.url(url)
        check_result = dg.AssetCheckResult(
            check_name=gate_name, passed=bool(report.passed), severity=dg.AssetCheckSeverity.ERROR,
            metadata={f"test_{'roc_auc' if classification else 'r2'}": dg.MetadataValue.float(report.headline),
                      "minimum": dg.MetadataValue.float(float(gate_floor)),
                      "model_version": dg.MetadataValue.text(model.version)},
            description=(f"test {gate_metric} {report.headline:.4f} >= {gate_floor:g}" if report.passed
                         else f"test {gate_metric} {report.headline:.4f} is below the minimum {gate_floor:g}: not promoted"),
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check_result])

    return _evaluation


def build_evaluation_defs(spec: PipelineSpec) -> dg.Definitions:
    return dg.Definitions(assets=[build_evaluation_asset(spec)])
