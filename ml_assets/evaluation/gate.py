"""The promotion gate: whether a new model version becomes champion, challenger, or nothing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ml_assets.evaluation.stats import CONFIDENCE

from ml_assets.training.registry import CHALLENGER, CHAMPION


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
            CHAMPION,
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
        return Decision(True, CHAMPION, f"Promoted to champion: significantly better than the champion; {detail}.")
    why = "not better than the champion" if delta <= 0 else "improvement not significant"
    return Decision(False, CHALLENGER, f"Kept as challenger: {why}; {detail}.")


def compare_with_champion(spec: Any, y: Any, new: Any, champion: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML's paired test of the new model against the champion on the same test rows.

    ``new`` and ``champion`` are ``score_frame`` outputs. The result always has ``method``,
    ``delta_auc`` (or ``delta_mse`` for a regression) and a one-sided ``p_value`` for H1 "the new
    model is better". A multiclass model is compared by McNemar's test on which rows each model
    classifies correctly (``extra``: ``classes`` and both models' macro ROC-AUC for ``delta_auc``).
    """
    import numpy as np

    from ml_assets.evaluation.stats import delong_test, mcnemar_test, paired_bootstrap_auc, roc_auc

    evaluation = spec.evaluation
    if spec.target.task == "regression":
        from scipy import stats

        new_err = (np.asarray(y) - new["score"].to_numpy()) ** 2
        old_err = (np.asarray(y) - champion["score"].to_numpy()) ** 2
        delta = float(old_err.mean() - new_err.mean())  # > 0: the new model has the smaller MSE
        if np.allclose(new_err, old_err):
            p_value = 1.0
        else:
            p_value = float(stats.ttest_rel(new_err, old_err, alternative="less").pvalue)
        return {"method": "paired t-test on squared errors", "delta_mse": delta, "p_value": p_value}
    if spec.target.task == "multiclass":
        truth = np.asarray(extra["classes"], dtype=object)[np.asarray(y, dtype="int64")]
        new_right = (new["label"].to_numpy() == truth).astype("int8")
        old_right = (champion["label"].to_numpy() == truth).astype("int8")
        result = mcnemar_test(np.ones(len(truth), dtype="int8"), new_right, old_right)
        b, c = int(result["b"]), int(result["c"])
        return {**result, "method": "mcnemar on correct classifications", "p_value_two_sided": result["p_value"],
                "p_value": result["p_value"] / 2 if b > c else 1.0,
                "delta_auc": float(extra["new_auc"]) - float(extra["champion_auc"])}
    if evaluation.comparison == "delong":
        return delong_test(y, new["score"], champion["score"])
    if evaluation.comparison == "paired_bootstrap":
        return paired_bootstrap_auc(
            y, new["score"], champion["score"], n_boot=evaluation.bootstrap_samples, seed=spec.model.seed
        )
    result = mcnemar_test(y, new["label"], champion["label"])
    b, c = int(result["b"]), int(result["c"])
    # two-sided -> one-sided for H1 "the new model is right more often"
    one_sided = result["p_value"] / 2 if b > c else 1.0
    return {
        **result, "p_value_two_sided": result["p_value"], "p_value": one_sided,
        "delta_auc": roc_auc(y, new["score"]) - roc_auc(y, champion["score"]),
    }


def regression_decision(comparison: dict[str, Any] | None, alpha: float, min_r2: float, r2: float) -> Any:
    """Promotion for a regression: the R^2 floor, then a significantly smaller squared error."""
    if not r2 == r2 or r2 < min_r2:
        return Decision(False, None, f"Not promoted: the quality gate failed, R^2 {r2:.4f} is below {min_r2:.4f}.")
    if comparison is None:
        return Decision(True, CHAMPION, f"Promoted to champion: there is no champion yet and R^2 {r2:.4f} passes.")
    detail = (
        f"MSE reduction vs champion {comparison['delta_mse']:+.4g}, one-sided p = {comparison['p_value']:.4g}"
        f" ({comparison['method']}), alpha = {alpha:g}"
    )
    if comparison["p_value"] < alpha and comparison["delta_mse"] > 0:
        return Decision(True, CHAMPION, f"Promoted to champion: significantly better; {detail}.")
    return Decision(False, CHALLENGER, f"Kept as challenger: not significantly better; {detail}.")
