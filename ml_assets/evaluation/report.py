"""Everything the evaluation of a new model version produces: test metrics, baselines with DeLong
tests against the model, plots, the paired comparison with the champion and the gate's decision.
The evaluation asset logs it to MLflow and moves aliases; this module only computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_assets.config.tabular import PipelineSpec
from ml_assets.training.windows import split_rows


@dataclass
class EvaluationReport:
    metrics: dict[str, Any]
    headline: float  # test ROC-AUC, or R^2 of a regression
    gate_floor: float
    baseline_rows: list[dict[str, Any]]
    versus: dict[str, dict[str, Any]] | None  # DeLong tests of the model against each baseline
    comparison: dict[str, Any] | None  # the paired test against the champion
    decision: Any  # gate.Decision
    plots: dict[str, Path] = field(default_factory=dict)
    calibration: list[dict[str, Any]] | None = None

    @property
    def passed(self) -> bool:
        return self.headline == self.headline and self.headline >= self.gate_floor


def feature_importance(model: Any) -> dict[str, float]:
    """Total gain per feature of a ``ScoringModel``, largest first."""
    gains = model.booster.feature_importance(importance_type="gain")
    pairs = zip(model.preprocessing.columns, (float(g) for g in gains))
    return dict(sorted(pairs, key=lambda kv: kv[1], reverse=True))


def evaluate_version(
    spec: PipelineSpec, training_set: Any, model: Any, version: str, champion: tuple[str, Any] | None, workdir: Path
) -> EvaluationReport:
    """Evaluate ``model`` (a ``ScoringModel``, version ``version``) on the test window of
    ``training_set``; ``champion`` is ``(version, ScoringModel)`` of the current champion, if any."""
    import numpy as np

    from ml_assets.evaluation import plots as p
    from ml_assets.evaluation.baselines import logistic_baseline, naive_rate_baseline
    from ml_assets.evaluation.gate import compare_with_champion, promotion_decision, regression_decision
    from ml_assets.evaluation.metrics import (
        calibration_table,
        classification_metrics,
        evaluate,
        expected_calibration_error,
        regression_metrics,
    )
    from ml_assets.evaluation.stats import delong_test
    from ml_assets.training.registry import model_input

    test, train = split_rows(training_set, "test"), split_rows(training_set, "train")
    target, evaluation = spec.target.name, spec.evaluation
    y = test[target].to_numpy(dtype="float64")
    new = model.score(test)
    plots: dict[str, Path] = {}
    versus = calibration = None
    if spec.target.task == "classification":
        floor = evaluation.min_roc_auc
        metrics = classification_metrics(y, new["score"], threshold=model.preprocessing.threshold)
        metrics["ece"] = expected_calibration_error(y, new["score"])
        headline = float(metrics["roc_auc"]) if metrics["roc_auc"] is not None else float("nan")
        naive = naive_rate_baseline(test, float(train[target].mean()))
        numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
        logistic = logistic_baseline(train, (numeric, categorical), target=target, seed=spec.model.seed)
        logistic_score = logistic.predict_proba(model_input(test, numeric, categorical))[:, 1]
        baseline_rows = [
            {"model": f"LightGBM v{version}", **evaluate(y, new["score"])},
            {"model": "naive: historical carrier & route delay rate", **evaluate(y, naive)},
            {"model": "logistic regression, same features", **evaluate(y, logistic_score)},
        ]
        versus = {"naive": delong_test(y, new["score"], naive), "logistic": delong_test(y, new["score"], logistic_score)}
        plots = {
            "ROC curve": p.plot_roc(y, new["score"], workdir / "roc.png", label=f"v{version}"),
            "Precision-recall curve": p.plot_pr(y, new["score"], workdir / "pr.png", label=f"v{version}"),
            "Confusion matrix (test, validation threshold)": p.plot_confusion(y, new["label"], workdir / "confusion.png"),
            "Calibration": p.plot_calibration(y, new["score"], workdir / "calibration.png"),
        }
        calibration = calibration_table(y, new["score"])
    else:
        floor = evaluation.min_r2
        metrics = regression_metrics(y, new["score"])
        headline = float(metrics["r2"])
        baseline_rows = [{"model": f"LightGBM v{version}", **metrics},
                         {"model": "training mean", **regression_metrics(y, np.full(len(y), train[target].mean()))}]
    importance = feature_importance(model)
    plots["Feature importance (gain)"] = p.plot_feature_importance(
        list(importance), list(importance.values()), workdir / "feature_importance.png"
    )
    comparison = None
    if champion is not None and champion[0] != version:
        comparison = compare_with_champion(spec, y, new, champion[1].score(test))
        comparison["champion_version"] = champion[0]
    if spec.target.task == "classification":
        decision = promotion_decision(comparison, evaluation.alpha, floor, headline)
    else:
        decision = regression_decision(comparison, evaluation.alpha, floor, headline)
    return EvaluationReport(metrics, headline, floor, baseline_rows, versus, comparison, decision, plots, calibration)
