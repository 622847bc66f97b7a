"""The service's request path over plain columns (``ml_assets.features.rows`` and
``online.join_columns``) gives exactly what the feature function gives on a frame of the same rows:
real flights of days across the year (both DST changes of 2013 included) sent through the service's
own request validation, and edge cases the feature code must treat alike (unknown categories, nulls,
mixed UTC offsets and naive times, the repeated hour when clocks go back, a local day that differs
from the UTC day, keys with no online record)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.features.rows import row_features, row_plan
from ml_assets.serving.app import columns_of, row_model
from ml_assets.serving.online import (
    groups_of,
    join_columns,
    join_online,
    joined_columns,
    namespace,
    online_records,
    request_columns,
    request_features,
    request_spec,
)
from tests.conftest import real_features

#: Ordinary days, the spring-forward day (2013-03-10), the fall-back day (2013-11-03), the year's end.
DAYS = ["2013-01-05", "2013-03-10", "2013-06-10", "2013-11-03", "2013-12-31"]


@pytest.fixture(scope="module")
def flights(flights_csv_path):
    frame = pd.read_csv(flights_csv_path)
    return frame.assign(iso=pd.to_datetime(frame[["year", "month", "day"]]).dt.strftime("%Y-%m-%d"))


@pytest.fixture(scope="module")
def service_parts(flights_spec):
    req_spec = request_spec(flights_spec)
    Row = row_model(flights_spec)
    names = list(Row.model_fields)
    plan = row_plan(flights_spec, req_spec, names)
    assert plan is not None, "the flights pipeline must have a row path"
    return Row, names, req_spec, plan


def validated_columns(Row, names, rows: list[dict]) -> dict[str, list]:
    """The columns the service builds from JSON rows: validated by its row model, then per column."""
    return columns_of([Row.model_validate(row) for row in rows], names)


def both_paths(spec, req_spec, plan, columns) -> tuple[pd.DataFrame, pd.DataFrame]:
    plain = pd.DataFrame(row_features(columns, plan))
    framed = request_features(pd.DataFrame(columns), spec, req_spec)
    return plain, framed


def test_real_days_give_the_feature_function_s_request_features(flights_spec, flights, service_parts):
    Row, names, req_spec, plan = service_parts
    assert set(plan.parts) == {"sched_dep_hour", "weekday"} and plan.own == ("sched_dep_minute",)
    for day in DAYS:
        raw = flights[flights.iso == day]
        rows = json.loads(raw.drop(columns="iso").to_json(orient="records", date_format="iso"))
        columns = validated_columns(Row, names, rows)
        plain, framed = both_paths(flights_spec, req_spec, plan, columns)
        assert len(plain) == len(raw) > 500
        pd.testing.assert_frame_equal(plain, framed.reset_index(drop=True), check_exact=True)
        # every row alone (the single-row requests) gives its row of the batch
        for i in (0, len(rows) // 2, len(rows) - 1):
            one = pd.DataFrame(row_features(validated_columns(Row, names, [rows[i]]), plan))
            pd.testing.assert_frame_equal(one, plain.iloc[[i]].reset_index(drop=True), check_exact=True)
        # the local day (New York), not the UTC day, is the partition date
        assert set(plain[PARTITION_COLUMN]) == {day}


def test_edge_cases_give_the_same_features_both_ways(flights_spec, service_parts):
    Row, names, req_spec, plan = service_parts
    base = {"year": 2013, "month": 11, "day": 3, "carrier": "UA", "flight": 1545, "origin": "EWR",
            "dest": "IAH", "sched_dep_time": 515, "distance": 1400, "time_hour": "2013-11-03T10:00:00Z"}
    cases = [
        base,
        {**base, "carrier": "ZZ", "origin": "XXX", "dest": "QQQ"},       # categories never seen
        {**base, "time_hour": "2013-11-03T05:00:00Z"},                    # 01:00 EDT ...
        {**base, "time_hour": "2013-11-03T06:00:00Z"},                    # ... and 01:00 EST again
        {**base, "time_hour": "2013-11-04T03:30:00Z"},                    # 22:30 local on the 3rd
        {**base, "time_hour": "2013-11-03T12:00:00+02:00"},               # another UTC offset
        {**base, "flight": 7, "carrier": "9E", "sched_dep_time": 2359, "distance": 17},
    ]
    # through the service's own validation (all in one request, mixed offsets)
    columns = validated_columns(Row, names, cases)
    plain, framed = both_paths(flights_spec, req_spec, plan, columns)
    pd.testing.assert_frame_equal(plain, framed.reset_index(drop=True), check_exact=True)
    assert plain["sched_dep_hour"].tolist()[2:5] == [1.0, 1.0, 22.0]
    assert plain[PARTITION_COLUMN].tolist()[4] == "2013-11-03"
    # naive times (UTC), on their own
    naive = validated_columns(Row, names, [{**base, "time_hour": "2013-11-03T10:00:00"}])
    plain, framed = both_paths(flights_spec, req_spec, plan, naive)
    pd.testing.assert_frame_equal(plain, framed.reset_index(drop=True), check_exact=True)
    # nulls where the feature code meets them (the service's validation refuses these for flights,
    # the feature code must still treat them alike): text and numbers missing, mixed with values
    columns = validated_columns(Row, names, [base, {**base, "flight": 9}])
    columns.update(dest=[None, "IAH"], distance=[None, 1400], sched_dep_time=[None, 515])
    plain, framed = both_paths(flights_spec, req_spec, plan, columns)
    pd.testing.assert_frame_equal(plain, framed.reset_index(drop=True), check_exact=True)
    assert plain["dest"].tolist()[0] is None and np.isnan(plain["sched_dep_minute"].tolist()[0])


def test_the_join_over_columns_is_the_join_over_a_frame(flights_spec, flights, service_parts, tmp_path):
    """Online features of a real day in a real SQLite store, joined both ways, with rows of that day
    and rows of a day without records (every key missing) and an unknown carrier."""
    from resources.online_store import SqliteKeyValueStore

    Row, names, req_spec, plan = service_parts
    day = "2013-06-10"
    features = real_features(day, day)
    store = SqliteKeyValueStore(tmp_path / "online.sqlite")
    records, _ = online_records(features, flights_spec)
    store.replace(namespace(flights_spec.name, day), records)
    raw = flights[flights.iso.isin([day, "2013-06-11"])]
    rows = json.loads(raw[list(request_columns(flights_spec))].to_json(orient="records", date_format="iso"))
    rows[3]["carrier"] = "ZZ"
    columns = validated_columns(Row, names, rows)
    groups = groups_of(flights_spec)
    own = row_features(columns, plan)
    online, stats = join_columns(own, len(rows), flights_spec, store, groups)
    plain = pd.DataFrame(joined_columns(own, online))
    framed, framed_stats = join_online(request_features(pd.DataFrame(columns), flights_spec, req_spec),
                                       flights_spec, store, groups)
    pd.testing.assert_frame_equal(plain, framed.reset_index(drop=True), check_exact=True)
    assert stats == framed_stats
    on_day = (raw.iso == day).to_numpy()
    assert stats.missing["carrier"] == (~on_day).sum() + 1
    assert plain.loc[on_day, "carrier_delay_rate_28d"].notna().sum() == on_day.sum() - 1
    assert plain.loc[~on_day, "carrier_delay_rate_28d"].isna().all()


def test_a_feature_function_without_row_features_has_no_row_plan(flights_spec):
    other = flights_spec.model_copy(update={"features": flights_spec.features.model_copy(
        update={"function": "not_registered_for_rows"})})
    assert row_plan(other, request_spec(flights_spec), list(request_columns(flights_spec))) is None
    # a request-side feature that is no request column (the feature function would have to make it)
    names = [c for c in request_columns(flights_spec) if c != "distance"]
    assert row_plan(flights_spec, request_spec(flights_spec), names) is None
