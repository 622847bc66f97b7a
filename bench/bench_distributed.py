"""Benchmark: the flights year's ingest and features as a chunked backfill on ONE dagster-celery
worker against TWO, beside the plain script and Dagster's own bookkeeping floor, in one run.

The flights YAML's ``partitioning.max_partitions_per_run`` (``FLIGHTS_MAX_PARTITIONS_PER_RUN``, set
here from ``--chunk``) gives the daily assets ``BackfillPolicy.multi_run(N)``; the chunks below are
read back from that policy. A multi-run backfill of raw flights, raw weather and features is what
Dagster's asset backfill daemon would run: runs of at most N days of the raw assets (checks in the
same step), and runs of at most N days of features in runs of their own (their partition mapping
reaches 28 days back, so the daemon does not put them in a run with the raw days they read). This
benchmark launches those runs itself, each as ``dagster job execute`` (the run process submits its
steps to the workers and waits): the raw runs first, in order, then each features run as soon as
every raw run holding a day it reads has succeeded, at most ``--runs-in-flight`` runs at once (the same for one
and two workers). The daemon would launch the same runs, but only at its backfill ticks (every 30 s
in Dagster 1.13), which would quantize the wall times.

Each worker count gets a fresh PostgreSQL database (instance storage), a RabbitMQ vhost of its own,
a fresh local data folder and its own workers (``--concurrency=1``, prefetch 1, pandas, pyarrow and
Great Expectations imported when the worker starts, as a long-lived worker has them); on it, first
the floor (the same runs of no-op assets with the same partitions, backfill policy and
dependencies: ``bench/defs_distributed.py``), then the real backfill. The plain script
(``bench/plain_flights.py``) does the same reading, validation, features and files in one process.
The one- and two-worker runs must write the same files, byte for byte, and the plain script the same
file names. Run (PostgreSQL on 127.0.0.1:5432 with trust auth, RabbitMQ on 127.0.0.1:5672 with
guest/guest and ``rabbitmqctl`` on PATH):

    PYTHONPATH=$PWD .venv/bin/python bench/bench_distributed.py                 # the year, N = 92
    PYTHONPATH=$PWD .venv/bin/python bench/bench_distributed.py --last 2013-02-28 --chunk 15   # a check

Results are printed and written to ``bench/results/distributed.json``. Only the processes, databases
and vhosts this script creates are stopped or dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import measure

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
BIN = Path(sys.executable).parent
CODE = "bench/defs_distributed.py"
PRELOAD = ("pandas", "pyarrow.parquet", "great_expectations")


def rabbitmqctl(*args: str) -> None:
    out = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"rabbitmqctl {' '.join(args)} failed: {out.stdout}{out.stderr}")


def postgres(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(sql)
    conn.close()


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def chunks_from_yaml(chunk: int, last: str) -> tuple[list[list[str]], int, int]:
    """The days up to ``last`` cut as the flights YAML's backfill policy cuts them (with
    ``FLIGHTS_MAX_PARTITIONS_PER_RUN=chunk``), the history days the features read, and N."""
    os.environ["FLIGHTS_MAX_PARTITIONS_PER_RUN"] = str(chunk)
    from ml_assets.config import PIPELINES_DIR, load_pipeline
    from ml_assets.execution import backfill_policy
    from ml_assets.features.assets import earlier_days
    from ml_assets.ingest.assets import daily_partitions

    spec = load_pipeline(PIPELINES_DIR / "flights.yaml")
    size = backfill_policy(spec).max_partitions_per_run
    if size != chunk:
        raise SystemExit(f"pipelines/flights.yaml gave max_partitions_per_run={size}, expected {chunk}")
    days = [day for day in daily_partitions(spec).get_partition_keys() if day <= last]
    return [days[i:i + size] for i in range(0, len(days), size)], max(earlier_days(spec).values()), size


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen]:
    """``count`` workers (the README's command), each in a process group of its own; waits until ready."""
    workers, paths = [], []
    for i in range(1, count + 1):
        path = logs / f"worker{i}.log"
        cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
               "dagster_home/celery.yaml", "--name", f"bench{i}", *[a for m in PRELOAD for a in ("-i", m)],
               "--", "--concurrency=1", "--prefetch-multiplier=1"]
        workers.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=path.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True))
        paths.append(path)
    deadline = time.monotonic() + 300
    while not all(" ready." in p.read_text(errors="replace") for p in paths):
        for worker, path in zip(workers, paths):
            if worker.poll() is not None:
                stop_workers(workers)
                raise SystemExit(f"worker exited:\n{path.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            stop_workers(workers)
            raise SystemExit("workers not ready in 300 s")
        time.sleep(0.5)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def backfill(raw_job: str, features_job: str, chunks: list[list[str]], history: int, env: dict[str, str],
             in_flight: int, logs: Path) -> dict:
    """Launch the backfill's runs (see the module docstring); wall seconds and each run's span."""
    def day(key: str) -> dt.date:
        return dt.date.fromisoformat(key)

    needs = {k: {j for j, raw in enumerate(chunks)
                 if day(raw[-1]) >= day(c[0]) - dt.timedelta(days=history) and day(raw[0]) <= day(c[-1])}
             for k, c in enumerate(chunks)}
    pending = [("features", k) for k in range(len(chunks))]
    raw_pending = [("raw", k) for k in range(len(chunks))]
    running: dict[tuple[str, int], tuple[subprocess.Popen, float]] = {}
    raw_done: set[int] = set()
    spans = []
    started = time.monotonic()
    while pending or raw_pending or running:
        for item, (process, t0) in list(running.items()):
            if process.poll() is None:
                continue
            del running[item]
            log = logs / f"{item[0]}_{item[1]}.log"
            if process.returncode != 0:
                for other, _ in running.values():
                    other.kill()
                raise SystemExit(f"{item} run failed:\n{log.read_text(errors='replace')[-4000:]}")
            spans.append({"run": f"{item[0]} {chunks[item[1]][0]}..{chunks[item[1]][-1]}",
                          "start_s": round(t0 - started, 2), "end_s": round(time.monotonic() - started, 2)})
            if item[0] == "raw":
                raw_done.add(item[1])
        while len(running) < in_flight:
            # the raw runs first, in order (the daemon also requests every raw chunk at its first
            # tick); then each features run whose raw days are stored
            ready = [item for item in pending if needs[item[1]] <= raw_done]
            item = raw_pending[0] if raw_pending else (ready[0] if ready else None)
            if item is None:
                break
            (pending if item[0] == "features" else raw_pending).remove(item)
            days = chunks[item[1]]
            tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
            job = raw_job if item[0] == "raw" else features_job
            log = (logs / f"{item[0]}_{item[1]}.log").open("w")
            running[item] = (subprocess.Popen(
                [str(BIN / "dagster"), "job", "execute", "-f", CODE, "-j", job, "--tags", json.dumps(tags)],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), time.monotonic())
        time.sleep(0.2)
    return {"wall_s": round(time.monotonic() - started, 2), "runs": len(spans), "spans": spans}


def steps_per_worker(home: Path) -> dict[str, int]:
    """How many steps of the real backfill each celery worker ran, from the instance's engine events."""
    import dagster as dg

    counts: dict[str, int] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records():
            if not record.dagster_run.job_name.startswith("bench_flights_"):
                continue
            for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                worker = entry.dagster_event.engine_event_data.metadata.get("Celery worker")
                if worker is not None:
                    name = worker.value.split("@")[0]
                    counts[name] = counts.get(name, 0) + 1
    return counts


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}


def one_setup(workers: int, chunks: list[list[str]], history: int, chunk: int, in_flight: int, work: Path,
              tag: str, event_batch: int | None = None) -> dict:
    """Floor and real backfill on ``workers`` fresh workers with a fresh instance, vhost and data folder."""
    import dagster as dg

    name = f"bench_dist_{tag}_{workers}w"
    home, data, logs = work / f"{name}_home", work / f"{name}_data", work / f"{name}_logs"
    for path in (home, logs):
        path.mkdir(parents=True)
    postgres(f"CREATE DATABASE {name}")
    rabbitmqctl("add_vhost", name)
    result: dict = {"workers": workers}
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        (home / "dagster.yaml").write_text(
            "storage:\n  postgres:\n    postgres_url: "
            f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}\ntelemetry:\n  enabled: false\n")
        with dg.DagsterInstance.from_config(str(home)):  # the tables, before any worker starts
            pass
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DAGSTER_", "MLFLOW_", "ML_STORAGE_ROOT"))}
        env.update(DAGSTER_HOME=str(home), ML_DATA_DIR=str(data), ML_EXECUTOR="celery",
                   DAGSTER_CELERY_BROKER_URL=f"pyamqp://guest:guest@127.0.0.1:5672/{name}",
                   DAGSTER_CELERY_BACKEND_URL="rpc://", FLIGHTS_MAX_PARTITIONS_PER_RUN=str(chunk),
                   MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}", GX_ANALYTICS_ENABLED="false",
                   HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        if event_batch:  # Dagster writes a step's materializations and check evaluations in batches
            env["DAGSTER_EVENT_BATCH_SIZE"] = str(event_batch)
        processes = start_workers(workers, env, logs)
        try:
            for kind, raw_job, features_job in (("floor", "bench_floor_raw_job", "bench_floor_features_job"),
                                                ("dagster", "bench_flights_raw_job", "bench_flights_features_job")):
                before = load1()
                print(f"  {workers} worker(s), {kind}: {len(chunks)} raw + {len(chunks)} features runs ...", flush=True)
                (logs / kind).mkdir()
                result[kind] = backfill(raw_job, features_job, chunks, history, env, in_flight, logs / kind)
                result[kind]["load1_before_after"] = [before, load1()]
                print(f"  {workers} worker(s), {kind}: {result[kind]['wall_s']:.1f} s (load {before} -> {load1()})",
                      flush=True)
        finally:
            stop_workers(processes)
        result["steps_per_worker"] = steps_per_worker(home)
        result["files"] = files(data / "assets" / "flights")
    finally:
        rabbitmqctl("delete_vhost", name)
        postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--last", default="2013-12-31", help="last day (from 2013-01-01); default the year")
    parser.add_argument("--chunk", type=int, default=92, help="max_partitions_per_run N (the YAML's, via env)")
    parser.add_argument("--runs-in-flight", type=int, default=3, help="runs launched at once (both setups)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", help="keep logs and data here (default: a temporary folder, removed)")
    parser.add_argument("--event-batch-size", type=int, help="DAGSTER_EVENT_BATCH_SIZE for runs and workers")
    args = parser.parse_args()
    chunks, history, chunk = chunks_from_yaml(args.chunk, args.last)
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_distributed_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        env = dict(os.environ, GX_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
        before = load1()
        plain = measure([str(BIN / "python"), "bench/plain_flights.py", str(work / "plain_data"), chunks[-1][-1]],
                        env, work / "plain.log")
        plain = {"wall_s": round(plain["wall_s"], 2), "peak_rss_mib": round(plain["peak_rss_mib"]),
                 "load1_before_after": [before, load1()]}
        print(f"  plain script: {plain['wall_s']:.1f} s", flush=True)
        plain_names = sorted(str(p.relative_to(work / "plain_data")) for p in (work / "plain_data").rglob("*.parquet"))
        setups = {n: one_setup(n, chunks, history, chunk, args.runs_in_flight, work, tag,
                                     args.event_batch_size) for n in args.workers}
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    stored = {n: setup.pop("files") for n, setup in setups.items()}
    for n, written in stored.items():
        names = sorted(written)
        if names != plain_names:
            raise SystemExit(f"{n} worker(s) wrote {len(names)} files, the plain script {len(plain_names)}")
    if len(stored) > 1:
        first, *others = stored.values()
        if any(other != first for other in others):
            raise SystemExit("the runs on one and on two workers wrote different bytes")
    summary = {
        "days": sum(len(c) for c in chunks), "max_partitions_per_run": chunk, "runs_per_asset_wave": len(chunks),
        "runs_in_flight": args.runs_in_flight, "event_batch_size": args.event_batch_size, "plain": plain, "setups": {str(n): s for n, s in setups.items()},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
    }
    if 1 in setups and 2 in setups:
        summary["two_vs_one_worker"] = round(setups[2]["dagster"]["wall_s"] / setups[1]["dagster"]["wall_s"], 3)
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "distributed.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{summary['days']} days, runs of at most {chunk} days ({len(chunks)} raw + {len(chunks)} features runs),"
          f" {args.runs_in_flight} runs in flight")
    print(f"{'':22s} {'wall s':>8s} {'vs plain+floor':>15s} {'load 1 min':>12s}")
    print(f"{'plain script':22s} {plain['wall_s']:8.1f} {'':>15s} {str(plain['load1_before_after']):>12s}")
    for n, setup in setups.items():
        floor, real = setup["floor"]["wall_s"], setup["dagster"]["wall_s"]
        print(f"{f'floor, {n} worker(s)':22s} {floor:8.1f} {'':>15s} {str(setup['floor']['load1_before_after']):>12s}")
        print(f"{f'dagster, {n} worker(s)':22s} {real:8.1f} {real / (plain['wall_s'] + floor):15.2f}"
              f" {str(setup['dagster']['load1_before_after']):>12s}  steps per worker {setup['steps_per_worker']}")
    if "two_vs_one_worker" in summary:
        print(f"two workers / one worker: {summary['two_vs_one_worker']:.2f} (target <= 0.65)")


if __name__ == "__main__":
    main()
