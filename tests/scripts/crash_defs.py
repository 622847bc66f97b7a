"""A code location for the crash tests.

- ``held`` holds a pool slot, an MLflow run, a PENDING logged model and a registered candidate (as
  training does), says where it is, and waits to be killed (``CRASH_WAIT`` seconds, or until the
  file ``CRASH_RELEASE`` exists); ``after`` needs the same pool.
- ``days``: a daily asset stored by the project's Parquet IO manager under ``CRASH_DATA_DIR``, its
  rows depending on ``CRASH_VERSION``. With ``CRASH_AFTER_RENAMES=N`` the write stops after N day
  files were renamed into place (before Dagster records anything): it writes ``CRASH_MARKER`` and
  waits to be killed.
"""

import os
import time
from pathlib import Path

import dagster as dg

from resources.parquet_io import PartitionedParquetIOManager
from resources.tracking import MlflowTracking

POOL = "crash_pool"
DAYS = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-11", fmt="%Y-%m-%d")


@dg.asset(pool=POOL)
def held(context: dg.AssetExecutionContext, tracking: MlflowTracking) -> None:
    """Opens an MLflow run tagged with the Dagster run, writes a marker, then waits."""
    with tracking.start_run("crash", run_name="held", tags={"dagster_run_id": context.run.run_id}) as run:
        # what a kill during training leaves: a logged model still PENDING and a registered candidate
        client = tracking.client()
        model = client.create_logged_model(run.info.experiment_id, source_run_id=run.info.run_id, name="model")
        client.create_registered_model("crash_model")
        client.create_model_version("crash_model", f"models:/{model.model_id}", run_id=run.info.run_id,
                                    tags={"evaluation": "pending", "dagster_run_id": context.run.run_id})
        Path(os.environ["CRASH_MARKER"]).write_text(f"{context.run.run_id} {os.getpid()}")
        release = os.environ.get("CRASH_RELEASE")
        deadline = time.monotonic() + float(os.environ.get("CRASH_WAIT", "0"))
        while time.monotonic() < deadline and not (release and Path(release).exists()):
            time.sleep(0.2)


@dg.asset(pool=POOL)
def after() -> None:
    """Needs the same pool slot as ``held``."""


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(),
          io_manager_key="parquet_io_manager", metadata={"partition_column": "day"})
def days(context: dg.AssetExecutionContext):
    """Three rows per day; the values depend on CRASH_VERSION."""
    import pandas as pd

    version = int(os.environ.get("CRASH_VERSION", "1"))
    return pd.DataFrame([{"day": d, "i": i, "value": version * 100 + i}
                         for d in context.partition_keys for i in range(3)])


def _stop_after_renames() -> None:
    limit = int(os.environ.get("CRASH_AFTER_RENAMES", "0"))
    if not limit:
        return
    real_replace, done = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if str(dst).endswith(".parquet"):
            done.append(dst)
            if len(done) == limit:
                Path(os.environ["CRASH_MARKER"]).write_text(str(os.getpid()))
                time.sleep(600)

    os.replace = replace


_stop_after_renames()

#: ``held`` as a job, for runs launched through the instance's run launcher (a run worker process)
held_job = dg.define_asset_job("held_job", selection=[held])

defs = dg.Definitions(
    assets=[held, after, days],
    jobs=[held_job],
    resources={
        "tracking": MlflowTracking(local_dir=os.environ.get("CRASH_MLFLOW_DIR", ".mlflow-crash")),
        "parquet_io_manager": PartitionedParquetIOManager(base_dir=os.environ.get("CRASH_DATA_DIR", ".data-crash")),
    },
)
