"""FastScorer gives the registered model's own scores: a real LightGBM model (numeric and categorical
features of a real day, saved and loaded back as the registry does) scored both ways, with an unseen
category, a missing category and a missing number."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import real_features


@pytest.fixture(scope="module")
def model_and_rows(tmp_path_factory):
    import lightgbm

    from ml_assets.training.tabular_model import Preprocessing, ScoringModel

    frame = real_features("2013-06-10", "2013-06-11")
    train = frame[frame["delayed"].notna()].reset_index(drop=True)
    numeric = ["distance", "temp", "sched_dep_hour", "carrier_delay_rate_28d"]
    categorical = ["carrier", "origin", "dest"]
    prep = Preprocessing.fit(train, numeric, categorical, task="classification", target="delayed")
    data = lightgbm.Dataset(prep.transform(train), label=train["delayed"].to_numpy())
    booster = lightgbm.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 0,
                              "num_threads": 1, "min_data_per_group": 5, "cat_smooth": 1}, data, num_boost_round=30)
    # the service loads a registered model from its artifacts: the same round trip
    artifacts = ScoringModel(booster, prep).save(tmp_path_factory.mktemp("model"))
    model = ScoringModel.load(artifacts)
    rows = frame.reset_index(drop=True).copy()
    rows.loc[0, "carrier"] = "ZZ"  # never seen in training
    rows.loc[1, "origin"] = None
    rows.loc[2, "temp"] = np.nan
    rows["sched_dep_hour"] = rows["sched_dep_hour"].astype("int64")  # integers are scored as floats
    return model, rows


def test_fast_scores_are_the_model_scores(model_and_rows):
    from ml_assets.serving.scoring import FastScorer

    model, rows = model_and_rows
    scorer = FastScorer(model)
    assert scorer.exact and model.booster.pandas_categorical is not None
    expected = model.score(rows)
    assert expected["score"].nunique() > 50  # a real model: many distinct scores
    scores, labels, unseen = scorer.score(rows)
    np.testing.assert_array_equal(scores, expected["score"].to_numpy())
    np.testing.assert_array_equal(labels, expected["label"].to_numpy())
    assert unseen[0] == ["carrier"] and unseen[1] == [] and unseen[2] == []
    assert sum(map(len, unseen)) == sum(model.preprocessing.unseen_counts(rows).values())
    # one row at a time gives the same numbers as the batch
    for i in (0, 1, 2, 7):
        one, _, _ = scorer.score(rows.iloc[[i]])
        assert one[0] == expected["score"].iloc[i]


def test_a_missing_feature_column_is_named(model_and_rows):
    from ml_assets.serving.scoring import FastScorer

    model, rows = model_and_rows
    with pytest.raises(ValueError, match=r"no column\(s\) \['temp'\] needed by the model"):
        FastScorer(model).score(rows.drop(columns=["temp"]))
