"""Baselines a model must beat (``ml_assets.evaluation.baselines``), on tiny frames and a real sample."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ml_assets.evaluation.baselines import logistic_baseline, naive_rate_baseline
from ml_assets.evaluation.metrics import evaluate
from tests.conftest import FEATURES


def test_naive_rate_baseline_fallbacks():
    frame = pd.DataFrame({"route_delay_rate_28d": [0.2, np.nan, np.nan], "carrier_delay_rate_28d": [0.4, 0.3, np.nan]})
    np.testing.assert_allclose(naive_rate_baseline(frame, fallback_rate=0.25), [0.3, 0.3, 0.25])
    np.testing.assert_allclose(naive_rate_baseline(frame), [0.3, 0.3, 0.3])  # mean of available rates
    with pytest.raises(ValueError, match="needs at least one"):
        naive_rate_baseline(pd.DataFrame({"x": [1.0]}))


def test_baselines_on_real_sample(real_splits):
    train, test = real_splits["train"], real_splits["test"]
    naive = evaluate(test["delayed"], naive_rate_baseline(test, float(train["delayed"].mean())))
    model = logistic_baseline(train, FEATURES, target="delayed")
    odd = test.copy()
    odd["dest"] = "XXX"
    odd["temp"] = np.nan
    logit_proba = model.predict_proba(odd)[:, 1]
    assert np.isfinite(logit_proba).all()
    logit = evaluate(test["delayed"], model.predict_proba(test)[:, 1])
    assert 0.5 < naive["roc_auc"] < 0.8 and 0.6 < logit["roc_auc"] < 0.9
    pickle.loads(pickle.dumps(model))
