"""The one Dagster code location of the ML platform.

Assets and checks come from ``ml_assets`` (one graph per pipeline YAML in ``pipelines/``), sensors,
schedules and jobs from ``sensors``, resources from ``resources``. Heavy libraries (pandas, Great
Expectations, MLflow, torch ...) are imported inside the functions that use them, so loading this
module costs little more than importing Dagster.
"""

from __future__ import annotations

import dagster as dg

from ml_assets import build_tabular_defs
from ml_assets.fewshot import build_fewshot_defs
from resources import build_resource_defs
from sensors import build_automation_defs

# Two concurrent step processes on a 2-core machine; forkserver pays the Dagster import once.
# Each run of many partitions is one step per asset (single-run backfills), so SQLite instance
# storage sees a handful of writers at a time, never hundreds.
EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {}}}
)

defs = dg.Definitions.merge(
    build_tabular_defs(),
    build_fewshot_defs(),
    build_automation_defs(),
    build_resource_defs(),
    dg.Definitions(executor=EXECUTOR),
)
