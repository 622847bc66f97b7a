"""Predictions of a range scored a chunk of days at a time (``ml_assets.scoring.chunks``): the same
rows, scores and per-day figures for any chunk size, with a real LightGBM model on real features."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.scoring.chunks import score_in_chunks
from ml_assets.training.boosting import train_lightgbm
from resources.partition_reader import StoredPartitions
from tests.conftest import FAST, FEATURES

KEYS = ["year", "month", "day", "carrier", "flight", "origin"]


@pytest.fixture(scope="module")
def model_and_store(real_splits, real_sample, tmp_path_factory):
    bundle = train_lightgbm(real_splits["train"], real_splits["validate"], FEATURES, FAST, seed=1,
                            early_stopping_rounds=5, num_boost_round=40, target="delayed")
    folder = tmp_path_factory.mktemp("features")
    days = sorted(real_sample[PARTITION_COLUMN].astype(str).unique())[-9:]
    for day in days:
        real_sample[real_sample[PARTITION_COLUMN] == day].to_parquet(folder / f"{day}.parquet", index=False)
    store = StoredPartitions(dg.AssetKey(["flights", "features"]), tuple(days), tuple(folder / f"{d}.parquet" for d in days))
    return bundle.scoring_model(), store


def describe(part: pd.DataFrame, inputs: pd.DataFrame) -> dict:
    return {"rows": len(part), "mean_score": float(part["delayed_score"].mean()),
            "missing_temp": int(inputs["temp"].isna().sum()), "days": sorted(part[PARTITION_COLUMN].unique())}


def test_chunks_give_the_rows_scores_and_day_figures_of_one_pass(model_and_store):
    model, store = model_and_store
    whole = pd.concat([store.read(day) for day in store.keys], ignore_index=True)
    expected = model.score(whole)
    results = {size: score_in_chunks(store, model, "7", KEYS, "delayed", describe, chunk_days=size) for size in (2, 4, 100)}
    assert [chunks for _, _, chunks in results.values()] == [5, 3, 1]
    out, per_day, _ = results[100]
    assert len(out) == len(whole) > 5_000
    np.testing.assert_array_equal(out["delayed_score"].to_numpy(), expected["score"].to_numpy())
    np.testing.assert_array_equal(out["delayed_predicted"].to_numpy(), expected["label"].to_numpy())
    assert list(out.columns) == [*KEYS, PARTITION_COLUMN, "delayed_score", "delayed_predicted", "model_version"]
    assert (out["model_version"] == "7").all()
    for size in (2, 4):
        pd.testing.assert_frame_equal(results[size][0], out)
        assert results[size][1] == per_day
    for day in store.keys:
        rows = whole[whole[PARTITION_COLUMN] == day]
        assert per_day[day]["rows"] == len(rows) and per_day[day]["days"] == [day]
        assert per_day[day]["missing_temp"] == int(rows["temp"].isna().sum())
    with pytest.raises(ValueError, match="chunk_days must be at least 1"):
        score_in_chunks(store, model, "7", KEYS, "delayed", describe, chunk_days=0)
