"""The production MLflow setup of the README, for real: an ``mlflow server`` whose backend store is
PostgreSQL in a schema of its own (``mlflow``) of the database that also holds the Dagster instance
(``public``: Dagster's ``runs`` and ``alembic_version`` would clash with MLflow's), with artifact
proxying (``--serve-artifacts``, artifacts in a folder of the test's own). The Boston housing
example is trained, evaluated and scored through Dagster on that PostgreSQL instance with the
project's ``MlflowTracking`` pointed at the server; the champion is loaded back by alias through
the server and scores what the predictions asset stored.

Marked ``distributed`` (the production topology), ``postgres`` (its only service) and ``slow``: it
fails in CI when PostgreSQL is unreachable and skips with the reason elsewhere. It stops the server
it started (its own process group) and drops its database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from ml_assets.keys import pipeline_keys
from ml_assets.training.registry import CHAMPION, load_model
from resources.tracking import MlflowTracking
from scripts.dev import group_alive
from tests.conftest import free_port, metadata_of
from tests.test_example_pipelines import example

pytestmark = [pytest.mark.distributed, pytest.mark.postgres, pytest.mark.slow]

#: The MLflow tables every store has; Dagster's instance storage has ``runs`` and ``alembic_version`` too.
MLFLOW_TABLES = {"experiments", "runs", "metrics", "params", "registered_models", "model_versions",
                 "registered_model_aliases", "alembic_version"}


def psql(database: str, sql: str, *args) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database) as conn:
        with conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []


def wait_until_healthy(url: str, process, log, timeout: float = 90) -> None:
    """Until ``url``/health answers (a slow first answer while the server creates its tables is
    waited for too); fail with the server's log when it exits or the time is up."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start (exit code {process.poll()}): {log.read_text()[-2000:]}")
            time.sleep(0.5)


def stop_group(pgid: int, grace: float = 5) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after ``grace`` seconds, and return
    once none of the group runs."""
    import time

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 20)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not group_alive(pgid):
            return
    raise AssertionError(f"process group {pgid} of the mlflow server is still alive after SIGKILL")


@pytest.fixture()
def mlflow_server(tmp_path, postgres_database):
    """``mlflow server`` on a free loopback port, its store in schema ``mlflow`` of the test's own
    database (created here, dropped by ``postgres_database``), artifacts proxied into tmp."""
    psql(postgres_database, "CREATE SCHEMA mlflow")
    port, root = free_port(), tmp_path / "mlflow_server"
    root.mkdir()
    # the psycopg2 driver named: SQLAlchemy 2.1 maps a plain postgresql:// to psycopg 3
    store = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_database}?options=-csearch_path%3Dmlflow"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", store, "--serve-artifacts", "--artifacts-destination",
               str(root / "artifacts"), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, root / "server.log")
        yield url, root / "artifacts"
    finally:
        stop_group(process.pid)
        process.wait(timeout=10)


def test_mlflow_server_on_postgresql_schema_with_artifact_proxying(tmp_path, postgres_database, mlflow_server):
    url, artifacts = mlflow_server
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: "
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_database}\ntelemetry:\n  enabled: false\n"
    )
    pipeline, defs, resources = example(tmp_path, "boston_housing", model={"tuning": {"n_trials": 0}})
    tracking = MlflowTracking(tracking_uri=url, local_dir=str(tmp_path / "unused"))
    resources = {**resources, "tracking": tracking}
    keys = pipeline_keys(pipeline.spec)
    selection = [keys.raw("tracts"), keys.features, keys.training_set, keys.model, keys.evaluation, keys.predictions]
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize(list(defs.assets), selection=selection, resources=resources, instance=instance,
                                raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        dagster_run = result.run_id
    finally:
        instance.dispose()
    model = metadata_of(result, "__".join(keys.model.path))
    evaluation = metadata_of(result, "__".join(keys.evaluation.path))
    assert model["mlflow_tracking_uri"] == url and evaluation["alias"] == CHAMPION
    assert evaluation["test_r2"] > evaluation["linear_baseline_r2"] > 0.5

    # the champion, loaded by alias through the server, scores what the predictions asset stored
    champion = load_model(tracking, f"models:/{pipeline.spec.registered_model_name}@{CHAMPION}")
    features = pd.read_parquet(tmp_path / "data" / "boston_housing" / "features.parquet")
    predictions = pd.read_parquet(tmp_path / "data" / "boston_housing" / "predictions.parquet")
    scored = features[["rownames"]].assign(score=champion.score(features)["score"].to_numpy())
    joined = predictions.merge(scored, on="rownames", validate="one_to_one")
    assert len(joined) == 506 and (joined["score"] - joined["median_value_score"]).abs().max() < 1e-9

    # artifacts proxied: the run's artifacts are mlflow-artifacts: URIs, stored in the server's folder
    client = tracking.client()
    assert client.get_run(model["mlflow_run_id"]).info.artifact_uri.startswith("mlflow-artifacts:")
    stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert {"MLmodel", "booster.txt", "preprocessing.json", "boston_housing.yaml"} <= stored, stored
    assert not (tmp_path / "unused").exists()

    # MLflow's tables in schema mlflow, Dagster's in public: both have runs and alembic_version
    tables = psql(postgres_database, "SELECT table_schema, table_name FROM information_schema.tables"
                  " WHERE table_schema IN ('mlflow', 'public')")
    schema = {s: {t for schema_, t in tables if schema_ == s} for s in ("mlflow", "public")}
    assert MLFLOW_TABLES <= schema["mlflow"], schema
    assert {"runs", "alembic_version", "event_logs"} <= schema["public"]
    assert not schema["public"] & (MLFLOW_TABLES - {"runs", "alembic_version"}), schema["public"]
    assert psql(postgres_database, "SELECT run_uuid FROM mlflow.runs WHERE run_uuid = %s", model["mlflow_run_id"])
    assert psql(postgres_database, "SELECT run_id FROM public.runs WHERE run_id = %s", dagster_run)
    assert psql(postgres_database, "SELECT alias, version FROM mlflow.registered_model_aliases") == [(CHAMPION, 1)]
