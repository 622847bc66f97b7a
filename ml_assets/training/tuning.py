"""Optuna tuning of the LightGBM fit: a seeded TPE search over a plain-dict search space (which can
come from the YAML), whose first trial is the default configuration. optuna loads inside the function.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_assets.training.boosting import DEFAULT_LGBM_PARAMS, feature_lists, train_lightgbm

# A plain-dict search space (can come from YAML): {name: {"type": int|float|categorical, ...}}.
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "num_leaves": {"type": "int", "low": 15, "high": 255, "log": True},
    "learning_rate": {"type": "float", "low": 0.02, "high": 0.2, "log": True},
    "min_child_samples": {"type": "int", "low": 20, "high": 1000, "log": True},
    "feature_fraction": {"type": "float", "low": 0.4, "high": 1.0},
    "bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0},
    "lambda_l2": {"type": "float", "low": 1e-3, "high": 100.0, "log": True},
    "cat_smooth": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
}


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    value: float | None  # validation ROC-AUC; None for a failed trial
    duration_s: float
    best_iteration: int | None = None
    state: str = "COMPLETE"


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float
    best_iteration: int | None
    trials: list[TrialRecord]
    elapsed_s: float
    timeout_s: float | None
    n_trials: int | None


def _suggest(trial: Any, name: str, spec: Any) -> Any:
    if not isinstance(spec, Mapping):  # a fixed value
        return spec
    kind = spec.get("type")
    if kind == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)),
                                 step=int(spec.get("step", 1)))
    if kind == "float":
        return trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                   log=bool(spec.get("log", False)))
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    raise ValueError(f"search space entry '{name}': type must be int, float or categorical, got {kind!r}")


def _admits(spec: Any, value: Any) -> bool:
    """Whether a search-space entry can produce ``value``."""
    if not isinstance(spec, Mapping):
        return False
    if spec.get("type") == "categorical":
        return value in list(spec.get("choices", []))
    try:
        return float(spec["low"]) <= float(value) <= float(spec["high"])
    except (KeyError, TypeError, ValueError):
        return False


def fit_to_rows(search_space: dict[str, Any], rows: int) -> dict[str, Any]:
    """The search space with ``min_child_samples`` capped at a tenth of the training rows (at least
    2): on a small table (a few hundred rows) larger leaves leave the trees without a single split."""
    entry = search_space.get("min_child_samples")
    if not isinstance(entry, Mapping) or entry.get("type") != "int":
        return search_space
    cap = max(2, rows // 10)
    if float(entry["high"]) <= cap:
        return search_space
    return {**search_space, "min_child_samples": {**entry, "high": cap, "low": min(int(entry["low"]), cap)}}


def validate_search_space(search_space: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for a malformed plain-dict search space."""
    for name, spec in search_space.items():
        if not isinstance(spec, Mapping):
            continue
        kind = spec.get("type")
        if kind in ("int", "float"):
            if "low" not in spec or "high" not in spec:
                raise ValueError(f"search space entry '{name}' needs 'low' and 'high'")
            if float(spec["low"]) > float(spec["high"]):
                raise ValueError(f"search space entry '{name}': low {spec['low']} > high {spec['high']}")
            if spec.get("log") and float(spec["low"]) <= 0:
                raise ValueError(f"search space entry '{name}': a log scale needs low > 0")
        elif kind == "categorical":
            if not spec.get("choices"):
                raise ValueError(f"search space entry '{name}' needs a non-empty 'choices' list")
        else:
            raise ValueError(
                f"search space entry '{name}': type must be int, float or categorical, got {kind!r}"
            )


def tune_lightgbm(
    train: Any,
    validate: Any,
    features: Any,
    search_space: Mapping[str, Any] | None = None,
    n_trials: int | None = 50,
    timeout_s: float | None = 120.0,
    seed: int = 0,
    *,
    base_params: Mapping[str, Any] | None = None,
    early_stopping_rounds: int = 30,
    num_boost_round: int = 1000,
    target: str,
    num_threads: int = 2,
    task: str = "classification",
    classes: list[str] | None = None,
    on_trial: Any = None,
) -> TuningResult:
    """Optuna TPE search (seeded) maximising validation ROC-AUC of ``train_lightgbm`` (minus the RMSE
    for a regression). ``on_trial(record)`` is called after each trial (progress logging). The first
    trial is the default configuration (where the search space admits it).

    Stops after ``n_trials`` trials or ``timeout_s`` seconds, whichever comes first (a running trial
    is finished). The preprocessing is fitted once per trial on ``train`` only.
    """
    import optuna

    search_space = dict(DEFAULT_SEARCH_SPACE if search_space is None else search_space)
    validate_search_space(search_space)
    search_space = fit_to_rows(search_space, len(train))
    feature_lists(features)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    records: list[TrialRecord] = []
    iterations: dict[int, int] = {}

    def objective(trial: Any) -> float:
        params = {**(base_params or {}), **{n: _suggest(trial, n, s) for n, s in search_space.items()}}
        started = time.perf_counter()
        bundle = train_lightgbm(
            train, validate, features, params, seed=seed, early_stopping_rounds=early_stopping_rounds,
            num_boost_round=num_boost_round, target=target, num_threads=num_threads, task=task,
            classes=classes,
        )
        metrics = bundle.validation_metrics
        value = -float(metrics["rmse"]) if task == "regression" else float(metrics["roc_auc"])
        iterations[trial.number] = bundle.best_iteration
        record = TrialRecord(trial.number, dict(trial.params), value, time.perf_counter() - started,
                             bundle.best_iteration)
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return value

    # Trial 0 is the default configuration, so tuning never returns something worse on validation.
    defaults = {**DEFAULT_LGBM_PARAMS, **(base_params or {})}
    first = {n: defaults[n] for n, s in search_space.items() if n in defaults and _admits(s, defaults[n])}
    if first:
        study.enqueue_trial(first)
    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s, catch=())
    elapsed = time.perf_counter() - started
    best = study.best_trial
    return TuningResult(
        best_params={**(base_params or {}), **{n: s for n, s in search_space.items() if not isinstance(s, Mapping)},
                     **best.params},
        best_value=float(best.value), best_iteration=iterations.get(best.number), trials=records,
        elapsed_s=elapsed, timeout_s=timeout_s, n_trials=n_trials,
    )
