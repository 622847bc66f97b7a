"""The experiment-tracking resource: MLflow with an embedded default.

Default: a SQLite backend in ``<local_dir>/mlflow.db`` with artifacts under ``<local_dir>/artifacts``
(no server; the project passes ``<repo>/.mlflow``). Set ``tracking_uri`` (e.g. from
``dg.EnvVar("MLFLOW_TRACKING_URI")``) to use an MLflow tracking server instead. The resource is
general: ``start_run(experiment, run_name, tags)`` is a context manager around an MLflow run, and
``log_metrics`` / ``log_params`` / ``log_dict`` write to the active run, so model training,
evaluation and the few-shot store share it.

Every run is pinned to one tracking store: the run tag ``ml_platform/mlflow_tracking_uri`` holds
the (credential-free) tracking URI, set at launch by the jobs that log to MLflow or, failing that,
by the first step that uses the resource. A step whose resource resolves to another URI (a worker
without ``MLFLOW_TRACKING_URI``, or pointed at another server) is refused before it logs or
registers anything: on a worker, the embedded default is a store of its own that nobody else reads.

MLflow's own HTTP retries and timeout per request (``request_retries``, ``request_timeout_seconds``)
apply to each resource's own calls: MLflow reads them from the environment at every request, so
the resource sets them around its runs, its client's methods and model loading, and restores them
after (``request_settings``).

mlflow is imported inside the methods that use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import os
import urllib.error
import urllib.parse
import urllib.request

import dagster as dg
from pydantic import Field

#: The run tag pinning a run to one MLflow tracking store (its URI without credentials).
TRACKING_URI_TAG = "ml_platform/mlflow_tracking_uri"
#: MLflow reads its HTTP retries and timeout from these environment variables at every request.
RETRIES_ENV, TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"
DEFAULT_RETRIES, DEFAULT_TIMEOUT_SECONDS = 2, 30
#: The environment values saved by the open ``request_settings`` scopes, outermost first: the first
#: holds what the user set (nested scopes of other resources must not read a resource's value as
#: the user's).
_OPEN_SCOPES: list[dict[str, str | None]] = []


def user_env(name: str) -> str | None:
    """``name`` as the user set it in the environment (outside every resource's scope)."""
    return _OPEN_SCOPES[0][name] if _OPEN_SCOPES else os.environ.get(name)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow experiment tracking (and model registry): local SQLite + artifact folder by default,
    or a tracking server when ``tracking_uri`` is set (``MLFLOW_TRACKING_URI``)."""

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default sqlite:///<local_dir>/mlflow.db.",
    )
    local_dir: str = Field(description="Folder of the embedded default (SQLite database and artifacts).")
    artifact_location: str | None = Field(
        default=None,
        description="Artifact root for new experiments; default <local_dir>/artifacts in local mode.",
    )

    ui_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the MLflow UI that the links in the Dagster UI point at (MLFLOW_UI_URL;"
            " `./run.sh dev` sets it to the MLflow UI it starts for the embedded store). Default: the"
            " tracking URI when it is an http(s) server; no links otherwise."
        ),
    )
    dagster_ui_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the Dagster UI (DAGSTER_UI_URL; set by `./run.sh dev`): MLflow runs and model"
            " versions link back to the Dagster run that made them."
        ),
    )
    request_retries: int | None = Field(
        default=None,
        ge=0,
        description=(
            "MLflow's own HTTP retries per request to a tracking server, for this resource's calls."
            f" Default: {RETRIES_ENV} from the environment, else {DEFAULT_RETRIES}. Kept low: the"
            " assets retry whole steps with backoff (dg.RetryPolicy) instead."
        ),
    )
    request_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Timeout of one HTTP request to a tracking server, for this resource's calls. Default:"
            f" {TIMEOUT_ENV} from the environment, else {DEFAULT_TIMEOUT_SECONDS}."
        ),
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """In a run, refuse to work against another tracking store than the run's (see the module)."""
        if context.run is not None and context.instance is not None:
            self.pin_to_run(context.instance, context.run.run_id)

    def pin_to_run(self, instance: dg.DagsterInstance, run_id: str) -> None:
        """Record this resource's tracking URI on run ``run_id`` when the run has none yet, and raise
        ``TrackingUriMismatchError`` when the run's recorded URI is another one."""
        mine = self.display_uri()
        run = instance.get_run_by_id(run_id)
        recorded = run.tags.get(TRACKING_URI_TAG) if run is not None else None
        if run is not None and recorded is None:
            instance.add_run_tags(run_id, {TRACKING_URI_TAG: mine})
            # read back: of two first steps starting at once on two workers, one write wins
            recorded = instance.get_run_by_id(run_id).tags.get(TRACKING_URI_TAG, mine)
        if recorded is not None and recorded != mine:
            raise TrackingUriMismatchError(
                f"this process's MLflow tracking URI is {mine}, but run {run_id} logs to {recorded}"
                f" (run tag {TRACKING_URI_TAG}): refusing to log or register into another store. Set"
                f" MLFLOW_TRACKING_URI={recorded} on this worker (every worker needs the same"
                " MLFLOW_TRACKING_URI as the process that launches runs)"
            )

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(self.local_dir).resolve() / 'mlflow.db'}"

    def resolved_artifact_location(self, experiment: str) -> str | None:
        if self.artifact_location:
            return f"{self.artifact_location.rstrip('/')}/{experiment}"
        uri = self.resolved_tracking_uri()
        if uri.startswith("sqlite:///"):
            # beside the database (MLflow's own default would be ./mlruns in the working directory)
            return (Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts" / experiment).as_uri()
        return None  # a tracking server decides

    def display_uri(self) -> str:
        """The tracking URI without credentials, for logs, errors and the UI."""
        return redact_uri(self.resolved_tracking_uri())

    def configured_mlflow(self) -> Any:
        """The ``mlflow`` module pointed at this resource's tracking URI (the embedded folder created)."""
        import mlflow

        if not self.tracking_uri:
            Path(self.local_dir).mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.resolved_tracking_uri())
        return mlflow

    def http_settings(self) -> dict[str, int]:
        """This resource's HTTP retries and timeout: its fields, else the user's environment, else
        the defaults."""
        def pick(value: int | None, name: str, default: int) -> int:
            if value is not None:
                return value
            raw = user_env(name)
            return int(raw) if raw and raw.strip().isdigit() else default

        return {RETRIES_ENV: pick(self.request_retries, RETRIES_ENV, DEFAULT_RETRIES),
                TIMEOUT_ENV: pick(self.request_timeout_seconds, TIMEOUT_ENV, DEFAULT_TIMEOUT_SECONDS)}

    @contextmanager
    def request_settings(self) -> Iterator[None]:
        """Apply this resource's HTTP retries and timeout to the MLflow requests made inside.

        MLflow reads them from the process environment at each request, so they are set for the
        duration and restored after: resources with different settings in one process each get
        their own (every MLflow call of the resource runs in such a scope: its runs, its client,
        ``load_model``). Scopes are per process, not per thread: two threads using resources with
        different settings at the same moment would share one.
        """
        values = self.http_settings()
        _OPEN_SCOPES.append({name: os.environ.get(name) for name in values})
        os.environ.update({name: str(value) for name, value in values.items()})
        try:
            yield
        finally:
            for name, value in _OPEN_SCOPES.pop().items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def check_reachable(self) -> None:
        """Raise ``MlflowUnavailableError`` when a tracking server does not answer its health check.

        A no-op for the embedded SQLite default. Called before long work, so an unreachable server
        fails in a second instead of after training.
        """
        uri = self.resolved_tracking_uri()
        if not uri.startswith(("http://", "https://")):
            return
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=self.http_settings()[TIMEOUT_ENV]):
                pass
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MlflowUnavailableError(
                f"the MLflow tracking server at {self.display_uri()} is unreachable ({reason}). Start it,"
                " or unset MLFLOW_TRACKING_URI to use the embedded store in .mlflow/"
            ) from None

    def alias_version(self, model_name: str, alias: str) -> Any | None:
        """The registry version ``alias`` points to, or None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    @contextmanager
    def resume_run(self, run_id: str) -> Iterator[Any]:
        """Re-open a finished run (to add evaluation results to the model's run)."""
        mlflow = self.configured_mlflow()
        with self.request_settings(), mlflow.start_run(run_id=run_id) as run:
            yield run

    def client(self) -> Any:
        """An ``mlflow.MlflowClient`` bound to this tracking URI, each of its calls made with this
        resource's HTTP settings (``request_settings``)."""
        mlflow = self.configured_mlflow()
        return ScopedClient(mlflow.MlflowClient(tracking_uri=self.resolved_tracking_uri()), self.request_settings)

    def experiment_id(self, experiment: str) -> str:
        """The id of ``experiment``, created (with this resource's artifact location) if missing."""
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(
            experiment, artifact_location=self.resolved_artifact_location(experiment)
        )

    @contextmanager
    def start_run(
        self,
        experiment: str,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        nested: bool = False,
    ) -> Iterator[Any]:
        """An active MLflow run in ``experiment``; ended (FINISHED, or FAILED on error) on exit."""
        mlflow = self.configured_mlflow()
        experiment_id = self.experiment_id(experiment)
        # every MLflow call inside the run (the caller's own mlflow.log_* too) uses this resource's
        # HTTP settings, ending the run included
        with self.request_settings(), mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}), nested=nested
        ) as run:
            yield run

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        with self.request_settings():
            mlflow.log_params({k: v for k, v in params.items() if v is not None})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        with self.request_settings():
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        import mlflow

        with self.request_settings():
            mlflow.log_dict(dict(data), artifact_file)

    def ui_base(self) -> str | None:
        """The MLflow UI's base URL for links: ``ui_url``, else an http(s) tracking server, else None."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        uri = self.display_uri()
        return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None

    def run_url_for(self, experiment_id: str, run_id: str) -> str | None:
        """A link to a run in the MLflow UI (None when there is no UI to link to)."""
        base = self.ui_base()
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None

    def artifacts_url(self, experiment_id: str, run_id: str, path: str = "") -> str | None:
        """A link to a run's artifacts (or to one artifact, which the MLflow UI previews: HTML
        reports and images render in the page)."""
        base = self.ui_base()
        if not base:
            return None
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts" + (
            f"/{urllib.parse.quote(path.strip('/'))}" if path else ""
        )

    def model_version_url(self, model_name: str, version: str | int) -> str | None:
        """A link to a registered model version in the MLflow UI."""
        base = self.ui_base()
        if not base:
            return None
        return f"{base}/#/models/{urllib.parse.quote(model_name)}/versions/{version}"

    def dagster_run_url(self, run_id: str) -> str | None:
        """The Dagster UI's page of run ``run_id``, when ``dagster_ui_url`` is set."""
        return f"{self.dagster_ui_url.rstrip('/')}/runs/{run_id}" if self.dagster_ui_url else None

    def run_links(self, experiment_id: str, run_id: str) -> dict[str, Any]:
        """``mlflow_run_url`` and ``mlflow_artifacts_url`` links to a run, and its id as text."""
        metadata: dict[str, Any] = {"mlflow_run_id": dg.MetadataValue.text(run_id)}
        for name, url in (("mlflow_run_url", self.run_url_for(experiment_id, run_id)),
                          ("mlflow_artifacts_url", self.artifacts_url(experiment_id, run_id))):
            if url:
                metadata[name] = dg.MetadataValue.url(url)
        return metadata

    def dagster_tags(self, run_id: str) -> dict[str, str]:
        """Tags that tie an MLflow run or model version to the Dagster run that made it."""
        tags = {"dagster_run_id": run_id}
        url = self.dagster_run_url(run_id)
        if url:
            tags["dagster_run_url"] = url
        return tags


class ScopedClient:
    """An ``MlflowClient`` whose method calls each run inside ``scope()`` (the resource's HTTP
    settings); every other attribute is the client's own."""

    def __init__(self, client: Any, scope: Any) -> None:
        self._client, self._scope = client, scope

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._scope():
                return value(*args, **kwargs)

        call.__name__ = name
        return call


class MlflowUnavailableError(RuntimeError):
    """The MLflow tracking server cannot be reached."""


class TrackingUriMismatchError(RuntimeError):
    """A step resolves another MLflow tracking URI than the one its run is pinned to."""


def redact_uri(uri: str) -> str:
    """``uri`` with any ``user:password@`` removed."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
