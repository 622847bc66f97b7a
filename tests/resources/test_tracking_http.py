"""Each MLflow tracking resource's HTTP retries and timeout apply to its own calls: MLflow reads them
from the process environment at every request, and a resource used first must not decide them for
every resource after it. A real HTTP server on 127.0.0.1 answers 503 (a transient error MLflow
retries) and counts the requests it receives."""

from __future__ import annotations

import http.server
import os
import threading

import pytest

from resources.tracking import RETRIES_ENV, TIMEOUT_ENV, MlflowTracking

ENDPOINT = "/api/2.0/mlflow/experiments/get-by-name"


@pytest.fixture()
def unavailable_server():
    """An HTTP server that answers 503 to everything; yields (url, list of request paths)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            seen.append(self.path.split("?")[0])
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def requests_for_one_call(tracking: MlflowTracking, seen: list[str]) -> int:
    """How many HTTP requests one registry lookup through ``tracking``'s client makes (the first and
    its retries) before it fails."""
    before = len(seen)
    with pytest.raises(Exception):  # noqa: B017 - MLflow raises its own or urllib3's error at the end
        tracking.client().get_experiment_by_name("x")
    return sum(1 for path in seen[before:] if path == ENDPOINT)


def test_each_resource_applies_its_own_retries_and_the_environment_is_left_as_found(unavailable_server, tmp_path,
                                                                                      monkeypatch):
    url, seen = unavailable_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # no waiting between retries
    monkeypatch.delenv(RETRIES_ENV, raising=False)
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    none = MlflowTracking(tracking_uri=url, local_dir=str(tmp_path), request_retries=0, request_timeout_seconds=5)
    three = MlflowTracking(tracking_uri=url, local_dir=str(tmp_path), request_retries=3, request_timeout_seconds=5)

    # the first resource used must not decide for the second (nor the second for the first, after)
    assert requests_for_one_call(none, seen) == 1
    assert requests_for_one_call(three, seen) == 4
    assert requests_for_one_call(none, seen) == 1
    assert RETRIES_ENV not in os.environ and TIMEOUT_ENV not in os.environ

    # start_run's calls (here: looking up the run's experiment) use the resource's setting too
    with pytest.raises(Exception):  # noqa: B017
        with three.start_run("x"):
            pass
    assert seen[-4:] == [ENDPOINT] * 4 and RETRIES_ENV not in os.environ


def test_unset_setting_takes_the_users_environment_even_inside_another_resources_scope(unavailable_server,
                                                                                        tmp_path, monkeypatch):
    url, seen = unavailable_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv(RETRIES_ENV, "1")
    from_env = MlflowTracking(tracking_uri=url, local_dir=str(tmp_path))
    explicit = MlflowTracking(tracking_uri=url, local_dir=str(tmp_path), request_retries=0)
    assert from_env.http_settings() == {RETRIES_ENV: 1, TIMEOUT_ENV: 30}
    assert requests_for_one_call(from_env, seen) == 2
    assert requests_for_one_call(explicit, seen) == 1
    with explicit.request_settings():  # nested: the unset resource still reads the user's value
        assert os.environ[RETRIES_ENV] == "0"
        assert requests_for_one_call(from_env, seen) == 2
        assert os.environ[RETRIES_ENV] == "0"
    assert os.environ[RETRIES_ENV] == "1"
