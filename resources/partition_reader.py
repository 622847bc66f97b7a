"""A lazy view of the stored partitions of an asset input: what ``PartitionedParquetIOManager`` hands
to an input declared with ``dg.AssetIn(..., metadata={"load": "lazy"})`` instead of one DataFrame of
the whole range.

Nothing is read when the input is loaded: the view only knows the partition keys and their files
(every one checked to exist, with the same error as an eager read). The asset then reads one
partition at a time (``read``, ``iter_frames``), only the columns it needs, or counts rows from the
Parquet footers (``num_rows``) without reading data. Memory is bounded by one partition, not the
range. pyarrow and pandas are imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    import pandas as pd

LAZY_LOAD = {"load": "lazy"}  # the input metadata that asks for a StoredPartitions view


@dataclass(frozen=True)
class StoredPartitions:
    """The stored files of ``asset_key`` for ``keys`` (in partition order); ``keys == [None]`` for
    an unpartitioned asset (one file)."""

    asset_key: dg.AssetKey
    keys: tuple[str | None, ...]
    paths: tuple[Any, ...]  # pathlib.Path or UPath under the storage root
    # what the instance recorded for each partition (content hash): every read is verified against it
    recorded: dict[str | None, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def path(self, key: str | None) -> Any:
        return self.paths[self.keys.index(key)]

    def read(self, key: str | None, columns: list[str] | None = None) -> pd.DataFrame:
        """One partition (only ``columns`` when given), checked against the content hash the
        instance recorded for it; a corrupt or replaced file fails naming the asset, partition,
        file and repair, as an eager read does."""
        from resources.parquet_io import load_partition

        return load_partition(self.path(key), self.asset_key, key, self.recorded.get(key), columns)

    def iter_frames(self, columns: list[str] | None = None, keys: list[str] | None = None
                    ) -> Iterator[tuple[str | None, pd.DataFrame]]:
        """``(key, frame)`` of each partition (of ``keys``, default all), one at a time."""
        for key in keys if keys is not None else self.keys:
            yield key, self.read(key, columns)

    def num_rows(self, key: str | None) -> int:
        """Rows of one partition, from the Parquet footer (no data read)."""
        import pyarrow.parquet as pq

        with self.path(key).open("rb") as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)

    def schema_names(self) -> list[str]:
        import pyarrow.parquet as pq

        if not self.paths:
            return []
        with self.paths[0].open("rb") as handle:
            return list(pq.read_schema(handle).names)

    def read_all(self, columns: list[str] | None = None, keys: list[str] | None = None) -> pd.DataFrame:
        """Every partition (of ``keys``, default all) in one frame (only ``columns``), as an eager
        load of them: for the few columns a whole-range computation needs, or one chunk of days."""
        import pandas as pd

        frames = [frame for _, frame in self.iter_frames(columns, keys)]
        non_empty = [f for f in frames if len(f)]
        if not non_empty:
            return frames[0] if frames else pd.DataFrame(columns=columns or [])
        return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]


def read_columns(source: Any, columns: list[str]) -> pd.DataFrame:
    """Only ``columns`` (those present, in that order) of a ``StoredPartitions`` (every partition,
    nothing else read from disk) or of a DataFrame (a copy of them)."""
    if isinstance(source, StoredPartitions):
        present = set(source.schema_names())
        return source.read_all([c for c in dict.fromkeys(columns) if c in present])
    return source[[c for c in dict.fromkeys(columns) if c in source.columns]]


def lazy_input(manager: Any, context: dg.InputContext) -> StoredPartitions:
    """The ``StoredPartitions`` of an input of ``manager`` (a ``PartitionedParquetIOManager``):
    missing files fail now, naming the asset, partitions and repair command, like an eager read."""
    keys, paths, recorded = manager.stored_inputs(context)
    return StoredPartitions(context.asset_key, tuple(keys), tuple(paths), recorded)
