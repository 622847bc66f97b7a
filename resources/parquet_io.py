"""IO manager that stores each asset partition as one Parquet file, written atomically.

Layout: ``<base_dir>/<asset key path>/<partition key>.parquet`` for partitioned assets and
``<base_dir>/<asset key path>.parquet`` otherwise. A run over a range of partitions (a single-run
backfill) splits its output by day and replaces exactly the files of that range; every file is written
to a temporary name in the same folder and renamed into place, so a crash never leaves a half-written
partition and readers see either the old or the new file.

Partitioned writes are staged so that a kill never leaves a new file the instance does not know:
every day is written to a hidden temp file first, then a journal ``.staged-<run id>.json`` names
the days, then each day is renamed into place with the old file kept as ``.<day>.<run id>.prev``
(a hard link). Dagster records the materializations after the write; the next write of the asset
(or ``./run.sh recover``) settles the journal of a finished run: a day the run recorded keeps the
new file (the old copy is dropped), a day it did not record gets its old file back (or none, if it
had none). ``settle_staged_writes`` does this.

Reading a stored partition that is missing or unreadable fails naming the asset, the partition,
the file and the command that rebuilds it, as a ``dg.Failure`` that is never retried.

How an output is split into days comes from the asset's definition metadata: ``partition_column``
(a column of ISO dates) or ``partition_time_column`` with ``partition_timezone`` (timestamps whose
local day is the partition).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import pandas as pd


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


def repair_command(asset_key: dg.AssetKey, partition_keys: list[str] | None = None) -> str:
    """The CLI command that rebuilds ``asset_key`` (those partitions), from the repository root."""
    command = f"dagster asset materialize -f definitions.py --select '{asset_key.to_user_string()}'"
    if not partition_keys:
        return command
    if len(partition_keys) == 1:
        return f"{command} --partition {partition_keys[0]}"
    return f"{command} --partition-range {partition_keys[0]}...{partition_keys[-1]}"


def read_stored(path: Path, asset_key: dg.AssetKey, partition_key: str | None,
                columns: list[str] | None = None) -> pd.DataFrame:
    """``path`` (only ``columns``) as a DataFrame, or ``CorruptPartitionError`` naming asset, partition, file, repair."""
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        which = f"partition {partition_key} of " if partition_key else ""
        raise CorruptPartitionError(
            f"{which}{asset_key.to_user_string()} is stored in {path}, which is not a readable Parquet file"
            f" ({type(exc).__name__}: {exc}). Nothing was read. Rebuild it with:"
            f" {repair_command(asset_key, [partition_key] if partition_key else None)}",
            file=dg.MetadataValue.path(str(path)),
        ) from None


STAGED_PREFIX = ".staged-"


def staged_write(parts: dict[str, pd.DataFrame], paths: dict[str, Path], run_id: str) -> Path:
    """Write every partition of ``parts`` to a temp file, journal the range, then rename each into
    place keeping the old file as ``.<day>.<run id>.prev``; returns the journal (see the module doc)."""
    folder = next(iter(paths.values())).parent
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, str] = {}
    try:
        for key, frame in parts.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{paths[key].stem}.", suffix=".tmp", dir=folder)
            os.close(fd)
            staged[key] = tmp_name
            frame.to_parquet(tmp_name, index=False)
        journal = folder / f"{STAGED_PREFIX}{run_id}.json"
        had_old = {key: paths[key].exists() for key in parts}
        atomic_write_text(journal, json.dumps({"run_id": run_id, "partitions": had_old}))
    except BaseException:
        for tmp_name in staged.values():
            Path(tmp_name).unlink(missing_ok=True)
        raise
    for key, tmp_name in staged.items():
        final = paths[key]
        if had_old[key]:
            previous = prev_path(final, run_id)
            previous.unlink(missing_ok=True)
            os.link(final, previous)
        os.replace(tmp_name, final)
    return journal


def prev_path(final: Path, run_id: str) -> Path:
    return final.with_name(f".{final.stem}.{run_id}.prev")


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def settle_staged_writes(folder: Path, instance: dg.DagsterInstance, asset_key: dg.AssetKey,
                         skip_run: str | None = None) -> dict[str, str]:
    """Settle the journals under ``folder`` of runs that are finished (or gone): keep what the run
    recorded, restore the old file of every day it did not. Returns ``{partition: outcome}``."""
    outcomes: dict[str, str] = {}
    # newest first: a later run's old copy is an earlier run's new file, which must be settled after
    journals = sorted(folder.glob(f"{STAGED_PREFIX}*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for journal in journals:
        entry = json.loads(journal.read_text(encoding="utf-8"))
        run_id = entry["run_id"]
        if run_id == skip_run:
            continue
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            continue
        recorded = set()
        if run is not None:
            for record in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1_000_000
            ).records:
                event = record.event_log_entry.dagster_event
                if event is not None and event.asset_key == asset_key:
                    recorded.add(event.partition)
        for key, had_old in entry["partitions"].items():
            final = folder / f"{key}.parquet"
            previous = prev_path(final, run_id)
            if run is None:
                # a run of another instance (or deleted): nothing to decide by, so nothing is undone
                previous.unlink(missing_ok=True)
                outcomes.setdefault(key, f"kept the file of run {run_id}, unknown to this instance")
            elif key in recorded:
                previous.unlink(missing_ok=True)
                outcomes.setdefault(key, "kept the new file (recorded)")
            elif had_old and previous.exists():
                os.replace(previous, final)
                outcomes.setdefault(key, f"restored the old file (run {run_id} did not record it)")
            elif not had_old:
                final.unlink(missing_ok=True)
                outcomes.setdefault(key, f"removed an unrecorded new file (run {run_id})")
        journal.unlink()
    return outcomes


def settle_all_staged_writes(base_dir: Path, instance: dg.DagsterInstance) -> dict[str, str]:
    """``settle_staged_writes`` for every asset folder under ``base_dir``: ``{"asset/day": outcome}``."""
    outcomes: dict[str, str] = {}
    if not base_dir.exists():
        return outcomes
    for folder in sorted({journal.parent for journal in base_dir.rglob(f"{STAGED_PREFIX}*.json")}):
        key = dg.AssetKey(list(folder.relative_to(base_dir).parts))
        for day, outcome in settle_staged_writes(folder, instance, key).items():
            outcomes[f"{key.to_user_string()}/{day}"] = outcome
    return outcomes


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
            self.write_partitions(context, {partition_keys[0]: obj})
            return
        unexpected = sorted(set(days.unique()) - set(partition_keys))
        if unexpected:
            raise ValueError(
                f"asset {key.to_user_string()}: output has rows for {unexpected[:5]}, outside the"
                f" partitions being written ({partition_keys[0]} .. {partition_keys[-1]})"
            )
        groups = {day: index for day, index in obj.groupby(days.to_numpy(), sort=False).groups.items()}
        empty = obj.iloc[0:0]
        parts = {}
        for partition_key in partition_keys:
            index = groups.get(partition_key)
            parts[partition_key] = obj.loc[index].reset_index(drop=True) if index is not None else empty
        self.write_partitions(context, parts)
        context.log.debug(
            f"wrote {len(partition_keys)} partition file(s) of {key.to_user_string()} under {self.base_dir}"
        )

    def write_partitions(self, context: dg.OutputContext, parts: dict[str, pd.DataFrame]) -> None:
        """Staged write of ``parts`` (see the module doc), after settling what earlier runs left."""
        key = context.asset_key
        paths = {pk: self.path_for(key, pk) for pk in parts}
        folder = next(iter(paths.values())).parent
        instance = _instance_of(context)
        if instance is None:  # an output context built outside a run: no instance to record in
            for pk, frame in parts.items():
                atomic_write_parquet(frame, paths[pk])
            return
        try:
            if folder.exists():
                for day, outcome in settle_staged_writes(folder, instance, key, skip_run=context.run_id).items():
                    if outcome.startswith(("restored", "removed")):
                        context.log.warning(f"{key.to_user_string()} {day}: {outcome}")
            staged_write(parts, paths, context.run_id)
        except OSError as exc:
            raise StoredPartitionError(
                f"{key.to_user_string()}: could not write partition(s) {_span(list(parts))} under {folder}"
                f" ({os.strerror(exc.errno) if exc.errno else exc}). Nothing stored was changed: the previous files are intact and"
                " no temp file is left. Free space or make the folder writable, then rerun:"
                f" {repair_command(key, list(parts))}",
                folder=dg.MetadataValue.path(str(folder)),
            ) from exc

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        import pandas as pd

        key = context.asset_key
        if (context.definition_metadata or {}).get("load") == "lazy":  # one partition at a time
            from resources.partition_reader import lazy_input

            return lazy_input(self, context)
        if not context.has_asset_partitions:
            path = self.path_for(key)
            if not path.exists():
                raise MissingPartitionError(
                    f"{key.to_user_string()} has not been materialized (no file {path}). Build it with:"
                    f" {repair_command(key)}"
                )
            return read_stored(path, key, None)
        partition_keys = list(context.asset_partition_keys)
        paths = [self.path_for(key, pk) for pk in partition_keys]
        missing = [pk for pk, path in zip(partition_keys, paths) if not path.exists()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise MissingPartitionError(
                f"{key.to_user_string()}: partition(s) {shown} not materialized under {self.base_dir}"
                f" (no file {self.path_for(key, missing[0])}); materialize (backfill) them first:"
                f" {repair_command(key, missing)}"
            )
        frames = [read_stored(path, key, pk) for pk, path in zip(partition_keys, paths)]
        non_empty = [f for f in frames if len(f)]
        if not non_empty:
            return frames[0]
        return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]


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
