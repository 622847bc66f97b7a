"""The asset graph: per pipeline YAML in ``pipelines/``, each stage's definitions merged.

A tabular pipeline gets ``ingest`` (raw assets and checks) and ``features``; with a ``model`` section
``training``, ``evaluation`` and ``scoring`` (and, when daily partitioned, ``serving``); with a ``monitoring`` section ``monitoring`` (reference,
drift, freshness policies). The few-shot YAML gets the ``fewshot`` stage. Nothing else lives here:
each stage's Dagster definitions are in its ``assets.py``, its work in plain modules beside it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.config import (
    DEFAULT_FEWSHOT_YAML,
    PIPELINES_DIR,
    PipelineConfigError,
    PipelineSpec,
    load_fewshot_spec,
    load_pipeline,
    tabular_pipeline_files,
)
from ml_assets.keys import pipeline_keys

# Two beta parameters the graph relies on, silenced one by one (every other warning still shows):
# single-run backfills (`backfill_policy`, how STYLE.md asks a range to run as one step) and the
# history mapping that lets the first days of a range have fewer earlier days
# (`allow_nonexistent_upstream_partitions`).
warnings.filterwarnings(
    "ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta", category=dg.BetaWarning
)
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `allow_nonexistent_upstream_partitions` of .*TimeWindowPartitionMapping.* is currently in beta",
    category=dg.BetaWarning,
)
# Checks partitioned like their asset (preview in Dagster 1.13): without it a range run's check
# history fills with "Skipped" rows (ml_assets.metadata.partition_check_results says why).
warnings.filterwarnings(
    "ignore", message=r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
    category=dg.PreviewWarning,
)


@dataclass(frozen=True)
class TabularPipeline:
    """One tabular pipeline: its spec, its YAML file, its definitions and (when monitored and daily
    partitioned) the daily job, which the daily schedule in ``sensors`` runs."""

    spec: PipelineSpec
    file: Path
    definitions: dg.Definitions
    daily_job: Any | None = None


def build_tabular_pipeline(spec: PipelineSpec, file: Path) -> TabularPipeline:
    from ml_assets.features.assets import build_features_asset
    from ml_assets.ingest.assets import build_ingest_defs, daily_partitions

    partitions_def = daily_partitions(spec)
    parts = [build_ingest_defs(spec, partitions_def, file), dg.Definitions(assets=[build_features_asset(spec, partitions_def)])]
    daily_job = None
    if spec.model is not None:
        from ml_assets.evaluation.assets import build_evaluation_defs
        from ml_assets.scoring.assets import build_scoring_defs
        from ml_assets.training.assets import build_training_defs

        parts += [build_training_defs(spec, file), build_evaluation_defs(spec), build_scoring_defs(spec, partitions_def)]
        if partitions_def is not None:
            from ml_assets.serving.assets import build_serving_defs

            parts.append(build_serving_defs(spec, partitions_def))
    if spec.monitoring is not None:
        from ml_assets.monitoring.assets import build_monitoring_defs, freshness_policy

        monitoring = build_monitoring_defs(spec, partitions_def)
        daily_job = next((job for job in monitoring.jobs if job.name == pipeline_keys(spec).daily_job), None)
        parts.append(monitoring)
    definitions = dg.Definitions.merge(*parts)
    if spec.monitoring is not None and partitions_def is not None:
        # the daily deadline applies to what arrives every day: raw data and predictions (a table
        # without partitions arrives when it arrives: no deadline)
        keys = pipeline_keys(spec)
        fresh = {*(keys.raw(source) for source in spec.sources), keys.predictions}
        policy = freshness_policy(spec)
        assets = [
            a.map_asset_specs(lambda s: dg.apply_freshness_policy(s, policy) if s.key in fresh else s)
            if set(a.keys) & fresh else a
            for a in definitions.assets
        ]
        definitions = dg.Definitions(assets=assets, jobs=definitions.jobs)
    return TabularPipeline(spec, file, definitions, daily_job)


def load_tabular_pipelines(directory: Path = PIPELINES_DIR) -> list[TabularPipeline]:
    """Every tabular pipeline file in ``directory``; two files with the same pipeline name are an
    error naming both."""
    seen: dict[str, Path] = {}
    pipelines = []
    for file in tabular_pipeline_files(directory):
        spec = load_pipeline(file)
        if spec.name in seen:
            raise PipelineConfigError(
                f"{file}: name: pipeline name '{spec.name}' is already used by {seen[spec.name]};"
                " pipeline names must be unique (they prefix every asset key)"
            )
        seen[spec.name] = file
        pipelines.append(build_tabular_pipeline(spec, file))
    return pipelines


def build_fewshot_defs(file: Path = DEFAULT_FEWSHOT_YAML) -> dg.Definitions:
    from ml_assets.fewshot.assets import build_fewshot_defs as build

    return build(load_fewshot_spec(file))


def build_asset_defs(pipelines: list[TabularPipeline], fewshot_file: Path | None = DEFAULT_FEWSHOT_YAML) -> dg.Definitions:
    """Assets, checks and jobs of every pipeline (and of the few-shot store when ``fewshot_file``)."""
    parts = [p.definitions for p in pipelines]
    if fewshot_file is not None:
        parts.append(build_fewshot_defs(fewshot_file))
    return dg.Definitions.merge(*parts)


def resource_settings(
    pipelines: list[TabularPipeline], fewshot_file: Path = DEFAULT_FEWSHOT_YAML
) -> dict[str, Any]:
    """Plain parameters of the code location's resources: folders, the embedder and vector store
    settings of the few-shot YAML, and the alert policy of the first monitored pipeline."""
    from ml_assets.config.paths import REPO_ROOT, data_dir, mlflow_dir
    from ml_assets.fewshot.store import embedder_settings
    from ml_assets.serving.server import online_store_path

    spec = load_fewshot_spec(fewshot_file)
    return {
        "base_dir": str(REPO_ROOT),
        "data_dir": str(data_dir()),
        "mlflow_dir": str(mlflow_dir()),
        "embedder": embedder_settings(spec),
        "qdrant_path": spec.store_path(),
        "qdrant_lock_timeout_seconds": spec.vector_store.lock_timeout_seconds,
        "online_store_path": str(online_store_path()),
        "alerts": next(
            ({"suppression_minutes": p.spec.monitoring.alerts.suppression_minutes,
              "escalate_after": p.spec.monitoring.alerts.escalate_after}
             for p in pipelines if p.spec.monitoring is not None),
            {},
        ),
    }
