"""Training a pipeline's model: tune (optional), fit, choose the decision threshold on validation, and
log everything to the model's MLflow run before registering it.

What the run holds: the LightGBM parameters, every tuning trial, the best trial, feature importance
(JSON and plot), the model with its signature and input example, the pipeline YAML and its SHA-256,
the git commit, and the days, rows and dates of each window.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_assets.config.paths import REPO_ROOT
from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN, PipelineSpec
from ml_assets.training.windows import SPLITS, split_rows
from resources.tracking import MlflowTracking


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The checked-out commit (with ``-dirty`` when files differ), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@dataclass
class FittedModel:
    bundle: Any  # ModelBundle
    tuning: Any | None  # TuningResult
    fit_seconds: float
    train_rows: int = 0  # labelled rows of the train window
    fitted_rows: int = 0  # rows fitted on: all of them, or the model.max_train_rows sample

    @property
    def sampled(self) -> bool:
        return self.fitted_rows < self.train_rows


def train_sample(train: Any, spec: PipelineSpec) -> Any:
    """The train rows the model is fitted on: every row, or, beyond ``model.max_train_rows``, a
    seeded sample (``model.seed``) stratified on the class of a classification target, in time order."""
    from ml_assets.training.windows import capped_sample

    stratify = spec.target.name if spec.target.task != "regression" else None
    return capped_sample(train, spec.model.max_train_rows, seed=spec.model.seed, stratify=stratify)


def fit_model(training_set: Any, spec: PipelineSpec, on_trial: Callable[[Any], None] | None = None) -> FittedModel:
    """Tune (when ``model.tuning.n_trials``), fit on the train window early-stopped on validate, and
    choose the decision threshold on validate. ``ValueError`` for data that cannot be trained on."""
    from ml_assets.evaluation.metrics import choose_threshold
    from ml_assets.training.boosting import predict_proba, train_lightgbm
    from ml_assets.training.tuning import tune_lightgbm

    model_cfg, tuning, task = spec.model, spec.model.tuning, spec.target.task
    train, validate = split_rows(training_set, "train"), split_rows(training_set, "validate")
    train_rows = len(train)
    train = train_sample(train, spec)
    for name, part in (("train", train), ("validate", validate)):
        if len(part) < model_cfg.windows.min_rows:
            raise ValueError(
                f"the '{name}' window has {len(part)} labelled rows, fewer than min_rows={model_cfg.windows.min_rows}"
            )
    features = (list(spec.features.numeric), list(spec.features.categorical))
    common = dict(seed=model_cfg.seed, early_stopping_rounds=model_cfg.early_stopping_rounds,
                  num_boost_round=model_cfg.max_boost_rounds, target=spec.target.name,
                  num_threads=model_cfg.threads, task=task, classes=spec.target.classes)
    started = time.perf_counter()
    tuned = None
    if tuning.n_trials:
        search_space = (
            {name: p.model_dump(exclude_none=True) for name, p in tuning.search_space.items()}
            if tuning.search_space else None
        )
        tuned = tune_lightgbm(train, validate, features, search_space, n_trials=tuning.n_trials,
                              timeout_s=tuning.timeout_seconds, base_params=model_cfg.params, on_trial=on_trial,
                              **common)
    params = tuned.best_params if tuned else dict(model_cfg.params)
    bundle = train_lightgbm(train, validate, features, params, **common)
    if task == "classification":
        bundle.threshold = choose_threshold(
            validate[spec.target.name], predict_proba(bundle, validate), spec.evaluation.threshold_objective
        )
    return FittedModel(bundle, tuned, time.perf_counter() - started, train_rows, len(train))


@dataclass(frozen=True)
class RegisteredModel:
    """What the model asset hands to evaluation: where the registered version lives."""

    name: str
    version: str
    run_id: str
    model_uri: str  # models:/<name>/<version>
    task: str
    experiment_id: str = ""


def window_days(training_set: Any) -> dict[str, list[str]]:
    """The days of each window (``["none"]`` for the windows of an unpartitioned pipeline)."""
    days = {}
    for name in SPLITS:
        values = training_set.loc[training_set[SPLIT_COLUMN] == name, PARTITION_COLUMN].dropna()
        days[name] = sorted(values.astype(str).unique()) or ["none"]
    return days


def training_description(spec: PipelineSpec, training_set: Any, days: dict[str, list[str]], tags: dict[str, str]) -> str:
    """What was trained on which windows, for the MLflow run and the model version (markdown)."""
    windows = ", ".join(
        f"{split} {days[split][0]}..{days[split][-1]} ({int((training_set[SPLIT_COLUMN] == split).sum())} rows)"
        for split in SPLITS
    )
    made_by = tags.get("dagster_run_url") or f"Dagster run {tags.get('dagster_run_id', '?')}"
    return (
        f"LightGBM {spec.target.task} model of `{spec.target.name}` for the {spec.name} pipeline,"
        f" {len(spec.features.numeric)} numeric and {len(spec.features.categorical)} categorical features."
        f" Windows: {windows}. Made by {made_by}. The evaluation gate's decision follows when it runs."
    )


def log_and_register(
    tracking: MlflowTracking, fitted: FittedModel, training_set: Any, spec: PipelineSpec, pipeline_file: Path,
    tags: dict[str, str],
) -> RegisteredModel:
    """One MLflow run in the pipeline's experiment with everything the fit produced, and a new
    registered version of the pipeline's model, tagged as awaiting evaluation."""
    import mlflow

    from ml_assets.evaluation.plots import plot_feature_importance
    from ml_assets.training.registry import log_model, model_input

    bundle, tuned, name = fitted.bundle, fitted.tuning, spec.registered_model_name
    days = window_days(training_set)
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(
        spec.name, run_name=f"{spec.name}-model-{tags.get('dagster_run_id', '')[:8]}", tags=tags
    ) as run:
        workdir = Path(tmp)
        tracking.log_params({k: v for k, v in bundle.params.items() if k != "num_threads"})
        tracking.log_params({
            "best_iteration": bundle.best_iteration, "threshold": round(bundle.threshold, 6),
            "numeric_features": len(numeric), "categorical_features": len(categorical),
            **{f"{split}_first_day": days[split][0] for split in SPLITS},
            **{f"{split}_last_day": days[split][-1] for split in SPLITS},
            **{f"{split}_rows": int((training_set[SPLIT_COLUMN] == split).sum()) for split in SPLITS},
            "fitted_rows": fitted.fitted_rows, "max_train_rows": spec.model.max_train_rows or "none",
        })
        tracking.log_metrics({f"validate_{k}": v for k, v in bundle.validation_metrics.items()})
        tracking.log_metrics({"fit_seconds": fitted.fit_seconds, "final_fit_seconds": bundle.train_seconds})
        if tuned:
            for record in tuned.trials:
                tracking.log_metrics({"trial_value": record.value, "trial_seconds": record.duration_s}, step=record.number)
            tracking.log_metrics({"best_trial_value": tuned.best_value, "trials": len(tuned.trials)})
            tracking.log_dict({"best_params": tuned.best_params, "best_value": tuned.best_value,
                               "trials": [vars(r) for r in tuned.trials]}, "tuning/trials.json")
        importance = bundle.feature_importance
        tracking.log_dict(importance, "feature_importance.json")
        mlflow.log_artifact(str(plot_feature_importance(
            list(importance), list(importance.values()), workdir / "feature_importance.png")), "plots")
        mlflow.log_artifact(str(pipeline_file), "pipeline")
        tracking.log_dict(days, "partitions_used.json")
        train = split_rows(training_set, "train")
        sample = model_input(train.sample(min(len(train), 2000), random_state=spec.model.seed), numeric, categorical)
        info = log_model(bundle, sample, name, workdir,
                         version_tags={**tags, "threshold": f"{bundle.threshold:.6f}"})
        version = str(info.registered_model_version)
        client = tracking.client()
        description = training_description(spec, training_set, days, tags)
        client.set_tag(run.info.run_id, "mlflow.note.content", description)
        client.update_model_version(name, version, description=description)
    return RegisteredModel(name, version, run.info.run_id, f"models:/{name}/{version}", spec.target.task,
                           run.info.experiment_id)
