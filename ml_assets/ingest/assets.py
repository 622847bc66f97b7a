"""Dagster definitions of the ingest stage: one raw asset per pipeline source, read for the partition
window, with one blocking asset check per group of validation rules (``CHECK_GROUPS``).

With a ``partitioning`` section the raw assets are daily-partitioned and backfill as a single run;
without it they are unpartitioned. pandas and Great Expectations load inside the asset bodies.
"""

from typing import Any

import dagster as dg

from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.execution import backfill_policy
from ml_assets.ingest.validation import CHECK_DESCRIPTIONS, CHECK_GROUPS, CheckOutcome, outcomes_by_day
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import (
    add_run_summary,
    code_version,
    describe_partitions,
    markdown_table,
    frame_metadata,
    partition_keys,
    partition_check_results,
    partition_metadata,
    partition_window,
)
from resources.data_sources import DataSourceResource, local_days as local_days_of


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
INGEST_CODE_VERSION = "1"


def daily_partitions(spec: PipelineSpec) -> dg.DailyPartitionsDefinition | None:
    """Daily partitions over ``[start, end]`` (end inclusive) in the pipeline's timezone."""
    import datetime as dt

    part = spec.partitioning
    if part is None:
        return None
    end = None if part.end is None else (part.end + dt.timedelta(days=1)).isoformat()
    return dg.DailyPartitionsDefinition(
        start_date=part.start.isoformat(), end_date=end, timezone=part.timezone, fmt="%Y-%m-%d"
    )


def check_metadata(outcome: CheckOutcome) -> dict[str, Any]:
    """A validation check's metadata: counts and, only when rules failed, the table of failed rules
    and example rows (a passing check shows no empty tables)."""
    metadata: dict[str, Any] = {
        "expectations_evaluated": dg.MetadataValue.int(outcome.expectations),
        "failed": dg.MetadataValue.int(len(outcome.failures)),
        "unexpected_rows": dg.MetadataValue.int(outcome.unexpected_rows),
    }
    if outcome.failures:
        metadata["failures"] = dg.MetadataValue.md(markdown_table(outcome.failure_rows()))
        metadata["examples"] = dg.MetadataValue.json(outcome.examples())
    return metadata


def check_result(key: dg.AssetKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    """The asset check of one validation group (``outcome``) on ``key``."""
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if outcome.severity == "WARN" else dg.AssetCheckSeverity.ERROR,
        metadata=check_metadata(outcome),
        description=outcome.describe(CHECK_DESCRIPTIONS[outcome.name]),
    )


def required_columns(spec: PipelineSpec, source: str, pipeline_file: Any = None) -> dict[str, str]:
    """Columns of ``source`` the pipeline needs beyond its validation rules, with the YAML key that
    needs each: the target column, the columns the declarative features read (timestamp parts,
    history keys and columns, as-of join keys and readings) and (``passthrough``) the features of
    the primary source that are not declared."""
    where = f" in {pipeline_file}" if pipeline_file is not None else ""
    features = spec.features
    required: dict[str, str] = {}
    for join_name, join in features.asof.items():
        if join.source != source:
            continue
        at = f"features.asof.{join_name}"
        for column in join.by.values():
            required.setdefault(column, f"{at}.by{where}")
        for name, column in join.value_columns().items():
            required.setdefault(column, f"{at}.columns ({name}){where}")
        for name, window in join.windows.items():
            required.setdefault(window.column, f"{at}.windows.{name}.column{where}")
    if source != spec.primary_source:
        return required
    required.setdefault(spec.target.column, f"target.column{where}")
    parts = features.timestamp_parts
    for name, part in parts.items():
        required.setdefault(part.column, f"features.timestamp_parts.{name}.column{where}")
    for name, history in features.history.items():
        for column in history.keys:
            if column not in parts:
                required.setdefault(column, f"features.history.{name}.keys{where}")
        if history.column is not None:
            required.setdefault(history.column, f"features.history.{name}.column{where}")
        if history.where is not None:
            required.setdefault(history.where.column, f"features.history.{name}.where.column{where}")
    for join_name, join in features.asof.items():
        for column in join.by:
            required.setdefault(column, f"features.asof.{join_name}.by{where}")
    if features.function == "passthrough":
        declared = features.declared()
        for kind in ("numeric", "categorical"):
            for i, column in enumerate(getattr(features, kind)):
                if column not in declared:
                    required.setdefault(column, f"features.{kind}[{i}]{where}")
    return required


def build_raw_asset(
    spec: PipelineSpec, source: str, partitions_def: dg.PartitionsDefinition | None, pipeline_file: Any = None,
) -> dg.AssetsDefinition:
    """Raw data for one source, read for the partition window, with blocking validation checks."""
    source_spec = spec.sources[source]
    required = required_columns(spec, source, pipeline_file)
    key = pipeline_keys(spec).raw(source)
    time_column = spec.time_column_for(source)
    timezone = spec.partitioning.timezone if spec.partitioning else "UTC"
    metadata: dict[str, Any] = {"source_kind": source_spec.kind}
    if partitions_def is not None and time_column:
        metadata |= {"partition_time_column": time_column, "partition_timezone": timezone}
    # partitioned like the asset: each day gets its own verdict (see partition_check_results)
    check_specs = [
        dg.AssetCheckSpec(name=group, asset=key, blocking=True, description=CHECK_DESCRIPTIONS[group],
                          partitions_def=partitions_def)
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
        group_name=pipeline_keys(spec).ingest_group,
        code_version=code_version(INGEST_CODE_VERSION, spec.sources[source], spec.partitioning),
        kinds={"pandas", "parquet", "great_expectations"},
        description=description,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec) if partitions_def else None,
        check_specs=check_specs,
        io_manager_key="parquet_io_manager",
        metadata=metadata,
        output_required=False,
    )
    def _raw(context: dg.AssetExecutionContext, data_source: DataSourceResource):
        from ml_assets.ingest.sources import describe_source, read_source
        from ml_assets.ingest.validation import format_failures, validate_frame
        from resources.data_sources import local_days

        label = describe_source(data_source, source_spec)
        keys = partition_keys(context)
        if keys is not None and len(keys) > 1 and time_column:  # a range: a chunk of days at a time
            yield from raw_in_chunks(context, data_source, spec, source, key, label, required)
            return
        frame = read_source(
            data_source, source_spec, name=source, time_column=time_column, timezone=timezone,
            window=partition_window(context),
        )
        checked = frame
        partition_column = None
        if keys is not None and time_column and time_column in frame.columns:
            partition_column = PARTITION_COLUMN
            checked = frame.assign(**{PARTITION_COLUMN: local_days(frame[time_column], timezone)})

        def validate(rows, days):
            return validate_frame(
                rows, source_spec.validation, source_spec.entity_key, label,
                partition_column=partition_column, expected_partitions=days, required=required,
            )

        outcomes = validate(checked, keys)
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
                f" {describe_partitions(keys)}; downstream assets will not run"
            )
        else:
            source_label = {"source": dg.MetadataValue.text(label)}
            days = checked[PARTITION_COLUMN] if partition_column else None
            metadata = partition_metadata(
                context, keys, days,
                lambda rows: {**frame_metadata(frame.iloc[rows]), **source_label},
                summary=lambda: {"days": len(keys), "rows": len(frame),
                                 "days without rows": len(set(keys) - set(days.unique()))},
            )
            yield dg.Output(frame, metadata=metadata)
        if keys is None or len(keys) == 1 or partition_column is None:
            # the run's outcome is each partition's (rows without a time column cannot be split)
            by_day = {day: outcomes for day in keys or [None]}
        else:
            by_day = outcomes_by_day(outcomes, keys, lambda day: validate(
                checked[checked[PARTITION_COLUMN] == day].reset_index(drop=True), [day]))
        yield from partition_check_results(context, {
            day: [check_result(key, day_outcomes[group]) for group in CHECK_GROUPS]
            for day, day_outcomes in by_day.items()
        })

    return _raw


def raw_in_chunks(context: dg.AssetExecutionContext, data_source: DataSourceResource, spec: PipelineSpec,
                  source: str, key: dg.AssetKey, label: str, required: dict[str, str]):
    """The raw asset's run over a range of days, ``partitioning.chunk_days`` days at a time: the
    source is read once into a spill folder (``ml_assets.ingest.chunks``), each chunk is validated
    and described, and only if no day failed a blocking check is the output an iterator of the
    chunks, which the IO manager stages day by day and commits after the last: nothing is stored if
    any day fails. Yields the output (or not) and each day's check results."""
    import tempfile

    from ml_assets.ingest.chunks import SpilledRange, chunks_of
    from ml_assets.ingest.sources import read_source
    from ml_assets.ingest.validation import format_failures, validate_frame

    source_spec, time_column = spec.sources[source], spec.time_column_for(source)
    timezone = spec.partitioning.timezone if spec.partitioning else "UTC"
    keys = partition_keys(context)
    chunks = chunks_of(keys, spec.partitioning.chunk_days if spec.partitioning else len(keys))
    source_label = {"source": dg.MetadataValue.text(label)}
    by_day, per_day, seen = {}, {}, set()
    with tempfile.TemporaryDirectory(prefix=f"raw-{source}-") as folder:
        spilled = SpilledRange(folder, chunks, time_column, timezone)
        read_source(data_source, source_spec, name=source, time_column=time_column, timezone=timezone,
                    window=partition_window(context), sink=spilled.add)
        context.log.info(f"read {spilled.rows} rows of '{source}' from {label} in {len(chunks)} chunk(s) of days")
        for number, chunk in enumerate(chunks):
            frame = spilled.read(number)
            checked = frame.assign(**{PARTITION_COLUMN: local_days_of(frame[time_column], timezone)})

            def validate(rows, days):
                return validate_frame(rows, source_spec.validation, source_spec.entity_key, label,
                                      partition_column=PARTITION_COLUMN, expected_partitions=days, required=required)

            outcomes = validate(checked, chunk)
            if any(not o.passed for o in outcomes.values()):
                context.log.warning(format_failures(outcomes, label))
            by_day |= outcomes_by_day(outcomes, chunk, lambda day: validate(
                checked[checked[PARTITION_COLUMN] == day].reset_index(drop=True), [day]))
            for day, rows in checked.groupby(PARTITION_COLUMN, sort=False).indices.items():
                per_day[day] = {**frame_metadata(frame.iloc[rows]), **source_label}
            seen |= set(per_day) & set(chunk)
            del frame, checked
        blocking = sorted({o.name for outcomes in by_day.values() for o in outcomes.values()
                           if not o.passed and o.severity == "ERROR"})
        if blocking:
            # Keep what is stored: a run whose data fails a blocking check writes no partition of
            # its range, and Dagster stops the downstream assets after the checks are recorded.
            context.log.error(
                f"blocking check(s) {', '.join(blocking)} failed for {label}: nothing stored for"
                f" {describe_partitions(keys)}; downstream assets will not run"
            )
        else:
            empty = frame_metadata(spilled.empty())
            for day in keys:
                context.add_asset_metadata(per_day.get(day) or {**empty, **source_label}, partition_key=day)
            add_run_summary(context, keys, {"days": len(keys), "rows": spilled.rows,
                                            "days without rows": len(set(keys) - seen)})
            yield dg.Output(spilled.frames())  # consumed (and the folder still there) before resuming
    yield from partition_check_results(context, {
        day: [check_result(key, day_outcomes[group]) for group in CHECK_GROUPS]
        for day, day_outcomes in by_day.items()
    })


def build_ingest_defs(
    spec: PipelineSpec, partitions_def: dg.PartitionsDefinition | None, pipeline_file: Any = None
) -> dg.Definitions:
    """The raw assets of every source of ``spec`` and its ingest job (raw data and features)."""
    keys = pipeline_keys(spec)
    ingest_job = dg.define_asset_job(
        name=keys.ingest_job,
        selection=dg.AssetSelection.groups(keys.ingest_group),
        description=(
            f"Ingest, validate and build features for the {spec.name} pipeline. Launch it for a"
            " range of days to backfill them in one run."
        ),
    )
    return dg.Definitions(
        assets=[build_raw_asset(spec, source, partitions_def, pipeline_file) for source in spec.sources],
        jobs=[ingest_job]
    )
