"""Asset and asset-check definitions, one module per stage.

``build_tabular_defs`` turns every tabular pipeline YAML in ``pipelines/`` into its asset graph:
raw sources and features (``factory``), and with a ``model`` section the training set, model,
evaluation and predictions (``model_lifecycle``), and with a ``monitoring`` section the reference,
the daily drift report and freshness policies (``monitoring``).
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
    schedules = []
    for file in tabular_pipeline_files(directory):
        spec = load_pipeline(file)
        built = build_pipeline_assets(spec)
        jobs.append(built.ingest_job)
        pipeline_assets = list(built.assets)
        if spec.model is not None:
            model = build_model_assets(spec, file, built.features_key, built.partitions_def)
            pipeline_assets.extend(model.assets)
            jobs.extend([model.training_job, model.scoring_job])
        if spec.monitoring is not None:
            from ml_assets.monitoring import build_monitoring_assets, freshness_policy, monitoring_jobs

            from sensors import build_schedules

            pipeline_assets.extend(build_monitoring_assets(spec, built.features_key, built.partitions_def))
            drift_job, daily_job = monitoring_jobs(spec, built.partitions_def)
            jobs.append(drift_job)
            schedules.extend(build_schedules(spec, daily_job))  # registers daily_job too
            # the daily deadline applies to what arrives every day: raw data and predictions
            fresh = {*built.raw_keys.values(), dg.AssetKey([spec.name, "predictions"])}
            policy = freshness_policy(spec)
            pipeline_assets = [
                a.map_asset_specs(lambda s: dg.apply_freshness_policy(s, policy) if s.key in fresh else s)
                if set(a.keys) & fresh else a
                for a in pipeline_assets
            ]
        assets.extend(pipeline_assets)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules)
