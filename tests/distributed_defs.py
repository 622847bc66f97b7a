"""A code location for tests/test_distributed.py: one asset that logs to MLflow, in a job carrying the
project's launch tags, with the executor and tracking resource configured as in definitions.py."""

import dagster as dg

from ml_assets.config.paths import mlflow_dir
from ml_assets.execution import code_location_executor, launch_tags
from resources import optional_env
from resources.tracking import MlflowTracking


@dg.asset
def tracked(tracking: MlflowTracking) -> dg.MaterializeResult:
    with tracking.start_run("distributed-test", run_name="tracked"):
        tracking.log_metrics({"answer": 42.0})
    return dg.MaterializeResult(metadata={"tracking_uri": tracking.display_uri()})


defs = dg.Definitions(
    assets=[tracked],
    jobs=[dg.define_asset_job("tracked_job", selection=[tracked], tags=launch_tags())],
    executor=code_location_executor(),
    resources={"tracking": MlflowTracking(tracking_uri=optional_env("MLFLOW_TRACKING_URI"), local_dir=str(mlflow_dir()))},
)
