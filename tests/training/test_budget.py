"""Training within a memory budget: the training set read one stored day at a time, the fit's
float32 matrix built a column at a time (no float64 frame of the whole matrix) and freed by LightGBM
once binned, and ``model.max_train_rows`` sampling the train window (seeded, stratified), on real
2013 features."""

from __future__ import annotations

import tracemalloc

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN
from ml_assets.training.boosting import lightgbm_dataset, model_matrix, train_lightgbm
from ml_assets.training.tabular_model import Preprocessing
from resources.partition_reader import StoredPartitions, read_columns
from tests.conftest import CATEGORICAL, FAST, FEATURES, NUMERIC


@pytest.fixture(scope="module")
def prep(real_splits):
    return Preprocessing.fit(real_splits["train"], NUMERIC, CATEGORICAL, target="delayed")


def test_model_matrix_is_the_scoring_transform_in_float32(prep, real_splits):
    test = real_splits["test"].copy()
    test.loc[test.index[:5], "carrier"] = "ZZ"  # unseen level: missing, as at scoring
    matrix = model_matrix(prep, test)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.shape == (len(test), len(prep.columns))
    frame = prep.transform(test)
    for j, column in enumerate(prep.columns):
        expected = (frame[column].cat.codes.replace(-1, np.nan) if column in CATEGORICAL else frame[column])
        np.testing.assert_array_equal(matrix[:, j], expected.to_numpy(dtype="float32"))
    assert np.isnan(matrix[:5, prep.columns.index("carrier")]).all()


def test_dataset_frees_its_matrix_and_needs_no_float64_frame(prep, real_splits):
    train = real_splits["train"]
    y = train["delayed"].to_numpy(dtype="float64")
    lightgbm_dataset(prep, train.iloc[:200], y[:200]).construct()  # imports and first-call caches, not traced
    tracemalloc.start()
    dataset = lightgbm_dataset(prep, train, y)
    dataset.construct()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    float64_frame = len(train) * len(prep.columns) * 8
    # the float32 matrix (half a float64 frame) plus one column's temporaries (a categorical's strings):
    # less than one float64 frame, where transform-then-convert made two
    assert peak < float64_frame, (peak, float64_frame)
    assert dataset.data is None  # free_raw_data: LightGBM dropped the matrix once it was binned
    assert dataset.pandas_categorical == [prep.categories[c] for c in CATEGORICAL]


def test_booster_scores_the_registered_transform_as_it_was_trained(prep, real_splits):
    bundle = train_lightgbm(real_splits["train"], real_splits["validate"], FEATURES, FAST, seed=7,
                            early_stopping_rounds=10, num_boost_round=80, target="delayed")
    test = real_splits["test"]
    by_frame = bundle.booster.predict(bundle.preprocessor.transform(test), num_iteration=bundle.best_iteration)
    by_matrix = bundle.booster.predict(model_matrix(bundle.preprocessor, test), num_iteration=bundle.best_iteration)
    np.testing.assert_array_equal(by_frame, by_matrix)
    auc = bundle.validation_metrics["roc_auc"]
    assert 0.65 < auc < 0.9


def _training_set(real_splits) -> pd.DataFrame:
    return pd.concat([part.assign(**{SPLIT_COLUMN: name}) for name, part in real_splits.items()], ignore_index=True)


def test_max_train_rows_samples_the_train_window_seeded_and_stratified(flights_spec, real_splits):
    from ml_assets.training.fitting import fit_model

    training_set = _training_set(real_splits)
    train_rows = len(real_splits["train"])
    model = flights_spec.model.model_copy(update={
        "max_train_rows": train_rows // 3, "params": FAST, "max_boost_rounds": 60, "early_stopping_rounds": 10,
        "tuning": flights_spec.model.tuning.model_copy(update={"n_trials": 0})})
    spec = flights_spec.model_copy(update={"model": model})
    fitted = fit_model(training_set, spec)
    assert (fitted.train_rows, fitted.fitted_rows, fitted.bundle.train_rows) == (train_rows, train_rows // 3, train_rows // 3)
    assert fitted.sampled
    assert fitted.bundle.train_positive_rate == pytest.approx(real_splits["train"]["delayed"].mean(), abs=1e-3)
    assert fitted.bundle.validation_metrics["roc_auc"] > 0.6
    again = fit_model(training_set, spec)
    assert again.bundle.booster.model_to_string() == fitted.bundle.booster.model_to_string()
    unlimited = fit_model(training_set, spec.model_copy(update={"model": model.model_copy(update={"max_train_rows": None})}))
    assert unlimited.fitted_rows == unlimited.train_rows == train_rows and not unlimited.sampled


def test_training_set_read_by_day_equals_the_whole_range_build(flights_spec, real_sample, tmp_path):
    from ml_assets.training.windows import build_training_set, build_training_set_by_day

    model = flights_spec.model.model_copy(update={"windows": flights_spec.model.windows.model_copy(
        update={"mode": "rolling", "rolling": flights_spec.model.windows.rolling.model_copy(
            update={"train_days": 20, "validate_days": 7, "test_days": 7, "end": None})})})
    spec = flights_spec.model_copy(update={"model": model})
    days = sorted(real_sample[PARTITION_COLUMN].astype(str).unique())
    for day in days:
        real_sample[real_sample[PARTITION_COLUMN] == day].to_parquet(tmp_path / f"{day}.parquet", index=False)
    store = StoredPartitions(dg.AssetKey(["flights", "features"]), tuple(days), tuple(tmp_path / f"{d}.parquet" for d in days))
    expected, windows = build_training_set(real_sample, spec)
    got, got_windows = build_training_set_by_day(store, spec)
    assert got_windows == windows and len(got) > 10_000
    pd.testing.assert_frame_equal(got, expected)
    # the model and evaluation read only their columns of the stored training set
    path = tmp_path / "training_set.parquet"
    expected.to_parquet(path, index=False)
    stored = StoredPartitions(dg.AssetKey(["flights", "training_set"]), (None,), (path,))
    narrow = read_columns(stored, [*NUMERIC, *CATEGORICAL, "delayed", SPLIT_COLUMN, "not_a_column"])
    assert list(narrow.columns) == [*NUMERIC, *CATEGORICAL, "delayed", SPLIT_COLUMN]
    pd.testing.assert_frame_equal(narrow, expected[list(narrow.columns)])
