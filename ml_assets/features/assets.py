"""Dagster definitions of the features stage: the pipeline's named feature function applied to the
validated raw data, with the history days it needs arriving through partition mappings."""

import dagster as dg

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.execution import backfill_policy
from ml_assets.features.functions import get_feature_function
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import (
    add_partition_metadata,
    add_run_summary,
    code_version,
    float_value,
    frame_metadata,
    partition_keys,
    partition_metadata,
    rounded,
)
from resources.partition_reader import LAZY_LOAD


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
FEATURES_CODE_VERSION = "1"


def earlier_days(spec: PipelineSpec) -> dict[str, int]:
    """Days before the target days each source's input reaches back: the primary source's
    ``history_days``, the others' ``context_days``."""
    return {source: spec.features.history_days if source == spec.primary_source
            else spec.features.context_days.get(source, 0) for source in spec.sources}


def source_inputs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None) -> dict[str, dg.AssetIn]:
    """One input per source; the primary source reaches back ``history_days`` partitions and the
    others their ``context_days``, through ``TimeWindowPartitionMapping``s (real lineage). Each
    arrives as a lazy view of its stored partitions, read a chunk of days at a time."""
    keys = pipeline_keys(spec)
    ins: dict[str, dg.AssetIn] = {}
    for source, earlier in earlier_days(spec).items():
        mapping = None
        if partitions_def is not None and earlier:
            mapping = dg.TimeWindowPartitionMapping(start_offset=-earlier, allow_nonexistent_upstream_partitions=True)
        ins[source] = dg.AssetIn(key=keys.raw(source), partition_mapping=mapping, metadata=LAZY_LOAD)
    return ins


def build_features_asset(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    """Model features: the pipeline's named feature function applied to the validated raw data."""
    feature_fn_name = spec.features.function
    get_feature_function(feature_fn_name)  # fail at load time on an unknown name
    primary = spec.primary_source
    history = (
        f" For each day, the `{primary}` input also holds the {spec.features.history_days} earlier"
        " days, so history features use only days before the one being scored."
        if spec.features.history_days
        else ""
    )
    listed = set(spec.features.numeric) | set(spec.features.categorical)
    declared = len(spec.features.declared() & listed)
    description = (
        f"Features of the {spec.name} pipeline, one row per `{primary}` row, from the"
        f" `{feature_fn_name}` feature function: {len(spec.features.numeric)} numeric and"
        f" {len(spec.features.categorical)} categorical features"
        f"{f' ({declared} declared in the YAML: timestamp parts, per-key history, as-of joins)' if declared else ''}"
        " plus the target"
        f" `{spec.target.name}` ({spec.target.column} {spec.target.rule or ''})."
        f"{history} Leakage columns never used: {', '.join(spec.features.exclude) or 'none'}."
    )

    @dg.asset(
        key=pipeline_keys(spec).features,
        group_name=pipeline_keys(spec).ingest_group,
        code_version=code_version(FEATURES_CODE_VERSION, spec.sources, spec.partitioning, spec.target, spec.features),
        kinds={"pandas", "parquet"},
        description=description,
        ins=source_inputs(spec, partitions_def),
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec) if partitions_def else None,
        io_manager_key="parquet_io_manager",
        metadata={"partition_column": PARTITION_COLUMN} if partitions_def else {},
    )
    def _features(context: dg.AssetExecutionContext, **stored):
        from ml_assets.features.chunks import feature_chunks

        days = partition_keys(context)
        chunk_days = spec.partitioning.chunk_days if spec.partitioning else 0
        build = feature_builder(context, spec)
        if days is None or len(days) == 1:
            frame = build({name: source.read_all() for name, source in stored.items()}, days)
            metadata = partition_metadata(context, days, frame[PARTITION_COLUMN] if days else None,
                                          feature_describer(spec, frame))
            context.log.info(f"built {len(frame)} feature rows for {len(days) if days else 'all'} day(s)")
            return dg.Output(frame, metadata=metadata)
        totals = {"rows": 0, "label known rows": 0, "positives": 0.0, "chunks": 0}

        def on_chunk(chunk: list[str], frame) -> None:
            add_partition_metadata(context, chunk, frame[PARTITION_COLUMN], feature_describer(spec, frame))
            label = frame[spec.target.name]
            totals["rows"] += len(frame)
            totals["label known rows"] += int(label.notna().sum())
            totals["positives"] += float(label.sum()) if spec.target.task == "classification" else 0.0
            totals["chunks"] += 1
            context.log.info(f"built {len(frame)} feature rows for {chunk[0]} .. {chunk[-1]}")
            if chunk[-1] == days[-1]:  # the last chunk: the run's figures, once
                known = totals["label known rows"]
                add_run_summary(context, days, {
                    "days": len(days), "rows": totals["rows"], "label known rows": known,
                    **({"positive rate": rounded(totals["positives"] / known if known else float("nan"))}
                       if spec.target.task == "classification" else {}),
                    "chunks": totals["chunks"]})

        # the IO manager stages each chunk's days and commits the range after the last chunk
        return dg.Output(feature_chunks(stored, days, chunk_days, earlier_days(spec), build, on_chunk))

    return _features


def feature_builder(context: dg.AssetExecutionContext, spec: PipelineSpec):
    """``build(sources, days)``: the pipeline's feature function on source frames, after masking
    the out-of-range values of sources whose ``ranges`` rules only warn (logged)."""
    from ml_assets.features.functions import mask_out_of_range

    feature_fn = get_feature_function(spec.features.function)

    def build(sources: dict, days: list[str] | None):
        for name, frame in list(sources.items()):
            rules = spec.sources[name].validation
            if "ranges" in rules.warn_only and rules.ranges:
                sources[name], masked = mask_out_of_range(frame, rules)
                for column, count in masked.items():
                    context.log.warning(f"{name}.{column}: {count} value(s) outside the YAML range treated as missing")
        return feature_fn(sources, days, spec, **spec.features.params)

    return build


def feature_describer(spec: PipelineSpec, frame):
    """``describe(rows)``: the metadata of the feature rows of ``frame`` at positions ``rows``."""
    label = frame[spec.target.name]
    preview = [PARTITION_COLUMN, *spec.features.categorical, spec.target.name]
    feature_count = len(spec.features.numeric) + len(spec.features.categorical)

    def describe(rows) -> dict:
        part, known = frame.iloc[rows], label.iloc[rows]
        metadata = {
            **frame_metadata(part, preview_columns=preview, descriptions=spec.features.descriptions),
            "features": dg.MetadataValue.int(feature_count),
            "label_known_rows": dg.MetadataValue.int(int(known.notna().sum())),
        }
        if spec.target.task == "classification" and known.notna().any():
            metadata["positive_rate"] = float_value(known.mean())
        return metadata

    return describe
