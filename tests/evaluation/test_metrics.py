"""The evaluation library: metrics (scikit-learn), DeLong vs brute force, bootstrap, McNemar, the
promotion gate and plots (``ml_assets.evaluation.metrics``, ``.stats``, ``.gate``, ``.plots``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binom, chi2, norm
from sklearn import metrics as skm

from ml_assets.evaluation.gate import Decision, promotion_decision
from ml_assets.evaluation.metrics import (
    calibration_table,
    choose_threshold,
    classification_metrics,
    evaluate,
    expected_calibration_error,
)
from ml_assets.evaluation.plots import (
    plot_calibration,
    plot_confusion,
    plot_feature_importance,
    plot_pr,
    plot_roc,
)
from ml_assets.evaluation.stats import WeightedAuc, delong_test, mcnemar_test, paired_bootstrap_auc
from tests.conftest import run_subprocess_python

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def sample():
    """Fixed random labels and probabilities with some tied scores."""
    rng = np.random.default_rng(42)
    n = 2000
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > 0.8).astype(int)
    p = np.round(sigmoid(signal + 0.5 * rng.normal(size=n) - 1), 3)  # rounding makes ties
    return y, p


def paired_models(n: int, new_noise: float, champion_noise: float, seed: int):
    """Labels from a latent signal; both models see the signal plus their own independent noise."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + 0.5 * rng.normal(size=n) > 0.5).astype(int)
    p_new = sigmoid(signal + new_noise * rng.normal(size=n))
    p_champion = sigmoid(signal + champion_noise * rng.normal(size=n))
    return y, p_new, p_champion


# --------------------------------------------------------------------------- metrics


def test_metrics_match_sklearn(sample):
    y, p = sample
    threshold = 0.3
    got = classification_metrics(y, p, threshold)
    pred = (p >= threshold).astype(int)
    expected = {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "brier": skm.brier_score_loss(y, p),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "accuracy": skm.accuracy_score(y, pred),
        "positive_rate": pred.mean(),
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    assert got["n"] == len(y) and type(got["n"]) is int
    assert all(type(v) in (float, int) for v in got.values())
    json.dumps(got)  # JSON-able


def test_metrics_edge_cases():
    got = classification_metrics([0, 0, 0], [0.1, 0.2, 0.9], threshold=0.95)
    assert got["roc_auc"] is None and got["pr_auc"] is None
    assert got["precision"] == 0.0 and got["f1"] == 0.0 and got["accuracy"] == 1.0
    # probabilities 0 and 1 are clipped like sklearn does
    y, p = [0, 1, 1, 0], [0.0, 1.0, 0.0, 0.4]
    assert classification_metrics(y, p)["log_loss"] == pytest.approx(skm.log_loss(y, p))
    with pytest.raises(ValueError):
        classification_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.1])


def test_evaluate_metrics_and_single_class():
    metrics = evaluate([0, 1, 0, 1, np.nan], [0.1, 0.9, 0.2, 0.8, 0.5])
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0 and metrics["rows"] == 4
    with pytest.raises(ValueError, match="single class"):
        evaluate([1, 1], [0.2, 0.3])


# --------------------------------------------------------------------------- threshold


def test_choose_threshold_hand_made():
    y = [0, 0, 1, 0, 1, 1]
    p = [0.1, 0.3, 0.35, 0.4, 0.8, 0.9]
    # t=0.9: F1 .5; t=0.8: .8; t=0.4: 2*2/(3+3)=.667; t=0.35: 2*3/(4+3)=.857; t=0.3: .75; t=0.1: .667
    assert choose_threshold(y, p) == 0.35
    assert classification_metrics(y, p, 0.35)["f1"] == pytest.approx(6 / 7)


def test_choose_threshold_lowest_when_best_is_everything():
    y = [1, 0, 1, 1]
    p = [0.9, 0.8, 0.7, 0.2]
    # F1 = 2TP / (TP + FP + P), P = 3. t=0.9: 2/4; t=0.8: 2/5; t=0.7: 4/6; t=0.2: 6/7 (best)
    assert choose_threshold(y, p) == 0.2


def test_choose_threshold_exact_tie_picks_lowest():
    y = [1, 0, 0, 1]
    p = [0.9, 0.8, 0.7, 0.6]
    # t=0.9: TP1 FP0 -> 2/(1+2) = 2/3; t=0.6: TP2 FP2 -> 4/(4+2) = 2/3 (exact tie); others lower
    assert choose_threshold(y, p) == 0.6
    assert choose_threshold(y[::-1], p[::-1]) == 0.6  # row order does not matter


def test_choose_threshold_objectives_and_errors():
    y = [0, 0, 1, 0, 1, 1]
    p = [0.1, 0.3, 0.35, 0.4, 0.8, 0.9]
    # accuracy: t=0.8 (TP2 FP0) and t=0.35 (TP3 FP1) both get 5/6 -> the lower threshold
    assert choose_threshold(y, p, "accuracy") == 0.35
    # Youden: t=0.8 gives 2/3 - 0, t=0.35 gives 1 - 1/3 (an exact tie, integer arithmetic) -> 0.35
    assert choose_threshold(y, p, "youden") == 0.35
    with pytest.raises(ValueError):
        choose_threshold(y, p, "bogus")
    with pytest.raises(ValueError):
        choose_threshold([0, 0], [0.1, 0.2])


# --------------------------------------------------------------------------- calibration


def test_calibration_perfectly_calibrated():
    rng = np.random.default_rng(7)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    table = calibration_table(y, p, bins=10)
    assert [row["bin"] for row in table] == list(range(10))
    assert sum(row["count"] for row in table) == p.size
    for row in table:
        assert row["lower"] <= row["mean_predicted"] < row["upper"]
        assert abs(row["observed_rate"] - row["mean_predicted"]) < 0.01
    assert expected_calibration_error(y, p) < 0.005
    # a badly calibrated model (probabilities squashed towards 0.5) has a large ECE
    assert expected_calibration_error(y, 0.5 + (p - 0.5) * 0.3) > 0.1


def test_calibration_table_edges():
    table = calibration_table([0, 1, 1], [0.0, 1.0, 0.95], bins=4)
    assert [(row["bin"], row["count"]) for row in table] == [(0, 1), (3, 2)]  # 1.0 goes to the last bin
    json.dumps(table)


# --------------------------------------------------------------------------- DeLong


def brute_force_delong(y, p_new, p_champion):
    """DeLong et al. (1988) with the O(m n) kernel psi(x, z) = 1[x > z] + 1/2 1[x = z]."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for p in (p_new, p_champion):
        x, z = p[pos][:, None], p[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = pos.sum(), neg.sum()
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return aucs[0] - aucs[1], math.sqrt(var), aucs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 150
    y = rng.integers(0, 2, n)
    # rounded scores: many ties, exercising the midranks
    p_new = np.round(sigmoid(2 * y - 1 + rng.normal(size=n)), 1)
    p_champion = np.round(sigmoid(y - 0.5 + rng.normal(size=n)), 2)
    got = delong_test(y, p_new, p_champion)
    delta, se, aucs = brute_force_delong(y, p_new, p_champion)
    assert got["delta_auc"] == pytest.approx(delta, abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["auc_new"] == pytest.approx(skm.roc_auc_score(y, p_new), abs=1e-12)
    assert got["auc_champion"] == pytest.approx(aucs[1], abs=1e-12)
    assert got["z"] == pytest.approx(delta / se, rel=1e-9)
    assert got["p_value"] == pytest.approx(norm.sf(delta / se), rel=1e-9)
    assert got["ci_low"] == pytest.approx(delta - 1.959963984540054 * se, rel=1e-9)
    assert got["ci_high"] == pytest.approx(delta + 1.959963984540054 * se, rel=1e-9)


def test_delong_detects_better_model():
    y, p_new, p_champion = paired_models(5000, new_noise=0.2, champion_noise=1.5, seed=3)
    got = delong_test(y, p_new, p_champion)
    assert got["delta_auc"] > 0.05 and got["p_value"] < 1e-6 and got["ci_low"] > 0
    # the reverse comparison is the mirror image
    reverse = delong_test(y, p_champion, p_new)
    assert reverse["delta_auc"] == pytest.approx(-got["delta_auc"])
    assert reverse["p_value"] > 1 - 1e-6


# --------------------------------------------------------------------------- bootstrap


def test_weighted_auc_matches_sklearn_on_explicit_resamples(sample):
    """The no-resort weighted AUC equals sklearn's AUC on the materialized resample (with ties)."""
    y, p = sample
    rng = np.random.default_rng(5)
    scorer = WeightedAuc(y, p)
    idx = rng.integers(0, len(y), size=(4, len(y)))
    weights = np.stack([np.bincount(row, minlength=len(y)) for row in idx]).astype(float)
    got = scorer.auc(weights)
    expected = [skm.roc_auc_score(y[row], p[row]) for row in idx]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_bootstrap_clearly_better_model():
    y, p_new, p_champion = paired_models(5000, new_noise=0.2, champion_noise=1.5, seed=3)
    got = paired_bootstrap_auc(y, p_new, p_champion, n_boot=1000, seed=0)
    assert got["n_boot"] == 1000
    assert got["delta_auc"] == pytest.approx(skm.roc_auc_score(y, p_new) - skm.roc_auc_score(y, p_champion))
    assert got["p_value"] == pytest.approx(1 / 1001)  # no resample has delta <= 0
    assert 0 < got["ci_low"] < got["delta_auc"] < got["ci_high"]
    # agrees with DeLong on the interval
    delong = delong_test(y, p_new, p_champion)
    assert got["ci_low"] == pytest.approx(delong["ci_low"], abs=0.01)
    assert got["ci_high"] == pytest.approx(delong["ci_high"], abs=0.01)
    # deterministic for a seed
    assert paired_bootstrap_auc(y, p_new, p_champion, n_boot=1000, seed=0) == got


def test_bootstrap_equal_quality_is_not_significant():
    # Two independent noisy versions of the same signal, same noise level (H0 true). Under H0 the
    # p-value is ~uniform; the seeds are fixed so this is deterministic (p is ~0.94 here).
    y, p_new, p_champion = paired_models(5000, new_noise=1.0, champion_noise=1.0, seed=11)
    got = paired_bootstrap_auc(y, p_new, p_champion, n_boot=1000, seed=0)
    assert got["p_value"] > 0.2
    assert got["ci_low"] < 0 < got["ci_high"]
    assert delong_test(y, p_new, p_champion)["p_value"] > 0.2
    decision = promotion_decision(got, alpha=0.05, min_auc=0.6, new_auc=skm.roc_auc_score(y, p_new))
    assert decision.alias == "challenger" and not decision.promote


def test_identical_predictions_never_promote():
    y, p_new, _ = paired_models(3000, new_noise=0.5, champion_noise=0.5, seed=4)
    boot = paired_bootstrap_auc(y, p_new, p_new.copy(), n_boot=300, seed=1)
    delong = delong_test(y, p_new, p_new.copy())
    for result in (boot, delong):
        assert result["delta_auc"] == 0.0
        assert result["p_value"] == 1.0  # documented choice: 1.0, not 0.5
        decision = promotion_decision(result, alpha=0.05, min_auc=0.5, new_auc=0.9)
        assert not decision.promote and decision.alias == "challenger"
    assert boot["ci_low"] == boot["ci_high"] == 0.0
    assert delong["se"] == 0.0 and delong["z"] == 0.0


def test_paired_inputs_validated():
    with pytest.raises(ValueError):
        delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError):
        paired_bootstrap_auc([0, 1], [0.1, 0.2], [0.3])


# --------------------------------------------------------------------------- McNemar


def mcnemar_rows(b: int, c: int, agree: int = 30):
    """Labels all 1; b rows new right / champion wrong, c the reverse, ``agree`` both right."""
    y = np.ones(b + c + agree, dtype=int)
    new = np.r_[np.ones(b), np.zeros(c), np.ones(agree)].astype(int)
    champion = np.r_[np.zeros(b), np.ones(c), np.ones(agree)].astype(int)
    return y, new, champion


def test_mcnemar_exact_branch():
    got = mcnemar_test(*mcnemar_rows(8, 2))
    assert (got["method"], got["b"], got["c"]) == ("exact", 8, 2)
    assert got["statistic"] == 2.0
    assert got["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375
    assert got["p_value"] == pytest.approx(2 * binom.cdf(2, 10, 0.5))
    # b + c = 24 is still exact; symmetric case caps at 1
    assert mcnemar_test(*mcnemar_rows(12, 12))["method"] == "exact"
    assert mcnemar_test(*mcnemar_rows(12, 12))["p_value"] == 1.0
    nothing = mcnemar_test(*mcnemar_rows(0, 0))
    assert nothing["p_value"] == 1.0 and nothing["statistic"] == 0.0


def test_mcnemar_chi_square_branch():
    got = mcnemar_test(*mcnemar_rows(30, 10))
    assert (got["method"], got["b"], got["c"]) == ("chi2", 30, 10)
    assert got["statistic"] == pytest.approx((20 - 1) ** 2 / 40)  # 9.025
    assert got["p_value"] == pytest.approx(chi2.sf(9.025, 1))
    assert mcnemar_test(*mcnemar_rows(13, 12))["method"] == "chi2"  # b + c = 25


# --------------------------------------------------------------------------- promotion


def test_promotion_no_champion():
    decision = promotion_decision(None, alpha=0.05, min_auc=0.7, new_auc=0.81)
    assert decision == Decision(True, "champion", decision.reason)
    assert "no champion" in decision.reason and "0.8100" in decision.reason


def test_promotion_significant_and_not():
    significant = {"method": "delong", "delta_auc": 0.02, "p_value": 0.001, "ci_low": 0.01, "ci_high": 0.03}
    decision = promotion_decision(significant, alpha=0.05, min_auc=0.7, new_auc=0.85)
    assert decision.promote and decision.alias == "champion"
    assert "+0.0200" in decision.reason and "0.001" in decision.reason and "DeLong" in decision.reason

    not_significant = dict(significant, p_value=0.2)
    decision = promotion_decision(not_significant, alpha=0.05, min_auc=0.7, new_auc=0.85)
    assert not decision.promote and decision.alias == "challenger"
    assert "not significant" in decision.reason

    worse_but_small_p = {"delta_auc": -0.02, "p_value": 0.01}  # p below alpha but delta <= 0
    decision = promotion_decision(worse_but_small_p, alpha=0.05, min_auc=0.7, new_auc=0.85)
    assert decision.alias == "challenger" and not decision.promote
    json.dumps(decision.to_dict())


def test_promotion_gate_blocks_even_without_champion():
    for comparison in (None, {"delta_auc": 0.2, "p_value": 1e-9}):
        decision = promotion_decision(comparison, alpha=0.05, min_auc=0.7, new_auc=0.65)
        assert decision == Decision(False, None, decision.reason)
        assert "gate failed" in decision.reason and "0.6500" in decision.reason and "0.7000" in decision.reason
    assert promotion_decision(None, 0.05, 0.7, float("nan")).alias is None


# --------------------------------------------------------------------------- plots


def test_plots_write_png_files(tmp_path, sample):
    y, p = sample
    pred = (p >= 0.3).astype(int)
    paths = [
        plot_roc(y, p, tmp_path / "roc.png", label="lightgbm"),
        plot_pr(y, p, tmp_path / "pr.png", label="lightgbm"),
        plot_confusion(y, pred, tmp_path / "confusion.png"),
        plot_calibration(y, p, tmp_path / "calibration.png"),
        plot_feature_importance(
            [f"feature_{i}" for i in range(30)], np.arange(30.0) - 10, tmp_path / "nested" / "importance.png", top=20
        ),
    ]
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC, path


# --------------------------------------------------------------------------- import cost


@pytest.mark.slow
def test_import_is_cheap():
    code = (
        "import sys, ml_assets.evaluation.metrics, ml_assets.evaluation.stats, ml_assets.evaluation.gate,"
        " ml_assets.evaluation.plots, ml_assets.evaluation.baselines; "
        "print(sorted(m for m in ('numpy', 'scipy', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    out = run_subprocess_python(code, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bootstrap_p_value_no_resample_reached_is_shown_as_below_one_over_b():
    """The evaluation's ``p_value_shown``: a clearly better model's paired bootstrap reaches no
    resample with delta <= 0, so its p-value is 1/(B+1) and is shown as "< 1/B", never as "0"; an
    ordinary p-value is shown with 4 significant digits."""
    from ml_assets.evaluation.assets import shown_p_value

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    better = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    worse = rng.random(400)
    result = paired_bootstrap_auc(y, better, worse, n_boot=500)
    assert result["n_boot"] == 500 and result["p_value"] == pytest.approx(1 / 501)
    assert shown_p_value(result["p_value"], result["n_boot"]) == \
        "< 1/500 (no resample reached the observed difference)"
    close = paired_bootstrap_auc(y, worse, rng.random(400), n_boot=500)
    assert 0.01 < close["p_value"] < 1
    shown = shown_p_value(close["p_value"], close["n_boot"])
    assert not shown.startswith("<") and float(shown) == pytest.approx(close["p_value"], rel=1e-3)
    assert shown_p_value(0.0123456) == "0.01235" and shown_p_value(1e-300) == "< 1e-16"
