"""Dagster helpers every stage's assets share: partition keys and windows of a step, typed metadata
of a frame (row count, schema, null counts, preview), per-partition metadata in range runs, markdown
tables and inline plots, and the failure that says "this is a data problem: do not retry".
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any

import dagster as dg

from resources.data_sources import Window

PREVIEW_ROWS = 10


def data_failure(message: str, **metadata: Any) -> dg.Failure:
    """A data problem: retrying cannot help, so Dagster's RetryPolicy is skipped."""
    return dg.Failure(description=message, metadata=metadata, allow_retries=False)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None, floatfmt: str = ".4g") -> str:
    """A markdown table of ``rows`` (dicts) through ``DataFrame.to_markdown``: floats with
    ``floatfmt``, missing values as n/a, ``|`` and line breaks in text escaped."""
    import pandas as pd

    if not rows:
        return "(no rows)"
    frame = pd.DataFrame(rows, columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: v.replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v
            )
    return frame.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a")


def png_markdown(paths: dict[str, Path]) -> str:
    """Plots inline in the Dagster UI: markdown images with base64 data URIs."""
    import base64

    parts = []
    for title, path in paths.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"**{title}**\n\n![{title}](data:image/png;base64,{data})")
    return "\n\n".join(parts)


def rounded(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits, for people (0.12815338 -> 0.1282)."""
    import math

    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def float_value(value: float) -> dg.MetadataValue:
    """A float metadata value rounded to 4 significant digits."""
    return dg.MetadataValue.float(rounded(value))


def null_count_table(nulls) -> str:
    """A markdown table of the columns with missing values (``nulls``: counts by column name)."""
    rows = [{"column": str(name), "nulls": int(count)} for name, count in nulls.items() if count]
    return markdown_table(rows) if rows else "No nulls."


def frame_metadata(
    frame, *, preview_columns: list[str] | None = None, descriptions: dict[str, str] | None = None
) -> dict[str, Any]:
    """Row count, schema (with each column's description, when known, and its null count), null
    counts and a preview of a DataFrame, as typed Dagster metadata."""
    nulls = frame.isna().sum()
    descriptions = descriptions or {}

    def describe(name: Any) -> str:
        text = descriptions.get(str(name), "")
        count = int(nulls[name])
        return f"{text} ({count} null)" if text and count else text or (f"{count} null" if count else "")

    columns = [
        dg.TableColumn(name=str(name), type=str(dtype), description=describe(name) or None)
        for name, dtype in frame.dtypes.items()
    ]
    preview = frame if preview_columns is None else frame[[c for c in preview_columns if c in frame]]
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "null_counts": dg.MetadataValue.md(null_count_table(nulls)),
        "preview": dg.MetadataValue.md(preview.head(PREVIEW_ROWS).to_markdown(index=False, floatfmt=".4g"))
        if len(frame)
        else dg.MetadataValue.md("(no rows)"),
    }


#: The one run-wide summary of a range run, on its last partition only.
RUN_SUMMARY = "run_summary"


def partition_metadata(
    context: dg.AssetExecutionContext,
    keys: list[str] | None,
    days,
    describe: Callable[[Any], dict[str, Any]],
    summary: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each partition's own metadata, equal to what a run of that one partition records.

    ``describe(rows)`` returns the metadata of the output rows at positions ``rows`` (for
    ``frame.iloc[rows]``; ``days`` gives each row's partition). An unpartitioned or one-partition run
    gets ``describe(slice(None))`` (every row) back, to put on its output.
    A run over several partitions attaches ``describe`` of each partition's rows to that partition
    (``context.add_asset_metadata(partition_key=...)``), ``summary()`` once, as ``run_summary`` on the
    last partition, and returns ``{}``: output metadata would be repeated on every partition.
    """
    if keys is None or len(keys) == 1 or days is None:
        return describe(slice(None))
    add_partition_metadata(context, keys, days, describe)
    if summary is not None:
        add_run_summary(context, keys, summary())
    return {}


def add_partition_metadata(context: dg.AssetExecutionContext, keys: list[str], days,
                           describe: Callable[[Any], dict[str, Any]]) -> None:
    """``describe(rows)`` of each of ``keys`` (``rows``: the positions whose ``days`` value is that
    key) attached to that partition: the per-day part of ``partition_metadata``, also called once
    per chunk of a range run that streams its output."""
    import numpy as np

    positions = {day: np.asarray(index) for day, index in
                 _group_positions(np.asarray(days.astype(str))).items()}
    empty = np.arange(0)
    for day in keys:
        context.add_asset_metadata(describe(positions.get(day, empty)), partition_key=day)


def add_run_summary(context: dg.AssetExecutionContext, keys: list[str], figures: dict[str, Any]) -> None:
    """The whole run's ``figures`` once, as ``run_summary`` on the last partition of a range run."""
    context.add_asset_metadata(
        {RUN_SUMMARY: dg.MetadataValue.md(
            f"Run over {describe_partitions(keys)}: figures of the whole run, not of this day.\n\n"
            + markdown_table([figures])
        )},
        partition_key=keys[-1],
    )


def partition_check_results(
    context: dg.AssetExecutionContext, results: dict[str | None, list[dg.AssetCheckResult]]
):
    """The check results of a step, one evaluation per check and partition.

    ``results`` maps each partition key of the step (``None`` when the asset is unpartitioned) to
    that partition's own ``AssetCheckResult``s. A partitioned run makes Dagster 1.13 plan each check
    of the step once per partition of the run (one row per partition in the check's history), and an
    evaluation closes only the row of its own partition: whatever row no evaluation closes shows as
    "Skipped" once the run ends. So the check specs are partitioned like their asset, an
    unpartitioned or one-partition run yields its results as they are (Dagster adds the partition),
    and a run over several partitions yields each check's output once and then one
    ``AssetCheckEvaluation`` per partition, with that partition's own verdict and metadata.
    """
    keys = partition_keys(context)
    if keys is None or len(keys) == 1:
        for day_results in results.values():
            yield from day_results
        return
    specs = {spec.key: spec for spec in context.assets_def.check_specs}
    selected = context.selected_asset_check_keys
    announced: set[dg.AssetCheckKey] = set()
    for partition, day_results in results.items():
        for result in day_results:
            key = dg.AssetCheckKey(result.asset_key or context.asset_key, result.check_name)
            if key not in selected:
                continue
            if key not in announced:  # the check's output, which blocked downstream steps wait for
                announced.add(key)
                yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
            yield dg.AssetCheckEvaluation(
                asset_key=key.asset_key, check_name=key.name, passed=result.passed,
                metadata=result.metadata, severity=result.severity, description=result.description,
                blocking=specs[key].blocking, partition=partition,
            )


def _group_positions(values) -> dict[str, Any]:
    import pandas as pd

    return pd.Series(range(len(values))).groupby(values).groups


def partition_window(context: dg.AssetExecutionContext) -> Window | None:
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    time_window = context.partition_time_window
    return Window(start=time_window.start, end=time_window.end)


def describe_partitions(keys: list[str] | None) -> str:
    if not keys:
        return "the asset"
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]} ({len(keys)} days)"


def partition_keys(context: dg.AssetExecutionContext) -> list[str] | None:
    if not context.has_partition_key_range and not context.has_partition_key:
        return None
    return list(context.partition_keys)


#: Steps that talk to a service (MLflow tracking server, registry, artifact store; a Qdrant server)
#: retry 3 times with Dagster's exponential backoff, ``delay * (2**attempt - 1)``: after 2, 6 and
#: 14 s. Wrapped in ``retry_only_unreachable``, only an unreachable service is retried: data problems
#: (``data_failure``, a damaged stored partition) and every other error fail at once.
MLFLOW_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
SERVICE_RETRY = MLFLOW_RETRY

#: Exception class names (anywhere in an error's class hierarchy or cause chain) that mean "the
#: service did not answer": the builtin connection errors, urllib3/requests/httpx connection and
#: timeout errors (MLflow and qdrant-client use them), our own MlflowUnavailableError, and
#: SQLAlchemy/psycopg2's OperationalError (a database server that is down or restarting). A locked
#: Qdrant local folder is not among them: the vector store resource already waited for the lock.
UNREACHABLE_ERRORS = frozenset({
    "ConnectionError", "TimeoutError", "MlflowUnavailableError",
    "NewConnectionError", "MaxRetryError", "ConnectTimeout", "ReadTimeout", "ConnectError",
    "TimeoutException", "ResponseHandlingException", "OperationalError",
})
#: What MLflow and our wrappers say when a request did not reach the server (MLflow re-raises the
#: connection error as a plain MlflowException with this text).
UNREACHABLE_TEXT = ("API request to", "Max retries exceeded", "Connection refused", "is unreachable")


def service_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says a service could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(cls.__name__ in UNREACHABLE_ERRORS for cls in type(current).__mro__):
            return True
        if any(text in str(current) for text in UNREACHABLE_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_only_unreachable(compute):
    """Wrap an asset body so that its ``RetryPolicy`` applies only to an unreachable service: any
    other error is re-raised as a ``dg.Failure`` that is not retried (the original error is its cause)."""
    import functools

    @functools.wraps(compute)
    def wrapper(*args, **kwargs):
        try:
            return compute(*args, **kwargs)
        except dg.Failure:
            raise
        except Exception as exc:
            if service_unreachable(exc):
                raise
            raise dg.Failure(
                description=f"{type(exc).__name__}: {exc} (not retried: not an unreachable service)",
                allow_retries=False,
            ) from exc

    import inspect

    # Dagster reads the parameters (context, resources, inputs) from the signature: resolve string
    # annotations (``from __future__ import annotations``) against the asset's own module.
    wrapper.__signature__ = inspect.signature(compute, eval_str=True)
    return wrapper


def code_version(stage_version: str, *sections: Any) -> str:
    """An asset's ``code_version``: its stage's maintained constant (bumped when the stage's code
    changes what it produces) and a short hash of the YAML sections it reads, so the UI marks the
    asset stale after either changes. Sections are pydantic models, plain values or None."""
    import hashlib
    import json

    def plain(section: Any) -> Any:
        return section.model_dump(mode="json") if hasattr(section, "model_dump") else section

    text = json.dumps([plain(s) for s in sections], sort_keys=True, default=str)
    return f"{stage_version}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
