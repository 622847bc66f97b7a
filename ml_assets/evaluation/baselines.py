"""Baselines a model must beat, fitted on the same training rows, for every pipeline:

* the prior: the training positive rate (binary), the class shares (multiclass) or the training mean
  (regression), the same for every row;
* a linear model on the same features (scikit-learn): logistic regression (binary or multinomial)
  or ridge regression;
* naive baselines a pipeline declares in its YAML (``evaluation.baselines``): the mean of some of
  its own columns (flights: the historical carrier and route delay rates).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ml_assets.training.boosting import feature_lists, target_array


def column_mean_baseline(frame: Any, columns: Iterable[str], fallback: float | None = None) -> Any:
    """Score = mean of the available ``columns`` of each row (already leakage-free features).

    Rows with none of ``columns`` available get ``fallback`` (pass the training prior or mean);
    without one, the mean of all available values in ``frame`` is used (no labels involved).
    """
    import warnings

    import numpy as np

    wanted = list(columns)
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ValueError(f"baseline columns {absent} are not in the evaluated rows (columns {wanted})")
    values = frame[wanted].to_numpy(dtype="float64")
    with warnings.catch_warnings():
        # rows with none of the columns: NaN here, replaced by the fallback below
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        score = np.nanmean(values, axis=1) if len(values) else np.zeros(0)
    if fallback is None:
        fallback = float(np.nanmean(values)) if np.isfinite(values).any() else 0.5
    return np.where(np.isnan(score), fallback, score)


def prior_baseline(train: Any, n_rows: int, *, target: str, classes: list[str] | None = None) -> Any:
    """The training prior for ``n_rows`` rows: the positive rate or mean (1-D), or with ``classes``
    the class shares (one column per class)."""
    import numpy as np

    y = target_array(train, target, classes)
    if classes is None:
        return np.full(n_rows, float(y.mean()))
    shares = np.bincount(y.astype("int64"), minlength=len(classes)) / len(y)
    return np.tile(shares, (n_rows, 1))


def linear_baseline(
    train: Any, features: Any, *, target: str, task: str = "classification", classes: list[str] | None = None,
    C: float = 1.0, seed: int = 0, max_iter: int = 500,
) -> Any:
    """A fitted sklearn pipeline: median-impute (+ missing indicators) and scale the numeric columns,
    one-hot the categorical ones (unknown levels ignored), then LogisticRegression (binary, or
    multinomial over ``classes``; ``predict_proba``) or Ridge (regression; ``predict``). ``frame``
    needs the feature columns only (``registry.model_input``)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric, categorical = feature_lists(features)
    y = target_array(train, target, classes)
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
    estimator = (Ridge(alpha=1.0 / C) if task == "regression"
                 else LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    model = Pipeline([("prepare", ColumnTransformer(transformers)), ("fit", estimator)])
    x = train[[*numeric, *categorical]].copy()
    for column in categorical:
        x[column] = x[column].astype(object).where(x[column].notna(), None)
    model.fit(x, y if task == "regression" else y.astype(int))
    return model


def logistic_baseline(train: Any, features: Any, *, target: str, C: float = 1.0, seed: int = 0,
                      max_iter: int = 500) -> Any:
    """``linear_baseline`` of a binary target: ``model.predict_proba(frame)[:, 1]``."""
    return linear_baseline(train, features, target=target, C=C, seed=seed, max_iter=max_iter)


#: rows a linear baseline scores at a time: its one-hot, imputed and scaled matrix of the whole test
#: window took 2.4 GiB at ten times the demo data (826,090 rows), the evaluation's peak
SCORE_CHUNK_ROWS = 100_000


def linear_scores(model: Any, frame: Any, task: str, n_classes: int | None = None,
                  chunk_rows: int = SCORE_CHUNK_ROWS) -> Any:
    """Scores of a ``linear_baseline``: the positive probability, the class probabilities (one
    column per class, classes unseen in training at 0) or the predicted value. Scored
    ``chunk_rows`` rows at a time (each row's score depends on that row only)."""
    import numpy as np

    if len(frame) > chunk_rows:
        return np.concatenate([linear_scores(model, frame.iloc[start:start + chunk_rows], task, n_classes, chunk_rows)
                               for start in range(0, len(frame), chunk_rows)])
    if task == "regression":
        return model.predict(frame)
    proba = model.predict_proba(frame)
    if task == "classification":
        return proba[:, 1]
    full = np.zeros((len(frame), n_classes))
    full[:, model.classes_.astype(int)] = proba
    return full
