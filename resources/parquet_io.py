"""IO manager that stores each asset partition as one Parquet file, written atomically.

Layout: ``<base_dir>/<asset key path>/<partition key>.parquet`` for partitioned assets and
``<base_dir>/<asset key path>.parquet`` otherwise. A run over a range of partitions (a single-run
backfill) splits its output by day and replaces exactly the files of that range; every file is written
to a temporary name in the same folder and renamed into place, so a crash never leaves a half-written
partition and readers see either the old or the new file.

How an output is split into days comes from the asset's definition metadata: ``partition_column``
(a column of ISO dates) or ``partition_time_column`` with ``partition_timezone`` (timestamps whose
local day is the partition).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import pandas as pd


class MissingPartitionError(FileNotFoundError):
    """An upstream partition that an asset needs has not been materialized."""


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp_name, index=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as one Parquet file per partition under ``base_dir``, atomically."""

    base_dir: str = Field(description="Folder under which asset partitions are stored.")

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> Path:
        folder = Path(self.base_dir).joinpath(*asset_key.path)
        if partition_key is None:
            return folder.with_suffix(".parquet")
        return folder / f"{partition_key}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        key = context.asset_key
        if not context.has_asset_partitions:
            atomic_write_parquet(obj, self.path_for(key))
            return
        partition_keys = list(context.asset_partition_keys)
        days = _partition_days(obj, context.definition_metadata or {})
        if days is None:
            if len(partition_keys) != 1:
                raise ValueError(
                    f"asset {key.to_user_string()}: a run over {len(partition_keys)} partitions needs"
                    " 'partition_column' or 'partition_time_column' in the asset's metadata to split"
                    " its output by partition"
                )
            atomic_write_parquet(obj, self.path_for(key, partition_keys[0]))
            return
        unexpected = sorted(set(days.unique()) - set(partition_keys))
        if unexpected:
            raise ValueError(
                f"asset {key.to_user_string()}: output has rows for {unexpected[:5]}, outside the"
                f" partitions being written ({partition_keys[0]} .. {partition_keys[-1]})"
            )
        groups = {day: index for day, index in obj.groupby(days.to_numpy(), sort=False).groups.items()}
        empty = obj.iloc[0:0]
        for partition_key in partition_keys:
            index = groups.get(partition_key)
            part = obj.loc[index].reset_index(drop=True) if index is not None else empty
            atomic_write_parquet(part, self.path_for(key, partition_key))
        context.log.debug(
            f"wrote {len(partition_keys)} partition file(s) of {key.to_user_string()} under {self.base_dir}"
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        import pandas as pd

        key = context.asset_key
        if not context.has_asset_partitions:
            path = self.path_for(key)
            if not path.exists():
                raise MissingPartitionError(
                    f"{key.to_user_string()} has not been materialized (no file {path})"
                )
            return pd.read_parquet(path)
        partition_keys = list(context.asset_partition_keys)
        paths = [self.path_for(key, pk) for pk in partition_keys]
        missing = [pk for pk, path in zip(partition_keys, paths) if not path.exists()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise MissingPartitionError(
                f"{key.to_user_string()}: partition(s) {shown} not materialized under {self.base_dir};"
                " materialize (backfill) them first"
            )
        frames = [pd.read_parquet(path) for path in paths]
        non_empty = [f for f in frames if len(f)]
        if not non_empty:
            return frames[0]
        return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]


def _partition_days(obj: pd.DataFrame, metadata) -> pd.Series | None:
    column = metadata.get("partition_column")
    if column is not None:
        return obj[str(column)].astype(str)
    time_column = metadata.get("partition_time_column")
    if time_column is None:
        return None
    from resources.data_sources import local_days

    timezone = str(metadata.get("partition_timezone", "UTC"))
    return local_days(obj[str(time_column)], timezone)
