"""Beyond one machine, for real: two dagster-celery workers on the local RabbitMQ (a vhost of their
own), started with the README's worker command, and a PostgreSQL instance (a database of its own).
The project's own code location runs ``flights_ingest_job`` for three days with ``ML_EXECUTOR=celery``;
the steps run on both workers and store the same features the pipeline's feature function builds.
The storage root is an S3 bucket on moto's server (127.0.0.1, started by the test): the features
the workers store there are what the feature function builds. The workers' MLflow tracking URI
differs from the launching process's: a run that logs to MLflow is refused on the worker, and
nothing lands in the worker's own store. A worker whose storage root holds another copy of a day
fails the step that reads it (verified reads), naming the recorded and the found hash.

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

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

BIN = Path(sys.executable).parent
FIRST, LAST = "2013-01-01", "2013-01-03"


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


def test_ingest_and_features_run_on_two_celery_workers_and_a_wrong_tracking_uri_or_root_is_refused(
        tmp_path, broker_url, postgres_database, s3):
    import io

    import pandas as pd

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: "
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_database}\ntelemetry:\n  enabled: false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MLFLOW_"))}
    env.update(DAGSTER_HOME=str(home), ML_DATA_DIR=str(tmp_path / "data"), ML_EXECUTOR="celery",
               ML_STORAGE_ROOT=f"s3://{S3_BUCKET}/dist",
               DAGSTER_CELERY_BROKER_URL=broker_url, DAGSTER_CELERY_BACKEND_URL="rpc://",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'worker-mlflow.db'}",
               PYTHONUNBUFFERED="1",
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
        wait_until_ready(workers, logs)
        tags = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
        run = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-f", "definitions.py", "-j", "flights_ingest_job",
             "--tags", json.dumps(tags)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
        worker_logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in logs.values())
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + worker_logs
        # launched with another tracking store than the workers have: refused on the worker
        launcher_uri = f"sqlite:///{tmp_path / 'launcher-mlflow.db'}"
        refused = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-f", "tests/distributed_defs.py", "-j", "tracked_job"],
            cwd=REPO_ROOT, env=dict(env, MLFLOW_TRACKING_URI=launcher_uri), capture_output=True, text=True,
            timeout=600,
        )
        assert refused.returncode != 0
        # a worker whose root holds another copy of raw_weather LAST: the features step it runs fails
        stored = s3_objects(s3, "dist/assets")
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
        record, refused_record, stale_record = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        assert stale_record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        errors = " ".join(error_messages(instance, stale_record.dagster_run.run_id))
        recorded = "sha256:" + hashlib.sha256(stored[weather]).hexdigest()
        found = "sha256:" + hashlib.sha256(stored[f"flights/raw_weather/{FIRST}.parquet"]).hexdigest()
        assert f"partition {LAST} of flights/raw_weather: the stored file s3://{S3_BUCKET}/stale/assets/{weather}" in errors
        assert f"recorded {recorded}, found {found}" in errors
        assert f"recorded as stored at s3://{S3_BUCKET}/dist/assets/{weather}" in errors
        assert len(instance.get_materialized_partitions(dg.AssetKey(["flights", "features"]))) == 3
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert refused_record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        assert refused_record.dagster_run.tags[TRACKING_URI_TAG] == launcher_uri
        errors = " ".join(error_messages(instance, refused_record.dagster_run.run_id))
        assert f"this process's MLflow tracking URI is sqlite:///{tmp_path / 'worker-mlflow.db'}" in errors
        assert f"logs to {launcher_uri}" in errors
        assert not (tmp_path / "worker-mlflow.db").exists() and not (tmp_path / "launcher-mlflow.db").exists()
        on_worker: dict[str, str] = {}
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = entry.dagster_event.engine_event_data
            if "Celery worker" in data.metadata:
                on_worker[entry.step_key] = data.metadata["Celery worker"].value
        assert set(on_worker) == {"flights__raw_flights", "flights__raw_weather", "flights__features"}
        assert {host.split("@")[0] for host in on_worker.values()} == {"worker1", "worker2"}, on_worker
        materialized = instance.get_materialized_partitions(dg.AssetKey(["flights", "features"]))
        assert materialized == {FIRST, "2013-01-02", LAST}
    finally:
        instance.dispose()

    # the workers stored exactly what the pipeline's feature function builds for those days
    expected = real_features(FIRST, LAST)
    assert not (tmp_path / "data" / "assets").exists()  # everything went to the bucket
    features = pd.concat([pd.read_parquet(io.BytesIO(stored[f"flights/features/{day}.parquet"]))
                          for day in (FIRST, "2013-01-02", LAST)], ignore_index=True)
    assert len(features) == len(expected) > 2000
    pd.testing.assert_frame_equal(features[expected.columns].reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False)
