"""The scoring code of every model the ML platform registers: self-contained on purpose.

This file is logged with each model as MLflow "models from code" and loaded by path, so a registered
model needs only ``mlflow``, ``lightgbm``, ``pandas`` and ``numpy`` (no project import, no pickled
project class): ``mlflow.pyfunc.load_model("models:/<name>@champion")`` works in any environment that
has them, and so does ``mlflow models serve``. The project itself uses the same ``Preprocessing`` to
train, so the transformation at scoring is the one used in training, written once.

A model is two artifacts:

* ``booster``: the LightGBM booster in LightGBM's own text format;
* ``preprocessing``: a JSON file with the feature columns, the categorical levels seen in training,
  the task, the number of boosting rounds used and the decision threshold.

``predict`` takes the raw feature columns and returns ``score`` (the probability of the positive
class, or the predicted value of a regression) and ``label`` (``score >= threshold`` as 0/1, or the
value of a regression). Numeric columns may be integers or floats (converted to float64); a category
not seen in training and a missing value are both scored as missing (LightGBM handles them natively).
Other columns are ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import pandas as pd

FORMAT_VERSION = 1
BOOSTER_ARTIFACT = "booster"
PREPROCESSING_ARTIFACT = "preprocessing"


@dataclass
class Preprocessing:
    """Training-time transformations, stored with the model and re-applied exactly at scoring.

    * numeric columns -> float64 (non-numeric values -> NaN);
    * categorical columns -> pandas ``category`` with the levels seen in training, in sorted order;
      a level not seen in training and a missing value both become NaN;
    * output columns in the exact training order (numeric first, then categorical).
    """

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    task: str = "classification"
    target: str = "target"
    threshold: float = 0.5
    best_iteration: int = 0
    classes: list[str] = field(default_factory=list)  # multiclass: the class of each output column

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str], **settings: Any) -> Preprocessing:
        missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
        if missing:
            raise ValueError(f"the training frame has no column(s) {missing}")
        categories = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric=list(numeric), categorical=list(categorical), categories=categories, **settings)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def transform(self, frame: pd.DataFrame, *, missing_columns: str = "error") -> pd.DataFrame:
        """The model matrix of ``frame``. ``missing_columns="nan"`` fills absent columns with NaN."""
        import numpy as np

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

    def unseen_counts(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, how many non-missing values of ``frame`` were not seen in training."""
        counts = {}
        for column in self.categorical:
            if column in frame.columns:
                values = frame[column].dropna().astype(str)
                counts[column] = int((~values.isin(self.categories[column])).sum())
        return counts

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        data = json.loads(text)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"preprocessing format {version!r} is not {FORMAT_VERSION}: retrain the model")
        return cls(**data)


class ScoringModel:
    """A booster with its preprocessing: ``score(frame)`` gives ``score`` and ``label``."""

    def __init__(self, booster: Any, preprocessing: Preprocessing) -> None:
        self.booster = booster
        self.preprocessing = preprocessing

    def predict_scores(self, frame: pd.DataFrame, *, missing_columns: str = "error") -> Any:
        """Scores (1-D float array): positive-class probabilities, or values of a regression."""
        import numpy as np

        matrix = self.preprocessing.transform(frame, missing_columns=missing_columns)
        if len(matrix) == 0:
            return np.zeros(0)
        return self.booster.predict(matrix, num_iteration=self.preprocessing.best_iteration or None)

    def probabilities(self, frame: pd.DataFrame) -> Any:
        """Multiclass: one probability column per class of ``preprocessing.classes``."""
        import numpy as np

        return np.asarray(self.predict_scores(frame), dtype="float64").reshape(len(frame), len(self.preprocessing.classes))

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``score`` and ``label`` of every row of ``frame`` (same index). Multiclass: ``label`` is
        the most probable class and ``score`` its probability."""
        import numpy as np

        score = self.predict_scores(frame)
        prep = self.preprocessing
        if prep.task == "multiclass":
            proba = np.asarray(score, dtype="float64").reshape(len(frame), len(prep.classes))
            best = proba.argmax(axis=1) if len(frame) else np.zeros(0, dtype="int64")
            label = np.asarray(prep.classes, dtype=object)[best]
            return pd.DataFrame({"score": proba.max(axis=1) if len(frame) else np.zeros(0), "label": label},
                                index=frame.index)
        label = score if prep.task == "regression" else (score >= prep.threshold).astype("int64")
        return pd.DataFrame({"score": score, "label": label}, index=frame.index)

    def save(self, folder: str | Path) -> dict[str, str]:
        """Write the two artifacts into ``folder``; returns ``{artifact name: path}``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        booster = folder / "booster.txt"
        self.booster.save_model(str(booster), num_iteration=self.preprocessing.best_iteration or None)
        preprocessing = folder / "preprocessing.json"
        preprocessing.write_text(self.preprocessing.to_json(), encoding="utf-8")
        return {BOOSTER_ARTIFACT: str(booster), PREPROCESSING_ARTIFACT: str(preprocessing)}

    @classmethod
    def load(cls, artifacts: dict[str, str]) -> ScoringModel:
        import lightgbm

        booster = lightgbm.Booster(model_file=artifacts[BOOSTER_ARTIFACT])
        text = Path(artifacts[PREPROCESSING_ARTIFACT]).read_text(encoding="utf-8")
        return cls(booster, Preprocessing.from_json(text))


class TabularModel(mlflow.pyfunc.PythonModel):
    """The MLflow pyfunc: raw feature columns in, ``score`` and ``label`` out (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        self.model = ScoringModel.load(dict(context.artifacts))

    # A DataFrame hint: MLflow validates against the logged signature instead of inferring one from hints.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.score(model_input)


mlflow.models.set_model(TabularModel())
