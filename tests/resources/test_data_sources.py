"""Layer 1: the data-source resource on every file kind and on SQL, with real data and real
databases, through its plain parameters (file kind and path, or query and connection variable)."""

from __future__ import annotations

import pandas as pd
import pytest

from resources.data_sources import DataSourceResource, SourceReadError
from tests.conftest import day_window, expected_day, require_service

LABEL = "source 'flights'"


def read(reader: DataSourceResource, kind: str, path, day: str = "2013-03-08", days: int = 1) -> pd.DataFrame:
    return reader.read_file(kind, path, label=LABEL, time_column="time_hour", timezone="America/New_York",
                            window=day_window(day, days))


def read_sql(reader: DataSourceResource, query: str, connection_env: str) -> pd.DataFrame:
    return reader.read_sql(query, connection_env, label=LABEL, time_column="time_hour",
                           timezone="America/New_York", window=day_window("2013-03-08"))


@pytest.mark.parametrize("kind", ["csv", "parquet", "json", "jsonl"])
def test_file_kinds_give_the_same_rows(tmp_path, reader, march_flights, kind):
    path = tmp_path / f"flights.{kind}"
    if kind == "csv":
        march_flights.to_csv(path, index=False)
    elif kind == "parquet":
        march_flights.to_parquet(path, index=False)
    elif kind == "json":
        march_flights.to_json(path, orient="records")
    else:
        march_flights.to_json(path, orient="records", lines=True)
    frame = read(reader, "json" if kind == "jsonl" else kind, path)
    expected = expected_day(march_flights, 8)
    assert len(frame) == len(expected)
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())
    assert frame.distance.sum() == expected.distance.sum()


def test_relative_paths_resolve_against_base_dir(tmp_path, march_flights):
    march_flights.head(50).to_csv(tmp_path / "rows.csv", index=False)
    resource = DataSourceResource(base_dir=str(tmp_path))
    frame = resource.read_file("csv", "rows.csv", label="source 'rows'", time_column=None)
    assert len(frame) == 50
    assert resource.resolve("rows.csv") == tmp_path / "rows.csv"


def _sqlite_url(tmp_path, frame: pd.DataFrame) -> str:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'flights.db'}"
    engine = sa.create_engine(url)
    frame.to_sql("flights", engine, index=False)
    engine.dispose()
    return url


def test_sql_source_wrapped_and_bound_queries(tmp_path, reader, march_flights, monkeypatch):
    monkeypatch.setenv("TEST_FLIGHTS_DB_URL", _sqlite_url(tmp_path, march_flights))
    expected = expected_day(march_flights, 8)
    assert len(read_sql(reader, "SELECT * FROM flights", "TEST_FLIGHTS_DB_URL")) == len(expected)
    frame = read_sql(reader, "SELECT * FROM flights WHERE time_hour >= :start AND time_hour < :end",
                     "TEST_FLIGHTS_DB_URL")
    assert len(frame) == len(expected)
    assert sorted(frame.flight.tolist()) == sorted(expected.flight.tolist())


@pytest.mark.postgres
def test_sql_source_on_real_postgres(reader, march_flights, monkeypatch):
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
        frame = read_sql(reader, f"SELECT * FROM {table}", "TEST_PG_URL")
        assert len(frame) == len(expected)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_unset_sql_env_var(reader, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_DB_URL", raising=False)
    with pytest.raises(Exception, match="TEST_UNSET_DB_URL"):
        read_sql(reader, "SELECT 1", "TEST_UNSET_DB_URL")


def test_empty_file(tmp_path, reader):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceReadError, match=r"empty\.csv is empty"):
        read(reader, "csv", path)


def test_header_only_file_gives_zero_rows(tmp_path, reader):
    path = tmp_path / "header.csv"
    path.write_text("year,month,day,time_hour\n")
    frame = read(reader, "csv", path)
    assert len(frame) == 0 and list(frame.columns) == ["year", "month", "day", "time_hour"]


def test_non_utf8_bytes(tmp_path, reader, march_flights):
    path = tmp_path / "latin1.csv"
    data = march_flights.head(20).to_csv(index=False).encode()
    path.write_bytes(data.replace(b"UA", b"\xe9\xff", 1))
    with pytest.raises(SourceReadError) as err:
        read(reader, "csv", path)
    assert "latin1.csv" in str(err.value) and "not valid UTF-8" in str(err.value)


def test_truncated_parquet(tmp_path, reader, march_flights):
    path = tmp_path / "truncated.parquet"
    march_flights.to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SourceReadError) as err:
        read(reader, "parquet", path)
    assert "truncated.parquet" in str(err.value) and "Parquet" in str(err.value)


def test_missing_file(tmp_path, reader):
    with pytest.raises(SourceReadError, match="does not exist"):
        read(reader, "csv", tmp_path / "nope.csv")
