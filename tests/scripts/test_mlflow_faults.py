"""The MLflow tracking server killed (kill -9) in the middle of a step's logging and started again:
the step is retried (an unreachable service), the retry logs everything, and ./run.sh recover ends
the MLflow run the killed attempt left RUNNING."""

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.metadata import retry_only_unreachable
from resources.tracking import MlflowTracking
from scripts.recover import recover
from tests.conftest import free_port


def start_server(root: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--workers", "1"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.3)


def stop(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    import os

    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever of the server's group is left (its job runner and consumers), for good
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_server_killed_mid_logging_is_retried_and_its_orphan_run_closed(tmp_path, instance, monkeypatch):
    # No retries by MLflow itself (the resource's setting applies to its own calls whatever the
    # environment says): with retries, the killed attempt's end_run would reach the restarted server
    # and end its own run.
    root, port = tmp_path / "server", free_port()
    root.mkdir()
    servers = [start_server(root, port)]
    tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}", local_dir=str(tmp_path / "unused"),
                              request_retries=0, request_timeout_seconds=3)
    halfway = threading.Event()

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL))
    @retry_only_unreachable
    def logged(context: dg.AssetExecutionContext, tracking: MlflowTracking) -> None:
        with tracking.start_run("faults", run_name=f"attempt-{context.retry_number}",
                                tags={"dagster_run_id": context.run.run_id}):
            for step in range(20):
                tracking.log_metrics({"value": float(step)}, step=step)
                if step == 5 and context.retry_number == 0:
                    halfway.set()
                    time.sleep(3)  # the server is killed meanwhile

    def kill_and_restart():
        halfway.wait(timeout=120)
        stop(servers[0])  # kill -9 of the tracking server
        time.sleep(2)
        servers.append(start_server(root, port))

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    killer.start()
    try:
        result = dg.materialize([logged], resources={"tracking": tracking}, instance=instance, raise_on_error=False)
        killer.join(timeout=150)
        assert result.success
        restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
        assert len(restarts) >= 1
        client = tracking.client()
        experiment = tracking.experiment_id("faults")
        runs = {r.info.run_name: r for r in client.search_runs([experiment])}
        finished = [r for r in runs.values() if r.info.status == "FINISHED"]
        assert len(finished) == 1
        assert [m.value for m in client.get_metric_history(finished[0].info.run_id, "value")] == [float(i) for i in range(20)]
        orphan = runs["attempt-0"]
        assert orphan.info.status == "RUNNING"  # the killed attempt could not end its run

        report = recover(instance, tracking=tracking)

        assert report.failed_mlflow_runs == [orphan.info.run_id]
        assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    finally:
        for server in servers:
            stop(server, signal.SIGTERM)
