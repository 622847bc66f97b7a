"""The ways users reach the product, for real: the `dagster` CLI in a subprocess, `dagster-webserver`
and `dagster dev` queried over GraphQL, and the PostgreSQL instance storage (the definitions
themselves: tests/test_definitions.py)."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import FLIGHTS_YAML, REPO_ROOT, free_port, wait_for_http

DAGSTER = str(Path(sys.executable).parent / "dagster")
WEBSERVER = str(Path(sys.executable).parent / "dagster-webserver")


def project_env(tmp_path: Path, home_template: str = "dagster_home/dagster.yaml") -> dict[str, str]:
    """Environment of a user's shell: a fresh instance and data folder under tmp_path."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / home_template, home / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(home), ML_DATA_DIR=str(tmp_path / "data"))
    return env


@pytest.mark.slow
def test_cli_validate_and_materialize_a_partition(tmp_path):
    env = project_env(tmp_path)
    validate = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout + validate.stderr

    materialize = subprocess.run(
        [DAGSTER, "asset", "materialize", "-f", "definitions.py",
         "--select", "flights/raw_flights,flights/raw_weather", "--partition", "2013-03-08"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
    )
    assert materialize.returncode == 0, materialize.stdout[-3000:] + materialize.stderr[-3000:]

    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        for name in ("raw_flights", "raw_weather"):
            key = dg.AssetKey(["flights", name])
            assert instance.get_materialized_partitions(key) == {"2013-03-08"}
            event = instance.get_latest_materialization_event(key)
            assert event.asset_materialization.metadata["dagster/row_count"].value > 0
            assert (tmp_path / "data" / "assets" / "flights" / name / "2013-03-08.parquet").exists()
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["flights", "raw_flights"]), "unique")]
        )
        evaluation = next(iter(record.values())).event.dagster_event.event_specific_data
        assert evaluation.passed is True
    finally:
        instance.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["dagster-webserver -w workspace.yaml", "dagster dev"])
def test_webserver_lists_every_asset_and_check(tmp_path, how):
    """`dagster-webserver -w workspace.yaml`, and plain `dagster dev` from the repo root (it finds
    workspace.yaml itself), serve the code location with every asset and check."""
    import requests

    from definitions import defs

    env = project_env(tmp_path)
    port = free_port()
    if how == "dagster dev":
        command = [DAGSTER, "dev", "-h", "127.0.0.1", "-p", str(port)]
    else:
        command = [WEBSERVER, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/server_info", server, "dagster-webserver")
        query = """{ workspaceOrError { ... on Workspace { locationEntries { name
            locationOrLoadError { __typename ... on PythonError { message }
              ... on RepositoryLocation { repositories { assetNodes { assetKey { path }
                assetChecksOrError { ... on AssetChecks { checks { name } } } } } } } } } } }"""
        body = requests.post(f"{url}/graphql", json={"query": query}, timeout=60).json()
        entry = body["data"]["workspaceOrError"]["locationEntries"][0]
        location = entry["locationOrLoadError"]
        assert entry["name"] == "ml_platform"
        assert location["__typename"] == "RepositoryLocation", location
        nodes = location["repositories"][0]["assetNodes"]
        served_assets = {"/".join(n["assetKey"]["path"]) for n in nodes}
        served_checks = {
            ("/".join(n["assetKey"]["path"]), c["name"])
            for n in nodes for c in n["assetChecksOrError"].get("checks", [])
        }
        graph = defs.resolve_asset_graph()
        assert served_assets == {k.to_user_string() for k in graph.get_all_asset_keys()}
        assert served_checks == {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
        assert len(served_checks) >= 12
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.mark.postgres
def test_postgres_instance_stores_run_events(tmp_path, monkeypatch, postgres_database):
    import psycopg2

    from ml_assets import build_tabular_pipeline, resource_settings
    from ml_assets.config import load_pipeline
    from ml_assets.keys import pipeline_keys
    from resources import build_resources

    env = project_env(tmp_path, "dagster_home/postgres/dagster.yaml")
    for key, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
                       "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
                       "DAGSTER_PG_DB": postgres_database, "ML_DATA_DIR": env["ML_DATA_DIR"]}.items():
        monkeypatch.setenv(key, value)
    pipeline = build_tabular_pipeline(load_pipeline(FLIGHTS_YAML), FLIGHTS_YAML)
    weather = next(a for a in pipeline.definitions.assets if a.key == pipeline_keys(pipeline.spec).raw("weather"))
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([weather], instance=instance, partition_key="2013-03-08",
                                resources=build_resources(**resource_settings([pipeline])))
        assert result.success
        run_id = result.run_id
        kinds = {e.dagster_event.event_type for e in instance.all_logs(run_id) if e.is_dagster_event}
        assert {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION,
                dg.DagsterEventType.ASSET_CHECK_EVALUATION} <= kinds
        assert instance.get_materialized_partitions(dg.AssetKey(["flights", "raw_weather"])) == {"2013-03-08"}
    finally:
        instance.dispose()
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=postgres_database) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] >= 10
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] == "SUCCESS"
