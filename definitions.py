"""The one Dagster code location of the ML platform.

Assets, checks and jobs come from ``ml_assets`` (one graph per pipeline YAML in ``pipelines/``, plus
the few-shot store), sensors and schedules from ``sensors``, resources from ``resources``. Heavy
libraries (pandas, Great Expectations, MLflow, torch ...) are imported inside the functions that use
them, so loading this module costs little more than importing Dagster.
"""

from __future__ import annotations

import dagster as dg

from ml_assets import build_asset_defs, load_tabular_pipelines, resource_settings
from resources import build_resources
from sensors import build_automation_defs

# Two concurrent step processes on a 2-core machine; forkserver pays the Dagster import once.
# Each run of many partitions is one step per asset (single-run backfills), so SQLite instance
# storage sees a handful of writers at a time, never hundreds.
EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {}}}
)

pipelines = load_tabular_pipelines()
defs = dg.Definitions.merge(
    build_asset_defs(pipelines),
    build_automation_defs(pipelines),
    dg.Definitions(resources=build_resources(**resource_settings(pipelines)), executor=EXECUTOR),
)
