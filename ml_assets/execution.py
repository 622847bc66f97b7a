"""Which executor runs a job's steps, chosen by configuration when the code location loads.

``ML_EXECUTOR`` picks the executor of every job:

* unset (the embedded default): the multiprocess executor (two step processes at once, forkserver)
  for asset materializations and long jobs, and **in process** for small runs (the daily job, the
  training job), whose steps run one after another anyway and would otherwise each re-import pandas,
  Great Expectations, MLflow and Evidently in a fresh process;
* ``in_process``: every run in its run process, one step after another;
* ``multiprocess``: every run with the multiprocess executor (small runs included);
* ``celery``: every step is a task on a Celery broker, taken by ``dagster-celery`` workers on any
  machine with the project installed (the ``distributed`` extra). The broker and result backend are
  read from ``DAGSTER_CELERY_BROKER_URL`` and ``DAGSTER_CELERY_BACKEND_URL`` at run time (an
  environment-variable source: never written into run config or shown in the UI); unset, dagster-celery's
  defaults apply (``pyamqp://guest@localhost//`` and ``rpc://``).

The choice is configuration, not a secret, so it is read at load time; ``dagster_celery`` is
imported only when it is chosen.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

EXECUTOR_ENV = "ML_EXECUTOR"
BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"
IN_PROCESS, MULTIPROCESS, CELERY = "in_process", "multiprocess", "celery"
CHOICES = (IN_PROCESS, MULTIPROCESS, CELERY)

# Two concurrent step processes on a 2-core machine; forkserver pays the Dagster import once. Each
# run of many partitions is one step per asset (single-run backfills), so SQLite instance storage
# sees a handful of writers at a time, never hundreds.
MULTIPROCESS_EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {}}}, name="multiprocess"
)


class ExecutorConfigError(ValueError):
    """``ML_EXECUTOR`` names no known executor, or the celery executor is not installed."""


def executor_choice(value: str | None = None) -> str | None:
    """The configured executor name (``value``, else ``$ML_EXECUTOR``), or None when unset."""
    raw = os.environ.get(EXECUTOR_ENV, "") if value is None else value
    choice = raw.strip().lower().replace("-", "_")
    if not choice:
        return None
    if choice not in CHOICES:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={raw!r}: unknown executor; use one of {', '.join(CHOICES)} (or leave it unset"
            " for the default: multiprocess, small runs in process)"
        )
    return choice


def celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor with broker and backend read from the environment at run time."""
    try:
        from dagster_celery import celery_executor as executor
    except ImportError:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install -e '.[distributed]'"
        ) from None
    config = {}
    if os.environ.get(BROKER_ENV):
        config["broker"] = {"env": BROKER_ENV}
    if os.environ.get(BACKEND_ENV):
        config["backend"] = {"env": BACKEND_ENV}
    return executor.configured(config, name="celery") if config else executor


def build_executor(choice: str) -> dg.ExecutorDefinition:
    """The executor named ``choice`` (one of ``CHOICES``)."""
    if choice == IN_PROCESS:
        return dg.in_process_executor
    if choice == MULTIPROCESS:
        return MULTIPROCESS_EXECUTOR
    if choice == CELERY:
        return celery_executor()
    raise ExecutorConfigError(f"unknown executor {choice!r}; use one of {', '.join(CHOICES)}")


def code_location_executor(value: str | None = None) -> dg.ExecutorDefinition:
    """The code location's executor: ``ML_EXECUTOR``'s choice, multiprocess when unset."""
    return build_executor(executor_choice(value) or MULTIPROCESS)


def small_run_executor(value: str | None = None) -> dg.ExecutorDefinition:
    """The executor of jobs whose steps run one after another (a day, a training run): in process
    unless ``ML_EXECUTOR`` chooses otherwise."""
    return build_executor(executor_choice(value) or IN_PROCESS)


def launch_tags() -> dict[str, str]:
    """Run tags of the jobs that log to MLflow, set when a run is launched: the tracking URI (without
    credentials) the launching process resolves, the same way the code location's ``tracking``
    resource does. A step on a worker that resolves another URI is refused
    (``resources.tracking.TrackingUriMismatchError``) instead of registering into a store of its own."""
    from ml_assets.config.paths import mlflow_dir
    from resources.tracking import TRACKING_URI_TAG, MlflowTracking

    tracking = MlflowTracking(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None, local_dir=str(mlflow_dir()))
    return {TRACKING_URI_TAG: tracking.display_uri()}


def backfill_policy(spec: Any) -> dg.BackfillPolicy | None:
    """The backfill policy of the daily assets of ``spec`` (a ``PipelineSpec``), from the YAML's
    ``partitioning.max_partitions_per_run``: one run for the whole range (0), or runs of at most N
    days; None for an unpartitioned pipeline."""
    partitioning = spec.partitioning
    if partitioning is None:
        return None
    if partitioning.max_partitions_per_run:
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=partitioning.max_partitions_per_run)
    return dg.BackfillPolicy.single_run()
