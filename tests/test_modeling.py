"""Tests for ml_assets.modeling on small real samples (a few weeks of the materialized 2013 features)
and tiny hand-made frames. Fast: a few small LightGBM fits with two threads."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ml_assets import modeling
from ml_assets.modeling import (
    Preprocessor,
    evaluate,
    load_feature_days,
    logistic_baseline,
    naive_rate_baseline,
    predict_proba,
    rolling_window,
    split_by_time,
    train_lightgbm,
    tune_lightgbm,
)
from tests.conftest import REPO_ROOT, real_features

NUMERIC = [
    "sched_dep_hour", "sched_dep_minute", "weekday", "distance", "temp", "dewp", "humid",
    "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib", "carrier_delay_rate_7d",
    "carrier_delay_rate_28d", "route_delay_rate_7d", "route_delay_rate_28d", "origin_delay_rate_7d",
    "carrier_flights_7d", "route_flights_28d",
]
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = {"numeric": NUMERIC, "categorical": CATEGORICAL}
FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50}
SAMPLE_WINDOWS = {
    "train": ("2013-06-01", "2013-06-21"),
    "validate": ("2013-06-22", "2013-06-28"),
    "test": ("2013-06-29", "2013-07-05"),
}

@pytest.fixture(scope="module")
def real_sample(tmp_path_factory) -> pd.DataFrame:
    """Real features of 2013-06-01 .. 2013-07-05, built from the packaged data with the pipeline's
    own feature function, stored one Parquet file per day as the features asset does, and read back
    with ``load_feature_days``."""
    from ml_assets.feature_functions import PARTITION_COLUMN

    features = real_features("2013-06-01", "2013-07-05")
    folder = tmp_path_factory.mktemp("features")
    for day, part in features.groupby(PARTITION_COLUMN):
        part.to_parquet(folder / f"{day}.parquet", index=False)
    return load_feature_days(folder, "2013-06-01", "2013-07-05")


@pytest.fixture(scope="module")
def real_splits(real_sample: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return split_by_time(real_sample, **SAMPLE_WINDOWS)


@pytest.fixture(scope="module")
def real_bundle(real_splits):
    return train_lightgbm(real_splits["train"], real_splits["validate"], FEATURES, FAST, seed=7,
                          early_stopping_rounds=10, num_boost_round=150)


def tiny_frame(n_days: int = 10, per_day: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2013-01-01", periods=n_days, freq="D").strftime("%Y-%m-%d")
    n = n_days * per_day
    x = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    logits = 1.5 * x + np.where(cat == "a", 1.0, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(float)
    return pd.DataFrame({
        "partition_date": np.repeat(days, per_day),
        "x": x,
        "z": rng.normal(size=n),
        "cat": cat,
        "route_delay_rate_28d": rng.random(n),
        "carrier_delay_rate_28d": rng.random(n),
        "delayed": y,
    })


# ------------------------------------------------------------------------------------------ import


def test_module_import_is_cheap():
    code = (
        "import sys; import ml_assets.modeling; "
        "heavy = [m for m in ('pandas', 'numpy', 'lightgbm', 'sklearn', 'optuna') if m in sys.modules]; "
        "print(heavy); assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------ splits


def test_split_by_time_windows_and_unknown_targets_dropped():
    frame = tiny_frame()
    frame.loc[[0, 1, 100], "delayed"] = np.nan
    splits = split_by_time(frame, train=("2013-01-01", "2013-01-06"), validate=("2013-01-07", "2013-01-08"),
                           test=("2013-01-09", "2013-01-10"), min_rows=10)
    assert [len(splits[k]) for k in ("train", "validate", "test")] == [240 - 3, 80, 80]
    assert splits["train"]["partition_date"].max() == "2013-01-06"
    assert splits["validate"]["partition_date"].min() == "2013-01-07"
    assert all(s["delayed"].notna().all() for s in splits.values())


def test_split_by_time_accepts_datetime_column_and_dates():
    import datetime as dt

    frame = tiny_frame()
    frame["partition_date"] = pd.to_datetime(frame["partition_date"])
    splits = split_by_time(frame, train=(dt.date(2013, 1, 1), dt.date(2013, 1, 5)), validate=None,
                           test=("2013-01-06", "2013-01-10"), min_rows=10)
    assert set(splits) == {"train", "test"} and len(splits["train"]) == 200


def test_split_by_time_too_few_rows_names_window_and_counts():
    with pytest.raises(ValueError, match=r"window 'validate' \(2013-01-07\.\.2013-01-07\) has 40 rows.*min_rows=100"):
        split_by_time(tiny_frame(), train=("2013-01-01", "2013-01-06"), validate=("2013-01-07", "2013-01-07"),
                      test=None, min_rows=100)


def test_split_by_time_single_class():
    frame = tiny_frame()
    frame.loc[frame["partition_date"] >= "2013-01-09", "delayed"] = 0.0
    with pytest.raises(ValueError, match=r"window 'test' .* single class: 0 positive and 80 negative"):
        split_by_time(frame, train=("2013-01-01", "2013-01-06"), validate=("2013-01-07", "2013-01-08"),
                      test=("2013-01-09", "2013-01-10"), min_rows=10)


def test_split_by_time_rejects_overlapping_windows():
    with pytest.raises(ValueError, match="must not overlap"):
        split_by_time(tiny_frame(), train=("2013-01-01", "2013-01-06"), validate=("2013-01-06", "2013-01-08"),
                      test=None, min_rows=10)


def test_rolling_window():
    rows = rolling_window(tiny_frame(), last_n_days=3, end_day="2013-01-10", min_rows=10)
    assert sorted(rows["partition_date"].unique()) == ["2013-01-08", "2013-01-09", "2013-01-10"]
    with pytest.raises(ValueError, match=r"rolling_3d.*fewer than min_rows=1000"):
        rolling_window(tiny_frame(), last_n_days=3, end_day="2013-01-10", min_rows=1000)


def test_default_windows_on_real_year_boundaries(real_sample):
    # the real sample only covers June/July: the default train window finds rows, validation none
    with pytest.raises(ValueError, match=r"window 'validate' \(2013-09-01\.\.2013-09-30\) has 0 rows"):
        split_by_time(real_sample)


# ---------------------------------------------------------------------------------- preprocessing


def test_preprocessor_fixed_levels_unseen_and_order():
    train = pd.DataFrame({"n": ["1", "2", None], "c": ["b", "a", None], "extra": [1, 2, 3]})
    prep = Preprocessor.fit(train, ["n"], ["c"])
    assert prep.categories == {"c": ["a", "b"]}
    scored = pd.DataFrame({"c": ["zzz", "a", None], "n": [3.5, "bad", None]})
    out = prep.transform(scored)
    assert list(out.columns) == ["n", "c"]
    assert out["n"].dtype == "float64" and out["n"].isna().tolist() == [False, True, True]
    assert list(out["c"].cat.categories) == ["a", "b"]
    assert out["c"].isna().tolist() == [True, False, True]  # unseen -> missing
    assert prep.unseen_counts(scored) == {"c": 1}
    restored = pickle.loads(pickle.dumps(prep))
    pd.testing.assert_frame_equal(restored.transform(scored), out)


def test_preprocessor_missing_columns():
    prep = Preprocessor.fit(pd.DataFrame({"n": [1.0], "c": ["a"]}), ["n"], ["c"])
    with pytest.raises(ValueError, match=r"no column\(s\) \['n'\]"):
        prep.transform(pd.DataFrame({"c": ["a"]}))
    out = prep.transform(pd.DataFrame({"c": ["a"]}), missing_columns="nan")
    assert np.isnan(out["n"].iloc[0])


# ------------------------------------------------------------------------------------------ LightGBM


def test_train_lightgbm_on_real_sample(real_splits, real_bundle):
    assert 1 <= real_bundle.best_iteration <= 150
    assert set(real_bundle.feature_importance) == set(NUMERIC + CATEGORICAL)
    assert real_bundle.params["deterministic"] and real_bundle.params["num_threads"] == 2
    proba = predict_proba(real_bundle, real_splits["test"])
    assert proba.shape == (len(real_splits["test"]),) and ((proba > 0) & (proba < 1)).all()
    metrics = evaluate(real_splits["test"]["delayed"], proba)
    assert metrics["roc_auc"] > 0.6  # three weeks of summer training data is already well above chance


def test_train_lightgbm_is_deterministic(real_splits, real_bundle):
    again = train_lightgbm(real_splits["train"], real_splits["validate"], FEATURES, FAST, seed=7,
                           early_stopping_rounds=10, num_boost_round=150)
    assert again.best_iteration == real_bundle.best_iteration
    np.testing.assert_array_equal(predict_proba(again, real_splits["test"]),
                                  predict_proba(real_bundle, real_splits["test"]))


def test_bundle_pickles_and_scores_unseen_categories_and_missing_weather(real_splits, real_bundle):
    test = real_splits["test"].head(200).copy()
    expected = predict_proba(real_bundle, test)
    restored = pickle.loads(pickle.dumps(real_bundle))
    np.testing.assert_array_equal(predict_proba(restored, test), expected)

    odd = test.copy()
    odd["dest"] = "XXX"  # an airport never seen in training
    odd["carrier"] = None
    for column in ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]:
        odd[column] = np.nan  # no weather for that hour (as after 2013-12-30 18:00)
    proba = predict_proba(restored, odd)
    assert np.isfinite(proba).all() and len(proba) == 200
    # column order in the scoring frame does not matter
    shuffled = test[list(reversed(test.columns))]
    np.testing.assert_array_equal(predict_proba(restored, shuffled), expected)


def test_train_lightgbm_tiny_frame_learns_signal():
    splits = split_by_time(tiny_frame(n_days=30, per_day=100), train=("2013-01-01", "2013-01-20"),
                           validate=("2013-01-21", "2013-01-25"), test=("2013-01-26", "2013-01-30"))
    bundle = train_lightgbm(splits["train"], splits["validate"], (["x", "z"], ["cat"]), FAST, seed=0,
                            early_stopping_rounds=10, num_boost_round=100)
    assert evaluate(splits["test"]["delayed"], predict_proba(bundle, splits["test"]))["roc_auc"] > 0.75
    assert list(bundle.feature_importance)[0] == "x"


def test_train_lightgbm_rejects_unknown_target():
    frame = tiny_frame()
    with pytest.raises(ValueError, match="unknown values"):
        train_lightgbm(frame.assign(delayed=np.where(frame.index == 0, np.nan, frame.delayed)), frame,
                       (["x"], ["cat"]))


# ------------------------------------------------------------------------------------------ tuning


def test_tune_lightgbm_records_trials_and_is_seeded(real_splits):
    space = {
        "num_leaves": {"type": "int", "low": 7, "high": 31, "log": True},
        "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
        "min_child_samples": {"type": "int", "low": 20, "high": 200},
        "feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
        "max_cat_to_onehot": {"type": "categorical", "choices": [4, 8]},
        "bagging_freq": 0,  # a fixed value
    }
    small = real_splits["train"].sample(6000, random_state=0)
    kwargs = dict(n_trials=3, timeout_s=60, seed=3, num_boost_round=60, early_stopping_rounds=10)
    first = tune_lightgbm(small, real_splits["validate"], FEATURES, space, **kwargs)
    second = tune_lightgbm(small, real_splits["validate"], FEATURES, space, **kwargs)
    assert [t.number for t in first.trials] == [0, 1, 2]
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert first.best_value == max(t.value for t in first.trials) == second.best_value
    assert 0.5 < first.best_value < 1 and all(t.duration_s > 0 for t in first.trials)
    assert first.best_params["bagging_freq"] == 0 and 7 <= first.best_params["num_leaves"] <= 31


def test_tune_lightgbm_rejects_bad_search_space():
    frame = tiny_frame()
    for space, message in [
        ({"num_leaves": {"type": "int", "low": 10}}, "needs 'low' and 'high'"),
        ({"num_leaves": {"type": "int", "low": 10, "high": 5}}, "low 10 > high 5"),
        ({"lambda_l2": {"type": "float", "low": 0, "high": 1, "log": True}}, "log scale needs low > 0"),
        ({"x": {"type": "uniform", "low": 0, "high": 1}}, "type must be int, float or categorical"),
    ]:
        with pytest.raises(ValueError, match=message):
            tune_lightgbm(frame, frame, (["x"], ["cat"]), space, n_trials=1)


# ------------------------------------------------------------------------------------------ baselines


def test_naive_rate_baseline_fallbacks():
    frame = pd.DataFrame({"route_delay_rate_28d": [0.2, np.nan, np.nan], "carrier_delay_rate_28d": [0.4, 0.3, np.nan]})
    np.testing.assert_allclose(naive_rate_baseline(frame, fallback_rate=0.25), [0.3, 0.3, 0.25])
    np.testing.assert_allclose(naive_rate_baseline(frame), [0.3, 0.3, 0.3])  # mean of available rates
    with pytest.raises(ValueError, match="needs at least one"):
        naive_rate_baseline(pd.DataFrame({"x": [1.0]}))


def test_baselines_on_real_sample(real_splits, real_bundle):
    train, test = real_splits["train"], real_splits["test"]
    naive = evaluate(test["delayed"], naive_rate_baseline(test, float(train["delayed"].mean())))
    model = logistic_baseline(train, FEATURES)
    odd = test.copy()
    odd["dest"] = "XXX"
    odd["temp"] = np.nan
    logit_proba = model.predict_proba(odd)[:, 1]
    assert np.isfinite(logit_proba).all()
    logit = evaluate(test["delayed"], model.predict_proba(test)[:, 1])
    assert 0.5 < naive["roc_auc"] < 0.8 and 0.6 < logit["roc_auc"] < 0.9
    pickle.loads(pickle.dumps(model))


def test_evaluate_metrics_and_single_class():
    metrics = evaluate([0, 1, 0, 1, np.nan], [0.1, 0.9, 0.2, 0.8, 0.5])
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0 and metrics["rows"] == 4
    with pytest.raises(ValueError, match="single class"):
        evaluate([1, 1], [0.2, 0.3])


def test_module_exports():
    for name in modeling.__all__:
        assert hasattr(modeling, name), name


def test_train_lightgbm_without_validation_fits_fixed_rounds():
    frame = tiny_frame(n_days=10, per_day=60)
    bundle = train_lightgbm(frame, None, (["x", "z"], ["cat"]), FAST, seed=0, num_boost_round=12)
    assert bundle.best_iteration == 12 and bundle.validation_metrics == {}
    assert predict_proba(bundle, frame).shape == (len(frame),)
