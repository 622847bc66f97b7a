"""Everything the evaluation of a new model version produces: test metrics, baselines with DeLong
tests against the model, plots, the paired comparison with the champion and the gate's decision.
The evaluation asset logs it to MLflow and moves aliases; this module only computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_assets.config.tabular import SPLIT_COLUMN, PipelineSpec
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
    baseline_fit: dict[str, Any] = field(default_factory=dict)  # rows the baselines were fitted on, and how

    @property
    def passed(self) -> bool:
        return self.headline == self.headline and self.headline >= self.gate_floor


def feature_importance(model: Any) -> dict[str, float]:
    """Total gain per feature of a ``ScoringModel``, largest first."""
    gains = model.booster.feature_importance(importance_type="gain")
    pairs = zip(model.preprocessing.columns, (float(g) for g in gains))
    return dict(sorted(pairs, key=lambda kv: kv[1], reverse=True))


def baseline_fit_rows(spec: PipelineSpec, train: Any) -> Any:
    """The train rows the linear and naive baselines are fitted on: at most
    ``evaluation.baseline_max_rows``, a seeded sample (stratified on the class) beyond that."""
    from ml_assets.training.windows import capped_sample

    stratify = spec.target.name if spec.target.task != "regression" else None
    return capped_sample(train, spec.evaluation.baseline_max_rows, seed=spec.model.seed, stratify=stratify)


def baseline_train_rows(spec: PipelineSpec, training_set: Any) -> tuple[Any, Any]:
    """``(labels, fit_rows)`` of the train window of ``training_set``: its target column (every train
    row: the prior) and ``baseline_fit_rows`` of it, the same rows in the same order, taken from the
    training set by position without copying the whole train window first."""
    import numpy as np

    from ml_assets.training.windows import capped_positions

    target = spec.target.name
    train_index = np.flatnonzero((training_set[SPLIT_COLUMN] == "train").to_numpy())
    labels = training_set[[target]].iloc[train_index].reset_index(drop=True)
    picked = capped_positions(len(train_index), spec.evaluation.baseline_max_rows, seed=spec.model.seed,
                              labels=labels[target] if spec.target.task != "regression" else None)
    rows = train_index if picked is None else train_index[picked]
    return labels, training_set.iloc[rows].reset_index(drop=True)


def baseline_sample_text(spec: PipelineSpec, train_rows: int) -> str:
    """How the baselines were fitted, for people (the evaluation's metadata)."""
    cap = spec.evaluation.baseline_max_rows
    if train_rows <= cap:
        return f"all {train_rows:,} train rows (cap {cap:,})"
    kind = "stratified on the class, " if spec.target.task != "regression" else ""
    return (f"a random sample of {cap:,} of the {train_rows:,} train rows ({kind}seed {spec.model.seed};"
            " evaluation.baseline_max_rows); the prior uses every train row")


def baseline_scores(spec: PipelineSpec, train: Any, test: Any, classes: list[str] | None,
                    fit_rows: Any = None) -> dict[str, tuple[str, Any]]:
    """``{key: (description, scores on test)}`` of every baseline: the prior, the linear model on the
    same features and the naive baselines the YAML declares. ``fit_rows``: the train rows the linear
    and naive baselines fit on when already drawn (``baseline_train_rows``; ``train`` then needs only
    the target), else ``baseline_fit_rows(spec, train)``."""
    from ml_assets.evaluation.baselines import column_mean_baseline, linear_baseline, linear_scores, prior_baseline
    from ml_assets.training.registry import model_input

    task, target = spec.target.task, spec.target.name
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    prior = prior_baseline(train, len(test), target=target, classes=classes)
    # constant-size work: the linear model (and the naive fallback) on a capped, seeded sample
    train = baseline_fit_rows(spec, train) if fit_rows is None else fit_rows
    linear = linear_baseline(train, (numeric, categorical), target=target, task=task, classes=classes,
                             seed=spec.model.seed)
    linear_name = "linear" if task == "regression" else "logistic"
    result = {
        "prior": ("training mean" if task == "regression" else "class prior of the training rows",
                  prior),
        linear_name: (f"{'ridge' if task == 'regression' else 'logistic'} regression, same features",
                      linear_scores(linear, model_input(test, numeric, categorical), task,
                                    len(classes) if classes else None)),
    }
    fallback = float(train[target].mean()) if task != "multiclass" else None
    for declared in spec.evaluation.baselines:
        description = declared.description or f"mean of {', '.join(declared.mean_of)}"
        result[declared.name] = (f"naive: {description}", column_mean_baseline(test, declared.mean_of, fallback))
    return result


def evaluate_version(
    spec: PipelineSpec, training_set: Any, model: Any, version: str, champion: tuple[str, Any] | None, workdir: Path
) -> EvaluationReport:
    """Evaluate ``model`` (a ``ScoringModel``, version ``version``) on the test window of
    ``training_set``; ``champion`` is ``(version, ScoringModel)`` of the current champion, if any.
    A ``ValueError`` is a data problem (never retried by the asset)."""
    import numpy as np

    from ml_assets.evaluation import plots as p
    from ml_assets.evaluation.gate import compare_with_champion, promotion_decision, regression_decision
    from ml_assets.evaluation.metrics import (
        calibration_table,
        classification_metrics,
        evaluate,
        expected_calibration_error,
        multiclass_metrics,
        regression_metrics,
    )
    from ml_assets.evaluation.stats import delong_test
    from ml_assets.training.boosting import target_array

    # the train window is not copied whole: its labels (the prior) and the baselines' capped sample
    test = split_rows(training_set, "test")
    train, fit_rows = baseline_train_rows(spec, training_set)
    target, evaluation, task = spec.target.name, spec.evaluation, spec.target.task
    classes = list(model.preprocessing.classes) if task == "multiclass" else None
    y = target_array(test, target, classes)
    new = model.score(test)
    baselines = baseline_scores(spec, train, test, classes, fit_rows)
    del fit_rows
    plots: dict[str, Path] = {}
    versus = calibration = None
    if task == "classification":
        floor = evaluation.min_roc_auc
        metrics = classification_metrics(y, new["score"], threshold=model.preprocessing.threshold)
        metrics["ece"] = expected_calibration_error(y, new["score"])
        headline = float(metrics["roc_auc"]) if metrics["roc_auc"] is not None else float("nan")
        baseline_rows = [{"model": f"LightGBM v{version}", **evaluate(y, new["score"])}]
        baseline_rows += [{"model": name, **evaluate(y, scores)} for name, scores in baselines.values()]
        versus = {key: delong_test(y, new["score"], scores) for key, (_, scores) in baselines.items() if key != "prior"}
        plots = {
            "ROC curve": p.plot_roc(y, new["score"], workdir / "roc.png", label=f"v{version}"),
            "Precision-recall curve": p.plot_pr(y, new["score"], workdir / "pr.png", label=f"v{version}"),
            "Confusion matrix (test, validation threshold)": p.plot_confusion(y, new["label"], workdir / "confusion.png"),
            "Calibration": p.plot_calibration(y, new["score"], workdir / "calibration.png"),
        }
        calibration = calibration_table(y, new["score"])
    elif task == "multiclass":
        floor = evaluation.min_roc_auc
        proba = model.probabilities(test)
        metrics = multiclass_metrics(y, proba, classes)
        headline = float(metrics["roc_auc"])
        baseline_rows = [{"model": f"LightGBM v{version}", **metrics}]
        baseline_rows += [{"model": name, **multiclass_metrics(y, scores, classes)} for name, scores in baselines.values()]
    else:
        floor = evaluation.min_r2
        metrics = regression_metrics(y, new["score"])
        headline = float(metrics["r2"])
        baseline_rows = [{"model": f"LightGBM v{version}", **metrics}]
        baseline_rows += [{"model": name, **regression_metrics(y, scores)} for name, scores in baselines.values()]
    for row, key in zip(baseline_rows[1:], baselines):
        row["key"] = key
    importance = feature_importance(model)
    plots["Feature importance (gain)"] = p.plot_feature_importance(
        list(importance), list(importance.values()), workdir / "feature_importance.png"
    )
    comparison = None
    if champion is not None and champion[0] != version:
        extra = None
        if task == "multiclass":
            old_auc = multiclass_metrics(y, champion[1].probabilities(test), classes)["roc_auc"]
            extra = {"classes": classes, "new_auc": headline, "champion_auc": old_auc}
        comparison = compare_with_champion(spec, y, new, champion[1].score(test), extra)
        comparison["champion_version"] = champion[0]
    if task == "regression":
        decision = regression_decision(comparison, evaluation.alpha, floor, headline)
    else:
        decision = promotion_decision(comparison, evaluation.alpha, floor, headline)
    fit_rows = min(len(train), evaluation.baseline_max_rows)
    baseline_fit = {"rows": fit_rows, "train_rows": len(train), "seed": spec.model.seed,
                    "how": baseline_sample_text(spec, len(train))}
    return EvaluationReport(metrics, headline, floor, baseline_rows, versus, comparison, decision, plots, calibration,
                            baseline_fit)
