"""A code location for the kill -9 during a real training: the example pipeline
``pipelines/examples/minneapolis_stops.yaml`` (a real table, real LightGBM fit, real MLflow logging
and registration) built exactly as ``definitions.py`` builds a pipeline of ``pipelines/``, with the
code location's own resources. Nothing in it is a stand-in.

The test sets the folders through the environment: ``ML_DATA_DIR`` (stored partitions),
``MLFLOW_TRACKING_URI`` (an embedded ``sqlite:///`` store of the test), and the YAML's own
``MPLS_END`` / ``MPLS_TUNING_TRIALS`` (a short range, few tuning trials).
"""

import dagster as dg

from ml_assets import build_asset_defs, build_tabular_pipeline, resource_settings
from ml_assets.config import load_pipeline
from ml_assets.config.paths import REPO_ROOT
from ml_assets.execution import code_location_executor
from resources import build_resources

PIPELINE_FILE = REPO_ROOT / "pipelines" / "examples" / "minneapolis_stops.yaml"

pipeline = build_tabular_pipeline(load_pipeline(PIPELINE_FILE), PIPELINE_FILE)
defs = dg.Definitions.merge(
    build_asset_defs([pipeline], fewshot_file=None),
    dg.Definitions(resources=build_resources(**resource_settings([pipeline])), executor=code_location_executor()),
)
