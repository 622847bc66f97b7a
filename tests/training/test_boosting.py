"""LightGBM training (``ml_assets.training.boosting``), its preprocessing and scoring model
(``ml_assets.training.tabular_model``) and Optuna tuning (``ml_assets.training.tuning``), on small
real samples (five weeks of real 2013 features) and tiny hand-made frames. A few small LightGBM fits
with two threads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.evaluation.metrics import evaluate
from ml_assets.training.boosting import predict_proba, train_lightgbm
from ml_assets.training.tabular_model import Preprocessing, ScoringModel
from ml_assets.training.tuning import tune_lightgbm
from ml_assets.training.windows import split_by_time
from tests.conftest import CATEGORICAL, FAST, FEATURES, NUMERIC, run_subprocess_python, tiny_frame


@pytest.fixture(scope="module")
def real_bundle(real_splits):
    return train_lightgbm(real_splits["train"], real_splits["validate"], FEATURES, FAST, seed=7,
                          early_stopping_rounds=10, num_boost_round=150, target="delayed")


# ------------------------------------------------------------------------------------------ import


@pytest.mark.slow
def test_module_import_is_cheap():
    code = (
        "import sys; import ml_assets.training.boosting, ml_assets.training.tuning, ml_assets.training.windows; "
        "heavy = [m for m in ('pandas', 'numpy', 'lightgbm', 'sklearn', 'optuna') if m in sys.modules]; "
        "print(heavy); assert not heavy, heavy"
    )
    result = run_subprocess_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------- preprocessing


def test_preprocessing_fixed_levels_unseen_and_order():
    train = pd.DataFrame({"n": ["1", "2", None], "c": ["b", "a", None], "extra": [1, 2, 3]})
    prep = Preprocessing.fit(train, ["n"], ["c"])
    assert prep.categories == {"c": ["a", "b"]}
    scored = pd.DataFrame({"c": ["zzz", "a", None], "n": [3.5, "bad", None]})
    out = prep.transform(scored)
    assert list(out.columns) == ["n", "c"]
    assert out["n"].dtype == "float64" and out["n"].isna().tolist() == [False, True, True]
    assert list(out["c"].cat.categories) == ["a", "b"]
    assert out["c"].isna().tolist() == [True, False, True]  # unseen -> missing
    assert prep.unseen_counts(scored) == {"c": 1}
    # stored with the model as JSON and restored exactly
    restored = Preprocessing.from_json(prep.to_json())
    assert restored == prep
    pd.testing.assert_frame_equal(restored.transform(scored), out)


def test_preprocessing_missing_columns():
    prep = Preprocessing.fit(pd.DataFrame({"n": [1.0], "c": ["a"]}), ["n"], ["c"])
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
                           early_stopping_rounds=10, num_boost_round=150, target="delayed")
    assert again.best_iteration == real_bundle.best_iteration
    np.testing.assert_array_equal(predict_proba(again, real_splits["test"]),
                                  predict_proba(real_bundle, real_splits["test"]))


def test_saved_model_scores_unseen_categories_and_missing_weather(real_splits, real_bundle, tmp_path):
    """The registered artifacts (booster text file and preprocessing JSON) restore the model exactly."""
    test = real_splits["test"].head(200).copy()
    expected = predict_proba(real_bundle, test)
    artifacts = real_bundle.scoring_model().save(tmp_path / "model")
    restored = ScoringModel.load(artifacts)
    np.testing.assert_array_equal(restored.predict_scores(test), expected)

    odd = test.copy()
    odd["dest"] = "XXX"  # an airport never seen in training
    odd["carrier"] = None
    for column in ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]:
        odd[column] = np.nan  # no weather for that hour (as after 2013-12-30 18:00)
    proba = restored.predict_scores(odd)
    assert np.isfinite(proba).all() and len(proba) == 200
    # column order in the scoring frame does not matter
    shuffled = test[list(reversed(test.columns))]
    np.testing.assert_array_equal(restored.predict_scores(shuffled), expected)


def test_train_lightgbm_tiny_frame_learns_signal():
    windows = {"train": ("2013-01-01", "2013-01-20"), "validate": ("2013-01-21", "2013-01-25"),
               "test": ("2013-01-26", "2013-01-30")}
    splits = split_by_time(tiny_frame(n_days=30, per_day=100), windows, target="delayed")
    bundle = train_lightgbm(splits["train"], splits["validate"], (["x", "z"], ["cat"]), FAST, seed=0,
                            early_stopping_rounds=10, num_boost_round=100, target="delayed")
    assert evaluate(splits["test"]["delayed"], predict_proba(bundle, splits["test"]))["roc_auc"] > 0.75
    assert list(bundle.feature_importance)[0] == "x"


def test_train_lightgbm_rejects_unknown_target():
    frame = tiny_frame()
    with pytest.raises(ValueError, match="unknown values"):
        train_lightgbm(frame.assign(delayed=np.where(frame.index == 0, np.nan, frame.delayed)), frame,
                       (["x"], ["cat"]), target="delayed")


def test_train_lightgbm_without_validation_fits_fixed_rounds():
    frame = tiny_frame(n_days=10, per_day=60)
    bundle = train_lightgbm(frame, None, (["x", "z"], ["cat"]), FAST, seed=0, num_boost_round=12, target="delayed")
    assert bundle.best_iteration == 12 and bundle.validation_metrics == {}
    assert predict_proba(bundle, frame).shape == (len(frame),)


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
    kwargs = dict(n_trials=3, timeout_s=60, seed=3, num_boost_round=60, early_stopping_rounds=10, target="delayed")
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
            tune_lightgbm(frame, frame, (["x"], ["cat"]), space, n_trials=1, target="delayed")
