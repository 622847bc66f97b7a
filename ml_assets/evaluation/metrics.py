"""Test metrics of a model, from scikit-learn: ranking, probability and thresholded metrics of a
classifier, the decision threshold chosen on validation, calibration, and regression errors.

Labels ``y`` are in {0, 1} and scores ``p`` are probabilities of class 1; a row is predicted positive
when ``p >= threshold``. numpy and scikit-learn load inside the functions.
"""

from __future__ import annotations

from typing import Any


def labels_array(y: Any) -> Any:
    """``y`` as an int8 array of 0/1 (booleans accepted); a ValueError for anything else."""
    import numpy as np

    arr = np.asarray(y).ravel()
    if arr.size == 0:
        raise ValueError("empty label vector")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return arr.astype(np.int8)


def scores_array(p: Any, n: int, name: str = "scores") -> Any:
    """``p`` as a float64 array of ``n`` finite values."""
    import numpy as np

    arr = np.asarray(p, dtype=np.float64).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, labels have {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def both_classes(y: Any) -> bool:
    positives = int(y.sum())
    return 0 < positives < y.shape[0]


def evaluate(y_true: Any, proba: Any) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), log loss, Brier score, positive rate and row count;
    rows with an unknown label are dropped."""
    import numpy as np
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(proba, dtype="float64")
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    if len(np.unique(y)) < 2:
        raise ValueError(f"cannot evaluate on a single class ({len(y)} rows)")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def classification_metrics(y: Any, p: Any, threshold: float = 0.5) -> dict[str, float | int | None]:
    """Ranking, probability and thresholded metrics; every value is a plain float/int (JSON-able).

    ``roc_auc`` is None when ``y`` has one class, ``pr_auc`` is None when it has no positive.
    Precision is 0 when no row is predicted positive (``zero_division=0``).
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    yy = labels_array(y)
    pp = scores_array(p, yy.shape[0])
    predicted = (pp >= threshold).astype("int8")
    precision, recall, f1, _ = precision_recall_fscore_support(
        yy, predicted, average="binary", zero_division=0, labels=[0, 1]
    )
    return {
        "roc_auc": float(roc_auc_score(yy, pp)) if both_classes(yy) else None,
        "pr_auc": float(average_precision_score(yy, pp)) if yy.any() else None,
        "log_loss": float(log_loss(yy, pp, labels=[0, 1])),
        "brier": float(brier_score_loss(yy, pp, pos_label=1)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(accuracy_score(yy, predicted)),
        "positive_rate": float(predicted.mean()),
        "threshold": float(threshold),
        "n": int(yy.shape[0]),
    }


def choose_threshold(y_val: Any, p_val: Any, objective: str = "f1") -> float:
    """The score threshold (rule ``p >= t``) maximizing ``objective`` on validation data.

    Candidates are the distinct validation scores (scikit-learn's curve thresholds); ties go to the
    LOWEST threshold. Objectives: ``"f1"`` (default), ``"accuracy"``, ``"youden"`` (TPR - FPR).
    Raises ValueError when the validation labels have a single class.
    """
    import numpy as np
    from sklearn.metrics import roc_curve

    yy = labels_array(y_val)
    pp = scores_array(p_val, yy.shape[0])
    if not both_classes(yy):
        raise ValueError("choose_threshold needs both classes in the validation labels")
    if objective not in ("f1", "accuracy", "youden"):
        raise ValueError(f"unknown objective {objective!r} (f1, accuracy, youden)")
    fpr, tpr, thresholds = roc_curve(yy, pp, drop_intermediate=False)
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]  # the first point predicts nothing positive
    positives = float(yy.sum())
    negatives = yy.shape[0] - positives
    tp, fp = tpr * positives, fpr * negatives
    if objective == "f1":
        value = 2 * tp / (tp + fp + positives)
    elif objective == "accuracy":
        value = (tp + negatives - fp) / yy.shape[0]
    else:
        value = tpr - fpr
    value = np.round(value, 12)  # equal ratios of counts compare equal
    best = len(value) - 1 - int(np.argmax(value[::-1]))  # thresholds descend: the last maximum is the lowest
    return float(thresholds[best])


def calibration_table(y: Any, p: Any, bins: int = 10) -> list[dict[str, float | int]]:
    """Reliability table over ``bins`` equal-width bins of [0, 1] (scikit-learn's
    ``calibration_curve``, uniform strategy); empty bins are left out. Each row: bin, lower, upper,
    mean_predicted, observed_rate, count."""
    import numpy as np
    from sklearn.calibration import calibration_curve

    yy = labels_array(y)
    pp = scores_array(p, yy.shape[0])
    if bins < 1:
        raise ValueError("bins must be >= 1")
    observed, predicted = calibration_curve(yy, pp, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], pp)  # the binning calibration_curve uses
    counts = np.bincount(index, minlength=bins)
    return [
        {"bin": int(i), "lower": float(edges[i]), "upper": float(edges[i + 1]),
         "mean_predicted": float(mean), "observed_rate": float(rate), "count": int(counts[i])}
        for i, mean, rate in zip(np.flatnonzero(counts), predicted, observed)
    ]


def expected_calibration_error(y: Any, p: Any, bins: int = 10) -> float:
    """ECE: count-weighted mean of |observed_rate - mean_predicted| over the calibration bins."""
    table = calibration_table(y, p, bins)
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table) / total)


def multiclass_metrics(y: Any, proba: Any, classes: list[str]) -> dict[str, float]:
    """Macro metrics of a multiclass model: one-vs-rest ROC-AUC (classes present in ``y``), F1,
    precision and recall, plus accuracy and log loss. ``y`` holds class indices (float or int),
    ``proba`` one column per class."""
    import numpy as np
    from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

    yy = np.asarray(y, dtype="float64")
    p = np.asarray(proba, dtype="float64").reshape(len(yy), len(classes))
    keep = ~np.isnan(yy)
    yy, p = yy[keep].astype("int64"), p[keep]
    if len(np.unique(yy)) < 2:
        raise ValueError(f"cannot evaluate on a single class ({len(yy)} rows)")
    present = np.unique(yy)
    aucs = [roc_auc_score(yy == k, p[:, k]) for k in present]
    predicted = p.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        yy, predicted, average="macro", zero_division=0, labels=list(range(len(classes))))
    return {
        "roc_auc": float(np.mean(aucs)),
        "f1": float(f1), "precision": float(precision), "recall": float(recall),
        "accuracy": float(accuracy_score(yy, predicted)),
        "log_loss": float(log_loss(yy, np.clip(p, 1e-15, 1), labels=list(range(len(classes))))),
        "rows": float(len(yy)),
    }


def regression_metrics(y_true: Any, prediction: Any) -> dict[str, float]:
    """RMSE, MAE, R^2 and row count of a regression (rows with an unknown target are dropped)."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(prediction, dtype="float64")
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    if len(y) == 0:
        raise ValueError("cannot evaluate a regression on 0 rows")
    constant = len(y) < 2 or float(np.var(y)) == 0.0
    return {
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "mae": float(mean_absolute_error(y, p)),
        "r2": float("nan") if constant else float(r2_score(y, p)),
        "rows": float(len(y)),
    }
