"""Scoring a request without the pandas round trip: the registered model's own booster and
preprocessing, with the model matrix built directly as NumPy.

A registered model (``tabular_model.ScoringModel``) turns its input into a DataFrame of float64 and
pandas ``category`` columns, and LightGBM turns that back into a float64 matrix (numeric values, and
each category's position in the categories the booster was trained with, NaN when missing or not seen
in training). ``FastScorer`` builds that same matrix from the feature columns in one pass and calls
the same booster, so the scores are the same numbers (tested against ``ScoringModel.score`` on every
flight of a real day) at a fraction of the per-request cost. It also counts the categories not seen in
training on the way. A model it cannot mirror exactly (multiclass, or a booster without the
categories it was trained with) is scored by the model's own ``score``. No Dagster here.
"""

from __future__ import annotations

import math
from typing import Any

#: Requests up to this many rows are predicted on one thread (see ``FastScorer.score``).
ONE_THREAD_ROWS = 10_000


def _missing(value: Any) -> bool:
    """None, NaN, pandas NA or NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def rows_of(frame: Any) -> int:
    """Rows of a DataFrame or of ``{column: values}``."""
    if hasattr(frame, "columns"):
        return len(frame)
    return len(next(iter(frame.values()))) if len(frame) else 0


class FastScorer:
    """``score(frame)`` -> (scores, labels, unseen columns per row) of a ``ScoringModel``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        prep = model.preprocessing
        self.numeric = list(prep.numeric)
        self.categorical = list(prep.categorical)
        self.threshold = prep.threshold
        self.task = prep.task
        self.num_iteration = prep.best_iteration or None
        trained = getattr(model.booster, "pandas_categorical", None)
        self.exact = prep.task in ("classification", "regression") and (
            not self.categorical or (trained is not None and len(trained) == len(self.categorical)))
        self.codes: list[dict[str, float]] = []
        self.known: list[frozenset[str]] = []
        if self.exact:
            for column, levels in zip(self.categorical, trained or []):
                seen = set(prep.categories[column])
                self.codes.append({str(v): float(i) for i, v in enumerate(levels) if str(v) in seen})
                self.known.append(frozenset(seen))

    def matrix(self, frame: Any) -> tuple[Any, list[list[str]]]:
        """The float64 model matrix LightGBM would build from ``preprocessing.transform(frame)``, and
        per row the categorical columns whose value was not seen in training. ``frame`` is a
        DataFrame or plain columns (``{column: array or list}``, the service's request path)."""
        import numpy as np
        import pandas as pd

        columns = [*self.numeric, *self.categorical]
        absent = [c for c in columns if c not in frame]
        if absent:
            raise ValueError(f"the frame has no column(s) {absent} needed by the model")
        n = rows_of(frame)
        out = np.empty((n, len(columns)), dtype="float64")
        for j, column in enumerate(self.numeric):
            values = frame[column]
            if getattr(values, "dtype", None) is not None and values.dtype.kind in "fiu":
                out[:, j] = np.asarray(values, dtype="float64")
            else:
                out[:, j] = np.asarray(pd.to_numeric(values, errors="coerce"), dtype="float64")
        unseen: list[list[str]] = [[] for _ in range(n)]
        offset = len(self.numeric)
        for k, column in enumerate(self.categorical):
            codes, known = self.codes[k], self.known[k]
            target = out[:, offset + k]
            for i, value in enumerate(frame[column].tolist()):
                if value.__class__ is str:
                    text = value
                elif _missing(value):
                    target[i] = np.nan
                    continue
                else:
                    text = str(value)
                code = codes.get(text)
                target[i] = np.nan if code is None else code
                if code is None and text not in known:
                    unseen[i].append(column)
        return out, unseen

    def score(self, frame: Any) -> tuple[Any, Any, list[list[str]]]:
        """Scores, labels (``score >= threshold`` as 0/1; the value for a regression) and the unseen
        categorical columns of each row."""
        import numpy as np

        if not self.exact:
            if not hasattr(frame, "columns"):
                import pandas as pd

                frame = pd.DataFrame(dict(frame))
            scored = self.model.score(frame)
            unseen = [[] for _ in range(len(frame))]
            prep = self.model.preprocessing
            for column in prep.categorical:
                for i, value in enumerate(frame[column].tolist()):
                    if not _missing(value) and str(value) not in set(prep.categories[column]):
                        unseen[i].append(column)
            return scored["score"].to_numpy(), scored["label"].to_numpy(), unseen
        matrix, unseen = self.matrix(frame)
        if len(matrix) == 0:
            return np.zeros(0), np.zeros(0), unseen
        # a request's rows on one thread: LightGBM's OpenMP team costs milliseconds to wake per call
        # (tens on a busy machine) and a few thousand rows take well under one; same scores
        threads = {"num_threads": 1} if len(matrix) <= ONE_THREAD_ROWS else {}
        scores = self.model.booster.predict(matrix, num_iteration=self.num_iteration, **threads)
        labels = scores if self.task == "regression" else (scores >= self.threshold).astype("int64")
        return scores, labels, unseen
