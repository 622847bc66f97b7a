"""Beyond one machine, for real: two dagster-celery workers on the local RabbitMQ (a vhost of their
own), started with the README's worker command, and a PostgreSQL instance (a database of its own).
The project's own code location runs ``flights_ingest_job`` then ``flights_scoring_job`` for three
days with ``ML_EXECUTOR=celery``: the steps run on both workers. The champion they score with is a
small LightGBM model fitted in the test on those days' real features and registered in the MLflow
server the workers use (the README's production setup: ``mlflow server`` with its store in schema
``mlflow`` of the same PostgreSQL database, artifacts proxied). The storage root is an S3 bucket on
moto's server (127.0.0.1, started by the test): every object the workers store there (raw days,
features, predictions) is byte-identical to the file an embedded run (in process, local data
folder, SQLite instance) of the same days stores, and the features are what the feature function
builds. A run launched with another MLflow tracking URI than the workers' is refused on the worker,
and nothing lands in either store. A worker whose storage root holds another copy of a day fails
the step that reads it (verified reads), naming the recorded and the found hash.

Marked ``distributed`` and ``slow``: it fails in CI when RabbitMQ or PostgreSQL is unreachable and
skips with the reason elsewhere. It stops only the worker processes it started (their own process
groups) and deletes its vhost and database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.keys import TRACKING_URI_TAG
from tests.conftest import REPO_ROOT, S3_BUCKET, real_features, require_service, s3_objects
from tests.test_mlflow_postgres import mlflow_server  # noqa: F401  (the README's MLflow server, a fixture)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

BIN = Path(sys.executable).parent
FIRST, LAST = "2013-01-01", "2013-01-03"
DAYS = (FIRST, "2013-01-02", LAST)
RANGE = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
STORED = ("raw_flights", "raw_weather", "features", "predictions")


def rabbitmqctl(*args: str) -> None:
    out = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {out.stdout}{out.stderr}"


@pytest.fixture()
def broker_url():
    """A RabbitMQ vhost of this test's own (guest may use it), deleted afterwards."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    if shutil.which("rabbitmqctl") is None:
        message = "rabbitmqctl is not on PATH (needed to create the test's own vhost)"
        if os.environ.get("ML_PLATFORM_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    vhost = f"ml_platform_test_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The README's worker command, in a process group of its own (it starts `celery worker`)."""
    cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
           "-y", "dagster_home/celery.yaml", "--name", name, "--", "--concurrency=1"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_until_ready(workers: dict[str, subprocess.Popen], logs: dict[str, Path], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    pending = set(workers)
    while pending:
        for name in list(pending):
            text = logs[name].read_text(errors="replace")
            assert workers[name].poll() is None, f"worker {name} exited:\n{text[-3000:]}"
            if " ready." in text:
                pending.discard(name)
        assert time.monotonic() < deadline, f"workers {sorted(pending)} not ready in {timeout:g} s"
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """Stop one worker we started: SIGTERM to its own process group, SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def error_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every error message (with its causes) in the event log of a run."""
    messages = []
    for entry in instance.all_logs(run_id):
        error = getattr(entry.dagster_event.event_specific_data, "error", None) if entry.is_dagster_event else None
        while error is not None:
            messages.append(error.message)
            error = error.cause or error.context
    return messages


def register_champion(tracking, spec, train, workdir: Path) -> str:
    """A small LightGBM model fitted on ``train`` (real features), registered like every model of the
    project (its model code and two artifacts) and given the ``champion`` alias; returns its version."""
    import lightgbm
    import mlflow

    from ml_assets.training.registry import CHAMPION, MODEL_CODE
    from ml_assets.training.tabular_model import Preprocessing, ScoringModel

    target = spec.target.name
    prep = Preprocessing.fit(train, spec.features.numeric, spec.features.categorical, task="classification",
                             target=target)
    data = lightgbm.Dataset(prep.transform(train), label=train[target].to_numpy())
    booster = lightgbm.train({"objective": "binary", "num_leaves": 7, "learning_rate": 0.1, "verbose": -1,
                              "seed": 0, "deterministic": True, "num_threads": 1}, data, num_boost_round=20)
    with tracking.start_run("flights-distributed-test", run_name="champion of the celery test"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                       artifacts=ScoringModel(booster, prep).save(workdir / "champion"),
                                       registered_model_name=spec.registered_model_name)
    version = str(info.registered_model_version)
    tracking.client().set_registered_model_alias(spec.registered_model_name, CHAMPION, version)
    return version


def embedded_run(spec, tmp_path: Path, monkeypatch, tracking_uri: str) -> tuple[dict[str, bytes], str]:
    """The same days on the embedded defaults, in this process: local data folder, SQLite instance,
    the code location's own resources. Raw days and features first; then a champion fitted on those
    features, registered in ``tracking_uri`` (the store the workers use); then the predictions.
    Returns ``({path under assets/: bytes}, champion version)``."""
    import pandas as pd

    from ml_assets import load_tabular_pipelines, resource_settings
    from ml_assets.features.assets import build_features_asset
    from ml_assets.ingest.assets import build_ingest_defs, daily_partitions
    from ml_assets.keys import pipeline_keys
    from ml_assets.scoring.assets import build_predictions_asset
    from resources import build_resources
    from resources.tracking import MlflowTracking

    local = tmp_path / "local"
    monkeypatch.delenv("ML_STORAGE_ROOT", raising=False)
    monkeypatch.setenv("ML_DATA_DIR", str(local))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    built = build_resources(**resource_settings(load_tabular_pipelines()))
    resources = {key: built[key] for key in ("data_source", "parquet_io_manager", "io_manager", "tracking")}
    partitions_def = daily_partitions(spec)
    keys = pipeline_keys(spec)
    assets = [*build_ingest_defs(spec, partitions_def).assets, build_features_asset(spec, partitions_def),
              build_predictions_asset(spec, partitions_def)]
    (tmp_path / "home_local").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home_local")) as instance:
        upstream = [*(keys.raw(source) for source in spec.sources), keys.features]
        assert dg.materialize(assets, selection=upstream, resources=resources, instance=instance, tags=RANGE).success
        train = pd.concat([pd.read_parquet(local / "assets" / "flights" / "features" / f"{day}.parquet") for day in DAYS],
                          ignore_index=True)
        train = train[train[spec.target.name].notna()].reset_index(drop=True)
        version = register_champion(MlflowTracking(tracking_uri=tracking_uri, local_dir=str(tmp_path / "unused")),
                                    spec, train, tmp_path)
        assert dg.materialize(assets, selection=[keys.predictions], resources=resources, instance=instance,
                              tags=RANGE).success
    root = local / "assets"
    files = {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*.parquet")
             if not any(part.startswith(".") for part in f.relative_to(root).parts)}
    return files, version


def execute_job(job: str, env: dict[str, str], code: str = "definitions.py") -> subprocess.CompletedProcess:
    """``dagster job execute`` of ``job`` over the test's days (the run process submits its steps)."""
    return subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-f", code, "-j", job, "--tags", json.dumps(RANGE)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


def steps_on_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """``{step key: celery worker host}`` of a run, from its steps' engine events."""
    on_worker: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data
        if "Celery worker" in data.metadata:
            on_worker[entry.step_key] = data.metadata["Celery worker"].value
    return on_worker


def test_ingest_features_and_predictions_run_on_two_celery_workers_and_a_wrong_tracking_uri_or_root_is_refused(
        tmp_path, broker_url, postgres_database, mlflow_server, s3, flights_spec, monkeypatch):  # noqa: F811
    import io

    import mlflow
    import pandas as pd

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: "
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_database}\ntelemetry:\n  enabled: false\n"
    )
    # the workers track to the README's production MLflow: a server on the same PostgreSQL database
    # (schema mlflow), artifacts proxied; the champion they score with is loaded through it
    worker_uri, server_artifacts = mlflow_server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLFLOW_"))}
    env.update(DAGSTER_HOME=str(home), ML_DATA_DIR=str(tmp_path / "data"), ML_EXECUTOR="celery",
               ML_STORAGE_ROOT=f"s3://{S3_BUCKET}/dist",
               DAGSTER_CELERY_BROKER_URL=broker_url, DAGSTER_CELERY_BACKEND_URL="rpc://",
               MLFLOW_TRACKING_URI=worker_uri, PYTHONUNBUFFERED="1",
               # `dagster-celery worker start` runs `celery` from PATH: the virtualenv's bin first
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # the instance's tables first, as the README says: two workers starting together on an empty
    # database would both create them (alembic_version already exists)
    with dg.DagsterInstance.from_config(str(home)):
        pass
    logs = {name: tmp_path / f"{name}.log" for name in ("worker1", "worker2")}
    workers = {}
    try:
        for name in logs:
            workers[name] = start_worker(name, env, logs[name])
        # while the workers start: the embedded run of the same days, and the champion both score with
        local, version = embedded_run(flights_spec, tmp_path, monkeypatch, worker_uri)
        assert sorted(local) == sorted(f"flights/{asset}/{day}.parquet" for asset in STORED for day in DAYS)
        wait_until_ready(workers, logs)
        for job in ("flights_ingest_job", "flights_scoring_job"):
            run = execute_job(job, env)
            worker_logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in logs.values())
            assert run.returncode == 0, job + run.stdout[-3000:] + run.stderr[-3000:] + worker_logs
        stored = s3_objects(s3, "dist/assets")
        # launched with another tracking store than the workers have: refused on the worker
        launcher_uri = f"sqlite:///{tmp_path / 'launcher-mlflow.db'}"
        refused = execute_job("tracked_job", dict(env, MLFLOW_TRACKING_URI=launcher_uri), code="tests/distributed_defs.py")
        assert refused.returncode != 0
        assert not (tmp_path / "launcher-mlflow.db").exists()
        assert mlflow.MlflowClient(tracking_uri=worker_uri).get_experiment_by_name("distributed-test") is None
        # a worker whose root holds another copy of raw_weather LAST: the features step it runs fails
        for key, data in stored.items():
            s3.put_object(Bucket=S3_BUCKET, Key=f"stale/assets/{key}", Body=data)
        weather = f"flights/raw_weather/{LAST}.parquet"
        s3.put_object(Bucket=S3_BUCKET, Key=f"stale/assets/{weather}", Body=stored[f"flights/raw_weather/{FIRST}.parquet"])
        for process in workers.values():
            stop(process)
        stale_env = dict(env, ML_STORAGE_ROOT=f"s3://{S3_BUCKET}/stale")
        logs["worker3"] = tmp_path / "worker3.log"
        workers["worker3"] = start_worker("worker3", stale_env, logs["worker3"])
        wait_until_ready({"worker3": workers["worker3"]}, logs)
        stale = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "flights/features",
             "--partition", LAST], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert stale.returncode != 0
    finally:
        for process in workers.values():
            stop(process)

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        record, scoring_record, refused_record, stale_record = sorted(instance.get_run_records(),
                                                                      key=lambda r: r.create_timestamp)
        assert stale_record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        errors = " ".join(error_messages(instance, stale_record.dagster_run.run_id))
        recorded = "sha256:" + hashlib.sha256(stored[weather]).hexdigest()
        found = "sha256:" + hashlib.sha256(stored[f"flights/raw_weather/{FIRST}.parquet"]).hexdigest()
        assert f"partition {LAST} of flights/raw_weather: the stored file s3://{S3_BUCKET}/stale/assets/{weather}" in errors
        assert f"recorded {recorded}, found {found}" in errors
        assert f"recorded as stored at s3://{S3_BUCKET}/dist/assets/{weather}" in errors
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert scoring_record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert refused_record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        assert refused_record.dagster_run.tags[TRACKING_URI_TAG] == launcher_uri
        errors = " ".join(error_messages(instance, refused_record.dagster_run.run_id))
        assert f"this process's MLflow tracking URI is {worker_uri}" in errors
        assert f"logs to {launcher_uri}" in errors
        on_worker = steps_on_workers(instance, record.dagster_run.run_id)
        assert set(on_worker) == {"flights__raw_flights", "flights__raw_weather", "flights__features"}
        assert {host.split("@")[0] for host in on_worker.values()} == {"worker1", "worker2"}, on_worker
        scored_on = steps_on_workers(instance, scoring_record.dagster_run.run_id)
        assert set(scored_on) == {"flights__predictions"}
        assert scored_on["flights__predictions"].split("@")[0] in {"worker1", "worker2"}
        for asset in STORED:
            assert instance.get_materialized_partitions(dg.AssetKey(["flights", asset])) == set(DAYS), asset
        predictions = instance.get_latest_materialization_event(dg.AssetKey(["flights", "predictions"]))
        assert predictions.run_id == scoring_record.dagster_run.run_id
    finally:
        instance.dispose()

    # every object the workers stored is the embedded run's file, byte for byte, at the same path
    assert not (tmp_path / "data" / "assets").exists()  # everything went to the bucket
    assert sorted(stored) == sorted(local)
    assert [key for key in local if stored[key] != local[key]] == []
    # the features are what the pipeline's feature function builds for those days
    expected = real_features(FIRST, LAST)
    features = pd.concat([pd.read_parquet(io.BytesIO(stored[f"flights/features/{day}.parquet"])) for day in DAYS],
                         ignore_index=True)
    assert len(features) == len(expected) > 2000
    pd.testing.assert_frame_equal(features[expected.columns].reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False)
    # and every flight of those days is scored by the champion fitted in this test
    scored = pd.concat([pd.read_parquet(io.BytesIO(stored[f"flights/predictions/{day}.parquet"])) for day in DAYS],
                       ignore_index=True)
    assert len(scored) == len(features) and set(scored["model_version"]) == {version}
    assert scored["delayed_score"].between(0, 1).all() and scored["delayed_score"].nunique() > 10
    # the champion's files went through the server (artifact proxying), not into a worker's folder
    assert {"MLmodel", "booster.txt"} <= {p.name for p in server_artifacts.rglob("*") if p.is_file()}
