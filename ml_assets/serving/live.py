"""The live A/B gate: champion and challenger compared on the traffic they scored, once outcomes are in.

``compare_day`` joins a day's served rows (champion score, shadow challenger score) with the day's
outcomes from the primary source, and runs the evaluation gate's own paired test
(``compare_with_champion``: paired bootstrap, DeLong or McNemar as the YAML says). ``promotion``
decides from the recent days' verdicts whether the challenger takes the ``champion`` alias: every one
of the last ``days`` days compared the same two versions and found the challenger significantly better,
and no live promotion happened within the cooldown. No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_assets.features.functions import target_values


def compare_day(spec: Any, served: Any, outcomes: Any, min_rows: int) -> dict[str, Any]:
    """The day's comparison as plain values: ``status`` is ``compared`` (then ``significant``,
    ``delta_auc``, ``p_value``, AUCs) or ``insufficient`` with the reason."""
    import pandas as pd

    from ml_assets.evaluation.gate import compare_with_champion
    from ml_assets.evaluation.stats import roc_auc

    key = list(spec.sources[spec.primary_source].entity_key)
    target = spec.target.name
    base = {"served_rows": int(len(served)), "champion_version": None, "challenger_version": None}
    shadowed = served[served["challenger_score"].notna()] if len(served) else served
    if shadowed.empty:
        return {**base, "status": "insufficient", "reason": "no served row was scored by a challenger"}
    # one pair of versions per comparison: the pair that scored the most rows that day
    pairs = shadowed.groupby(["model_version", "challenger_version"]).size().sort_values(ascending=False)
    champion_version, challenger_version = pairs.index[0]
    rows = shadowed[(shadowed["model_version"] == champion_version)
                    & (shadowed["challenger_version"] == challenger_version)]
    rows = rows.drop_duplicates(key, keep="last")  # a row scored twice counts once (its last answer)
    labels = outcomes[key].assign(_y=target_values(outcomes, spec.target).to_numpy()).drop_duplicates(key)
    joined = rows.merge(labels, on=key, how="inner")
    joined = joined[joined["_y"].notna()]
    base.update(champion_version=str(champion_version), challenger_version=str(challenger_version),
                labelled_rows=int(len(joined)))
    if len(joined) < min_rows:
        return {**base, "status": "insufficient",
                "reason": f"{len(joined)} served rows with a known outcome, {min_rows} needed"}
    y = joined["_y"].to_numpy()
    if len(set(y.tolist())) < 2:
        return {**base, "status": "insufficient", "reason": "the outcomes of the day have a single class"}
    champion = pd.DataFrame({"score": joined[f"{target}_score"].to_numpy(),
                             "label": joined[f"{target}_predicted"].to_numpy()})
    challenger = pd.DataFrame({"score": joined["challenger_score"].to_numpy(),
                               "label": joined["challenger_predicted"].to_numpy()})
    result = compare_with_champion(spec, y, challenger, champion)
    alpha = spec.evaluation.alpha
    delta = float(result.get("delta_auc", result.get("delta_mse", 0.0)))
    p_value = float(result["p_value"])
    out = {**base, "status": "compared", "method": str(result.get("method", spec.evaluation.comparison)),
           "delta": delta, "p_value": p_value, "alpha": alpha, "significant": bool(p_value < alpha and delta > 0)}
    if spec.target.task != "regression":
        out["champion_auc"] = float(roc_auc(y, champion["score"]))
        out["challenger_auc"] = float(roc_auc(y, challenger["score"]))
    return out


@dataclass(frozen=True)
class LiveDecision:
    promote: bool
    reason: str
    days: tuple[str, ...] = ()


def promotion(
    verdicts: dict[str, dict[str, Any]], champion: str | None, challenger: str | None, days: int,
    hours_since_last: float | None, cooldown_hours: float,
) -> LiveDecision:
    """Whether the live gate promotes ``challenger``: the last ``days`` compared days (by partition)
    all compared these two versions and all found the challenger significantly better."""
    if champion is None or challenger is None:
        return LiveDecision(False, "no champion and challenger to compare in the registry")
    compared = sorted(d for d, v in verdicts.items() if v.get("status") == "compared"
                      and v.get("champion_version") == champion and v.get("challenger_version") == challenger)
    recent = compared[-days:]
    if len(recent) < days:
        return LiveDecision(False, f"{len(recent)} day(s) compared champion v{champion} with challenger"
                                   f" v{challenger}; {days} needed", tuple(recent))
    failing = [d for d in recent if not verdicts[d]["significant"]]
    if failing:
        return LiveDecision(False, f"challenger v{challenger} not significantly better on {', '.join(failing)}",
                            tuple(recent))
    if hours_since_last is not None and hours_since_last < cooldown_hours:
        return LiveDecision(False, f"cooling down: the last live promotion was {hours_since_last:.1f} h ago"
                                   f" (cooldown {cooldown_hours:g} h)", tuple(recent))
    summary = ", ".join(f"{d} (delta {verdicts[d]['delta']:+.4f}, p {verdicts[d]['p_value']:.3g})" for d in recent)
    return LiveDecision(True, f"challenger v{challenger} significantly better than champion v{champion} on"
                              f" {days} consecutive compared day(s): {summary}", tuple(recent))
