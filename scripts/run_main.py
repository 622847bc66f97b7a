"""The main job: materialize the whole asset graph on the embedded defaults, then say where to look.

Run through ``./run.sh main``. Every asset group is materialized with the ``dagster`` CLI against the
project instance (``$DAGSTER_HOME``), in dependency order: a daily-partitioned group as one run over
all of its partitions (single-run backfill), an unpartitioned group as one run. The full Dagster log
of each run goes to ``$DAGSTER_HOME/logs/``; the console shows step outcomes and warnings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHOWN_EVENTS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "RUN_SUCCESS", "RUN_FAILURE",
                "ASSET_CHECK_EVALUATION", " - ERROR - ", " - WARNING - ")


@dataclass(frozen=True)
class Stage:
    """One CLI run: the assets of a group that share a partitioning, over their partition range or
    unpartitioned; through the group's own job (``<group>_job``) when that job selects exactly them."""

    group: str
    keys: tuple[str, ...]
    partition_range: tuple[str, str] | None
    job: str | None = None

    def command(self) -> list[str]:
        dagster = str(REPO_ROOT / ".venv" / "bin" / "dagster")
        if self.job:
            return [dagster, "job", "execute", "-f", "definitions.py", "-j", self.job]
        cmd = [dagster, "asset", "materialize", "-f", "definitions.py", "--select", ",".join(self.keys)]
        if self.partition_range:
            cmd += ["--partition-range", "...".join(self.partition_range)]
        return cmd

    @property
    def name(self) -> str:
        return f"{self.group}-{'daily' if self.partition_range else 'unpartitioned'}"

    def describe(self) -> str:
        what = f"job {self.job}" if self.job else f"group '{self.group}'"
        if self.partition_range:
            return f"{what}, partitions {self.partition_range[0]} .. {self.partition_range[1]}"
        return f"{what} ({len(self.keys)} asset(s))" if not self.job else what


def plan_stages(left_out: list[str] | None = None) -> list[Stage]:
    """Asset groups in dependency order; in a group, unpartitioned assets first, then each
    partitioning over its full range (one single-run backfill).

    The CLI runs a partition range only as one run, so a partitioned asset without a single-run
    backfill policy (the served-traffic assets, one day per run; or every daily asset when the YAML
    sets ``max_partitions_per_run``) is not planned: it is appended to ``left_out`` with the reason."""
    import dagster as dg

    from definitions import defs

    graph = defs.resolve_asset_graph()
    groups: dict[str, list[dg.AssetKey]] = {}
    for key in graph.materializable_asset_keys:
        groups.setdefault(graph.get(key).group_name or "default", []).append(key)
    upstream_groups: dict[str, set[str]] = {g: set() for g in groups}
    for group, keys in groups.items():
        for key in keys:
            for parent in graph.get(key).parent_keys:
                if graph.has(parent) and graph.get(parent).is_materializable:
                    parent_group = graph.get(parent).group_name or "default"
                    if parent_group != group:
                        upstream_groups[group].add(parent_group)
    ordered: list[str] = []
    while len(ordered) < len(groups):
        ready = sorted(g for g in groups if g not in ordered and upstream_groups[g] <= set(ordered))
        if not ready:
            raise RuntimeError(f"asset groups depend on each other in a cycle: {upstream_groups}")
        ordered.extend(ready)
    job_keys = {}
    for job in defs.resolve_all_job_defs():
        if job.name.endswith("_job") and not job.name.startswith("__"):
            job_keys[job.name] = {k for k in job.asset_layer.selected_asset_keys}
    stages = []
    for group in ordered:
        by_partitioning: dict[object, list[dg.AssetKey]] = {}
        for key in groups[group]:
            node = graph.get(key)
            policy = node.backfill_policy
            if node.partitions_def is not None and (policy is None or policy.max_partitions_per_run is not None):
                if left_out is not None:
                    runs = "one partition per run" if policy is None else f"runs of {policy.max_partitions_per_run} partitions"
                    left_out.append(f"{key.to_user_string()} ({runs}: its daily automation or a UI backfill)")
                continue
            by_partitioning.setdefault(node.partitions_def, []).append(key)
        for partitions_def in sorted(by_partitioning, key=lambda p: p is not None):
            keys = by_partitioning[partitions_def]
            names = tuple(sorted(k.to_user_string() for k in keys))
            if partitions_def is not None:
                days = partitions_def.get_partition_keys()
                stages.append(Stage(group, names, (days[0], days[-1])))
            else:
                job = f"{group}_job"
                own_job = job if len(by_partitioning) == 1 and job_keys.get(job) == set(keys) else None
                stages.append(Stage(group, names, None, own_job))
    return stages


#: How often the main job looks again while another run is in progress.
WAIT_POLL_SECONDS = 5.0


def wait_for_other_runs(poll_seconds: float = WAIT_POLL_SECONDS) -> None:
    """Wait while another run is in progress on the instance: the CLI executes a run in its own
    process, outside the instance's run queue, so this is what keeps the main job one run at a time
    (``concurrency.runs.max_concurrent_runs: 1`` holds only for runs submitted to the queue)."""
    import dagster as dg

    from scripts.recover import ALIVE_STATUSES, Report, close_dead_runs, free_finished_runs_slots

    told = False
    with dg.DagsterInstance.get() as instance:
        while True:
            report = Report()
            close_dead_runs(instance, report)  # a run that dies while we wait does not block us
            if report.closed_runs:
                free_finished_runs_slots(instance, report)
                print("\n".join(report.lines()), flush=True)
            busy = instance.get_run_records(filters=dg.RunsFilter(statuses=list(ALIVE_STATUSES)), limit=5)
            if not busy:
                return
            if not told:
                names = ", ".join(f"{r.dagster_run.job_name} {r.dagster_run.run_id[:8]}" for r in busy)
                print(f"    waiting: run(s) in progress on this instance ({names})", flush=True)
                told = True
            time.sleep(poll_seconds)


def run_stage(stage: Stage, log_dir: Path) -> float:
    wait_for_other_runs()
    started = time.monotonic()
    log_path = log_dir / f"main-{stage.name}.log"
    print(f"\n==> materializing {stage.describe()}", flush=True)
    print(f"    $ {' '.join(stage.command()[1:])}  (full log: {log_path})", flush=True)
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(stage.command(), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if any(token in line for token in SHOWN_EVENTS):
                print("    " + _short(line), flush=True)
        code = process.wait()
    elapsed = time.monotonic() - started
    if code != 0:
        print(f"\n!! {stage.describe()} failed after {elapsed:.0f} s; see {log_path}", file=sys.stderr)
        raise SystemExit(code)
    print(f"    done in {elapsed:.1f} s", flush=True)
    return elapsed


def _short(line: str) -> str:
    """`date - dagster - LEVEL - job - run_id - [pid -] [step -] message` -> `[step] message`."""
    parts = line.rstrip().split(" - ")
    if len(parts) < 6:
        return line.rstrip()
    rest = parts[5:]
    if rest and rest[0].isdigit():
        rest = rest[1:]
    text = " - ".join(rest).split(" Description: ")[0]
    return text if len(text) <= 200 else text[:197] + "..."


def summary() -> str:
    import dagster as dg

    from definitions import defs

    instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    lines = ["", "==> what was materialized"]
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if node.partitions_def is not None:
            done = instance.get_materialized_partitions(key)
            lines.append(f"    {key.to_user_string():40s} {len(done)} of "
                         f"{node.partitions_def.get_num_partitions()} partitions")
        else:
            event = instance.get_latest_materialization_event(key)
            lines.append(f"    {key.to_user_string():40s} {'materialized' if event else 'NOT materialized'}")
    decisions = []
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        event = instance.get_latest_materialization_event(key)
        metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
        if "decision" in metadata:
            figures = ", ".join(
                f"{name} {metadata[name].value:.4f}"
                for name in ("test_roc_auc", "naive_baseline_roc_auc", "logistic_baseline_roc_auc", "test_r2")
                if name in metadata
            )
            decisions.append(f"    {key.to_user_string()}: version {metadata['model_version'].value}: {figures}")
            decisions.append(f"        {metadata['decision'].value}")
    if decisions:
        lines += ["", "==> models", *decisions]
    failed = failed_checks(instance, graph)
    if failed:
        lines += ["", "==> asset checks that failed (latest evaluation of each partition)", *failed]
    return "\n".join(lines)


def latest_check_evaluations(instance) -> dict:
    """The newest evaluation of each (asset check, partition), read run by run through the
    instance's run records and each run's event records (the checks of daily assets are evaluated
    once per day, also in a range run)."""
    import dagster as dg

    latest: dict = {}
    for run in instance.get_run_records(order_by="create_timestamp", ascending=True):
        connection = instance.get_records_for_run(
            run.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        for record in connection.records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            latest[(evaluation.asset_check_key, evaluation.partition)] = evaluation
    return latest


def failed_checks(instance, graph) -> list[str]:
    """One line per asset check whose latest evaluation failed: severity and the check's description."""
    lines = []
    wanted = set(graph.asset_check_keys)
    latest = latest_check_evaluations(instance)
    for (check_key, partition), evaluation in sorted(
        latest.items(), key=lambda item: (item[0][0].asset_key.to_user_string(), item[0][0].name, item[0][1] or "")
    ):
        if check_key not in wanted or evaluation.passed:
            continue
        severity = getattr(evaluation.severity, "value", str(evaluation.severity))
        text = " ".join((evaluation.description or "failed").split())
        text = text if len(text) <= 150 else text[:147] + "..."
        where = f" [{partition}]" if partition else ""
        lines.append(f"    {check_key.asset_key.to_user_string()}{where} {check_key.name} ({severity}): {text}")
    return lines


def recover_before_start() -> None:
    """Close what an earlier crash left (dead runs, their pool slots and MLflow runs, temp files)."""
    import dagster as dg

    from ml_assets.config.paths import data_dir
    from scripts.recover import default_tracking, recover

    with dg.DagsterInstance.get() as instance:
        report = recover(instance, data_dir=data_dir(), tracking=default_tracking())
    print("==> recovery (dead runs, pool slots, MLflow runs, temp files)")
    print("\n".join(report.lines()), flush=True)


def main() -> None:
    started = time.monotonic()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / "dagster_home")))
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(REPO_ROOT)
    sys.path.insert(0, str(REPO_ROOT))
    recover_before_start()
    left_out: list[str] = []
    stages = plan_stages(left_out)
    print(f"==> main job: {len(stages)} stage(s) on the instance in {home}")
    if left_out:
        print("    not in the main job (the CLI runs a range only as one run):\n      "
              + "\n      ".join(left_out))
    for stage in stages:
        run_stage(stage, log_dir)
    print(summary())
    from ml_assets.config.paths import data_dir

    total = time.monotonic() - started
    print(f"""
==> where to look
    Dagster UI:   ./run.sh dev      (starts both UIs: open http://127.0.0.1:3000; the assets'
    MLflow UI:                       links open the MLflow UI it starts on http://127.0.0.1:5000,
                                     over {REPO_ROOT}/.mlflow; DAGSTER_HOME={home})
    Asset data:   {os.environ.get('ML_STORAGE_ROOT', str(data_dir())).rstrip('/') + '/assets'}
    Run logs:     {log_dir}

==> main job finished in {total:.0f} s (total wall time)""")


if __name__ == "__main__":
    main()
