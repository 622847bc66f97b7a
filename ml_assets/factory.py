"""Builds the Dagster asset graph of a tabular pipeline from its YAML spec.

For a pipeline named ``p`` with sources ``s1 .. sn`` the graph is::

    p/raw_s1 ..  p/raw_sn   (one asset per source, with blocking validation checks)
           \\      |
            p/features      (the named feature function; history through a partition mapping)

With a ``partitioning`` section the assets are daily-partitioned and backfill as a single run; without
it they are unpartitioned. Nothing here imports pandas or Great Expectations: those load inside the
asset bodies, so the code location stays fast.
"""


import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_assets.feature_functions import PARTITION_COLUMN, get_feature_function
from ml_assets.pipeline_config import PipelineSpec
from ml_assets.validation import CHECK_DESCRIPTIONS, CHECK_GROUPS
from resources.data_sources import DataSourceResource, Window

PREVIEW_ROWS = 10


@dataclass(frozen=True)
class PipelineAssets:
    """Keys and definitions generated for one pipeline."""

    spec: PipelineSpec
    partitions_def: dg.PartitionsDefinition | None
    raw_keys: dict[str, dg.AssetKey]
    features_key: dg.AssetKey
    assets: list[dg.AssetsDefinition]
    ingest_job: Any  # what dg.define_asset_job returns (resolved when Definitions are built)

    @property
    def group_name(self) -> str:
        return self.spec.name


def daily_partitions(spec: PipelineSpec) -> dg.DailyPartitionsDefinition | None:
    """Daily partitions over ``[start, end]`` (end inclusive) in the pipeline's timezone."""
    part = spec.partitioning
    if part is None:
        return None
    end = None if part.end is None else (part.end + dt.timedelta(days=1)).isoformat()
    return dg.DailyPartitionsDefinition(
        start_date=part.start.isoformat(), end_date=end, timezone=part.timezone, fmt="%Y-%m-%d"
    )


def raw_asset_key(spec: PipelineSpec, source: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, f"raw_{source}"])


def features_asset_key(spec: PipelineSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "features"])


def frame_metadata(frame, *, preview_columns: list[str] | None = None) -> dict[str, Any]:
    """Row count, schema, null counts and a preview of a DataFrame, as typed Dagster metadata."""
    nulls = frame.isna().sum()
    columns = [
        dg.TableColumn(name=str(name), type=str(dtype), description=f"{int(nulls[name])} null")
        for name, dtype in frame.dtypes.items()
    ]
    preview = frame if preview_columns is None else frame[[c for c in preview_columns if c in frame]]
    null_rows = [f"| {name} | {int(count)} |" for name, count in nulls.items() if count]
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "null_counts": dg.MetadataValue.md(
            "| column | nulls |\n| --- | --- |\n" + "\n".join(null_rows) if null_rows else "No nulls."
        ),
        "preview": dg.MetadataValue.md(preview.head(PREVIEW_ROWS).to_markdown(index=False))
        if len(frame)
        else dg.MetadataValue.md("(no rows)"),
    }


def range_metadata(frame, partition_keys: list[str] | None, days) -> dict[str, Any]:
    """Metadata for a run's output: per-day row counts in a range run, whole-frame figures otherwise.

    In a run over several days the output metadata is attached to every day's materialization, so
    whole-run figures are named ``run_*`` and each day gets its own ``dagster/row_count`` through
    ``add_asset_metadata(partition_key=...)`` (see ``per_day_metadata``).
    """
    metadata = frame_metadata(frame)
    if partition_keys is None or len(partition_keys) == 1 or days is None:
        return metadata
    row_count = metadata.pop("dagster/row_count")
    return {
        **metadata,
        "run_rows": row_count,
        "run_days": dg.MetadataValue.int(len(partition_keys)),
        "run_days_without_rows": dg.MetadataValue.int(len(set(partition_keys) - set(days.unique()))),
    }


def per_day_metadata(context: dg.AssetExecutionContext, partition_keys: list[str] | None, days, extra=None) -> None:
    """Give each day of a range run its own row count (and any per-day ``extra`` series)."""
    if partition_keys is None or len(partition_keys) == 1 or days is None:
        return
    counts = days.value_counts()
    for day in partition_keys:
        metadata: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(int(counts.get(day, 0)))}
        for name, series in (extra or {}).items():
            if day in series.index and series[day] == series[day]:  # skip NaN
                metadata[name] = dg.MetadataValue.float(float(series[day]))
        context.add_asset_metadata(metadata, partition_key=day)


def _window(context: dg.AssetExecutionContext) -> Window | None:
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    time_window = context.partition_time_window
    return Window(start=time_window.start, end=time_window.end)


def _describe_keys(keys: list[str] | None) -> str:
    if not keys:
        return "the asset"
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]} ({len(keys)} days)"


def _partition_keys(context: dg.AssetExecutionContext) -> list[str] | None:
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    return list(context.partition_keys)


def build_raw_asset(
    spec: PipelineSpec, source: str, partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """Raw data for one source, read for the partition window, with blocking validation checks."""
    source_spec = spec.sources[source]
    key = raw_asset_key(spec, source)
    time_column = spec.time_column_for(source)
    timezone = spec.partitioning.timezone if spec.partitioning else "UTC"
    metadata: dict[str, Any] = {"source_kind": source_spec.kind}
    if partitions_def is not None and time_column:
        metadata |= {"partition_time_column": time_column, "partition_timezone": timezone}
    check_specs = [
        dg.AssetCheckSpec(
            name=group, asset=key, blocking=True, description=CHECK_DESCRIPTIONS[group]
        )
        for group in CHECK_GROUPS
    ]
    description = (
        f"Raw `{source}` rows of the {spec.name} pipeline, as read from the source"
        f" ({source_spec.kind}), one Parquet file per day. "
        + (source_spec.description or "")
        + " Validated by blocking Great Expectations checks built from the pipeline YAML: a failing"
        " check stops downstream assets of the run and lists the failed expectations with example rows."
    )

    @dg.asset(
        key=key,
        group_name=spec.name,
        kinds={"pandas", "parquet", "great_expectations"},
        description=description,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        check_specs=check_specs,
        io_manager_key="parquet_io_manager",
        metadata=metadata,
        output_required=False,
    )
    def _raw(context: dg.AssetExecutionContext, data_source: DataSourceResource):
        from ml_assets.validation import format_failures, validate_frame

        label = data_source.describe(source_spec)
        frame = data_source.read(
            source_spec, name=source, time_column=time_column, timezone=timezone, window=_window(context)
        )
        partition_keys = _partition_keys(context)
        checked = frame
        partition_column = None
        if partition_keys is not None and time_column and time_column in frame.columns:
            from resources.data_sources import local_days

            partition_column = PARTITION_COLUMN
            checked = frame.assign(**{PARTITION_COLUMN: local_days(frame[time_column], timezone)})
        outcomes = validate_frame(
            checked,
            source_spec.validation,
            source_spec.entity_key,
            label,
            partition_column=partition_column,
            expected_partitions=partition_keys,
        )
        failures = [o for o in outcomes.values() if not o.passed]
        blocking = [o.name for o in failures if o.severity == "ERROR"]
        if failures:
            context.log.warning(format_failures(outcomes, label))
        context.log.info(f"read {len(frame)} rows of '{source}' from {label}")
        if blocking:
            # Keep what is stored: a run whose data fails a blocking check writes no partition of
            # its range, and Dagster stops the downstream assets after the checks are recorded.
            context.log.error(
                f"blocking check(s) {', '.join(blocking)} failed for {label}: nothing stored for"
                f" {_describe_keys(partition_keys)}; downstream assets will not run"
            )
        else:
            days = checked[PARTITION_COLUMN] if partition_column else None
            per_day_metadata(context, partition_keys, days)
            yield dg.Output(
                frame,
                metadata={
                    **range_metadata(frame, partition_keys, days),
                    "source": dg.MetadataValue.text(label),
                },
            )
        for group in CHECK_GROUPS:
            outcome = outcomes[group]
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=group,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.WARN
                if outcome.severity == "WARN"
                else dg.AssetCheckSeverity.ERROR,
                metadata=outcome.to_check_metadata(),
                description=outcome.describe(CHECK_DESCRIPTIONS[group]),
            )

    return _raw


def build_features_asset(
    spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """Model features: the pipeline's named feature function applied to the validated raw data."""
    feature_fn_name = spec.features.function
    get_feature_function(feature_fn_name)  # fail at load time on an unknown name
    primary = spec.primary_source
    ins: dict[str, dg.AssetIn] = {}
    for source in spec.sources:
        mapping = None
        earlier = (
            spec.features.history_days if source == primary else spec.features.context_days.get(source, 0)
        )
        if partitions_def is not None and earlier:
            mapping = dg.TimeWindowPartitionMapping(
                start_offset=-earlier, allow_nonexistent_upstream_partitions=True
            )
        ins[source] = dg.AssetIn(key=raw_asset_key(spec, source), partition_mapping=mapping)
    history = (
        f" For each day, the `{primary}` input also holds the {spec.features.history_days} earlier"
        " days, so history features use only days before the one being scored."
        if spec.features.history_days
        else ""
    )
    description = (
        f"Features of the {spec.name} pipeline, one row per `{primary}` row, from the"
        f" `{feature_fn_name}` feature function: {len(spec.features.numeric)} numeric and"
        f" {len(spec.features.categorical)} categorical features plus the target"
        f" `{spec.target.name}` ({spec.target.column} {spec.target.rule or ''})."
        f"{history} Leakage columns never used: {', '.join(spec.features.exclude) or 'none'}."
    )

    @dg.asset(
        key=features_asset_key(spec),
        group_name=spec.name,
        kinds={"pandas", "parquet"},
        description=description,
        ins=ins,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        io_manager_key="parquet_io_manager",
        metadata={"partition_column": PARTITION_COLUMN} if partitions_def else {},
    )
    def _features(context: dg.AssetExecutionContext, **sources):
        days = _partition_keys(context)
        feature_fn = get_feature_function(feature_fn_name)
        for name, frame in list(sources.items()):
            rules = spec.sources[name].validation
            if "ranges" in rules.warn_only and rules.ranges:
                sources[name], masked = mask_out_of_range(frame, rules)
                for column, count in masked.items():
                    context.log.warning(
                        f"{name}.{column}: {count} value(s) outside the YAML range treated as missing"
                    )
        frame = feature_fn(sources, days, spec, **spec.features.params)
        label = frame[spec.target.name]
        days_column = frame[PARTITION_COLUMN] if days else None
        per_day = {}
        if spec.target.task == "classification" and days:
            per_day["positive_rate"] = label.groupby(days_column).mean()
        per_day_metadata(context, days, days_column, per_day)
        metadata = {
            **frame_metadata(
                frame, preview_columns=[PARTITION_COLUMN, *spec.features.categorical, spec.target.name]
            ),
            "features": dg.MetadataValue.int(len(spec.features.numeric) + len(spec.features.categorical)),
            "label_known_rows": dg.MetadataValue.int(int(label.notna().sum())),
        }
        if days and len(days) > 1:
            metadata["run_rows"] = metadata.pop("dagster/row_count")
            metadata["run_days"] = dg.MetadataValue.int(len(days))
            metadata["run_label_known_rows"] = metadata.pop("label_known_rows")
        if spec.target.task == "classification" and label.notna().any():
            key = "run_positive_rate" if days and len(days) > 1 else "positive_rate"
            metadata[key] = dg.MetadataValue.float(float(label.mean()))
        context.log.info(f"built {len(frame)} feature rows for {len(days) if days else 'all'} day(s)")
        return dg.Output(frame, metadata=metadata)

    return _features


def mask_out_of_range(frame, rules) -> tuple[Any, dict[str, int]]:
    """Copy of ``frame`` with values outside a range rule set to missing, and counts per column.

    Used for sources whose ``ranges`` rules only warn: an implausible sensor reading (the packaged
    weather has a 1048 mph wind speed) must not feed the model, but it does not stop the pipeline.
    """
    import pandas as pd

    result = frame.copy()
    masked: dict[str, int] = {}
    for column, rule in rules.ranges.items():
        if column not in result or not pd.api.types.is_numeric_dtype(result[column]):
            continue
        values = result[column]
        bad = pd.Series(False, index=values.index)
        if rule.min is not None:
            bad |= values <= rule.min if rule.strict_min else values < rule.min
        if rule.max is not None:
            bad |= values >= rule.max if rule.strict_max else values > rule.max
        if bad.any():
            result[column] = values.where(~bad)
            masked[column] = int(bad.sum())
    return result, masked


def build_pipeline_assets(spec: PipelineSpec) -> PipelineAssets:
    """All assets and the ingest job of one tabular pipeline."""
    partitions_def = daily_partitions(spec)
    raw_assets = [build_raw_asset(spec, source, partitions_def) for source in spec.sources]
    features = build_features_asset(spec, partitions_def)
    ingest_job = dg.define_asset_job(
        name=f"{spec.name}_ingest_job",
        selection=dg.AssetSelection.groups(spec.name),
        partitions_def=partitions_def,
        description=(
            f"Ingest, validate and build features for the {spec.name} pipeline. Launch it for a"
            " range of days to backfill them in one run."
        ),
    )
    return PipelineAssets(
        spec=spec,
        partitions_def=partitions_def,
        raw_keys={source: raw_asset_key(spec, source) for source in spec.sources},
        features_key=features_asset_key(spec),
        assets=[*raw_assets, features],
        ingest_job=ingest_job,
    )


def build_pipeline_defs(spec: PipelineSpec) -> dg.Definitions:
    built = build_pipeline_assets(spec)
    return dg.Definitions(assets=built.assets, jobs=[built.ingest_job])
