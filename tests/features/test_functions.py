"""The feature-function registry, the target, ``passthrough`` and the masking of out-of-range
readings (``ml_assets.features.functions``), on small hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec, Target
from ml_assets.features.flights import flights_features
from ml_assets.features.functions import (
    FEATURE_FUNCTIONS,
    add_target,
    get_feature_function,
    mask_out_of_range,
    passthrough,
    register_feature_function,
)
from tests.conftest import run_subprocess_python


# --------------------------------------------------------------------------- target


def test_add_target_rule_and_regression():
    frame = pd.DataFrame({"arr_delay": [20.0, 15.0, None, -3.0, 15.5], "other": list("abcde")})
    labelled = add_target(frame, Target(name="delayed", column="arr_delay", rule="> 15"))
    np.testing.assert_array_equal(labelled.delayed.to_numpy(), [1.0, 0.0, np.nan, 0.0, 1.0])
    assert labelled.delayed.dtype == np.float64
    assert "delayed" not in frame.columns  # a copy
    early = add_target(frame, Target(name="early", column="arr_delay", rule="<= 0"))
    np.testing.assert_array_equal(early.early.to_numpy(), [0.0, 0.0, np.nan, 1.0, 0.0])
    regression = add_target(frame, Target(name="minutes", column="arr_delay", task="regression"))
    pd.testing.assert_series_equal(regression.minutes, frame.arr_delay, check_names=False)
    with pytest.raises(ValueError, match="target column 'missing' is missing"):
        add_target(frame, Target(name="y", column="missing"))
    with pytest.raises(ValueError, match="must be numeric"):
        add_target(frame, Target(name="y", column="other", rule="> 1"))


# --------------------------------------------------------------------------- registry


def test_unknown_function_name_gives_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown feature function 'nope'; known: \[.*'flights_features'.*'passthrough'.*\]"):
        get_feature_function("nope")
    assert get_feature_function("flights_features") is flights_features
    assert get_feature_function("passthrough") is passthrough


def test_register_feature_function():
    @register_feature_function("test_identity")
    def identity(sources, days, spec, **params):
        return sources[spec.primary_source]

    try:
        assert get_feature_function("test_identity") is identity
        with pytest.raises(ValueError, match="'passthrough' is already registered"):
            register_feature_function("passthrough")(identity)
    finally:
        FEATURE_FUNCTIONS.pop("test_identity")


@pytest.mark.slow
def test_module_import_stays_cheap():
    code = "import sys, ml_assets.features; print(sorted({'pandas', 'numpy'} & set(sys.modules)))"
    result = run_subprocess_python(code, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- passthrough


def house_spec(**overrides) -> PipelineSpec:
    raw = {
        "name": "houses",
        "sources": {"sales": {"kind": "csv", "path": "sales.csv", "entity_key": ["id"]}},
        "partitioning": {"time_column": "sold_at", "start": "2023-12-01", "timezone": "America/New_York"},
        "target": {"name": "price_target", "column": "price", "task": "regression"},
        "features": {"numeric": ["area"], "categorical": ["city"], "exclude": ["secret"]},
    }
    return PipelineSpec.model_validate({**raw, **overrides})


HOUSES = pd.DataFrame({
    "id": [4, 2, 1, 3, 5],
    "sold_at": ["2024-01-02T05:30:00Z",  # 00:30 local on 01-02
                "2024-01-02T03:30:00Z",  # 22:30 local on 01-01
                "2024-01-01T15:00:00Z",  # 10:00 local on 01-01
                "2023-12-31T12:00:00Z",
                "2024-01-01T20:00:00Z"],
    "area": [100.0, 80.0, 55.5, 70.0, 90.0],
    "city": ["Oslo", "Rome", "Oslo", "Rome", None],
    "price": [500.0, 300.0, 250.0, None, 410.0],
    "secret": [1, 2, 3, 4, 5],
})


def test_passthrough_selects_the_local_days_and_sorts():
    out = passthrough({"sales": HOUSES}, ["2024-01-01"], house_spec())
    assert list(out.columns) == ["id", PARTITION_COLUMN, "area", "city", "price_target"]
    assert out.id.tolist() == [1, 2, 5]
    assert out[PARTITION_COLUMN].tolist() == ["2024-01-01"] * 3
    assert out.area.tolist() == [55.5, 80.0, 90.0]
    assert out.city.tolist()[:2] == ["Oslo", "Rome"] and out.city.isna().tolist() == [False, False, True]
    assert out.price_target.tolist() == [250.0, 300.0, 410.0]

    everything = passthrough({"sales": HOUSES}, None, house_spec())
    assert everything.id.tolist() == [3, 1, 2, 5, 4]
    assert everything[PARTITION_COLUMN].tolist() == ["2023-12-31", "2024-01-01", "2024-01-01", "2024-01-01",
                                                     "2024-01-02"]
    two_days = passthrough({"sales": HOUSES}, ["2024-01-02", "2024-01-01"], house_spec())
    assert two_days.id.tolist() == [1, 2, 5, 4]

    classified = passthrough({"sales": HOUSES}, None, house_spec(
        target={"name": "expensive", "column": "price", "rule": ">= 410"}))
    np.testing.assert_array_equal(classified.expensive.to_numpy(), [np.nan, 0.0, 0.0, 1.0, 1.0])


def test_passthrough_unpartitioned_and_errors():
    unpartitioned = house_spec(partitioning=None)
    out = passthrough({"sales": HOUSES}, None, unpartitioned)
    assert out.id.tolist() == [1, 2, 3, 4, 5]
    assert out[PARTITION_COLUMN].isna().all()
    with pytest.raises(ValueError, match="has no partitioning time column"):
        passthrough({"sales": HOUSES}, ["2024-01-01"], unpartitioned)
    with pytest.raises(ValueError, match=r"has no column\(s\) \['rooms'\]"):
        passthrough({"sales": HOUSES}, None, house_spec(features={"numeric": ["area", "rooms"]}))
    with pytest.raises(ValueError, match="primary source 'sales' is missing"):
        passthrough({"other": HOUSES}, None, house_spec())
    with pytest.raises(ValueError, match="unknown params"):
        passthrough({"sales": HOUSES}, None, house_spec(), scale=2)




# --------------------------------------------------------------------------- masking


def test_out_of_range_weather_is_masked_for_features(flights_spec):
    frame = pd.DataFrame({"wind_speed": [5.0, 1048.36, None], "temp": [50.0, 40.0, 30.0]})
    masked, counts = mask_out_of_range(frame, flights_spec.sources["weather"].validation)
    assert counts == {"wind_speed": 1}
    assert masked.wind_speed.isna().tolist() == [False, True, True]
    assert frame.wind_speed[1] == 1048.36  # the raw frame itself is untouched


# --------------------------------------------------------------------------- string / boolean / multiclass targets


def test_yes_no_boolean_and_multiclass_targets():
    from ml_assets.features.functions import target_values

    frame = pd.DataFrame({"search": ["YES", "NO", None, "yes"], "flag": [True, False, None, True],
                          "kind": ["a", "b", None, "c"], "n": [0, 1, None, 1]})
    expected = [1.0, 0.0, np.nan, 1.0]
    for target in (Target(name="y", column="search", positive="YES"),
                   Target(name="y", column="search", positive=True),  # YAML reads an unquoted YES as true
                   Target(name="y", column="flag")):
        np.testing.assert_array_equal(target_values(frame, target).to_numpy(dtype=float), expected)
    np.testing.assert_array_equal(
        target_values(frame, Target(name="y", column="search", rule='== "YES"')).to_numpy(dtype=float),
        [1.0, 0.0, np.nan, 0.0])  # a string rule is exact
    np.testing.assert_array_equal(target_values(frame, Target(name="y", column="n")).to_numpy(dtype=float),
                                  [0.0, 1.0, np.nan, 1.0])
    assert target_values(frame, Target(name="y", column="kind", task="multiclass")).tolist() == ["a", "b", None, "c"]
    with pytest.raises(ValueError, match=r"must hold 0/1 or booleans .* found \['NO', 'YES', 'yes'\]: add 'positive'"):
        target_values(frame, Target(name="y", column="search"))


# --------------------------------------------------------------------------- declarative timestamp parts


def _stops_spec() -> PipelineSpec:
    return PipelineSpec.model_validate({
        "name": "stops",
        "sources": {"stops": {"kind": "csv", "path": "x.csv", "entity_key": ["id"]}},
        "partitioning": {"time_column": "at", "start": "2017-01-01", "timezone": "America/Chicago"},
        "target": {"name": "searched", "column": "search", "positive": "YES"},
        "features": {"timestamp_parts": {"hour": {"column": "at", "part": "hour"},
                                         "weekday": {"column": "at", "part": "weekday"},
                                         "month": {"column": "at", "part": "month"},
                                         "doy": {"column": "at", "part": "day_of_year"},
                                         "minute": {"column": "at", "part": "minute"}},
                     "numeric": ["hour", "weekday", "month", "doy", "minute"]},
    })


def test_timestamp_parts_local_time_leakage_free_and_range_equals_day_by_day():
    spec = _stops_spec()
    stops = pd.DataFrame({
        "id": [1, 2, 3, 4],
        # 05:30 UTC on Jan 2 is 23:30 on Sunday Jan 1 in Chicago
        "at": ["2017-01-02T05:30:00Z", "2017-01-02T15:05:00Z", "2017-01-03T06:10:00Z", "2017-01-04T01:00:00Z"],
        "search": ["YES", "NO", None, "NO"],
    })
    both = passthrough({"stops": stops}, ["2017-01-01", "2017-01-02"], spec)
    assert both["partition_date"].tolist() == ["2017-01-01", "2017-01-02"]
    first = both.iloc[0]
    assert (first.hour, first.minute, first.weekday, first.month, first.doy) == (23, 30, 6, 1, 1)
    days = ["2017-01-01", "2017-01-02", "2017-01-03"]
    together = passthrough({"stops": stops}, days, spec)
    one_by_one = pd.concat([passthrough({"stops": stops}, [d], spec) for d in days], ignore_index=True)
    pd.testing.assert_frame_equal(together, one_by_one)
    # the day's outcomes never change its features
    flipped = passthrough({"stops": stops.assign(search=["NO", "YES", "YES", "YES"])}, days, spec)
    features = ["hour", "weekday", "month", "doy", "minute"]
    pd.testing.assert_frame_equal(flipped[features], together[features])
    np.testing.assert_array_equal(together.searched.to_numpy(), [1.0, 0.0, np.nan, 0.0])
