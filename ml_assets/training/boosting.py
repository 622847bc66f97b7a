"""LightGBM for tabular pipelines: reproducible parameters, a fit early-stopped on the validation
window, and the fitted model with what was learnt about the fit (``ModelBundle``).

The preprocessing is ``ml_assets.training.tabular_model.Preprocessing``, the code that travels with
every registered model, so training and scoring transform features the same way. pandas, numpy and
LightGBM load inside the functions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "auc",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 4,
    "max_bin": 255,
}


def feature_lists(features: Any) -> tuple[list[str], list[str]]:
    """``(numeric, categorical)`` from a pipeline ``Features`` object, a dict with those keys, or a pair."""
    if isinstance(features, Mapping):
        numeric, categorical = features.get("numeric", []), features.get("categorical", [])
    elif hasattr(features, "numeric") and hasattr(features, "categorical"):
        numeric, categorical = features.numeric, features.categorical
    else:
        numeric, categorical = features
    numeric, categorical = list(numeric), list(categorical)
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns listed both as numeric and categorical: {both}")
    if not numeric and not categorical:
        raise ValueError("no features: both the numeric and the categorical lists are empty")
    return numeric, categorical


@dataclass
class ModelBundle:
    """Everything needed to score: the preprocessing, the booster and what was learnt about the fit."""

    preprocessor: Any  # tabular_model.Preprocessing
    booster: Any  # lightgbm.Booster
    best_iteration: int
    params: dict[str, Any]
    feature_importance: dict[str, float]  # total gain per feature, sorted descending
    target: str
    seed: int = 0
    train_seconds: float = 0.0
    validation_metrics: dict[str, float] = field(default_factory=dict)
    train_rows: int = 0
    train_positive_rate: float = float("nan")  # the target mean for a regression
    task: str = "classification"
    threshold: float = 0.5  # decision threshold for hard predictions (chosen on validation)

    def scoring_model(self) -> Any:
        """The ``ScoringModel`` that is registered: booster plus preprocessing with the threshold,
        task, target and boosting rounds of this fit."""
        from ml_assets.training.tabular_model import ScoringModel

        prep = dataclasses.replace(
            self.preprocessor, task=self.task, target=self.target, threshold=float(self.threshold),
            best_iteration=int(self.best_iteration),
        )
        return ScoringModel(self.booster, prep)


def target_array(frame: Any, target: str, classes: list[str] | None = None) -> Any:
    """The target as float64; with ``classes`` (multiclass) each label's index in ``classes``."""
    import numpy as np

    if target not in frame.columns:
        raise ValueError(f"the frame has no target column '{target}'")
    if classes is not None:
        labels = frame[target]
        unknown = sorted(set(labels.dropna().astype(str)) - set(classes))
        if unknown:
            raise ValueError(f"'{target}' has classes {unknown[:5]} that are not among {classes}")
        codes = labels.astype(object).map({c: i for i, c in enumerate(classes)}, na_action="ignore")
        y = codes.to_numpy(dtype="float64")
    else:
        y = frame[target].to_numpy(dtype="float64")
    if np.isnan(y).any():
        raise ValueError(
            f"'{target}' has {int(np.isnan(y).sum())} unknown values: drop them first (split_by_time does)"
        )
    return y


TASKS = ("classification", "multiclass", "regression")


REGRESSION_OBJECTIVE = {"objective": "regression", "metric": "l2"}
MULTICLASS_OBJECTIVE = {"objective": "multiclass", "metric": "multi_logloss"}


def task_classes(train: Any, validate: Any | None, target: str, declared: list[str] | None) -> list[str]:
    """Classes of a multiclass target: the declared ones, else those of train and validate, sorted."""
    if declared:
        return list(declared)
    frames = [train] if validate is None else [train, validate]
    seen = set()
    for frame in frames:
        seen |= set(frame[target].dropna().astype(str))
    return sorted(seen)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def lightgbm_params(
    params: Mapping[str, Any] | None, seed: int, num_threads: int, task: str = "classification",
    num_class: int | None = None,
) -> dict[str, Any]:
    """Defaults + ``params`` + the settings that make a fit reproducible for a given seed.

    ``task="regression"`` swaps the binary objective and AUC metric for L2 regression,
    ``task="multiclass"`` for the softmax objective over ``num_class`` classes (multi log loss)."""
    _check_task(task)
    task_defaults = {"regression": REGRESSION_OBJECTIVE, "multiclass": {**MULTICLASS_OBJECTIVE, "num_class": num_class}}.get(task, {})
    merged = {**DEFAULT_LGBM_PARAMS, **task_defaults, **(params or {})}
    merged.update(
        seed=seed,
        bagging_seed=seed,
        feature_fraction_seed=seed,
        data_random_seed=seed,
        deterministic=True,
        force_row_wise=True,
        num_threads=num_threads,
        verbosity=-1,
    )
    merged.pop("force_col_wise", None)
    return merged


def model_matrix(preprocessor: Any, frame: Any) -> Any:
    """The model matrix of ``frame`` as one C-ordered float32 array, filled a column at a time with
    the scoring code's own transformation (``Preprocessing.transform`` of that column): numeric
    values, and the training-level codes of categoricals (a missing or unseen level is NaN). No
    frame of the whole matrix is made, in float64 or otherwise."""
    import numpy as np

    matrix = np.empty((len(frame), len(preprocessor.columns)), dtype=np.float32)
    for j, column in enumerate(preprocessor.columns):
        categorical = column in preprocessor.categorical
        one = dataclasses.replace(preprocessor, numeric=[] if categorical else [column],
                                  categorical=[column] if categorical else [])
        values = one.transform(frame)[column]
        if categorical:
            codes = values.cat.codes.to_numpy()
            matrix[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            matrix[:, j] = values.to_numpy()
    return matrix


def lightgbm_dataset(preprocessor: Any, frame: Any, label: Any, reference: Any = None) -> Any:
    """A LightGBM Dataset of ``frame`` built from ``model_matrix`` (float32), which LightGBM frees
    once it has binned it (``free_raw_data``). Categorical columns are declared by name and their
    training levels recorded as LightGBM's ``pandas_categorical``, so the booster scores the
    ``Preprocessing.transform`` frames of the registered model exactly as it would have had it been
    trained on them."""
    import lightgbm as lgb

    categorical = list(preprocessor.categorical)
    dataset = lgb.Dataset(
        model_matrix(preprocessor, frame), label=label, feature_name=list(preprocessor.columns),
        categorical_feature=categorical, free_raw_data=True, reference=reference,
    )
    dataset.pandas_categorical = [list(preprocessor.categories[c]) for c in categorical]
    return dataset


def train_lightgbm(
    train: Any,
    validate: Any | None,
    features: Any,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    early_stopping_rounds: int = 50,
    *,
    num_boost_round: int = 2000,
    target: str,
    num_threads: int = 2,
    task: str = "classification",
    classes: list[str] | None = None,
) -> ModelBundle:
    """Fit a LightGBM binary classifier on ``train``, early-stopped on ``validate`` (ROC-AUC), or a
    regressor (L2) with ``task="regression"``.

    ``features`` is a pipeline ``Features`` object, ``{"numeric": [...], "categorical": [...]}`` or a
    ``(numeric, categorical)`` pair. Categoricals use LightGBM's native handling. Deterministic for a
    given seed, data and ``num_threads``. With ``validate=None`` there is no early stopping: exactly
    ``num_boost_round`` rounds are fitted (a refit on train + validate after tuning).
    """
    import lightgbm as lgb
    import numpy as np

    numeric, categorical = feature_lists(features)
    started = time.perf_counter()
    from ml_assets.training.tabular_model import Preprocessing

    if task == "multiclass":
        classes = task_classes(train, validate, target, classes)
    else:
        classes = None
    preprocessor = Preprocessing.fit(train, numeric, categorical, target=target, task=task, classes=classes or [])
    y_train = target_array(train, target, classes)
    y_valid = target_array(validate, target, classes) if validate is not None else None
    if task != "regression" and len(np.unique(y_train)) < 2:
        raise ValueError(f"the training rows have a single class ({len(y_train)} rows)")
    if task == "regression" and len(y_train) > 1 and float(np.std(y_train)) == 0.0:
        raise ValueError(f"the training target is constant ({len(y_train)} rows)")
    merged = lightgbm_params(params, seed, num_threads, task, num_class=len(classes) if classes else None)
    train_set = lightgbm_dataset(preprocessor, train, y_train)
    if validate is not None:
        valid_set = lightgbm_dataset(preprocessor, validate, y_valid, reference=train_set)
        callbacks = [lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)]
        booster = lgb.train(
            merged, train_set, num_boost_round=num_boost_round, valid_sets=[valid_set],
            valid_names=["validate"], callbacks=callbacks,
        )
    else:
        booster = lgb.train(merged, train_set, num_boost_round=num_boost_round)
    best_iteration = int(booster.best_iteration or booster.current_iteration())
    gains = booster.feature_importance(importance_type="gain", iteration=best_iteration)
    importance = dict(
        sorted(zip(preprocessor.columns, (float(g) for g in gains)), key=lambda kv: kv[1], reverse=True)
    )
    elapsed = time.perf_counter() - started
    bundle = ModelBundle(
        preprocessor=preprocessor, booster=booster, best_iteration=best_iteration, params=merged,
        feature_importance=importance, target=target, seed=seed, train_seconds=elapsed,
        train_rows=len(train), train_positive_rate=float(y_train.mean()), task=task,
    )
    from ml_assets.evaluation.metrics import evaluate, regression_metrics

    if y_valid is not None and task == "regression" and len(y_valid):
        bundle.validation_metrics = regression_metrics(y_valid, predict_proba(bundle, validate))
    elif y_valid is not None and task == "multiclass" and len(np.unique(y_valid)) >= 2:
        from ml_assets.evaluation.metrics import multiclass_metrics

        bundle.validation_metrics = multiclass_metrics(y_valid, predict_proba(bundle, validate), classes)
    elif y_valid is not None and len(np.unique(y_valid)) == 2:
        bundle.validation_metrics = evaluate(y_valid, predict_proba(bundle, validate))
    return bundle


def predict_proba(bundle: ModelBundle, frame: Any, *, missing_columns: str = "error") -> Any:
    """Positive-class probabilities (1-D float array) for ``frame``, using the bundle's preprocessing.

    Unseen categories and missing values (e.g. no weather for that hour) are scored as missing.
    """
    matrix = bundle.preprocessor.transform(frame, missing_columns=missing_columns)
    if len(matrix) == 0:
        import numpy as np

        return np.zeros(0)
    return bundle.booster.predict(matrix, num_iteration=bundle.best_iteration)
