"""The MLflow tracking resource through the model asset: an unreachable tracking server is retried with
backoff and then named, and a real ``mlflow server`` on 127.0.0.1 receives runs and models (with
links to them in the asset metadata)."""

import subprocess
import sys
import time

import dagster as dg
import pytest

from ml_assets.training.registry import CHAMPION
from resources.tracking import MlflowTracking
from tests.conftest import Project, failure_message, fast_retry, free_port, metadata_of, small_pipeline, training_keys


def test_unreachable_mlflow_is_retried_with_backoff_then_named(tmp_path, feature_store, instance):
    port = free_port()  # nothing listens there
    tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}", local_dir=str(tmp_path / "unused"),
                              request_timeout_seconds=2)
    project = Project(small_pipeline(tmp_path), feature_store, tracking, instance)
    result = project.materialize(training_keys())
    assert not result.success
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert len(restarts) == fast_retry().max_retries
    message = failure_message(result)
    assert f"MLflow tracking server at http://127.0.0.1:{port} is unreachable" in message


# --------------------------------------------------------------------------- a real MLflow server


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    root = tmp_path / "server"
    root.mkdir()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
        str(root / "artifacts"), "--workers", "1",
    ]
    log = open(root / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.mark.slow
def test_model_asset_against_a_real_mlflow_server(tmp_path, feature_store, instance, mlflow_server):
    tracking = MlflowTracking(tracking_uri=mlflow_server, local_dir=str(tmp_path / "unused"))
    project = Project(small_pipeline(tmp_path, model={"tuning": {"n_trials": 0}}), feature_store, tracking, instance)
    result = project.materialize(training_keys())
    assert result.success, failure_message(result)
    md = metadata_of(result, "flights__model")
    assert md["mlflow_tracking_uri"] == mlflow_server
    assert md["mlflow_run_url"].startswith(f"{mlflow_server}/#/experiments/")
    assert md["model_version_url"] == f"{mlflow_server}/#/models/flights_delay/versions/1"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    assert any(a.path == "pipeline" for a in client.list_artifacts(md["mlflow_run_id"]))
    scored = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert scored.success and metadata_of(scored, "flights__predictions")["model_version"] == "1"
