"""Training windows (``ml_assets.training.windows``): fixed and rolling windows resolved to dates, and
the labelled rows of each window with clear errors naming the window, its dates and its counts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import TrainingWindows
from ml_assets.training.windows import WindowError, resolve_windows, split_by_time
from tests.conftest import tiny_frame


def test_split_by_time_windows_and_unknown_targets_dropped():
    frame = tiny_frame()
    frame.loc[[0, 1, 100], "delayed"] = np.nan
    windows = {"train": ("2013-01-01", "2013-01-06"), "validate": ("2013-01-07", "2013-01-08"),
               "test": ("2013-01-09", "2013-01-10")}
    splits = split_by_time(frame, windows, target="delayed", min_rows=10)
    assert [len(splits[k]) for k in ("train", "validate", "test")] == [240 - 3, 80, 80]
    assert splits["train"]["partition_date"].max() == "2013-01-06"
    assert splits["validate"]["partition_date"].min() == "2013-01-07"
    assert all(s["delayed"].notna().all() for s in splits.values())


def test_split_by_time_accepts_datetime_column_and_dates():
    frame = tiny_frame()
    frame["partition_date"] = pd.to_datetime(frame["partition_date"])
    windows = {"train": (dt.date(2013, 1, 1), dt.date(2013, 1, 5)), "test": ("2013-01-06", "2013-01-10")}
    splits = split_by_time(frame, windows, target="delayed", min_rows=10)
    assert set(splits) == {"train", "test"} and len(splits["train"]) == 200


def test_split_by_time_too_few_rows_names_window_and_counts():
    windows = {"train": ("2013-01-01", "2013-01-06"), "validate": ("2013-01-07", "2013-01-07")}
    with pytest.raises(WindowError, match=r"window 'validate' \(2013-01-07\.\.2013-01-07\) has 40 rows.*min_rows=100"):
        split_by_time(tiny_frame(), windows, target="delayed", min_rows=100)


def test_split_by_time_single_class():
    frame = tiny_frame()
    frame.loc[frame["partition_date"] >= "2013-01-09", "delayed"] = 0.0
    windows = {"train": ("2013-01-01", "2013-01-06"), "validate": ("2013-01-07", "2013-01-08"),
               "test": ("2013-01-09", "2013-01-10")}
    with pytest.raises(WindowError, match=r"window 'test' .* single class: 0 positive and 80 negative"):
        split_by_time(frame, windows, target="delayed", min_rows=10)


def test_split_by_time_rejects_overlapping_windows():
    windows = {"train": ("2013-01-01", "2013-01-06"), "validate": ("2013-01-06", "2013-01-08")}
    with pytest.raises(WindowError, match="must not overlap"):
        split_by_time(tiny_frame(), windows, target="delayed", min_rows=10)


def test_rolling_windows_end_on_the_last_day():
    frame = tiny_frame()
    days = sorted(frame["partition_date"].unique())
    rolling = TrainingWindows(mode="rolling", rolling={"train_days": 7, "validate_days": 1, "test_days": 3})
    windows = resolve_windows(rolling, days)  # ends on the last available day
    assert windows == resolve_windows(rolling, [], end="2013-01-10") == {
        "train": ("2012-12-31", "2013-01-06"), "validate": ("2013-01-07", "2013-01-07"),
        "test": ("2013-01-08", "2013-01-10"),
    }
    rows = split_by_time(frame, windows, target="delayed", min_rows=10)["test"]
    assert sorted(rows["partition_date"].unique()) == ["2013-01-08", "2013-01-09", "2013-01-10"]
    with pytest.raises(WindowError, match=r"window 'train' \(2012-12-31\.\.2013-01-06\).*fewer than min_rows=1000"):
        split_by_time(frame, windows, target="delayed", min_rows=1000)


def test_default_windows_are_fractions_of_the_partition_range_never_2013_dates(real_sample):
    # no dates in the YAML: 70/15/15 of the days by time, over the partition range (an open end: the
    # last feature day); the real sample covers 2013-06-01 .. 2013-07-05 (35 days)
    days = sorted(real_sample["partition_date"].unique())
    windows = resolve_windows(TrainingWindows(), days, partition_range=(dt.date(2013, 6, 1), None))
    assert windows == {"train": ("2013-06-01", "2013-06-24"), "validate": ("2013-06-25", "2013-06-29"),
                       "test": ("2013-06-30", "2013-07-05")}
    splits = split_by_time(real_sample, windows, target="delayed")
    assert [len(splits[n]) for n in ("train", "validate", "test")] == [
        int(((real_sample.partition_date >= a) & (real_sample.partition_date <= b) & real_sample.delayed.notna()).sum())
        for a, b in windows.values()]
    closed = resolve_windows(TrainingWindows(), days, partition_range=(dt.date(2013, 1, 1), dt.date(2013, 12, 31)))
    assert closed["train"] == ("2013-01-01", "2013-09-12") and closed["test"][1] == "2013-12-31"
    with pytest.raises(WindowError, match="fewer than 3"):
        resolve_windows(TrainingWindows(), days, partition_range=(dt.date(2013, 6, 1), dt.date(2013, 6, 2)))
