"""Asset and asset-check definitions, one module per stage.

``build_tabular_defs`` turns every tabular pipeline YAML in ``pipelines/`` into its asset graph:
raw sources and features (``factory``), and with a ``model`` section the training set, model,
evaluation and predictions (``model_lifecycle``).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.pipeline_config import PIPELINES_DIR, load_pipeline, tabular_pipeline_files


def build_tabular_defs(directory: Path = PIPELINES_DIR) -> dg.Definitions:
    """Definitions for every tabular pipeline file in ``directory``."""
    from ml_assets.factory import build_pipeline_assets
    from ml_assets.model_lifecycle import build_model_assets

    assets: list[dg.AssetsDefinition] = []
    jobs = []
    for file in tabular_pipeline_files(directory):
        spec = load_pipeline(file)
        built = build_pipeline_assets(spec)
        assets.extend(built.assets)
        jobs.append(built.ingest_job)
        if spec.model is not None:
            model = build_model_assets(spec, file, built.features_key, built.partitions_def)
            assets.extend(model.assets)
            jobs.extend([model.training_job, model.scoring_job])
    return dg.Definitions(assets=assets, jobs=jobs)
