"""The model as MLflow stores it: a pyfunc wrapping the LightGBM booster and its preprocessing.

Imported only by the code that logs or loads models (it imports mlflow at module level), never by
the Dagster code location at load time.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow.pyfunc
import pandas as pd


def score_frame(bundle: Any, frame: Any) -> Any:
    """``score`` and ``label`` columns for ``frame``, with the bundle's training-time preprocessing.

    ``score`` is the positive-class probability (the predicted value for a regression); ``label`` is
    ``score >= bundle.threshold`` (the threshold chosen on validation; the value for a regression).
    """
    from ml_assets.modeling import predict_proba

    score = predict_proba(bundle, frame)
    label = score if bundle.task == "regression" else (score >= bundle.threshold).astype("int64")
    return pd.DataFrame({"score": score, "label": label}, index=frame.index)


class TabularModel(mlflow.pyfunc.PythonModel):
    """LightGBM booster plus the exact training-time preprocessing (``ml_assets.modeling.ModelBundle``).

    ``predict`` takes the raw feature columns (unseen categories and missing values are scored as
    missing) and returns ``score`` and ``label`` (see ``score_frame``).
    """

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["bundle"], "rb") as handle:
            self.bundle = pickle.load(handle)

    # A DataFrame hint: MLflow validates against the logged signature instead of inferring one from hints.
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return score_frame(self.bundle, model_input)
