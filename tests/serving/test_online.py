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
    request_columns,
    request_features,
    request_spec,
)
from tests.conftest import real_features, require_service

DAY = "2013-06-10"


@pytest.fixture(scope="module")
def day_features():
    return real_features(DAY, DAY)


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


def test_a_feature_that_varies_within_its_key_is_refused(flights_spec, day_features):
    broken = day_features.copy()
    broken.loc[broken.index[0], "carrier_delay_rate_28d"] = 0.123456
    with pytest.raises(ValueError, match=r"carrier_delay_rate_28d.*more than one value for the same carrier"):
        online_records(broken, flights_spec)
