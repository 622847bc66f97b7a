"""A run is pinned to one MLflow tracking store: a step (a worker) resolving another tracking URI is
refused before it logs anything; the URI is recorded at launch by the MLflow jobs, else by the first
step. Real embedded MLflow stores in tmp folders, real Dagster instances."""

import dagster as dg
import pytest

from ml_assets.execution import launch_tags
from resources.tracking import TRACKING_URI_TAG, MlflowTracking, TrackingUriMismatchError


def error_text(result) -> str:
    """Every error message (with causes) of a failed run's events: a resource that refuses to start
    fails the run before any step starts."""
    messages = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            messages.append(error.message)
            error = error.cause or error.context
    return " ".join(messages)


@dg.asset
def logged(tracking: MlflowTracking) -> int:
    with tracking.start_run("pin-test", run_name="pinned"):
        tracking.log_metrics({"answer": 42.0})
    return 42


def test_a_worker_with_another_tracking_uri_is_refused_before_logging(tmp_path, instance):
    launcher = MlflowTracking(local_dir=str(tmp_path / "launcher"))
    worker = MlflowTracking(local_dir=str(tmp_path / "worker"))
    result = dg.materialize([logged], resources={"tracking": worker}, instance=instance, raise_on_error=False,
                            tags={TRACKING_URI_TAG: launcher.display_uri()})
    assert not result.success
    message = error_text(result)
    assert f"this process's MLflow tracking URI is {worker.display_uri()}" in message
    assert f"logs to {launcher.display_uri()}" in message and "MLFLOW_TRACKING_URI" in message
    assert not (tmp_path / "worker").exists()  # nothing was logged or registered into the worker's own store
    assert instance.get_run_by_id(result.run_id).tags[TRACKING_URI_TAG] == launcher.display_uri()


@pytest.mark.slow
def test_the_first_step_pins_a_run_launched_without_the_tag(tmp_path, instance):
    first = MlflowTracking(local_dir=str(tmp_path / "first"))
    result = dg.materialize([logged], resources={"tracking": first}, instance=instance)
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[TRACKING_URI_TAG] == first.display_uri()
    runs = first.client().search_runs([first.client().get_experiment_by_name("pin-test").experiment_id])
    assert [r.data.metrics["answer"] for r in runs] == [42.0]
    first.pin_to_run(instance, result.run_id)  # the same store again: fine
    with pytest.raises(TrackingUriMismatchError, match=r"refusing to log or register into another store"):
        MlflowTracking(local_dir=str(tmp_path / "other")).pin_to_run(instance, result.run_id)


def test_launch_tags_hold_the_tracking_uri_without_credentials(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ml:secret@mlflow.example:5000")
    assert launch_tags() == {TRACKING_URI_TAG: "https://mlflow.example:5000"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert launch_tags()[TRACKING_URI_TAG].startswith("sqlite:///") and launch_tags()[TRACKING_URI_TAG].endswith(
        "/.mlflow/mlflow.db")
