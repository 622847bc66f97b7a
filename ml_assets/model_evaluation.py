"""Evaluation of binary classifiers: metrics, threshold, calibration, champion comparison, plots.

A pure library (no Dagster assets). Labels ``y`` are in {0, 1} and scores ``p`` are predicted
probabilities of class 1. A row is predicted positive when ``p >= threshold`` everywhere in this
module (``classification_metrics``, ``choose_threshold``).

numpy, scipy and matplotlib are imported inside the functions: this module is imported when the
code location loads and must stay cheap (stdlib and dataclasses only at the top).

Comparison of a NEW model against the CHAMPION on the same rows
----------------------------------------------------------------
* ``delong_test``: the fast DeLong algorithm (Sun & Xu 2014, IEEE SPL 21(11)) with midranks,
  O(n log n). z = delta / se, one-sided p-value P(Z >= z) for H1: AUC_new > AUC_champion; 95% CI
  delta +- 1.96 se (two-sided).
* ``paired_bootstrap_auc``: rows are resampled jointly (the same resample for both models). A
  bootstrap resample is a vector of multiplicities (weights) on the original rows, so the AUC of a
  resample is a *weighted* Mann-Whitney statistic on the original rows, sorted once per model:
  with ``C`` the cumulative weight of negatives in ascending score order, a positive in the tie
  group ``[a, b)`` contributes ``w * (C[a] + C[b]) / 2`` (negatives below count 1, tied ones 1/2).
  No per-resample sort is needed: each chunk of resamples is a few vectorized passes over a
  (chunk, n) array. One-sided p-value ``(1 + #{delta* <= 0}) / (1 + B)`` (H1: new > champion);
  percentile CI. Resamples without both classes are dropped (``n_boot`` reports those kept).
* Identical predictions: delta is exactly 0 and BOTH tests return p-value 1.0 (no evidence the new
  model is better; for DeLong se is 0, z is reported as 0.0), so they are never promoted.
* ``mcnemar_test`` compares hard predictions: b = new right / champion wrong, c = the reverse;
  two-sided p-value, exact binomial when b + c < 25, else chi-square with continuity correction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE = 0.95
EXACT_MCNEMAR_BELOW = 25
_BOOT_CHUNK = 64
_PLOT_DPI = 100

# Metric -> True when higher is better (used to bold the best value in ``metrics_markdown``).
_METRIC_DIRECTION: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "precision": True,
    "recall": True,
    "f1": True,
    "accuracy": True,
}
_METRIC_ORDER = [
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "threshold",
    "positive_rate",
    "n",
]


# --------------------------------------------------------------------------- input helpers


def _labels(y: Any) -> np.ndarray:
    import numpy as np

    arr = np.asarray(y).ravel()
    if arr.size == 0:
        raise ValueError("empty label vector")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return arr.astype(np.int8)


def _scores(p: Any, n: int, name: str = "scores") -> np.ndarray:
    import numpy as np

    arr = np.asarray(p, dtype=np.float64).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, labels have {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _both_classes(y: np.ndarray) -> bool:
    positives = int(y.sum())
    return 0 < positives < y.shape[0]


def _z_quantile(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


# --------------------------------------------------------------------------- metrics


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve by the Mann-Whitney formula with midranks (ties count 1/2)."""
    from scipy.stats import rankdata

    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    if not _both_classes(yy):
        raise ValueError("ROC AUC needs both classes")
    n1 = int(yy.sum())
    n0 = yy.shape[0] - n1
    ranks = rankdata(pp)  # average ranks for ties
    return float((ranks[yy == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _threshold_counts(yy: np.ndarray, pp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score, from the highest down: the score, the true positives and the number of
    rows predicted positive when that score is the threshold (``p >= score``)."""
    import numpy as np

    order = np.argsort(-pp, kind="mergesort")
    ys, ps = yy[order], pp[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(ps)), ys.shape[0] - 1]
    tp = np.cumsum(ys)[last_of_group].astype(np.float64)
    return ps[last_of_group], tp, (last_of_group + 1).astype(np.float64)


def _average_precision(yy: np.ndarray, pp: np.ndarray) -> float:
    """Average precision, same definition as sklearn: sum over distinct thresholds of dR * P."""
    import numpy as np

    _, tps, predicted = _threshold_counts(yy, pp)
    precision = tps / predicted
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def classification_metrics(y: Any, p: Any, threshold: float = 0.5) -> dict[str, float | int | None]:
    """Ranking, probability and thresholded metrics; every value is a plain float/int (JSON-able).

    ``roc_auc`` is None when ``y`` has one class, ``pr_auc`` is None when it has no positive.
    Precision is 0 when no row is predicted positive (sklearn's ``zero_division=0``). Log loss clips
    probabilities to [eps, 1 - eps] with eps the float64 machine epsilon (as sklearn does).
    """
    import numpy as np

    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    n = int(yy.shape[0])
    pred = pp >= threshold
    pos = yy == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    fn = int(np.sum(~pred & pos))
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    eps = np.finfo(np.float64).eps
    clipped = np.clip(pp, eps, 1 - eps)
    log_loss = -np.mean(yy * np.log(clipped) + (1 - yy) * np.log1p(-clipped))
    return {
        "roc_auc": roc_auc(yy, pp) if _both_classes(yy) else None,
        "pr_auc": _average_precision(yy, pp) if pos.any() else None,
        "log_loss": float(log_loss),
        "brier": float(np.mean((pp - yy) ** 2)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float((tp + tn) / n),
        "positive_rate": float((tp + fp) / n),
        "threshold": float(threshold),
        "n": n,
    }


def choose_threshold(y_val: Any, p_val: Any, objective: str = "f1") -> float:
    """The score threshold (rule ``p >= t``) maximizing ``objective`` on validation data.

    Candidates are the distinct validation scores (any other threshold gives the same predictions
    as the next candidate above it). Ties between candidates go to the LOWEST threshold. Objectives:
    ``"f1"`` (default), ``"accuracy"``, ``"youden"`` (TPR - FPR). Deterministic: each objective is
    one ratio of exact integer counts, so equal values are equal floats and ties are exact.
    Raises ValueError when the validation labels have a single class.
    """
    import numpy as np

    yy = _labels(y_val)
    pp = _scores(p_val, yy.shape[0])
    if not _both_classes(yy):
        raise ValueError("choose_threshold needs both classes in the validation labels")
    candidates, tp, predicted = _threshold_counts(yy, pp)  # descending distinct scores
    fp = predicted - tp
    positives = float(yy.sum())
    negatives = yy.shape[0] - positives
    if objective == "f1":
        value = 2 * tp / (tp + fp + positives)
    elif objective == "accuracy":
        value = (tp + (negatives - fp)) / yy.shape[0]
    elif objective == "youden":
        value = (tp * negatives - fp * positives) / (positives * negatives)  # exact ties
    else:
        raise ValueError(f"unknown objective {objective!r} (f1, accuracy, youden)")
    # Candidates are descending: the last maximizer is the lowest threshold.
    best = len(value) - 1 - int(np.argmax(value[::-1]))
    return float(candidates[best])


# --------------------------------------------------------------------------- calibration


def calibration_table(y: Any, p: Any, bins: int = 10) -> list[dict[str, float | int]]:
    """Reliability table over ``bins`` equal-width bins of [0, 1]; empty bins are left out.

    Bin i holds ``i/bins <= p < (i+1)/bins`` (the last bin includes 1.0). Each row: bin, lower,
    upper, mean_predicted, observed_rate, count.
    """
    import numpy as np

    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    if bins < 1:
        raise ValueError("bins must be >= 1")
    index = np.clip(np.floor(pp * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=pp, minlength=bins)
    sum_y = np.bincount(index, weights=yy, minlength=bins)
    rows = []
    for i in np.flatnonzero(counts):
        rows.append(
            {
                "bin": int(i),
                "lower": i / bins,
                "upper": (i + 1) / bins,
                "mean_predicted": float(sum_p[i] / counts[i]),
                "observed_rate": float(sum_y[i] / counts[i]),
                "count": int(counts[i]),
            }
        )
    return rows


def expected_calibration_error(y: Any, p: Any, bins: int = 10) -> float:
    """ECE: count-weighted mean of |observed_rate - mean_predicted| over the calibration bins."""
    table = calibration_table(y, p, bins)
    total = sum(row["count"] for row in table)
    gaps = sum(row["count"] * abs(row["observed_rate"] - row["mean_predicted"]) for row in table)
    return float(gaps / total)


# --------------------------------------------------------------------------- paired comparison


def _paired_inputs(y: Any, p_new: Any, p_champion: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy = _labels(y)
    a = _scores(p_new, yy.shape[0], "p_new")
    b = _scores(p_champion, yy.shape[0], "p_champion")
    if not _both_classes(yy):
        raise ValueError("comparing AUCs needs both classes")
    return yy, a, b


class _WeightedAuc:
    """AUC of one score vector under many row-weight vectors, with the rows sorted once.

    ``auc(weights)`` takes a (B, n) array of row multiplicities (a bootstrap resample as counts)
    and returns the B weighted Mann-Whitney AUCs (ties 1/2) without re-sorting.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        import numpy as np

        self.order = np.argsort(p, kind="mergesort")
        ps = p[self.order]
        ys = y[self.order]
        n = p.shape[0]
        starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
        ends = np.r_[starts[1:], n]
        group = np.repeat(np.arange(starts.shape[0]), ends - starts)
        self.neg_sorted = ys == 0
        positive_positions = np.flatnonzero(ys == 1)
        self.pos_in_sorted = positive_positions
        # cumulative negative weight before the tie group of each positive, and at its end
        self.a = starts[group[positive_positions]]
        self.b = ends[group[positive_positions]]

    def auc(self, weights: np.ndarray) -> np.ndarray:
        import numpy as np

        w = weights[:, self.order]
        neg = np.where(self.neg_sorted, w, 0.0)
        cum = np.zeros((w.shape[0], w.shape[1] + 1))
        np.cumsum(neg, axis=1, out=cum[:, 1:])
        wp = w[:, self.pos_in_sorted]
        numerator = 0.5 * np.einsum("bk,bk->b", wp, cum[:, self.a] + cum[:, self.b])
        w_pos = wp.sum(axis=1)
        w_neg = cum[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return numerator / (w_pos * w_neg)


def paired_bootstrap_auc(
    y: Any,
    p_new: Any,
    p_champion: Any,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Paired bootstrap of AUC(new) - AUC(champion) on the same rows (see the module docstring).

    Returns delta_auc (on all rows), percentile CI of the resampled deltas, the one-sided p-value
    ``(1 + #{delta* <= 0}) / (1 + n_boot)`` for H1 new > champion (1.0 for identical predictions),
    n_boot (resamples kept: both classes present) and method. Deterministic for a given seed.
    """
    import numpy as np

    yy, a, b = _paired_inputs(y, p_new, p_champion)
    n = yy.shape[0]
    new_auc, champion_auc = _WeightedAuc(yy, a), _WeightedAuc(yy, b)
    rng = np.random.default_rng(seed)
    deltas = []
    done = 0
    while done < n_boot:
        size = min(_BOOT_CHUNK, n_boot - done)
        idx = rng.integers(0, n, size=(size, n))
        idx += (np.arange(size) * n)[:, None]
        weights = np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        deltas.append(new_auc.auc(weights) - champion_auc.auc(weights))
        done += size
    delta_star = np.concatenate(deltas) if deltas else np.empty(0)
    delta_star = delta_star[np.isfinite(delta_star)]
    kept = int(delta_star.shape[0])
    delta = roc_auc(yy, a) - roc_auc(yy, b)
    if kept:
        tail = (1 - confidence) / 2
        low, high = np.quantile(delta_star, [tail, 1 - tail])
        p_value = (1 + int(np.sum(delta_star <= 0))) / (1 + kept)
    else:
        low = high = float("nan")
        p_value = 1.0
    return {
        "method": "paired_bootstrap",
        "delta_auc": float(delta),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(p_value),
        "n_boot": kept,
    }


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast DeLong (Sun & Xu 2014): AUCs and structural components V10 (positives), V01 (negatives).

    ``scores`` is (k, n); returns aucs (k,), v10 (k, m), v01 (k, n0).
    """
    import numpy as np
    from scipy.stats import rankdata

    positives = y == 1
    x = scores[:, positives]
    z = scores[:, ~positives]
    m, n0 = x.shape[1], z.shape[1]
    tx = rankdata(x, axis=1)  # midranks within positives
    tz = rankdata(z, axis=1)  # midranks within negatives
    full = rankdata(np.hstack([x, z]), axis=1)  # midranks among all rows, positives first
    tx_all, tz_all = full[:, :m], full[:, m:]
    aucs = (tx_all.sum(axis=1) / m - (m + 1) / 2) / n0
    v10 = (tx_all - tx) / n0
    v01 = 1.0 - (tz_all - tz) / m
    return aucs, v10, v01


def delong_test(y: Any, p_new: Any, p_champion: Any, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """DeLong test of AUC(new) - AUC(champion) on the same rows (fast algorithm, midranks).

    se = sqrt(var(delta)) with var = c' (S10/m + S01/n) c, S the sample covariances (ddof=1) of the
    structural components. z = delta / se; p_value = P(Z >= z) (one-sided, H1 new > champion);
    CI delta +- z_{(1+confidence)/2} se. When se == 0 (e.g. identical predictions): z = 0.0 and
    p_value = 1.0 if delta <= 0 else 0.0.
    """
    import numpy as np
    from scipy.stats import norm

    yy, a, b = _paired_inputs(y, p_new, p_champion)
    aucs, v10, v01 = _delong_components(yy, np.vstack([a, b]))
    m, n0 = v10.shape[1], v01.shape[1]
    s10 = np.cov(v10) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(v01) if n0 > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n0
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    delta = float(aucs[0] - aucs[1])
    se = math.sqrt(var) if var > 0 else 0.0
    if se > 0:
        z = delta / se
        p_value = float(norm.sf(z))
    else:
        z = 0.0
        p_value = 0.0 if delta > 0 else 1.0
    half = _z_quantile(confidence) * se
    return {
        "method": "delong",
        "delta_auc": delta,
        "auc_new": float(aucs[0]),
        "auc_champion": float(aucs[1]),
        "z": float(z),
        "se": float(se),
        "p_value": p_value,
        "ci_low": delta - half,
        "ci_high": delta + half,
    }


def mcnemar_test(y: Any, pred_new: Any, pred_champion: Any) -> dict[str, Any]:
    """McNemar test on hard predictions of two models on the same rows (two-sided).

    b = rows the new model gets right and the champion wrong, c = the reverse. When b + c < 25:
    exact binomial test, statistic = min(b, c), p = min(1, 2 P(Bin(b+c, 1/2) <= min(b, c))).
    Otherwise chi-square with continuity correction, statistic = (|b - c| - 1)^2 / (b + c), 1 df.
    b + c == 0 gives statistic 0 and p-value 1.
    """
    import numpy as np
    from scipy.stats import binom, chi2

    yy = _labels(y)
    new = _labels(pred_new)
    champion = _labels(pred_champion)
    if not (new.shape == champion.shape == yy.shape):
        raise ValueError("labels and both predictions must have the same length")
    new_right = new == yy
    champion_right = champion == yy
    b = int(np.sum(new_right & ~champion_right))
    c = int(np.sum(~new_right & champion_right))
    discordant = b + c
    if discordant == 0:
        method, statistic, p_value = "exact", 0.0, 1.0
    elif discordant < EXACT_MCNEMAR_BELOW:
        method = "exact"
        statistic = float(min(b, c))
        p_value = min(1.0, 2 * float(binom.cdf(min(b, c), discordant, 0.5)))
    else:
        method = "chi2"
        statistic = (abs(b - c) - 1) ** 2 / discordant
        p_value = float(chi2.sf(statistic, 1))
    return {"method": method, "b": b, "c": c, "statistic": float(statistic), "p_value": float(p_value)}


# --------------------------------------------------------------------------- promotion


@dataclass(frozen=True)
class Decision:
    """Outcome of the promotion gate: alias is "champion", "challenger" or None (not registered)."""

    promote: bool
    alias: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def promotion_decision(
    comparison: Mapping[str, Any] | None, alpha: float, min_auc: float, new_auc: float | None
) -> Decision:
    """Whether the new model becomes champion, challenger, or nothing.

    * AUC below ``min_auc`` (or missing): never promoted, alias None (quality gate failed).
    * No champion yet (``comparison`` None): promoted to champion.
    * ``comparison["p_value"] < alpha`` and ``comparison["delta_auc"] > 0``: promoted to champion.
    * Otherwise: alias "challenger", not promoted.
    """
    if new_auc is None or not math.isfinite(new_auc) or new_auc < min_auc:
        shown = "missing" if new_auc is None or not math.isfinite(new_auc) else f"{new_auc:.4f}"
        return Decision(
            False,
            None,
            f"Not promoted: the quality gate failed, AUC {shown} is below the minimum {min_auc:.4f}.",
        )
    if comparison is None:
        return Decision(
            True,
            "champion",
            f"Promoted to champion: there is no champion yet and AUC {new_auc:.4f} passes the "
            f"minimum {min_auc:.4f}.",
        )
    delta = float(comparison["delta_auc"])
    p_value = float(comparison["p_value"])
    method = {"delong": "DeLong test", "paired_bootstrap": "paired bootstrap"}.get(
        str(comparison.get("method", "")), "paired test"
    )
    detail = f"AUC {new_auc:.4f}, delta AUC vs champion {delta:+.4f}"
    if "ci_low" in comparison and "ci_high" in comparison:
        detail += f" ({CONFIDENCE:.0%} CI {float(comparison['ci_low']):+.4f} to {float(comparison['ci_high']):+.4f})"
    detail += f", one-sided p = {p_value:.4g} ({method}), alpha = {alpha:g}"
    if p_value < alpha and delta > 0:
        return Decision(True, "champion", f"Promoted to champion: significantly better than the champion; {detail}.")
    why = "not better than the champion" if delta <= 0 else "improvement not significant"
    return Decision(False, "challenger", f"Kept as challenger: {why}; {detail}.")


# --------------------------------------------------------------------------- plots


def _figure(width: float = 5.0, height: float = 4.0):
    """A figure on the Agg canvas, outside pyplot: no global state, safe in threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=_PLOT_DPI)
    fig.clf()  # figure is not registered with pyplot: clearing releases it, nothing to close
    return out


def plot_roc(y: Any, p: Any, path: str | Path, label: str = "model") -> Path:
    """ROC curve with the AUC in the legend, saved as PNG; returns the path."""
    import numpy as np

    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    _, tp, predicted = _threshold_counts(yy, pp)
    tps = np.r_[0.0, tp]
    fps = np.r_[0.0, predicted] - tps
    fig = _figure()
    ax = fig.add_subplot()
    if _both_classes(yy):
        ax.plot(fps / fps[-1], tps / tps[-1], label=f"{label} (AUC {roc_auc(yy, pp):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(y: Any, p: Any, path: str | Path, label: str = "model") -> Path:
    """Precision-recall curve with average precision and the prevalence baseline; returns the path."""
    import numpy as np

    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    _, tps, predicted = _threshold_counts(yy, pp)
    precision = tps / predicted
    fig = _figure()
    ax = fig.add_subplot()
    prevalence = float(yy.mean())
    if tps[-1] > 0:
        recall = tps / tps[-1]
        ap = _average_precision(yy, pp)
        ax.step(np.r_[0, recall], np.r_[precision[0], precision], where="pre", label=f"{label} (AP {ap:.3f})")
    ax.axhline(prevalence, linestyle="--", color="grey", label=f"prevalence {prevalence:.3f}")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_confusion(y: Any, pred: Any, path: str | Path) -> Path:
    """2x2 confusion matrix (rows: actual, columns: predicted) with counts and row shares."""
    import numpy as np

    yy = _labels(y)
    pr = _labels(pred)
    if pr.shape != yy.shape:
        raise ValueError("labels and predictions must have the same length")
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (yy, pr), 1)
    fig = _figure(4.2, 3.8)
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    peak = matrix.max() or 1
    for i in range(2):
        row_total = matrix[i].sum() or 1
        for j in range(2):
            colour = "white" if matrix[i, j] > peak / 2 else "black"
            ax.text(j, i, f"{matrix[i, j]}\n{matrix[i, j] / row_total:.1%}", ha="center", va="center", color=colour)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["0", "1"], yticklabels=["0", "1"])
    ax.set(xlabel="Predicted", ylabel="Actual", title="Confusion matrix")
    return _save(fig, path)


def plot_calibration(y: Any, p: Any, path: str | Path, bins: int = 10) -> Path:
    """Reliability diagram (observed rate vs mean predicted per bin) over a histogram of scores."""
    yy = _labels(y)
    pp = _scores(p, yy.shape[0])
    table = calibration_table(yy, pp, bins)
    ece = expected_calibration_error(yy, pp, bins)
    fig = _figure(5.0, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    top.plot(
        [row["mean_predicted"] for row in table],
        [row["observed_rate"] for row in table],
        marker="o",
        label=f"model (ECE {ece:.3f})",
    )
    top.set(ylabel="Observed positive rate", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.hist(pp, bins=bins, range=(0, 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="Predicted probability", ylabel="Rows")
    return _save(fig, path)


def plot_feature_importance(names: Sequence[str], values: Sequence[float], path: str | Path, top: int = 20) -> Path:
    """Horizontal bars of the ``top`` features by absolute importance, largest at the top."""
    names = [str(name) for name in names]
    vals = [float(value) for value in values]
    if len(names) != len(vals):
        raise ValueError("names and values must have the same length")
    ranked = sorted(zip(names, vals, strict=True), key=lambda item: (-abs(item[1]), item[0]))[:top]
    ranked.reverse()
    fig = _figure(6.0, max(2.0, 0.3 * len(ranked) + 1.0))
    ax = fig.add_subplot()
    ax.barh([name for name, _ in ranked], [value for _, value in ranked], color="tab:blue")
    ax.set(xlabel="Importance", title=f"Feature importance (top {len(ranked)})")
    return _save(fig, path)


# --------------------------------------------------------------------------- markdown


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table, one row per model and one column per metric; the best value is bold.

    Known metrics come first in a fixed order (roc_auc, pr_auc, log_loss, brier, ...), then any
    other keys in first-seen order. "Best" is the max (or min for log_loss, brier) among models.
    """
    seen: list[str] = []
    for metrics in rows.values():
        for key in metrics:
            if key not in seen:
                seen.append(key)
    columns = [key for key in _METRIC_ORDER if key in seen] + [key for key in seen if key not in _METRIC_ORDER]
    best: dict[str, float] = {}
    if len(rows) > 1:
        for key in columns:
            if key not in _METRIC_DIRECTION:
                continue
            numbers = [
                float(m[key])
                for m in rows.values()
                if isinstance(m.get(key), int | float) and not isinstance(m.get(key), bool) and math.isfinite(m[key])
            ]
            if numbers:
                best[key] = max(numbers) if _METRIC_DIRECTION[key] else min(numbers)
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for model, metrics in rows.items():
        cells = []
        for key in columns:
            value = metrics.get(key)
            text = _cell(value)
            if key in best and isinstance(value, int | float) and float(value) == best[key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
