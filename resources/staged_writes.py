"""The staged-write journal of the Parquet IO manager: a range of partitions replaced so that after a
kill each partition is the old file or the new one the instance recorded (``resources/parquet_io.py``
describes the protocol). Works on a local root (temp files, hard links, renames) and on an object
store (one PUT per object, server-side copies), through ``resources/storage.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg

from resources.storage import (
    copy_object,
    ensure_folder,
    is_local,
    put_atomic,
    remove_object,
    replace_object,
    root_path,
    to_parquet_bytes,
    write_temp,
)

STAGED_PREFIX = ".staged-"


def staged_write(parts: dict[str, Any], paths: dict[str, Any], run_id: str) -> Any:
    """Write every partition of ``parts`` (DataFrames or Parquet bytes), journal the range, then put
    each in place keeping the old file as ``.<day>.<run id>.prev``; returns the journal (module doc)."""
    folder = next(iter(paths.values())).parent
    ensure_folder(folder)
    data = {key: value if isinstance(value, bytes) else to_parquet_bytes(value) for key, value in parts.items()}
    staged: dict[str, Path | None] = {}
    try:
        for key, payload in data.items():
            staged[key] = stage_part(paths[key], payload)
    except BaseException:
        discard_staged(staged)
        raise
    return commit_staged(staged, paths, run_id, data)


def stage_part(final: Any, payload: bytes) -> Path | None:
    """A hidden temp file next to ``final`` holding ``payload`` (local roots; ``None`` on an object
    store, whose object is put with one PUT at commit time): the first phase of a staged write,
    done partition by partition when an output arrives in chunks."""
    return write_temp(final.parent, final.stem, payload)


def discard_staged(staged: dict[str, Path | None]) -> None:
    """Remove the temp files of a staged write that will not be committed (nothing else changed)."""
    for tmp in staged.values():
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def commit_staged(staged: dict[str, Path | None], paths: dict[str, Any], run_id: str,
                  payloads: dict[str, bytes] | None = None) -> Any:
    """Journal the range of ``staged`` (``stage_part`` temp files, or ``None`` with the bytes in
    ``payloads`` on an object store), then put each in place keeping the old file as
    ``.<day>.<run id>.prev``; returns the journal. The temp files are removed if the journal fails."""
    folder = next(iter(paths.values())).parent
    try:
        journal = folder / f"{STAGED_PREFIX}{run_id}.json"
        had_old = {key: paths[key].exists() for key in staged}
        put_atomic(journal, json.dumps({"run_id": run_id, "written_at_ns": time.time_ns(), "partitions": had_old}).encode())
    except BaseException:
        discard_staged(staged)
        raise
    for key, tmp in staged.items():
        final = paths[key]
        if had_old[key]:
            copy_object(final, prev_path(final, run_id))
        if tmp is not None:
            os.replace(tmp, final)
        else:
            put_atomic(final, (payloads or {})[key])
    return journal


def prev_path(final: Any, run_id: str) -> Any:
    return final.with_name(f".{final.stem}.{run_id}.prev")


def atomic_write_text(path: Any, text: str) -> None:
    put_atomic(path, text.encode("utf-8"))


def _journal_order(journal: Any, entry: dict) -> int:
    if "written_at_ns" in entry:
        return int(entry["written_at_ns"])
    return journal.stat().st_mtime_ns if is_local(journal) else 0


def settle_staged_writes(folder: Any, instance: dg.DagsterInstance, asset_key: dg.AssetKey,
                         skip_run: str | None = None) -> dict[str, str]:
    """Settle the journals under ``folder`` of runs that are finished (or gone): keep what the run
    recorded, restore the old file of every day it did not. Returns ``{partition: outcome}``."""
    outcomes: dict[str, str] = {}
    entries = [(journal, json.loads(journal.read_text(encoding="utf-8")))
               for journal in folder.glob(f"{STAGED_PREFIX}*.json")]
    # newest first: a later run's old copy is an earlier run's new file, which must be settled after
    entries.sort(key=lambda item: _journal_order(*item), reverse=True)
    for journal, entry in entries:
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
                remove_object(previous)
                outcomes.setdefault(key, f"kept the file of run {run_id}, unknown to this instance")
            elif key in recorded:
                remove_object(previous)
                outcomes.setdefault(key, "kept the new file (recorded)")
            elif had_old and previous.exists():
                replace_object(previous, final)
                outcomes.setdefault(key, f"restored the old file (run {run_id} did not record it)")
            elif not had_old:
                remove_object(final)
                outcomes.setdefault(key, f"removed an unrecorded new file (run {run_id})")
        remove_object(journal)
    return outcomes


def settle_all_staged_writes(base_dir: Any, instance: dg.DagsterInstance) -> dict[str, str]:
    """``settle_staged_writes`` for every asset folder under ``base_dir``: ``{"asset/day": outcome}``."""
    outcomes: dict[str, str] = {}
    if isinstance(base_dir, str):
        base_dir = root_path(base_dir)
    if not base_dir.exists():
        return outcomes
    prefix = str(base_dir).rstrip("/") + "/"
    folders = {str(journal.parent): journal.parent for journal in base_dir.rglob(f"{STAGED_PREFIX}*.json")}
    for name in sorted(folders):
        key = dg.AssetKey(name.removeprefix(prefix).split("/"))
        for day, outcome in settle_staged_writes(folders[name], instance, key).items():
            outcomes[f"{key.to_user_string()}/{day}"] = outcome
    return outcomes
