"""Baselines a model must beat (``ml_assets.evaluation.baselines``), on tiny frames and a real sample."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ml_assets.evaluation.baselines import column_mean_baseline, logistic_baseline
from ml_assets.evaluation.metrics import evaluate
from tests.conftest import CATEGORICAL, FEATURES, NUMERIC


RATES = ["route_delay_rate_28d", "carrier_delay_rate_28d"]


def test_column_mean_baseline_fallbacks():
    frame = pd.DataFrame({"route_delay_rate_28d": [0.2, np.nan, np.nan], "carrier_delay_rate_28d": [0.4, 0.3, np.nan]})
    np.testing.assert_allclose(column_mean_baseline(frame, RATES, fallback=0.25), [0.3, 0.3, 0.25])
    np.testing.assert_allclose(column_mean_baseline(frame, RATES), [0.3, 0.3, 0.3])  # mean of available rates
    with pytest.raises(ValueError, match=r"baseline columns \['route_delay_rate_28d'\] are not in"):
        column_mean_baseline(pd.DataFrame({"carrier_delay_rate_28d": [1.0]}), RATES)


def test_prior_and_linear_baselines_of_each_task():
    from ml_assets.evaluation.baselines import linear_baseline, linear_scores, prior_baseline

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    train = pd.DataFrame({"x": x, "kind": np.where(x > 0, "a", "b"), "value": 3 * x + rng.normal(size=300),
                          "cls": np.select([x < -0.5, x < 0.5], ["low", "mid"], "high"), "flag": (x > 0).astype(float)})
    np.testing.assert_allclose(prior_baseline(train, 2, target="flag"), [train.flag.mean()] * 2)
    classes = ["high", "low", "mid"]
    shares = prior_baseline(train, 2, target="cls", classes=classes)
    np.testing.assert_allclose(shares[0], train.cls.value_counts(normalize=True)[classes].to_numpy())
    ridge = linear_baseline(train, (["x"], ["kind"]), target="value", task="regression")
    assert np.corrcoef(linear_scores(ridge, train[["x", "kind"]], "regression"), train.value)[0, 1] > 0.9
    multi = linear_baseline(train, (["x"], []), target="cls", task="multiclass", classes=classes)
    proba = linear_scores(multi, train[["x"]], "multiclass", 3)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1)
    assert (np.asarray(classes)[proba.argmax(axis=1)] == train.cls).mean() > 0.8


def test_baselines_on_real_sample(real_splits):
    train, test = real_splits["train"], real_splits["test"]
    naive = evaluate(test["delayed"], column_mean_baseline(test, RATES, float(train["delayed"].mean())))
    model = logistic_baseline(train, FEATURES, target="delayed")
    odd = test.copy()
    odd["dest"] = "XXX"
    odd["temp"] = np.nan
    logit_proba = model.predict_proba(odd)[:, 1]
    assert np.isfinite(logit_proba).all()
    logit = evaluate(test["delayed"], model.predict_proba(test)[:, 1])
    assert 0.5 < naive["roc_auc"] < 0.8 and 0.6 < logit["roc_auc"] < 0.9
    pickle.loads(pickle.dumps(model))


def test_capped_sample_is_seeded_stratified_and_keeps_order():
    from ml_assets.training.windows import capped_sample

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"i": range(10_000), "delayed": (rng.random(10_000) < 0.21).astype(float)})
    assert capped_sample(frame, 20_000, seed=0) is frame and capped_sample(frame, None, seed=0) is frame
    sample = capped_sample(frame, 1_000, seed=3, stratify="delayed")
    assert len(sample) == 1_000 and sample["i"].is_monotonic_increasing and sample["i"].is_unique
    # each class keeps its share, to the row (largest remainders)
    assert sample["delayed"].sum() == round(frame["delayed"].sum() / 10)
    pd.testing.assert_frame_equal(sample, capped_sample(frame, 1_000, seed=3, stratify="delayed"))
    assert not capped_sample(frame, 1_000, seed=4, stratify="delayed")["i"].equals(sample["i"])
    plain = capped_sample(frame, 1_000, seed=3)
    assert len(plain) == 1_000 and plain["i"].is_monotonic_increasing


def test_baselines_fit_on_a_capped_seeded_sample(flights_spec, real_splits):
    from ml_assets.evaluation.report import baseline_fit_rows, baseline_sample_text, baseline_scores

    train, test = real_splits["train"], real_splits["test"]
    capped = flights_spec.model_copy(update={"evaluation": flights_spec.evaluation.model_copy(
        update={"baseline_max_rows": len(train) // 4})})
    rows = baseline_fit_rows(capped, train)
    assert len(rows) == len(train) // 4 and rows["delayed"].mean() == pytest.approx(train["delayed"].mean(), abs=2e-3)
    assert baseline_fit_rows(flights_spec, train) is train
    assert baseline_sample_text(capped, len(train)).startswith(f"a random sample of {len(train) // 4:,} of the {len(train):,}")
    scores = baseline_scores(capped, train, test, None)
    full = baseline_scores(flights_spec, train, test, None)
    np.testing.assert_array_equal(scores["prior"][1], full["prior"][1])  # the prior still uses every row
    sampled_auc = evaluate(test["delayed"], scores["logistic"][1])["roc_auc"]
    full_auc = evaluate(test["delayed"], full["logistic"][1])["roc_auc"]
    assert not np.array_equal(scores["logistic"][1], full["logistic"][1])
    assert sampled_auc == pytest.approx(full_auc, abs=0.02) and sampled_auc > 0.6
    again = baseline_scores(capped, train, test, None)
    np.testing.assert_array_equal(again["logistic"][1], scores["logistic"][1])


def test_baseline_train_rows_are_those_of_the_copied_train_window(flights_spec, real_splits):
    """The evaluation takes the prior's labels and the baselines' sample from the training set by
    position: the same frames as copying the train window first, capped or not."""
    from ml_assets.config.tabular import SPLIT_COLUMN
    from ml_assets.evaluation.report import baseline_fit_rows, baseline_train_rows
    from ml_assets.training.windows import split_rows

    training_set = pd.concat([part.assign(**{SPLIT_COLUMN: name}) for name, part in real_splits.items()],
                             ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train = split_rows(training_set, "train")
    for cap in (len(train) // 4, len(train) + 1):
        spec = flights_spec.model_copy(update={"evaluation": flights_spec.evaluation.model_copy(
            update={"baseline_max_rows": cap})})
        labels, rows = baseline_train_rows(spec, training_set)
        pd.testing.assert_frame_equal(labels, train[["delayed"]])
        pd.testing.assert_frame_equal(rows, baseline_fit_rows(spec, train))
        assert len(rows) == min(cap, len(train))


def test_linear_scores_in_chunks_are_the_scores_of_the_whole_frame(real_splits):
    """The logistic baseline scores a large test window a chunk of rows at a time: the same scores
    (to float rounding) as one call on the whole window."""
    from ml_assets.evaluation.baselines import linear_baseline, linear_scores
    from ml_assets.training.registry import model_input

    train, test = real_splits["train"], real_splits["test"]
    model = linear_baseline(train, (NUMERIC, CATEGORICAL), target="delayed")
    rows = model_input(test, NUMERIC, CATEGORICAL)
    whole = linear_scores(model, rows, "classification", chunk_rows=len(rows))
    chunked = linear_scores(model, rows, "classification", chunk_rows=997)
    assert len(rows) > 5 * 997 and chunked.shape == whole.shape == (len(rows),)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
