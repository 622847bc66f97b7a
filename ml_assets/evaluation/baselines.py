"""Baselines a model must beat, fitted on the same training rows: a naive score from historical rates
already among the features, and a logistic regression on the same features (scikit-learn).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ml_assets.training.boosting import feature_lists, target_array


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
        # rows with none of the rates: NaN here, replaced by the fallback below
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        score = np.nanmean(rates, axis=1) if len(rates) else np.zeros(0)
    if fallback_rate is None:
        fallback_rate = float(np.nanmean(rates)) if np.isfinite(rates).any() else 0.5
    return np.where(np.isnan(score), fallback_rate, score)


def logistic_baseline(
    train: Any, features: Any, *, target: str, C: float = 1.0, seed: int = 0,
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
    y = target_array(train, target)
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
