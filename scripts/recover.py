"""Close what a crash left behind: dead runs, held pool slots, orphaned MLflow runs, temp files.

``./run.sh recover`` (or ``python -m scripts.recover``) runs it against ``$DAGSTER_HOME``;
``./run.sh main`` and ``./run.sh dev`` run it first. What it does, in order:

1. **Dead runs.** A run that is STARTING, STARTED or CANCELING whose processes are all gone (the CLI
   or run worker that started it and every step subprocess, read from the pids Dagster records on
   its events) is marked FAILURE with the reason, "its process N is gone". A process id reused by a
   newer process counts as gone. A run with no process on record that has been STARTING for longer
   than ``--start-timeout`` seconds is marked FAILURE too. Processes are looked up on this machine:
   with an instance shared by several machines (PostgreSQL), run it where the runs ran.
2. **Pool slots.** Every finished run (the ones just closed included) gives back the concurrency
   slots and pending steps it still holds, so a step waiting on ``qdrant_local`` proceeds.
3. **MLflow.** A run left RUNNING by a closed Dagster run (tag ``dagster_run_id`` or
   ``dagster.run_id``) is ended as FAILED, and its PENDING logged models are finalized as FAILED. A
   registered version still tagged ``evaluation: pending`` whose Dagster run is finished is tagged
   as abandoned (it never holds an alias: only the gate sets aliases).
4. **Staged writes and temp files.** The journal of a range write a dead run left is settled (each
   day keeps the new file only if the run recorded it, else gets its old file back:
   ``resources.parquet_io.settle_staged_writes``), and hidden ``.<name>.<random>.tmp`` files that an
   interrupted write left in the data folder are removed (only when no run is in progress).

Dagster's own run monitoring (``run_monitoring`` in ``dagster_home/dagster.yaml``) covers runs the
daemon launched; this covers what it cannot see: runs executed inside a CLI process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

#: MLflow run tags naming the Dagster run that opened the MLflow run (the training and monitoring
#: assets use the first, the few-shot evaluation the second).
DAGSTER_RUN_TAGS = ("dagster_run_id", "dagster.run_id")
ALIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
#: A process whose start time is later than the event that recorded its pid (plus this slack) is a
#: different process that reused the id.
PID_REUSE_SLACK_SECONDS = 2.0


@dataclass
class Report:
    """What one recovery pass did, for the console and the tests."""

    closed_runs: dict[str, str] = field(default_factory=dict)  # run id -> reason
    freed_slot_runs: list[str] = field(default_factory=list)
    failed_mlflow_runs: list[str] = field(default_factory=list)
    failed_logged_models: list[str] = field(default_factory=list)
    abandoned_versions: list[str] = field(default_factory=list)  # "name/version"
    removed_temp_files: list[Path] = field(default_factory=list)
    settled_partitions: dict[str, str] = field(default_factory=dict)  # "asset/day" -> outcome
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"    run {run_id} marked FAILURE: {reason}" for run_id, reason in self.closed_runs.items()]
        out += [f"    freed the concurrency slots of run {run_id}" for run_id in self.freed_slot_runs]
        out += [f"    MLflow run {run_id} ended as FAILED" for run_id in self.failed_mlflow_runs]
        out += [f"    MLflow logged model {model_id} finalized as FAILED" for model_id in self.failed_logged_models]
        out += [f"    model version {v} tagged as an abandoned candidate" for v in self.abandoned_versions]
        out += [f"    {part}: {outcome}" for part, outcome in self.settled_partitions.items()]
        out += [f"    removed stale temp file {path}" for path in self.removed_temp_files]
        out += [f"    warning: {text}" for text in self.warnings]
        return out or ["    nothing to recover"]


# ------------------------------------------------------------------------------------ processes


def process_alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` runs on this machine and is the one that existed at ``since``."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= since + PID_REUSE_SLACK_SECONDS
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def run_processes(instance: dg.DagsterInstance, run_id: str) -> dict[int, float]:
    """The pids of the processes a run used (the process that executed it and its step processes),
    each with the time of the first event that named it."""
    wanted = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START, dg.DagsterEventType.ENGINE_EVENT}
    pids: dict[int, float] = {}
    for record in instance.get_records_for_run(run_id, of_type=wanted, limit=100_000).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        found: list[int] = []
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            # the run launcher and the executors name the processes they start in the metadata
            value = (event.engine_event_data.metadata or {}).get("pid") if event.engine_event_data else None
            if value is not None and str(value.value).isdigit():
                found.append(int(value.value))
        elif event.pid is not None:
            found.append(int(event.pid))
        for pid in found:
            pids.setdefault(pid, entry.timestamp)
    return pids


def dead_reason(instance: dg.DagsterInstance, record, start_timeout: float, now: float) -> str | None:
    """Why ``record``'s run is dead, or None while any of its processes lives (or it may still start)."""
    pids = run_processes(instance, record.dagster_run.run_id)
    if not pids:
        started = record.create_timestamp.timestamp()
        if now - started > start_timeout:
            return f"it has been {record.dagster_run.status.value} for {now - started:.0f} s with no process on record"
        return None
    if any(process_alive(pid, since) for pid, since in pids.items()):
        return None
    first = min(pids, key=pids.get)
    others = sorted(set(pids) - {first})
    also = f" (nor its step process(es) {', '.join(map(str, others))})" if others else ""
    return f"its process {first} is gone{also}; closed by the project's recovery (./run.sh recover)"


# ------------------------------------------------------------------------------------ Dagster


def close_dead_runs(instance: dg.DagsterInstance, report: Report, start_timeout: float = 180.0) -> None:
    """Mark every dead run FAILURE, with the reason as the failure message."""
    now = time.time()
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=list(ALIVE_STATUSES)))
    for record in records:
        reason = dead_reason(instance, record, start_timeout, now)
        if reason is None:
            continue
        run = record.dagster_run
        instance.report_run_failed(run, message=f"Run {run.run_id} failed: {reason}.")
        report.closed_runs[run.run_id] = reason


def free_finished_runs_slots(instance: dg.DagsterInstance, report: Report) -> None:
    """Give back the pool slots (and pending steps) that finished runs still hold."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    holders = set(storage.get_concurrency_run_ids())
    for info in _pool_infos(storage):
        holders.update(slot.run_id for slot in info.claimed_slots if slot.run_id)
    if not holders:
        return
    finished = instance.get_run_records(
        filters=dg.RunsFilter(run_ids=sorted(holders), statuses=[
            dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED,
        ])
    )
    known = {r.dagster_run.run_id for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=sorted(holders)))}
    for run_id in sorted({r.dagster_run.run_id for r in finished} | (holders - known)):
        storage.free_concurrency_slots_for_run(run_id)
        report.freed_slot_runs.append(run_id)


def _pool_infos(storage) -> list:
    try:
        return [storage.get_concurrency_info(key) for key in storage.get_concurrency_keys()]
    except NotImplementedError:
        return []


# ------------------------------------------------------------------------------------ MLflow


def close_orphaned_mlflow(instance: dg.DagsterInstance, tracking, report: Report) -> None:
    """End MLflow runs (and their PENDING logged models) whose Dagster run is no longer running, and
    tag registered candidates that will never be evaluated."""
    from mlflow.entities import LoggedModelStatus, ViewType

    client = tracking.client()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments:
        return
    finished_cache: dict[str, bool] = {}

    def finished(run_id: str | None) -> bool:
        if not run_id:
            return False
        if run_id not in finished_cache:
            run = instance.get_run_by_id(run_id)
            finished_cache[run_id] = run is None or run.is_finished
        return finished_cache[run_id]

    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        dagster_run = next((run.data.tags[t] for t in DAGSTER_RUN_TAGS if t in run.data.tags), None)
        if finished(dagster_run):
            client.set_terminated(run.info.run_id, status="FAILED")
            report.failed_mlflow_runs.append(run.info.run_id)
    failed_mlflow = set(report.failed_mlflow_runs)
    for model in client.search_logged_models(experiments, max_results=1000):
        if model.status != LoggedModelStatus.PENDING or not model.source_run_id:
            continue
        source = client.get_run(model.source_run_id)
        if model.source_run_id in failed_mlflow or source.info.status in ("FAILED", "KILLED"):
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            report.failed_logged_models.append(model.model_id)
    from ml_assets.training.registry import abandon_stale_candidates

    report.abandoned_versions += abandon_stale_candidates(tracking, None, finished)


# ------------------------------------------------------------------------------------ files


def sweep_temp_files(folder: Path, report: Report, older_than_seconds: float = 0.0) -> None:
    """Remove ``.<name>.<random>.tmp`` files an interrupted atomic write left under ``folder``."""
    if not folder.exists():
        return
    now = time.time()
    for path in folder.rglob(".*.tmp"):
        try:
            if path.is_file() and now - path.stat().st_mtime >= older_than_seconds:
                path.unlink()
                report.removed_temp_files.append(path)
        except FileNotFoundError:
            continue


# ------------------------------------------------------------------------------------ entry point


def recover(instance: dg.DagsterInstance, *, data_dir: Path | None = None, tracking=None,
            start_timeout: float = 180.0) -> Report:
    """One recovery pass over ``instance`` (and the MLflow store of ``tracking``, the data folder)."""
    report = Report()
    close_dead_runs(instance, report, start_timeout=start_timeout)
    free_finished_runs_slots(instance, report)
    if tracking is not None:
        try:
            tracking.check_reachable()
            close_orphaned_mlflow(instance, tracking, report)
        except Exception as exc:  # noqa: BLE001 - recovery of the rest goes on; said on the console
            report.warnings.append(f"MLflow at {tracking.display_uri()} not checked: {exc}")
    in_progress = instance.get_run_records(filters=dg.RunsFilter(statuses=list(ALIVE_STATUSES)), limit=1)
    if data_dir is not None:
        if in_progress:
            report.warnings.append("temp files not swept: a run is in progress")
        else:
            from resources.parquet_io import settle_all_staged_writes
            from resources.storage import root_path

            # the Parquet partitions live under ML_STORAGE_ROOT/assets when it is set (any fsspec URL)
            root = os.environ.get("ML_STORAGE_ROOT")
            assets = root_path(root, "assets") if root else data_dir / "assets"
            for part, outcome in settle_all_staged_writes(assets, instance).items():
                if outcome.startswith(("restored", "removed")):  # a recorded day needs no word
                    report.settled_partitions[part] = outcome
            sweep_temp_files(data_dir, report)
    return report


def default_tracking():
    """The project's tracking resource as the code location configures it (embedded store or
    ``MLFLOW_TRACKING_URI``); None when the embedded store does not exist yet."""
    from ml_assets.config.paths import mlflow_dir
    from resources.tracking import MlflowTracking

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and not (mlflow_dir() / "mlflow.db").exists():
        return None
    return MlflowTracking(tracking_uri=uri or None, local_dir=str(mlflow_dir()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run.sh recover", description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--start-timeout", type=float, default=180.0,
                        help="seconds a run may stay STARTING with no process on record (default 180)")
    parser.add_argument("--no-mlflow", action="store_true", help="leave the MLflow store alone")
    args = parser.parse_args(argv)
    from ml_assets.config.paths import data_dir

    with dg.DagsterInstance.get() as instance:
        report = recover(instance, data_dir=data_dir(), tracking=None if args.no_mlflow else default_tracking(),
                         start_timeout=args.start_timeout)
    print("==> recovery (dead runs, pool slots, MLflow runs, temp files)")
    print("\n".join(report.lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
