"""Dagster definitions of the scoring stage: daily predictions from the version the ``champion``
alias points to, loaded from the registry, and the scoring job."""

import dagster as dg
from pydantic import Field

from ml_assets.config.tabular import PARTITION_COLUMN, Partitioning, PipelineSpec
from ml_assets.execution import backfill_policy, launch_tags
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import (
    code_version,
    MLFLOW_RETRY,
    add_run_summary,
    data_failure,
    float_value,
    frame_metadata,
    markdown_table,
    null_count_table,
    partition_keys,
    retry_only_unreachable,
    rounded,
)
from ml_assets.training.registry import CHAMPION
from resources.partition_reader import LAZY_LOAD
from resources.tracking import MlflowTracking


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
SCORING_CODE_VERSION = "1"


class PredictionsConfig(dg.Config):
    """Run configuration of the predictions: how many days are read and scored together."""

    chunk_days: int | None = Field(
        default=None, ge=1,
        description=("Days of features read and scored together in a range run; by default the"
                     " pipeline YAML's partitioning.chunk_days (a month): memory follows the chunk,"
                     " not the range; the stored partitions and their metadata are the same for any"
                     " chunk size."),
    )


def build_predictions_asset(
    spec: PipelineSpec, partitions_def: dg.PartitionsDefinition, retry_policy: dg.RetryPolicy = MLFLOW_RETRY
) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)
    key_columns = spec.sources[spec.primary_source].entity_key
    target = spec.target.name

    @dg.asset(
        key=keys.predictions,
        group_name=keys.scoring_group,
        code_version=code_version(SCORING_CODE_VERSION, spec.target, spec.features, spec.model),
        kinds={"pandas", "parquet", "mlflow"},
        # read and scored a chunk of days at a time (partitioning.chunk_days), not the range at once
        ins={"features": dg.AssetIn(key=keys.features, metadata=LAZY_LOAD)},
        deps=[keys.evaluation],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec),
        io_manager_key="parquet_io_manager",
        retry_policy=retry_policy,
        metadata={"partition_column": PARTITION_COLUMN},
        description=(
            f"Daily predictions of `{target}` from the version of `{spec.registered_model_name}` that"
            f" holds the `{CHAMPION}` alias: `{target}_score` and `{target}_predicted` (threshold"
            " chosen on validation) per row, with the version used. Unseen categories and missing"
            " values are scored as missing."
        ),
    )
    @retry_only_unreachable
    def _predictions(context: dg.AssetExecutionContext, config: PredictionsConfig, tracking: MlflowTracking,
                     features):
        from ml_assets.scoring.chunks import score_in_chunks
        from ml_assets.training.registry import ModelLoadError, NoChampionError, champion_model

        tracking.check_reachable()
        try:
            version, model = champion_model(tracking, spec)
        except (NoChampionError, ModelLoadError) as exc:
            raise data_failure(str(exc)) from None
        days = partition_keys(context)
        prep = model.preprocessing
        classification = spec.target.task == "classification"

        def describe(part, inputs) -> dict:
            numeric = [c for c in prep.numeric if c in inputs.columns]
            missing = inputs[numeric].isna()
            unseen = {column: count for column, count in prep.unseen_counts(inputs).items() if count}
            metadata = {
                **frame_metadata(part),
                "model_version": dg.MetadataValue.text(version),
                "registered_model": dg.MetadataValue.text(spec.registered_model_name),
                "rows_with_missing_numeric": dg.MetadataValue.int(int(missing.any(axis=1).sum())),
                "missing_numeric_inputs": dg.MetadataValue.md(null_count_table(missing.sum())),
                "unseen_categories": dg.MetadataValue.md(
                    markdown_table([{"column": c, "unseen values": n} for c, n in unseen.items()])
                    if unseen else "No unseen categories."
                ),
            }
            if len(part):
                metadata["mean_score"] = float_value(part[f"{target}_score"].mean())
                if classification:
                    metadata["positive_share"] = float_value(part[f"{target}_predicted"].mean())
            return metadata

        chunk_days = config.chunk_days or (spec.partitioning or Partitioning.model_construct()).chunk_days
        out, per_day, chunks = score_in_chunks(features, model, version, key_columns, target, describe,
                                               chunk_days=chunk_days)
        metadata: dict = {}
        if days is None or len(days) == 1:
            metadata = next(iter(per_day.values()))
        else:
            for day in days:
                context.add_asset_metadata(per_day[day], partition_key=day)
            add_run_summary(context, days, {
                "days": len(days), "rows": len(out), "model version": version, "chunks scored": chunks,
                **({"positive share": rounded(out[f"{target}_predicted"].mean())}
                   if classification and len(out) else {})})
        context.log.info(f"scored {len(out)} rows with {spec.registered_model_name} version {version}"
                         f" in {chunks} chunk(s) of up to {chunk_days} day(s)")
        return dg.Output(out, metadata=metadata)

    return _predictions


def build_scoring_defs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.Definitions:
    keys = pipeline_keys(spec)
    scoring_job = dg.define_asset_job(
        name=keys.scoring_job,
        selection=dg.AssetSelection.groups(keys.scoring_group),
        tags=launch_tags(),
        description=f"Score a day (or a range of days) with the champion version of {spec.registered_model_name}.",
    )
    return dg.Definitions(assets=[build_predictions_asset(spec, partitions_def)], jobs=[scoring_job])
