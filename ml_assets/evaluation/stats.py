"""Paired comparison of a NEW model with the CHAMPION on the same test rows.

Written here because scikit-learn and scipy do not have them: DeLong's test and a fast paired
bootstrap of the AUC difference. McNemar's test uses scipy's binomial and chi-square distributions.

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
from typing import TYPE_CHECKING, Any

from ml_assets.evaluation.metrics import both_classes, labels_array, scores_array

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE = 0.95
EXACT_MCNEMAR_BELOW = 25
BOOT_CHUNK = 64


def z_quantile(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve (scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def paired_inputs(y: Any, p_new: Any, p_champion: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy = labels_array(y)
    a = scores_array(p_new, yy.shape[0], "p_new")
    b = scores_array(p_champion, yy.shape[0], "p_champion")
    if not both_classes(yy):
        raise ValueError("comparing AUCs needs both classes")
    return yy, a, b


class WeightedAuc:
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

    yy, a, b = paired_inputs(y, p_new, p_champion)
    n = yy.shape[0]
    new_auc, champion_auc = WeightedAuc(yy, a), WeightedAuc(yy, b)
    rng = np.random.default_rng(seed)
    deltas = []
    done = 0
    while done < n_boot:
        size = min(BOOT_CHUNK, n_boot - done)
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


def delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    yy, a, b = paired_inputs(y, p_new, p_champion)
    aucs, v10, v01 = delong_components(yy, np.vstack([a, b]))
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
    half = z_quantile(confidence) * se
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
    from scipy.stats import binomtest, chi2

    yy = labels_array(y)
    new = labels_array(pred_new)
    champion = labels_array(pred_champion)
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
        p_value = float(binomtest(min(b, c), discordant, 0.5, alternative="two-sided").pvalue)
    else:
        method = "chi2"
        statistic = (abs(b - c) - 1) ** 2 / discordant
        p_value = float(chi2.sf(statistic, 1))
    return {"method": method, "b": b, "c": c, "statistic": float(statistic), "p_value": float(p_value)}
