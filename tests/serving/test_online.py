"""Online features without a model: records of a real day's offline features in the SQLite store and
in Redis (the server on 127.0.0.1:6379), joined back onto the request-side features of the same raw
rows, give the offline features; a feature that varies within its key is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.serving.online import (
    groups_of,
    join_online,
    namespace,
    online_records,
    prune_days,
    request_columns,
    request_features,
    request_spec,
    retained_days,
    stored_days,
)
from tests.conftest import real_features, require_service

DAY = "2013-06-10"


@pytest.fixture(scope="module")
def day_features():
    return real_features(DAY, DAY)


@pytest.fixture(scope="module")
def three_days():
    """Real features of the three days up to DAY."""
    return real_features("2013-06-08", DAY)


@pytest.fixture(scope="module")
def day_raw(flights_csv_path):
    frame = pd.read_csv(flights_csv_path)
    return frame[(frame.month == 6) & (frame.day == 10)].reset_index(drop=True)


def roundtrip(store, spec, features, raw):
    records, counts = online_records(features, spec)
    assert store.replace(namespace(spec.name, DAY), records) == len(records) == sum(counts.values())
    rows = raw[list(request_columns(spec))]
    joined, stats = join_online(request_features(rows, spec, request_spec(spec)), spec, store, groups_of(spec))
    assert stats.rows == len(raw) and not any(stats.missing.values())
    key = spec.sources[spec.primary_source].entity_key
    columns = [*spec.features.numeric, *spec.features.categorical]
    online = joined.sort_values(key).reset_index(drop=True)
    offline = features.sort_values(key).reset_index(drop=True)
    assert (online[PARTITION_COLUMN] == DAY).all()
    pd.testing.assert_frame_equal(online[columns], offline[columns], check_dtype=False)
    # the request order is kept: row i of the answer is row i of the request
    assert joined["flight"].tolist() == raw["flight"].tolist()


def test_sqlite_store_gives_the_offline_features_back(flights_spec, day_features, day_raw, tmp_path):
    from resources.online_store import SqliteKeyValueStore

    store = SqliteKeyValueStore(tmp_path / "online.sqlite")
    roundtrip(store, flights_spec, day_features, day_raw)
    assert store.namespaces() == [f"flights|{DAY}"]
    # a re-run replaces the day, it does not add to it
    records, _ = online_records(day_features, flights_spec)
    store.replace(namespace("flights", DAY), dict(list(records.items())[:10]))
    assert store.get_many(list(records)[10:12]) == [None, None]
    # a day without online records: every online feature missing, every row counted per group
    other = day_raw.assign(day=11, time_hour=(pd.to_datetime(day_raw["time_hour"]) - pd.Timedelta(days=1))
                           .dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rows = other[list(request_columns(flights_spec))]
    joined, stats = join_online(request_features(rows, flights_spec, request_spec(flights_spec)), flights_spec,
                                store, groups_of(flights_spec))
    assert set(stats.missing.values()) == {len(day_raw)}
    assert joined["carrier_delay_rate_28d"].isna().all() and joined["distance"].notna().all()


def test_redis_store_gives_the_same(flights_spec, day_features, day_raw):
    require_service("Redis", "127.0.0.1", 6379)
    import uuid

    from resources.online_store import RedisKeyValueStore

    store = RedisKeyValueStore("redis://127.0.0.1:6379/0", prefix=f"test:{uuid.uuid4().hex}:")
    try:
        roundtrip(store, flights_spec, day_features, day_raw)
        assert store.namespaces() == [f"flights|{DAY}"]
    finally:
        store.delete_namespace(namespace("flights", DAY))
        store.client.delete(f"{store.prefix}namespaces")
    assert store.get_many([f"flights|{DAY}|carrier|UA"]) == [None]


def prune_roundtrip(store, spec, features, count_rows):
    """Three real days written, the store keeping 2: the oldest day's records are removed (and only
    they); an older day written later is not kept."""
    days = sorted(features[PARTITION_COLUMN].unique())
    assert len(days) == 3
    by_day = {}
    for day in days:
        records, _ = online_records(features[features[PARTITION_COLUMN] == day].reset_index(drop=True), spec)
        store.replace(namespace(spec.name, day), records)
        by_day[day] = records
    assert stored_days(store, spec.name) == days
    assert count_rows() == sum(len(r) for r in by_day.values())
    keep = retained_days(stored_days(store, spec.name), [], 2)
    assert keep == days[1:]
    assert prune_days(store, spec.name, keep) == [days[0]]
    assert stored_days(store, spec.name) == days[1:]
    assert count_rows() == len(by_day[days[1]]) + len(by_day[days[2]])
    oldest = list(by_day[days[0]])
    assert store.get_many(oldest[:3]) == [None, None, None]
    kept = list(by_day[days[2]])[:3]
    assert store.get_many(kept) == [by_day[days[2]][k] for k in kept]
    # a backfill of the removed day is older than the two kept: not kept
    assert retained_days(stored_days(store, spec.name), [days[0]], 2) == days[1:]
    assert prune_days(store, spec.name, days[1:]) == []
    return days


def test_sqlite_store_keeps_only_the_configured_days(flights_spec, three_days, tmp_path):
    import sqlite3

    from resources.online_store import SqliteKeyValueStore

    store = SqliteKeyValueStore(tmp_path / "online.sqlite")
    other = {"other|2013-01-01|g|x": {"f": 1.0}}
    store.replace("other|2013-01-01", other)  # another pipeline's day is not touched

    def count_rows() -> int:
        with sqlite3.connect(tmp_path / "online.sqlite") as conn:
            return conn.execute("SELECT count(*) FROM online_features WHERE namespace LIKE 'flights|%'").fetchone()[0]

    prune_roundtrip(store, flights_spec, three_days, count_rows)
    assert store.get_many(list(other)) == [{"f": 1.0}]


def test_redis_store_keeps_only_the_configured_days(flights_spec, three_days):
    require_service("Redis", "127.0.0.1", 6379)
    import uuid

    from resources.online_store import RedisKeyValueStore

    store = RedisKeyValueStore("redis://127.0.0.1:6379/0", prefix=f"test:{uuid.uuid4().hex}:")

    def count_rows() -> int:  # record keys only (not the namespace sets)
        return sum(1 for _ in store.client.scan_iter(match=f"{store.prefix}flights|*", count=1000))

    try:
        days = prune_roundtrip(store, flights_spec, three_days, count_rows)
        assert not store.client.exists(f"{store.prefix}ns:{namespace('flights', days[0])}")
    finally:
        for ns in store.namespaces():
            store.delete_namespace(ns)
        store.client.delete(f"{store.prefix}namespaces")
    assert not list(store.client.scan_iter(match=f"{store.prefix}*"))


def test_a_feature_that_varies_within_its_key_is_refused(flights_spec, day_features):
    broken = day_features.copy()
    broken.loc[broken.index[0], "carrier_delay_rate_28d"] = 0.123456
    with pytest.raises(ValueError, match=r"carrier_delay_rate_28d.*more than one value for the same carrier"):
        online_records(broken, flights_spec)
