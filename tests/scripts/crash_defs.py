"""A code location for the crash tests: an asset that holds a pool slot and an MLflow run, says
where it is, and waits to be killed (``CRASH_WAIT`` seconds); and a second asset in the same pool."""

import os
import time
from pathlib import Path

import dagster as dg

from resources.tracking import MlflowTracking

POOL = "crash_pool"


@dg.asset(pool=POOL)
def held(context: dg.AssetExecutionContext, tracking: MlflowTracking) -> None:
    """Opens an MLflow run tagged with the Dagster run, writes a marker, then waits."""
    with tracking.start_run("crash", run_name="held", tags={"dagster_run_id": context.run.run_id}):
        Path(os.environ["CRASH_MARKER"]).write_text(f"{context.run.run_id} {os.getpid()}")
        time.sleep(float(os.environ.get("CRASH_WAIT", "0")))


@dg.asset(pool=POOL)
def after() -> None:
    """Needs the same pool slot as ``held``."""


defs = dg.Definitions(
    assets=[held, after],
    resources={"tracking": MlflowTracking(local_dir=os.environ.get("CRASH_MLFLOW_DIR", ".mlflow-crash"))},
)
