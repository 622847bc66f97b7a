"""Dagster helpers every stage's assets share: partition keys and windows of a step, typed metadata
of a frame (row count, schema, null counts, preview), per-partition metadata in range runs, markdown
tables and inline plots, and the failure that says "this is a data problem: do not retry".
"""

from __future__ import annotations

from pathlib import Path
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
