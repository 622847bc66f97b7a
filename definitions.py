"""The one Dagster code location of the ML platform.

Assets, checks and jobs come from ``ml_assets`` (one graph per pipeline YAML in ``pipelines/``, plus
the few-shot store), sensors and schedules from ``sensors``, resources from ``resources``. Heavy
libraries (pandas, Great Expectations, MLflow, torch ...) are imported inside the functions that use
them, so loading this module costs little more than importing Dagster.
"""

from __future__ import annotations

import dagster as dg

from ml_assets import build_asset_defs, load_tabular_pipelines, resource_settings
from ml_assets.execution import code_location_executor
from resources import build_resources
from sensors import build_automation_defs

# ML_EXECUTOR chooses (in_process, multiprocess, celery); unset: two step processes at once, and
# small runs (a day, a training run) in process (ml_assets/execution.py).
EXECUTOR = code_location_executor()

pipelines = load_tabular_pipelines()
defs = dg.Definitions.merge(
    build_asset_defs(pipelines),
    build_automation_defs(pipelines),
    dg.Definitions(resources=build_resources(**resource_settings(pipelines)), executor=EXECUTOR),
)
