"""IO manager that stores each asset partition as one Parquet file under the storage root, verified.

Layout: ``<base_dir>/<asset key path>/<partition key>.parquet`` for partitioned assets and
``<base_dir>/<asset key path>.parquet`` otherwise. ``base_dir`` is a local folder (the default,
``.data/assets``) or any fsspec URL (``s3://bucket/prefix/assets``), through universal-pathlib's
``UPath`` (``resources/storage.py``). A run over a range of partitions (a single-run backfill) splits
its output by day and replaces exactly the objects of that range; every object is written atomically
(local: a temp file in the same folder renamed into place; object stores: one PUT per object), so
readers see either the old or the new file, never a part.

Partitioned writes are staged so that a kill never leaves a new file the instance does not know:
every day is serialized first (locally to a hidden temp file), then a journal
``.staged-<run id>.json`` names the days, then each day is put in place with the old file kept as
``.<day>.<run id>.prev`` (a hard link locally, a server-side copy on an object store). Dagster
records the materializations after the write; the next write of the asset (or ``./run.sh recover``)
settles the journal of a finished run: a day the run recorded keeps the new file (the old copy is
dropped), a day it did not record gets its old file back (or none, if it had none).
``settle_staged_writes`` does this.

Verified reads: every stored object's SHA-256 (``sha256:<hex>``) is recorded in its partition's
materialization (metadata ``content_hash``, and as the Dagster data version when the output is one
partition or unpartitioned; Dagster 1.13 gives all partitions of a range output one data version, so
a range run keeps Dagster's logical version and the per-partition hash is in the metadata).
Loading an input hashes the bytes it read and compares them with what the instance recorded for
that partition: a different hash (a file replaced outside Dagster, another storage root) fails with
``StoredPartitionMismatchError`` naming the asset, partition, file, recorded and found hashes, never
retried. A partition the instance has no hash for (materialized before this check existed, or by
another instance) is read with a warning in the run log.

Reading a stored partition that is missing or unreadable fails naming the asset, the partition,
the file and the command that rebuilds it, as a ``dg.Failure`` that is never retried.

How an output is split into days comes from the asset's definition metadata: ``partition_column``
(a column of ISO dates) or ``partition_time_column`` with ``partition_timezone`` (timestamps whose
local day is the partition).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from resources.staged_writes import (  # noqa: F401 - the journal, re-exported where it always was
    STAGED_PREFIX,
    atomic_write_text,
    commit_staged,
    discard_staged,
    prev_path,
    settle_all_staged_writes,
    settle_staged_writes,
    stage_part,
    staged_write,
)
from resources.storage import (
    content_hash,
    describe,
    ensure_folder,
    is_local,
    put_atomic,
    root_path,
    to_parquet_bytes,
)

if TYPE_CHECKING:
    import pandas as pd

CONTENT_HASH_KEY = "content_hash"
STORED_AT_KEY = "stored_at"


class StoredPartitionError(dg.Failure):
    """A stored partition an asset needs is missing or unreadable: a data problem, never retried
    (``allow_retries=False``); the message names the asset, the partition, the file and the repair."""

    def __init__(self, message: str, **metadata) -> None:
        super().__init__(description=message, metadata=metadata, allow_retries=False)

    def __str__(self) -> str:
        return self.description or ""


class MissingPartitionError(StoredPartitionError):
    """An upstream partition that an asset needs has not been materialized."""


class CorruptPartitionError(StoredPartitionError):
    """A stored partition file cannot be read as Parquet (truncated, overwritten, not Parquet)."""


class StoredPartitionMismatchError(StoredPartitionError):
    """A stored object's content hash differs from the one its materialization recorded: the file
    was replaced outside Dagster, or this process reads another storage root than the writer."""


def repair_command(asset_key: dg.AssetKey, partition_keys: list[str] | None = None) -> str:
    """The CLI command that rebuilds ``asset_key`` (those partitions), from the repository root."""
    command = f"dagster asset materialize -f definitions.py --select '{asset_key.to_user_string()}'"
    if not partition_keys:
        return command
    if len(partition_keys) == 1:
        return f"{command} --partition {partition_keys[0]}"
    return f"{command} --partition-range {partition_keys[0]}...{partition_keys[-1]}"


def parse_stored(data: bytes, path: Any, asset_key: dg.AssetKey, partition_key: str | None,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """``data`` (read from ``path``; only ``columns`` when given) as a DataFrame, or ``CorruptPartitionError`` naming asset,
    partition, file, repair."""
    import pandas as pd

    try:
        return pd.read_parquet(io.BytesIO(data), columns=columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        which = f"partition {partition_key} of " if partition_key else ""
        raise CorruptPartitionError(
            f"{which}{asset_key.to_user_string()} is stored in {describe(path)}, which is not a readable"
            f" Parquet file ({type(exc).__name__}: {exc}). Nothing was read. Rebuild it with:"
            f" {repair_command(asset_key, [partition_key] if partition_key else None)}",
            file=dg.MetadataValue.path(describe(path)),
        ) from None


def read_stored(path: Any, asset_key: dg.AssetKey, partition_key: str | None) -> pd.DataFrame:
    """``path`` as a DataFrame (not verified), or ``CorruptPartitionError``."""
    return parse_stored(path.read_bytes(), path, asset_key, partition_key)


def verify_stored(data: bytes, path: Any, asset_key: dg.AssetKey, partition_key: str | None,
                  recorded: RecordedObject | None) -> None:
    """Raise ``StoredPartitionMismatchError`` when ``data``'s hash is not the recorded one."""
    if recorded is None or recorded.content_hash is None:
        return
    found = content_hash(data)
    if found == recorded.content_hash:
        return
    which = f"partition {partition_key} of " if partition_key else ""
    where = (f" It was recorded as stored at {recorded.stored_at}: this process reads another storage root."
             if recorded.stored_at and recorded.stored_at != describe(path) else
             " The file was replaced outside Dagster (or the storage root holds another copy).")
    raise StoredPartitionMismatchError(
        f"{which}{asset_key.to_user_string()}: the stored file {describe(path)} is not what run"
        f" {recorded.run_id} materialized: recorded {recorded.content_hash}, found {found}.{where}"
        " Nothing was read. Point ML_STORAGE_ROOT at the root the run wrote to, or rebuild it with:"
        f" {repair_command(asset_key, [partition_key] if partition_key else None)}",
        file=dg.MetadataValue.path(describe(path)),
        recorded_hash=recorded.content_hash,
        found_hash=found,
    )


class RecordedObject:
    """What the instance's newest materialization of a partition says about its stored object."""

    def __init__(self, run_id: str, content_hash: str | None, stored_at: str | None) -> None:
        self.run_id = run_id
        self.content_hash = content_hash
        self.stored_at = stored_at


def recorded_objects(instance: dg.DagsterInstance, asset_key: dg.AssetKey,
                     partition_keys: list[str] | None) -> dict[str | None, RecordedObject]:
    """``{partition: RecordedObject}`` of the newest materialization of each of ``partition_keys``
    (``None`` for an unpartitioned asset); partitions never materialized are absent."""
    wanted: set[str | None] = set(partition_keys) if partition_keys else {None}
    found: dict[str | None, RecordedObject] = {}
    cursor = None
    while len(found) < len(wanted):
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=partition_keys or None),
            limit=1000, cursor=cursor, ascending=False,
        )
        for record in result.records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition in found:
                continue
            metadata = materialization.metadata
            digest = metadata.get(CONTENT_HASH_KEY)
            stored_at = metadata.get(STORED_AT_KEY)
            found[materialization.partition] = RecordedObject(
                record.run_id,
                str(digest.value) if digest is not None else None,
                str(stored_at.value) if stored_at is not None else None,
            )
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def load_partition(path: Any, asset_key: dg.AssetKey, partition_key: str | None,
                   recorded: RecordedObject | None, columns: list[str] | None = None) -> pd.DataFrame:
    """One stored partition (or unpartitioned asset), read once, parsed, and checked against what
    the instance recorded for it; the errors name the asset, the partition, the file and the repair."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        which = f"partition {partition_key} of " if partition_key else ""
        extra = (f" The instance recorded it (run {recorded.run_id}) at {recorded.stored_at}:"
                 " this process reads another storage root." if recorded and recorded.stored_at else "")
        raise MissingPartitionError(
            f"{which}{asset_key.to_user_string()} is not stored (no file {describe(path)}).{extra}"
            f" Materialize it first: {repair_command(asset_key, [partition_key] if partition_key else None)}"
        ) from None
    frame = parse_stored(data, path, asset_key, partition_key, columns)
    verify_stored(data, path, asset_key, partition_key, recorded)
    return frame


def atomic_write_parquet(frame: pd.DataFrame, path: Any) -> None:
    """Write ``frame`` to ``path`` atomically (temp file and rename; one PUT on object stores).
    Outside Dagster: nothing is recorded, so a verified read of a replaced partition fails."""
    if is_local(path):  # written straight to the temp file (no in-memory copy), as before
        import tempfile

        local = Path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{local.stem}.", suffix=".tmp", dir=local.parent)
        os.close(fd)
        try:
            frame.to_parquet(tmp_name, index=False)
            os.replace(tmp_name, local)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return
    put_atomic(path, to_parquet_bytes(frame))


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as one Parquet file per partition under ``base_dir`` (a local folder
    or an fsspec URL such as ``s3://bucket/prefix``), atomically, and verifies every read against
    the content hash the instance recorded."""

    base_dir: str = Field(description="Folder or fsspec URL (s3://bucket/prefix) under which asset partitions are stored.")
    subfolder: str = Field(default="", description="Folder under base_dir (e.g. 'assets' under the storage root).")
    verify_reads: bool = Field(
        default=True,
        description="Check each partition read against the content hash its materialization recorded.",
    )

    def root(self) -> Any:
        return root_path(self.base_dir, *[p for p in self.subfolder.split("/") if p])

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> Any:
        folder = self.root().joinpath(*asset_key.path)
        if partition_key is None:
            return folder.with_name(folder.name + ".parquet")
        return folder / f"{partition_key}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Iterator[pd.DataFrame] | None) -> None:
        if obj is None:
            return
        if isinstance(obj, Iterator):  # a range output in chunks of days: staged chunk by chunk
            self.write_chunks(context, obj)
            return
        key = context.asset_key
        if not context.has_asset_partitions:
            path = self.path_for(key)
            data = to_parquet_bytes(obj)
            put_atomic(path, data)
            self.record(context, {None: (path, content_hash(data))})
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
            self.write_partitions(context, {partition_keys[0]: obj})
            return
        by_day = self.split_by_day(context, obj, partition_keys)
        empty = obj.iloc[0:0]
        parts = {pk: by_day.get(pk, empty) for pk in partition_keys}
        self.write_partitions(context, parts)
        context.log.debug(
            f"wrote {len(partition_keys)} partition file(s) of {key.to_user_string()} under {describe(self.root())}"
        )

    def write_partitions(self, context: dg.OutputContext, parts: dict[str, pd.DataFrame]) -> None:
        """Staged write of ``parts`` (see the module doc), after settling what earlier runs left."""
        key = context.asset_key
        paths = {pk: self.path_for(key, pk) for pk in parts}
        folder = next(iter(paths.values())).parent
        data = {pk: to_parquet_bytes(frame) for pk, frame in parts.items()}
        instance = _instance_of(context)
        if instance is None:  # an output context built outside a run: no instance to record in
            for pk, payload in data.items():
                put_atomic(paths[pk], payload)
            return
        try:
            self.settle_before_write(context, folder, instance)
            staged_write(data, paths, context.run_id)
        except OSError as exc:
            raise self.write_error(key, list(parts), folder, exc) from exc
        self.record(context, {pk: (paths[pk], content_hash(data[pk])) for pk in parts})

    def write_chunks(self, context: dg.OutputContext, chunks: Iterator[pd.DataFrame]) -> None:
        """Staged write of a range output that arrives as an iterator of frames (chunks of days): each
        chunk is split by day, every day serialized to its temp file (kept in memory only on an
        object store, as compressed Parquet) and released before the next chunk is asked for; the
        journal and the renames come after the last chunk. If the iterator fails (a chunk's feature
        function, a bad row), the temp files are removed and no stored partition changes."""
        key = context.asset_key
        if not context.has_asset_partitions:
            raise ValueError(f"asset {key.to_user_string()}: an output in chunks needs a partitioned asset")
        partition_keys = list(context.asset_partition_keys)
        paths = {pk: self.path_for(key, pk) for pk in partition_keys}
        folder = paths[partition_keys[0]].parent
        instance = _instance_of(context)
        staged: dict[str, Any] = {}
        payloads: dict[str, bytes] = {}  # object stores only (no temp objects)
        hashes: dict[str, str] = {}
        empty, count = None, 0

        def stage(pk: str, frame: pd.DataFrame) -> None:
            data = to_parquet_bytes(frame)
            hashes[pk] = content_hash(data)
            if instance is None:  # outside a run: nothing to record, written at once
                put_atomic(paths[pk], data)
                staged[pk] = None
                return
            staged[pk] = stage_part(paths[pk], data)
            if staged[pk] is None:
                payloads[pk] = data

        try:
            ensure_folder(folder)
            if instance is not None:
                self.settle_before_write(context, folder, instance)
            for chunk in chunks:
                count += 1
                for pk, part in self.split_by_day(context, chunk, partition_keys).items():
                    if pk in staged:
                        raise ValueError(f"asset {key.to_user_string()}: rows of partition {pk} arrived in two chunks")
                    stage(pk, part)
                empty = chunk.iloc[0:0] if empty is None else empty
                del chunk
            if empty is None:
                raise ValueError(f"asset {key.to_user_string()}: the output iterator gave no chunk")
            for pk in partition_keys:
                if pk not in staged:
                    stage(pk, empty)
            if instance is None:
                return
            staged = {pk: staged[pk] for pk in partition_keys}
            commit_staged(staged, paths, context.run_id, payloads)
        except OSError as exc:
            discard_staged(staged)
            raise self.write_error(key, partition_keys, folder, exc) from exc
        except BaseException:
            discard_staged(staged)
            raise
        self.record(context, {pk: (paths[pk], hashes[pk]) for pk in partition_keys})
        context.log.debug(f"wrote {len(partition_keys)} partition file(s) of {key.to_user_string()} in {count} chunk(s)")

    def split_by_day(self, context: dg.OutputContext, obj: pd.DataFrame, partition_keys: list[str]
                     ) -> dict[str, pd.DataFrame]:
        """The rows of ``obj`` of each partition present in it (split on the asset's metadata)."""
        key = context.asset_key
        days = _partition_days(obj, context.definition_metadata or {})
        if days is None:
            raise ValueError(
                f"asset {key.to_user_string()}: a run over {len(partition_keys)} partitions needs"
                " 'partition_column' or 'partition_time_column' in the asset's metadata to split"
                " its output by partition"
            )
        unexpected = sorted(set(days.unique()) - set(partition_keys))
        if unexpected:
            raise ValueError(
                f"asset {key.to_user_string()}: output has rows for {unexpected[:5]}, outside the"
                f" partitions being written ({partition_keys[0]} .. {partition_keys[-1]})"
            )
        groups = obj.groupby(days.to_numpy(), sort=False).groups
        return {day: obj.loc[index].reset_index(drop=True) for day, index in groups.items()}

    def settle_before_write(self, context: dg.OutputContext, folder: Any, instance: dg.DagsterInstance) -> None:
        if not folder.exists():
            return
        key = context.asset_key
        for day, outcome in settle_staged_writes(folder, instance, key, skip_run=context.run_id).items():
            if outcome.startswith(("restored", "removed")):
                context.log.warning(f"{key.to_user_string()} {day}: {outcome}")

    def write_error(self, key: dg.AssetKey, partition_keys: list[str], folder: Any, exc: OSError) -> StoredPartitionError:
        return StoredPartitionError(
            f"{key.to_user_string()}: could not write partition(s) {_span(partition_keys)} under {describe(folder)}"
            f" ({os.strerror(exc.errno) if exc.errno else exc}). Nothing stored was changed: the previous files are intact and"
            " no temp file is left. Free space or make the folder writable, then rerun:"
            f" {repair_command(key, partition_keys)}",
            folder=dg.MetadataValue.path(describe(folder)),
        )

    def record(self, context: dg.OutputContext, stored: dict[str | None, tuple[Any, str]]) -> None:
        """Record each stored object's content hash (``stored``: ``{partition: (path, hash)}``) and
        where it is in its partition's materialization; a one-partition or unpartitioned output also
        gets it as its data version."""
        try:
            step = context.step_context
        except dg.DagsterInvariantViolationError:
            return
        hashes = {pk: digest for pk, (_, digest) in stored.items()}
        for pk, (path, _) in stored.items():
            metadata = {CONTENT_HASH_KEY: dg.MetadataValue.text(hashes[pk]),
                        STORED_AT_KEY: dg.MetadataValue.path(describe(path))}
            if pk is None:
                context.add_output_metadata(metadata)
            else:
                step.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=pk)
        if len(stored) == 1:
            step.set_data_version(context.asset_key, dg.DataVersion(next(iter(hashes.values()))))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        import pandas as pd

        if (context.definition_metadata or {}).get("load") == "lazy":  # one partition at a time
            from resources.partition_reader import lazy_input

            return lazy_input(self, context)
        key = context.asset_key
        partition_keys, paths, recorded = self.stored_inputs(context)
        frames = [load_partition(path, key, pk, recorded.get(pk)) for pk, path in zip(partition_keys, paths)]
        non_empty = [f for f in frames if len(f)]
        if not non_empty:
            return frames[0]
        return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]

    def stored_inputs(self, context: dg.InputContext
                      ) -> tuple[list[str | None], list[Any], dict[str | None, RecordedObject]]:
        """The partitions of an input (``[None]`` for an unpartitioned asset), their stored files and
        what the instance recorded for them; a missing file fails now, naming the asset, the
        partitions, where the instance recorded them and the repair command."""
        key = context.asset_key
        partition_keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        recorded = self.recorded(context, key, partition_keys)
        if partition_keys is None:
            path = self.path_for(key)
            if not path.exists():
                raise MissingPartitionError(
                    f"{key.to_user_string()} has not been materialized (no file {describe(path)}). Build it with:"
                    f" {repair_command(key)}"
                )
            return [None], [path], recorded
        paths = [self.path_for(key, pk) for pk in partition_keys]
        missing = [pk for pk, path in zip(partition_keys, paths) if not path.exists()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            elsewhere = recorded.get(missing[0])
            extra = (f" The instance recorded {missing[0]} at {elsewhere.stored_at} (run {elsewhere.run_id}):"
                     " this process reads another storage root." if elsewhere and elsewhere.stored_at else "")
            raise MissingPartitionError(
                f"{key.to_user_string()}: partition(s) {shown} not materialized under {describe(self.root())}"
                f" (no file {describe(self.path_for(key, missing[0]))}).{extra} Materialize (backfill) them first:"
                f" {repair_command(key, missing)}"
            )
        return partition_keys, paths, recorded

    def recorded(self, context: dg.InputContext, key: dg.AssetKey,
                 partition_keys: list[str] | None) -> dict[str | None, RecordedObject]:
        """What the instance recorded for the partitions about to be read (empty when not verifying
        or outside a run); a partition without a recorded hash is read with a warning."""
        if not self.verify_reads:
            return {}
        try:
            instance = context.step_context.instance
        except dg.DagsterInvariantViolationError:
            return {}
        recorded = recorded_objects(instance, key, partition_keys)
        unverified = [pk for pk in (partition_keys or [None])
                      if recorded.get(pk) is None or recorded[pk].content_hash is None]
        if unverified:
            shown = ", ".join(str(pk) for pk in unverified[:5]) + (f" and {len(unverified) - 5} more" if len(unverified) > 5 else "")
            context.log.warning(
                f"{key.to_user_string()}: partition(s) {shown} read unverified: this instance recorded no"
                " content hash for them (materialized by another instance, or before reads were verified)"
            )
        return recorded


def _span(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"


def _instance_of(context: dg.OutputContext) -> dg.DagsterInstance | None:
    try:
        return context.step_context.instance
    except dg.DagsterInvariantViolationError:
        return None


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
