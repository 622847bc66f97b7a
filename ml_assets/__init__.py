"""Asset and asset-check definitions, one module per stage.

``build_tabular_defs`` turns every tabular pipeline YAML in ``pipelines/`` into its asset graph.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.pipeline_config import PIPELINES_DIR, load_pipeline, tabular_pipeline_files


def build_tabular_defs(directory: Path = PIPELINES_DIR) -> dg.Definitions:
    """Definitions for every tabular pipeline file in ``directory``."""
    from ml_assets.factory import build_pipeline_assets

    assets: list[dg.AssetsDefinition] = []
    jobs = []
    for file in tabular_pipeline_files(directory):
        built = build_pipeline_assets(load_pipeline(file))
        assets.extend(built.assets)
        jobs.append(built.ingest_job)
    return dg.Definitions(assets=assets, jobs=jobs)
