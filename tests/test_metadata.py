"""The retry rule of ml_assets.metadata: only an unreachable service is retried, on the schedule the
README states."""

import dagster as dg
import pytest

from ml_assets.metadata import MLFLOW_RETRY, retry_only_unreachable, service_unreachable


def test_the_retry_schedule_is_2_6_and_14_seconds():
    assert [MLFLOW_RETRY.calculate_delay(attempt) for attempt in (1, 2, 3)] == [2, 6, 14]


def test_unreachable_services_are_told_from_other_errors():
    from mlflow.exceptions import MlflowException

    from resources.tracking import MlflowUnavailableError

    assert service_unreachable(ConnectionRefusedError(111, "Connection refused"))
    assert service_unreachable(MlflowUnavailableError("the MLflow tracking server at x is unreachable"))
    assert service_unreachable(MlflowException("API request to http://127.0.0.1:5/api failed with exception"))
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise RuntimeError("while logging") from inner
    except RuntimeError as outer:
        assert service_unreachable(outer)  # found in the cause chain
    assert not service_unreachable(ValueError("column 'x' has 3 nulls"))
    assert not service_unreachable(OSError(28, "No space left on device"))
    assert not service_unreachable(PermissionError(13, "Permission denied"))


@pytest.mark.parametrize("error, restarts", [
    (ConnectionRefusedError(111, "Connection refused"), 2),
    (KeyError("a bug, or bad data"), 0),
])
def test_a_step_retries_only_an_unreachable_service(error, restarts):
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2, delay=0.05))
    @retry_only_unreachable
    def talks_to_a_service(context: dg.AssetExecutionContext) -> None:
        raise error

    result = dg.materialize([talks_to_a_service], raise_on_error=False)
    assert not result.success
    events = [e.event_type for e in result.all_events]
    assert events.count(dg.DagsterEventType.STEP_RESTARTED) == restarts
