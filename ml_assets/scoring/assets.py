"""Dagster definitions of the scoring stage: daily predictions from the version the ``champion``
alias points to, loaded from the registry, and the scoring job."""

import dagster as dg

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import MLFLOW_RETRY, retry_only_unreachable, data_failure, partition_keys, per_day_metadata
from ml_assets.training.registry import CHAMPION
from resources.tracking import MlflowTracking


def build_predictions_asset(
    spec: PipelineSpec, partitions_def: dg.PartitionsDefinition, retry_policy: dg.RetryPolicy = MLFLOW_RETRY
) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)
    key_columns = spec.sources[spec.primary_source].entity_key
    target = spec.target.name

    @dg.asset(
        key=keys.predictions,
        group_name=keys.scoring_group,
        kinds={"pandas", "parquet", "mlflow"},
        ins={"features": dg.AssetIn(key=keys.features)},
        deps=[keys.evaluation],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
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
    def _predictions(context: dg.AssetExecutionContext, tracking: MlflowTracking, features):
        import pandas as pd

        from ml_assets.training.registry import ModelLoadError, NoChampionError, champion_model

        tracking.check_reachable()
        try:
            version, model = champion_model(tracking, spec)
        except (NoChampionError, ModelLoadError) as exc:
            raise data_failure(str(exc)) from None
        days = partition_keys(context)
        scored = model.score(features) if len(features) else pd.DataFrame({"score": [], "label": []})
        out = features[[*key_columns, PARTITION_COLUMN]].reset_index(drop=True)
        out[f"{target}_score"] = scored["score"].to_numpy()
        out[f"{target}_predicted"] = scored["label"].to_numpy()
        out["model_version"] = version
        prep = model.preprocessing
        unseen = prep.unseen_counts(features)
        missing = int(features[list(prep.numeric)].isna().any(axis=1).sum()) if len(features) else 0
        per_day_metadata(context, days, out[PARTITION_COLUMN], {
            "mean_score": out.groupby(PARTITION_COLUMN)[f"{target}_score"].mean(),
        })
        if days and len(days) > 1:
            for day in days:
                context.add_asset_metadata({"model_version": dg.MetadataValue.text(version)}, partition_key=day)
        context.log.info(f"scored {len(out)} rows with {spec.registered_model_name} version {version}")
        metadata = {
            "model_version": dg.MetadataValue.text(version),
            "registered_model": dg.MetadataValue.text(spec.registered_model_name),
            "rows_with_missing_numeric": dg.MetadataValue.int(missing),
            "unseen_categories": dg.MetadataValue.json(unseen),
        }
        if days and len(days) > 1:
            metadata["run_rows"] = dg.MetadataValue.int(len(out))
        else:
            metadata["dagster/row_count"] = dg.MetadataValue.int(len(out))
            if len(out):
                metadata["mean_score"] = dg.MetadataValue.float(float(out[f"{target}_score"].mean()))
        return dg.Output(out, metadata=metadata)

    return _predictions


def build_scoring_defs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.Definitions:
    keys = pipeline_keys(spec)
    scoring_job = dg.define_asset_job(
        name=keys.scoring_job,
        selection=dg.AssetSelection.groups(keys.scoring_group),
        description=f"Score a day (or a range of days) with the champion version of {spec.registered_model_name}.",
    )
    return dg.Definitions(assets=[build_predictions_asset(spec, partitions_def)], jobs=[scoring_job])
