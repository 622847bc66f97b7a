"""The reference sampled before scoring (``ml_assets.monitoring.sampling``), read one stored day at a
time, against the whole-window build it replaces: same sample rows in the same order, same column
statistics, same calibrated thresholds and the same drift verdicts, with only the sample and the
calibration days scored."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config import load_pipeline
from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.monitoring.drift import (
    build_reference,
    calibrate_thresholds,
    compute_drift,
    drift_settings,
    left_out_pool,
    window_stats,
)
from ml_assets.monitoring.sampling import sample_positions, sample_reference
from resources.parquet_io import atomic_write_parquet
from resources.partition_reader import StoredPartitions
from tests.conftest import FLIGHTS_YAML, real_features

COLUMNS, CONFIG = drift_settings(load_pipeline(FLIGHTS_YAML))
# every window day calibrated (the default up to 365 days): the same thresholds as the whole window
EVERY_DAY = CONFIG
# fewer calibration days than window days, so the choice of days and the sampled pool are exercised
CONFIG = dataclasses.replace(CONFIG, calibration_chunks=6)
WINDOW = ("2013-06-03", "2013-06-16")
CURRENT = ["2013-06-17", "2013-06-18", "2013-06-19"]


class RouteRateScorer:
    """A per-row scorer (each row's score depends on that row only, as a LightGBM model's does) that
    counts the rows it scores: the route's recent delay rate."""

    def __init__(self) -> None:
        self.rows = 0

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.rows += len(frame)
        return pd.DataFrame({"score": frame["route_delay_rate_28d"].fillna(0.2).to_numpy()}, index=frame.index)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    features = real_features(WINDOW[0], CURRENT[-1])
    folder = tmp_path_factory.mktemp("features")
    days = sorted(features[PARTITION_COLUMN].astype(str).unique())
    for day in days:
        atomic_write_parquet(features[features[PARTITION_COLUMN] == day].reset_index(drop=True), folder / f"{day}.parquet")
    store = StoredPartitions(dg.AssetKey(["flights", "features"]), tuple(days), tuple(folder / f"{d}.parquet" for d in days))
    return features, store


def test_sample_positions_are_those_of_dataframe_sample():
    frame = pd.DataFrame({"i": range(5_000)})
    assert list(frame.sample(n=700, random_state=3)["i"]) == list(sample_positions(5_000, 700, 3))
    assert list(sample_positions(600, 700, 3)) == list(range(600))


def test_sampled_reference_equals_the_whole_window_build(stored):
    features, store = stored
    window = features[(features[PARTITION_COLUMN] >= WINDOW[0]) & (features[PARTITION_COLUMN] <= WINDOW[1])]
    window = window.reset_index(drop=True)
    whole_scorer = RouteRateScorer()
    scored = window.assign(delayed_score=whole_scorer.score(window)["score"].to_numpy())
    expected = build_reference(scored, COLUMNS, sample_size=3_000, seed=5)
    expected = calibrate_thresholds(expected, scored, CONFIG, day_column=PARTITION_COLUMN)

    scorer = RouteRateScorer()
    days = [d for d in store.keys if WINDOW[0] <= d <= WINDOW[1]]
    built = sample_reference(store, days, scorer, COLUMNS, CONFIG, target="delayed", sample_size=3_000, seed=5)
    got = built.reference

    assert len(window) > 10_000 and got.source_rows == len(window) == expected.source_rows
    pd.testing.assert_frame_equal(got.sample, expected.sample)
    assert {c: got.stats[c] for c in COLUMNS.features} == {c: expected.stats[c] for c in COLUMNS.features}
    # six of the 14 days calibrated: the same days, each against the scored sample less that day
    # instead of a sample of the rest of the window: estimates of the same thresholds, not equal ones
    assert got.calibration["chunks"] == expected.calibration["chunks"] == 6
    for column, threshold in expected.thresholds.items():
        # the 95th percentile of six days' scores against two different random pools: on this window
        # the two estimates differ by a factor of 0.63 to 1.44 (distance, origin)
        assert 1 / 1.6 < got.thresholds[column] / threshold < 1.6, (column, threshold, got.thresholds[column])
    assert built.labelled_rows == int(window["delayed"].notna().sum()) < len(window)
    assert built.window == WINDOW and len(built.calibration_days) == 6
    # only the sample and the six calibration days were scored, not the window
    calibration_rows = sum(store.num_rows(d) for d in built.calibration_days)
    assert scorer.rows == built.scored_rows == 3_000 + calibration_rows < whole_scorer.rows
    # the prediction column's statistics come from the scored sample
    assert got.stats["delayed_score"]["rows"] == 3_000
    for day in CURRENT:
        current = store.read(day).assign(delayed_score=lambda f: f["route_delay_rate_28d"].fillna(0.2))
        old, new = compute_drift(expected, current, CONFIG), compute_drift(got, current, CONFIG)
        assert [c.score for c in new.columns] == [c.score for c in old.columns]


def test_sampled_reference_calibrating_every_day_equals_the_whole_window_build(stored):
    features, store = stored
    window = features[(features[PARTITION_COLUMN] >= WINDOW[0]) & (features[PARTITION_COLUMN] <= WINDOW[1])]
    window = window.reset_index(drop=True)
    scored = window.assign(delayed_score=RouteRateScorer().score(window)["score"].to_numpy())
    expected = build_reference(scored, COLUMNS, sample_size=3_000, seed=5)
    expected = calibrate_thresholds(expected, scored, EVERY_DAY, day_column=PARTITION_COLUMN)
    days = [d for d in store.keys if WINDOW[0] <= d <= WINDOW[1]]
    built = sample_reference(store, days, RouteRateScorer(), COLUMNS, EVERY_DAY, target="delayed",
                             sample_size=3_000, seed=5)
    got = built.reference
    assert len(built.calibration_days) == len(days) == 14
    assert got.thresholds == expected.thresholds and got.calibration == expected.calibration
    for day in CURRENT:
        current = store.read(day).assign(delayed_score=lambda f: f["route_delay_rate_28d"].fillna(0.2))
        old, new = compute_drift(expected, current, EVERY_DAY), compute_drift(got, current, EVERY_DAY)
        assert (new.data_drift, new.drifted_columns, new.prediction_drift) == \
               (old.data_drift, old.drifted_columns, old.prediction_drift)


def test_drift_by_day_reads_stored_days_or_frames_alike(stored, tmp_path):
    """The drift report reads one stored day at a time; the served traffic hands frames: same results."""
    from ml_assets.monitoring.reports import drift_by_day

    features, store = stored
    days = [d for d in store.keys if WINDOW[0] <= d <= WINDOW[1]]
    built = sample_reference(store, days, RouteRateScorer(), COLUMNS, CONFIG, target="delayed", sample_size=3_000, seed=5)
    keys = ["year", "month", "day", "carrier", "flight", "origin"]
    scored = features.assign(delayed_score=features["route_delay_rate_28d"].fillna(0.2))[[*keys, PARTITION_COLUMN, "delayed_score"]]
    folder = tmp_path / "predictions"
    folder.mkdir()
    for day in store.keys:
        scored[scored[PARTITION_COLUMN] == day].to_parquet(folder / f"{day}.parquet", index=False)
    predictions = StoredPartitions(dg.AssetKey(["flights", "predictions"]), store.keys,
                                   tuple(folder / f"{d}.parquet" for d in store.keys))
    common = dict(render=lambda _: False, report_folder=tmp_path / "html", log=lambda _: None)
    from_files = drift_by_day(built.reference, store, predictions, CURRENT, keys, CONFIG, **common)
    from_frames = drift_by_day(built.reference, features, scored, CURRENT, keys, CONFIG, **common)
    assert [d.day for d in from_files] == [d.day for d in from_frames] == CURRENT
    for a, b in zip(from_files, from_frames):
        assert a.result.to_dict() | {"seconds": 0} == b.result.to_dict() | {"seconds": 0}
        assert a.result.prediction_score is not None and a.result.current_rows == store.num_rows(a.day)


def test_left_out_pool_draws_the_rows_of_a_sample_of_the_rest(stored):
    """The calibration's pool of a day is taken from the window without copying the rest of it
    first: the same rows, order and index as ``window[rest].sample(n, random_state=seed)``."""
    features, _ = stored
    window = features[list(COLUMNS.features)].reset_index(drop=True)
    rest = (features[PARTITION_COLUMN] != "2013-06-10").to_numpy()
    assert 0 < (~rest).sum() and rest.sum() > 3_000
    for seed in (0, 7):
        pd.testing.assert_frame_equal(left_out_pool(window, rest, 3_000, seed),
                                      window[rest].sample(n=3_000, random_state=seed))
    # no more rows than wanted: all of them, in order
    small = rest & (features[PARTITION_COLUMN] == "2013-06-11").to_numpy()
    pd.testing.assert_frame_equal(left_out_pool(window, small, 3_000, 0), window[small])


def test_window_stats_are_those_of_build_reference(stored):
    features, _ = stored
    window_columns = dataclasses.replace(COLUMNS, prediction=None)
    expected = build_reference(features, window_columns, sample_size=len(features), seed=0).stats
    assert window_stats(features, window_columns) == expected
    with pytest.raises(ValueError, match="lacks drift columns"):
        window_stats(features.drop(columns=[COLUMNS.numeric[0]]), window_columns)
