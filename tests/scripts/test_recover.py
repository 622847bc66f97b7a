"""Crash recovery (scripts/recover.py): a run whose processes were killed is closed with the reason,
gives back its pool slot, its MLflow run is ended, stale temp files are swept; and the pid checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from scripts.recover import process_alive, recover, sweep_temp_files, Report

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def test_process_alive_tells_live_dead_and_reused_pids():
    me = os.getpid()
    assert process_alive(me, since=time.time())
    # a process that started after the event naming its pid is another process reusing the id
    assert not process_alive(me, since=0.0)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert not process_alive(finished.pid, since=time.time())


def test_sweep_removes_only_hidden_temp_files(tmp_path):
    day = tmp_path / "assets" / "flights" / "raw_flights"
    day.mkdir(parents=True)
    (day / "2013-01-01.parquet").write_bytes(b"kept")
    stale = day / ".2013-01-02.k3j4h5.tmp"
    stale.write_bytes(b"half")
    report = Report()
    sweep_temp_files(tmp_path, report)
    assert report.removed_temp_files == [stale]
    assert sorted(p.name for p in day.iterdir()) == ["2013-01-01.parquet"]


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    return home


def _materialize(select: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-f", "tests/scripts/crash_defs.py", "--select", select],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs,
    )


@pytest.mark.slow
def test_killed_cli_run_is_closed_and_frees_its_pool_slot_and_mlflow_run(tmp_path, monkeypatch):
    from resources.tracking import MlflowTracking

    home, marker, mlflow_dir = _home(tmp_path), tmp_path / "started", tmp_path / "mlflow"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRASH_MARKER": str(marker), "CRASH_WAIT": "600",
           "CRASH_MLFLOW_DIR": str(mlflow_dir), "PYTHONPATH": str(REPO_ROOT)}
    cli = _materialize("held", env, start_new_session=True)
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert cli.poll() is None, "the CLI run ended before the asset started"
        assert time.monotonic() < deadline, "the asset did not start in 180 s"
        time.sleep(0.5)
    run_id, step_pid = marker.read_text().split()
    os.killpg(cli.pid, signal.SIGKILL)  # kill -9 of the whole tree: CLI and step process
    cli.wait()
    stale = tmp_path / "data" / "assets" / "x" / ".2013-01-01.abcd1234.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half-written")

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    tracking = MlflowTracking(local_dir=str(mlflow_dir))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        held_before = instance.event_log_storage.get_concurrency_info("crash_pool").claimed_slots
        assert [slot.run_id for slot in held_before] == [run_id]

        report = recover(instance, data_dir=tmp_path / "data", tracking=tracking)

        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        reason = report.closed_runs[run_id]
        assert f"its process {cli.pid} is gone" in reason and step_pid in reason
        failure = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert f"its process {cli.pid} is gone" in failure[0].event_log_entry.dagster_event.message
        assert instance.event_log_storage.get_concurrency_info("crash_pool").claimed_slots == []
        assert report.freed_slot_runs == [run_id]
    [mlflow_run] = tracking.client().search_runs([tracking.experiment_id("crash")])
    assert mlflow_run.info.status == "FAILED" and report.failed_mlflow_runs == [mlflow_run.info.run_id]
    [model] = tracking.client().search_logged_models([mlflow_run.info.experiment_id])
    assert str(model.status) .endswith("FAILED") and report.failed_logged_models == [model.model_id]
    [candidate] = tracking.client().search_model_versions("name = 'crash_model'")
    assert candidate.tags["evaluation"].startswith(f"abandoned: Dagster run {run_id} ended before the evaluation gate")
    assert report.abandoned_versions == ["crash_model/1"] and candidate.aliases == []
    assert not stale.exists() and report.removed_temp_files == [stale]

    # the pool is free again: the next run in it goes through at once; a second pass finds nothing
    after = _materialize("after", env)
    assert after.wait(timeout=180) == 0
    with dg.DagsterInstance.get() as instance:
        again = recover(instance, data_dir=tmp_path / "data", tracking=tracking)
    assert again.lines() == ["    nothing to recover"]



@pytest.mark.slow
def test_killed_cli_alone_is_closed_once_its_surviving_step_process_ends(tmp_path, monkeypatch):
    """kill -9 of the CLI process only: its step process lives on and finishes the step. While it
    runs, recovery leaves the run alone; once it is gone, the run is closed naming both processes."""
    home, marker, release = _home(tmp_path), tmp_path / "started", tmp_path / "release"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRASH_MARKER": str(marker), "CRASH_WAIT": "600",
           "CRASH_RELEASE": str(release), "CRASH_MLFLOW_DIR": str(tmp_path / "mlflow"), "PYTHONPATH": str(REPO_ROOT)}
    cli = _materialize("held", env, start_new_session=True)
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert cli.poll() is None and time.monotonic() < deadline, "the asset did not start"
        time.sleep(0.5)
    run_id, step_pid = marker.read_text().split()
    os.kill(cli.pid, signal.SIGKILL)  # the CLI only, not its process group
    cli.wait()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert process_alive(int(step_pid), since=time.time())
        assert recover(instance).closed_runs == {}  # its step process still works
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

        release.write_text("finish the step")
        deadline = time.monotonic() + 120
        while process_alive(int(step_pid), since=time.time()):
            assert time.monotonic() < deadline, "the step process did not end"
            time.sleep(0.5)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nobody ended the run

        report = recover(instance)

        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        reason = report.closed_runs[run_id]
        assert reason.startswith(f"its process {cli.pid} is gone (nor its step process(es) ") and step_pid in reason
        assert instance.event_log_storage.get_concurrency_info("crash_pool").claimed_slots == []



@pytest.mark.slow
def test_killed_run_worker_of_a_launched_run_is_closed_and_frees_its_slot(tmp_path, monkeypatch):
    """A run launched through the instance's run launcher (as the daemon of ./run.sh dev launches
    them) executes in a run worker process, not in the CLI: kill -9 of that worker and its step
    process leaves the run STARTED; recovery closes it and frees its slot."""
    home, marker = _home(tmp_path), tmp_path / "started"
    config = home / "dagster.yaml"
    # launch at once through the default run launcher, without a daemon to dequeue the run
    config.write_text("run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
                      + config.read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRASH_MARKER": str(marker), "CRASH_WAIT": "600",
           "CRASH_MLFLOW_DIR": str(tmp_path / "mlflow"), "PYTHONPATH": str(REPO_ROOT)}
    launcher = subprocess.Popen([DAGSTER, "job", "launch", "-f", "tests/scripts/crash_defs.py", "-j", "held_job"],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert time.monotonic() < deadline, "the launched run did not start its step"
            time.sleep(0.5)
        run_id, step_pid = marker.read_text().split()
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            [start] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records
            worker = start.event_log_entry.dagster_event.pid
            assert worker not in (None, launcher.pid)  # the run executes in a worker process of its own
            for pid in (int(step_pid), worker):  # kill -9 of the run worker and its step process
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while process_alive(worker, since=time.time()) or process_alive(int(step_pid), since=time.time()):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

            report = recover(instance)

            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            assert report.closed_runs[run_id].startswith(f"its process {worker} is gone")
            assert step_pid in report.closed_runs[run_id]
            assert instance.event_log_storage.get_concurrency_info("crash_pool").claimed_slots == []
    finally:
        try:  # the launching CLI and the code server it started
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        launcher.wait(timeout=60)


def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def _range_run(env: dict, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-f", "tests/scripts/crash_defs.py", "--select", "days",
         "--partition-range", "2013-01-01...2013-01-06"],
        cwd=REPO_ROOT, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_mid_backfill_write_then_resume_gives_the_clean_run_files(tmp_path, monkeypatch):
    """kill -9 after 3 of 6 days were renamed into place (before Dagster recorded them): recovery puts
    the old files back, and rerunning the same command leaves files byte-identical to a clean run."""
    marker = tmp_path / "killed-here"
    base = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CRASH_MARKER": str(marker)}
    clean_env = {**base, "DAGSTER_HOME": str(_home(tmp_path / "clean")), "CRASH_DATA_DIR": str(tmp_path / "clean" / "assets")}
    assert _range_run(clean_env, CRASH_VERSION="2").wait(timeout=180) == 0
    clean = _hashes(tmp_path / "clean" / "assets" / "days")
    assert len(clean) == 6

    home = _home(tmp_path / "crash")
    env = {**base, "DAGSTER_HOME": str(home), "CRASH_DATA_DIR": str(tmp_path / "crash" / "assets")}
    folder = tmp_path / "crash" / "assets" / "days"
    assert _range_run(env, CRASH_VERSION="1").wait(timeout=180) == 0
    old = _hashes(folder)
    killed = _range_run(env, CRASH_VERSION="2", CRASH_AFTER_RENAMES="3")
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert killed.poll() is None and time.monotonic() < deadline, "the write did not reach the third day"
        time.sleep(0.3)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    mixed = _hashes(folder)
    assert sum(mixed[name] != old[name] for name in old) == 3  # half new, and not recorded

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        report = recover(instance, data_dir=tmp_path / "crash")
        assert len(report.closed_runs) == 1
        assert sorted(report.settled_partitions) == [f"days/2013-01-0{d}" for d in (1, 2, 3)]
        assert _hashes(folder) == old  # each day is the old file again: the instance knows no new one
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []

    assert _range_run(env, CRASH_VERSION="2").wait(timeout=180) == 0  # resume: the same command
    assert _hashes(folder) == clean


@pytest.mark.slow
def test_main_job_waits_for_a_run_in_progress_and_closes_it_when_it_dies(tmp_path, monkeypatch):
    from scripts.run_main import wait_for_other_runs

    home, marker = _home(tmp_path), tmp_path / "started"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRASH_MARKER": str(marker), "CRASH_WAIT": "600",
           "CRASH_MLFLOW_DIR": str(tmp_path / "mlflow"), "PYTHONPATH": str(REPO_ROOT)}
    cli = _materialize("held", env, start_new_session=True)
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert cli.poll() is None and time.monotonic() < deadline, "the asset did not start"
        time.sleep(0.5)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    import threading

    waited = threading.Thread(target=wait_for_other_runs, kwargs={"poll_seconds": 0.2}, daemon=True)
    waited.start()
    waited.join(timeout=3)
    assert waited.is_alive(), "the main job must wait while the run is alive"
    os.killpg(cli.pid, signal.SIGKILL)
    cli.wait()
    waited.join(timeout=30)
    assert not waited.is_alive(), "the main job must go on once the run's processes are gone"
    run_id = marker.read_text().split()[0]
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("crash_pool").claimed_slots == []


@pytest.mark.slow
def test_concurrent_range_runs_on_the_same_days_leave_whole_files_of_one_run(tmp_path, monkeypatch):
    """Two CLI runs (not queued) write the same six days at once: both succeed, every file is one
    run's whole output for that day, and nothing needs restoring afterwards."""
    import pandas as pd

    clean = {}
    for version in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DAGSTER_HOME": str(_home(tmp_path / f"clean{version}")),
               "CRASH_DATA_DIR": str(tmp_path / f"clean{version}" / "assets")}
        assert _range_run(env, CRASH_VERSION=version).wait(timeout=180) == 0
        clean[version] = _hashes(tmp_path / f"clean{version}" / "assets" / "days")
    home = _home(tmp_path / "both")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DAGSTER_HOME": str(home),
           "CRASH_DATA_DIR": str(tmp_path / "both" / "assets")}
    # The instance's SQLite storage exists before the two runs start, as it does for any instance in
    # use: two processes creating a new instance's tables at once race on CREATE TABLE.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert list(instance.get_runs()) == []
    runs = [_range_run(env, CRASH_VERSION=version) for version in ("1", "2")]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    folder = tmp_path / "both" / "assets" / "days"
    both = _hashes(folder)
    assert all(both[name] in (clean["1"][name], clean["2"][name]) for name in clean["1"])
    assert all(len(pd.read_parquet(path)) == 3 for path in folder.glob("*.parquet"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        report = recover(instance, data_dir=tmp_path / "both")
        assert report.settled_partitions == {} and report.closed_runs == {}
        assert len(instance.get_materialized_partitions(dg.AssetKey("days"))) == 6
    assert _hashes(folder) == both
