"""Modeling library for tabular pipelines: time splits, a preprocessor that travels with the model,
LightGBM training and Optuna tuning, baselines and metrics.

Pure library (no Dagster assets). Only the standard library is imported at module level: pandas,
numpy, lightgbm, scikit-learn and optuna are imported inside the functions that need them, so the
Dagster code location can import this module cheaply.

Typical use::

    splits = split_by_time(frame)                       # train Jan-Aug, validate Sep, test Oct-Dec 2013
    bundle = train_lightgbm(splits["train"], splits["validate"], spec.features, seed=0)
    proba = predict_proba(bundle, splits["test"])        # unseen categories / missing weather are fine
    evaluate(splits["test"]["delayed"], proba)           # {"roc_auc": ..., "pr_auc": ..., ...}
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

DEFAULT_TARGET = "delayed"
DEFAULT_DATE_COLUMN = "partition_date"
DEFAULT_WINDOWS: dict[str, tuple[str, str]] = {
    "train": ("2013-01-01", "2013-08-31"),
    "validate": ("2013-09-01", "2013-09-30"),
    "test": ("2013-10-01", "2013-12-31"),
}
UNSEEN = "__unseen__"  # documented name for levels not seen in training; they are encoded as missing

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


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date") and callable(value.date):  # pandas Timestamp
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def _day_strings(frame: Any, date_column: str) -> Any:
    """The date column as ISO ``YYYY-MM-DD`` strings (cheap when it already is)."""
    import pandas as pd

    if date_column not in frame.columns:
        raise ValueError(f"the frame has no date column '{date_column}'")
    values = frame[date_column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d")
    return values.astype(str).str.slice(0, 10)


def _check_window(
    name: str, rows: Any, start: dt.date, end: dt.date, target: str, min_rows: int, require_both_classes: bool
) -> None:
    n = len(rows)
    positives = int((rows[target] > 0.5).sum()) if n else 0
    if n < min_rows:
        raise ValueError(
            f"window '{name}' ({start}..{end}) has {n} rows with a known '{target}', fewer than "
            f"min_rows={min_rows} ({positives} positive, {n - positives} negative)"
        )
    if require_both_classes and (positives == 0 or positives == n):
        raise ValueError(
            f"window '{name}' ({start}..{end}) has a single class: {positives} positive and "
            f"{n - positives} negative of {n} rows with a known '{target}'"
        )


def _select_days(
    frame: Any,
    name: str,
    start: dt.date,
    end: dt.date,
    *,
    date_column: str,
    target: str,
    min_rows: int,
    require_both_classes: bool,
) -> Any:
    if end < start:
        raise ValueError(f"window '{name}' ends ({end}) before it starts ({start})")
    if target not in frame.columns:
        raise ValueError(f"the frame has no target column '{target}'")
    days = _day_strings(frame, date_column)
    mask = (days >= start.isoformat()) & (days <= end.isoformat()) & frame[target].notna()
    rows = frame.loc[mask.to_numpy()].reset_index(drop=True)
    _check_window(name, rows, start, end, target, min_rows, require_both_classes)
    return rows


def split_by_time(
    frame: Any,
    train: tuple[Any, Any] = DEFAULT_WINDOWS["train"],
    validate: tuple[Any, Any] | None = DEFAULT_WINDOWS["validate"],
    test: tuple[Any, Any] | None = DEFAULT_WINDOWS["test"],
    date_column: str = DEFAULT_DATE_COLUMN,
    *,
    target: str = DEFAULT_TARGET,
    min_rows: int = 100,
    require_both_classes: bool = True,
) -> dict[str, Any]:
    """Split ``frame`` into time windows (``(start, end)`` days, both inclusive).

    Returns ``{"train": ..., "validate": ..., "test": ...}`` (a window passed as ``None`` is left
    out). Rows whose target is unknown (NaN: cancelled flights) are dropped. Windows must be in time
    order and must not overlap. Raises ``ValueError`` naming the window and its counts when a window
    has fewer than ``min_rows`` labelled rows or a single class.
    """
    windows = {"train": train, "validate": validate, "test": test}
    parsed: list[tuple[str, dt.date, dt.date]] = []
    for name, window in windows.items():
        if window is None:
            continue
        start, end = (_as_date(v) for v in window)
        parsed.append((name, start, end))
    for (name_a, _, end_a), (name_b, start_b, _) in zip(parsed, parsed[1:]):
        if start_b <= end_a:
            raise ValueError(
                f"window '{name_b}' starts on {start_b}, not after the end of '{name_a}' ({end_a}): "
                "windows must be in time order and must not overlap"
            )
    return {
        name: _select_days(
            frame, name, start, end, date_column=date_column, target=target,
            min_rows=min_rows, require_both_classes=require_both_classes,
        )
        for name, start, end in parsed
    }


def rolling_window(
    frame: Any,
    last_n_days: int,
    end_day: Any,
    date_column: str = DEFAULT_DATE_COLUMN,
    *,
    target: str = DEFAULT_TARGET,
    min_rows: int = 100,
    require_both_classes: bool = True,
) -> Any:
    """Labelled rows of the ``last_n_days`` days ending on ``end_day`` (inclusive), for retraining."""
    if last_n_days < 1:
        raise ValueError(f"last_n_days must be at least 1, got {last_n_days}")
    end = _as_date(end_day)
    start = end - dt.timedelta(days=last_n_days - 1)
    return _select_days(
        frame, f"rolling_{last_n_days}d", start, end, date_column=date_column, target=target,
        min_rows=min_rows, require_both_classes=require_both_classes,
    )


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


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
class Preprocessor:
    """Training-time transformations, stored with the model and re-applied exactly at scoring.

    * numeric columns -> float64 (non-numeric values -> NaN);
    * categorical columns -> pandas ``category`` with the levels seen in training, in sorted order;
      a level not seen in training (``UNSEEN``) and a missing value both become NaN, which LightGBM
      treats natively as missing;
    * output columns in the exact training order (numeric first, then categorical).
    """

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: Any, numeric: Iterable[str], categorical: Iterable[str]) -> Preprocessor:
        numeric, categorical = list(numeric), list(categorical)
        missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
        if missing:
            raise ValueError(f"the training frame has no column(s) {missing}")
        categories = {}
        for column in categorical:
            values = frame[column].dropna().astype(str)
            categories[column] = sorted(values.unique().tolist())
        return cls(numeric=numeric, categorical=categorical, categories=categories)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def transform(self, frame: Any, *, missing_columns: str = "error") -> Any:
        """The model matrix for ``frame``. ``missing_columns="nan"`` fills absent columns with NaN."""
        import numpy as np
        import pandas as pd

        absent = [c for c in self.columns if c not in frame.columns]
        if absent and missing_columns != "nan":
            raise ValueError(f"the frame has no column(s) {absent} needed by the model")
        out: dict[str, Any] = {}
        for column in self.numeric:
            if column in frame.columns:
                out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
            else:
                out[column] = np.full(len(frame), np.nan)
        for column in self.categorical:
            dtype = pd.CategoricalDtype(self.categories[column])
            if column in frame.columns:
                raw = frame[column]
                values = raw.astype(object).where(raw.notna(), None)
                values = values.map(lambda v: v if v is None else str(v))
                out[column] = pd.Categorical(values.to_numpy(), dtype=dtype)
            else:
                out[column] = pd.Categorical([None] * len(frame), dtype=dtype)
        return pd.DataFrame(out, index=frame.index, columns=self.columns)

    def unseen_counts(self, frame: Any) -> dict[str, int]:
        """Per categorical column, how many non-missing values of ``frame`` were not seen in training."""
        counts = {}
        for column in self.categorical:
            if column in frame.columns:
                values = frame[column].dropna().astype(str)
                counts[column] = int((~values.isin(self.categories[column])).sum())
        return counts


# --------------------------------------------------------------------------------------------------
# LightGBM
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelBundle:
    """Everything needed to score: the preprocessor, the booster and what was learnt about the fit."""

    preprocessor: Preprocessor
    booster: Any  # lightgbm.Booster (picklable)
    best_iteration: int
    params: dict[str, Any]
    feature_importance: dict[str, float]  # total gain per feature, sorted descending
    target: str = DEFAULT_TARGET
    seed: int = 0
    train_seconds: float = 0.0
    validation_metrics: dict[str, float] = field(default_factory=dict)
    train_rows: int = 0
    train_positive_rate: float = float("nan")  # the target mean for a regression
    task: str = "classification"
    threshold: float = 0.5  # decision threshold for hard predictions (chosen on validation)


def _target_array(frame: Any, target: str) -> Any:
    import numpy as np

    if target not in frame.columns:
        raise ValueError(f"the frame has no target column '{target}'")
    y = frame[target].to_numpy(dtype="float64")
    if np.isnan(y).any():
        raise ValueError(
            f"'{target}' has {int(np.isnan(y).sum())} unknown values: drop them first (split_by_time does)"
        )
    return y


TASKS = ("classification", "regression")
REGRESSION_OBJECTIVE = {"objective": "regression", "metric": "l2"}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def lightgbm_params(
    params: Mapping[str, Any] | None, seed: int, num_threads: int, task: str = "classification"
) -> dict[str, Any]:
    """Defaults + ``params`` + the settings that make a fit reproducible for a given seed.

    ``task="regression"`` swaps the binary objective and AUC metric for L2 regression."""
    _check_task(task)
    task_defaults = REGRESSION_OBJECTIVE if task == "regression" else {}
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


def train_lightgbm(
    train: Any,
    validate: Any | None,
    features: Any,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    early_stopping_rounds: int = 50,
    *,
    num_boost_round: int = 2000,
    target: str = DEFAULT_TARGET,
    num_threads: int = 2,
    task: str = "classification",
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
    preprocessor = Preprocessor.fit(train, numeric, categorical)
    y_train = _target_array(train, target)
    y_valid = _target_array(validate, target) if validate is not None else None
    if task == "classification" and len(np.unique(y_train)) < 2:
        raise ValueError(f"the training rows have a single class ({len(y_train)} rows)")
    if task == "regression" and len(y_train) > 1 and float(np.std(y_train)) == 0.0:
        raise ValueError(f"the training target is constant ({len(y_train)} rows)")
    merged = lightgbm_params(params, seed, num_threads, task)
    train_set = lgb.Dataset(
        preprocessor.transform(train), label=y_train, categorical_feature=categorical or "auto",
        free_raw_data=True,
    )
    if validate is not None:
        valid_set = lgb.Dataset(preprocessor.transform(validate), label=y_valid, reference=train_set)
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
    if y_valid is not None and task == "regression" and len(y_valid):
        bundle.validation_metrics = regression_metrics(y_valid, predict_proba(bundle, validate))
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


# --------------------------------------------------------------------------------------------------
# Tuning
# --------------------------------------------------------------------------------------------------


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
    target: str = DEFAULT_TARGET,
    num_threads: int = 2,
    task: str = "classification",
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
        )
        metrics = bundle.validation_metrics
        value = float(metrics["roc_auc"]) if task == "classification" else -float(metrics["rmse"])
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


# --------------------------------------------------------------------------------------------------
# Baselines and metrics
# --------------------------------------------------------------------------------------------------

NAIVE_RATE_COLUMNS = ("route_delay_rate_28d", "carrier_delay_rate_28d")


def naive_rate_baseline(
    frame: Any, fallback_rate: float | None = None, columns: Iterable[str] = NAIVE_RATE_COLUMNS
) -> Any:
    """Score = mean of the available historical delay rates (already leakage-free features).

    Rows with none of ``columns`` available get ``fallback_rate`` (pass the training positive rate);
    without one, the mean of all available rates in ``frame`` is used (no labels involved).
    """
    import numpy as np
    import warnings

    columns = [c for c in columns if c in frame.columns]
    if not columns:
        raise ValueError(f"naive_rate_baseline needs at least one of {list(NAIVE_RATE_COLUMNS)}")
    rates = frame[columns].to_numpy(dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        score = np.nanmean(rates, axis=1) if len(rates) else np.zeros(0)
    if fallback_rate is None:
        fallback_rate = float(np.nanmean(rates)) if np.isfinite(rates).any() else 0.5
    return np.where(np.isnan(score), fallback_rate, score)


def logistic_baseline(
    train: Any, features: Any, *, target: str = DEFAULT_TARGET, C: float = 1.0, seed: int = 0,
    max_iter: int = 500,
) -> Any:
    """A fitted sklearn pipeline: median-impute (+ missing indicators) and scale the numeric columns,
    one-hot the categorical ones (unknown levels ignored), LogisticRegression. Use
    ``model.predict_proba(frame)[:, 1]``; ``frame`` needs the feature columns only."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric, categorical = feature_lists(features)
    y = _target_array(train, target)
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=20)),
        ]), categorical))
    model = Pipeline([
        ("prepare", ColumnTransformer(transformers)),
        ("classify", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
    ])
    x = train[[*numeric, *categorical]].copy()
    for column in categorical:
        x[column] = x[column].astype(object).where(x[column].notna(), None)
    model.fit(x, y.astype(int))
    return model


def evaluate(y_true: Any, proba: Any) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), log loss, Brier score, positive rate and row count."""
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y_true, dtype="float64")
    p = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    if len(np.unique(y)) < 2:
        raise ValueError(f"cannot evaluate on a single class ({len(y)} rows)")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def regression_metrics(y_true: Any, prediction: Any) -> dict[str, float]:
    """RMSE, MAE, R^2 and row count of a regression (rows with an unknown target are dropped)."""
    import numpy as np

    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(prediction, dtype="float64")
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    if len(y) == 0:
        raise ValueError("cannot evaluate a regression on 0 rows")
    residual = y - p
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": float(1.0 - float((residual**2).sum()) / total) if total > 0 else float("nan"),
        "rows": float(len(y)),
    }


def load_feature_days(directory: Any, start: Any = None, end: Any = None, columns: list[str] | None = None) -> Any:
    """Concatenate the daily feature Parquet files ``YYYY-MM-DD.parquet`` of ``directory`` in ``[start, end]``."""
    from pathlib import Path

    import pandas as pd

    lo = _as_date(start).isoformat() if start is not None else "0000-00-00"
    hi = _as_date(end).isoformat() if end is not None else "9999-99-99"
    files = sorted(p for p in Path(directory).glob("*.parquet") if lo <= p.stem <= hi)
    if not files:
        raise ValueError(f"no daily feature files in {directory} between {lo} and {hi}")
    frames = [pd.read_parquet(p, columns=columns) for p in files]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.read_parquet(files[0], columns=columns)


__all__ = [
    "DEFAULT_LGBM_PARAMS", "DEFAULT_SEARCH_SPACE", "DEFAULT_WINDOWS", "ModelBundle", "Preprocessor",
    "TrialRecord", "TuningResult", "UNSEEN", "evaluate", "feature_lists", "lightgbm_params",
    "load_feature_days", "logistic_baseline", "naive_rate_baseline", "predict_proba", "regression_metrics",
    "rolling_window",
    "split_by_time", "train_lightgbm", "tune_lightgbm", "validate_search_space",
]
