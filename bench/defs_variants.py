"""The project's Definitions with another executor, for bench_training.py --defs (the repo is not changed).

    BENCH_EXECUTOR=inprocess  -> dg.in_process_executor (steps run one after another in the run process)
    BENCH_EXECUTOR=preload    -> the project's multiprocess/forkserver executor, with the heavy libraries
                                 preloaded in the forkserver (imported once per run, not once per step)
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dagster as dg  # noqa: E402

from ml_assets import build_asset_defs, load_tabular_pipelines, resource_settings  # noqa: E402
from resources import build_resources  # noqa: E402
from sensors import build_automation_defs  # noqa: E402

variant = os.environ.get("BENCH_EXECUTOR", "inprocess")
if variant == "inprocess":
    executor = dg.in_process_executor
else:
    executor = dg.multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"forkserver": {
        "preload_modules": ["dagster", "pandas", "pyarrow", "lightgbm", "sklearn", "mlflow", "matplotlib",
                            "ml_assets", "resources"]}}})

pipelines = load_tabular_pipelines()
defs = dg.Definitions.merge(
    build_asset_defs(pipelines), build_automation_defs(pipelines),
    dg.Definitions(resources=build_resources(**resource_settings(pipelines)), executor=executor),
)
