"""Benchmark: one day of ``flights_daily_job`` (ingest, 12 checks, features, predictions, drift), in
process (the default for small runs) against the multiprocess executor (``ML_EXECUTOR=multiprocess``).

Preparation (untimed, once): a fresh temporary folder with its own DAGSTER_HOME (a copy of
dagster_home/dagster.yaml), ``ML_DATA_DIR`` and MLflow SQLite store; the flights year is ingested
(one single-run backfill), the training job runs with tuning off (``FLIGHTS_TUNING_TRIALS=0``) and
registers a champion, and the drift reference is built. Then the daily job runs for ``--day``
``--repeat`` times per executor, interleaved, each a cold ``dagster job execute`` subprocess:
wall time of the command (code location load, run, steps) and the run's own time from its event log
(RUN_START -> RUN_SUCCESS), with the per-step breakdown of the last repetition.

``--celery`` adds a third variant: ``ML_EXECUTOR=celery`` with one warm dagster-celery worker (the
README's worker command, on the local RabbitMQ in a vhost of its own, deleted afterwards), after one
untimed warm-up run: the worker's process keeps pandas, Great Expectations, MLflow and Evidently
imported between runs, which a run process started per run cannot.

    .venv/bin/python bench/bench_daily.py [--day 2013-12-30] [--repeat 3] [--celery]

Results are printed and written to bench/results/daily.json.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path

from bench_training import DAGSTER_EVENTS, breakdown, new_store
from harness import base_env, helper, measure

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_S = 5.0
EXPERIMENTS = """
import sys, mlflow
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
client.create_experiment("flights-monitoring", artifact_location=sys.argv[2])
"""


def prepare(tmp: Path, env: dict[str, str]) -> None:
    logs = tmp / "logs"
    steps = [
        ("ingest", [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "group:flights",
                    "--partition-range", "2013-01-01...2013-12-31"]),
        ("training", [str(BIN / "dagster"), "job", "execute", "-f", "definitions.py", "-j", "flights_training_job"]),
        ("reference", [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select",
                       "flights/reference"]),
    ]
    for name, cmd in steps:
        took = measure(cmd, dict(env, FLIGHTS_TUNING_TRIALS="0"), logs / f"prepare_{name}.log")
        print(f"prepared {name} in {took['wall_s']:.1f} s", flush=True)


def daily(env: dict[str, str], day: str, log: Path) -> dict:
    cmd = [str(BIN / "dagster"), "job", "execute", "-f", "definitions.py", "-j", "flights_daily_job",
           "--tags", json.dumps({"dagster/partition": day})]
    took = measure(cmd, env, log)
    events = json.loads(helper(DAGSTER_EVENTS, env))
    assert events["status"] == "SUCCESS", events["status"]
    return {**took, **breakdown(events["events"], took["start_epoch"], took["end_epoch"])}


@contextmanager
def celery_worker(env: dict[str, str], log: Path):
    """One warm dagster-celery worker on a vhost of its own; yields the environment of runs using it."""
    vhost = f"bench_daily_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    worker = None
    try:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)
        celery_env = dict(env, ML_EXECUTOR="celery", DAGSTER_CELERY_BACKEND_URL="rpc://",
                          DAGSTER_CELERY_BROKER_URL=f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
                          PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        worker = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
             "dagster_home/celery.yaml", "--name", "bench", "--", "--concurrency=1"],
            cwd=REPO_ROOT, env=celery_env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while " ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the celery worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield celery_env
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", default="2013-12-30")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--celery", action="store_true", help="also time runs on one warm celery worker")
    parser.add_argument("--workdir", type=Path,
                        help="keep the prepared instance, data and MLflow store here and reuse them next time")
    args = parser.parse_args()
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="bench-daily-"))
    try:
        env = dict(base_env(), DAGSTER_HOME=str(tmp / "home"), ML_DATA_DIR=str(tmp / "data"),
                   MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow' / 'mlflow.db'}")
        env.pop("ML_EXECUTOR", None)
        if not (tmp / "prepared").exists():
            (tmp / "home").mkdir(parents=True)
            (tmp / "logs").mkdir()
            shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", tmp / "home" / "dagster.yaml")
            uri = new_store(tmp / "mlflow", env)
            helper(EXPERIMENTS, env, uri, (tmp / "mlflow" / "artifacts" / "flights-monitoring").as_uri())
            prepare(tmp, env)
            (tmp / "prepared").touch()
        variants = {"in_process (default)": env, "multiprocess": dict(env, ML_EXECUTOR="multiprocess")}
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        worker = celery_worker(env, tmp / "logs" / "worker.log") if args.celery else nullcontext()
        with worker as celery_env:
            if celery_env is not None:
                variants["celery (one warm worker)"] = celery_env
                runs["celery (one warm worker)"] = []
                daily(celery_env, args.day, tmp / "logs" / "daily_warmup_celery.log")  # untimed: imports
            for i in range(args.repeat):
                order = list(variants) if i % 2 == 0 else list(reversed(variants))
                for name in order:
                    result = daily(variants[name], args.day, tmp / "logs" / f"daily_{i}_{name[:5]}.log")
                    runs[name].append(result)
                    print(f"{name}: {result['wall_s']:.1f} s wall, run {result['run_s']:.1f} s", flush=True)
        summary = {
            "day": args.day,
            "repeat": args.repeat,
            "target_wall_s": TARGET_S,
            "variants": {
                name: {
                    "wall_s_median": round(statistics.median(r["wall_s"] for r in results), 2),
                    "run_s_median": round(statistics.median(r["run_s"] for r in results), 2),
                    "startup_to_run_start_s_median": round(
                        statistics.median(r["startup_to_run_start_s"] for r in results), 2),
                    "peak_rss_mib_median": round(statistics.median(r["peak_rss_mib"] for r in results)),
                    "steps_last": {k: {m: (round(v, 2) if isinstance(v, float) else v) for m, v in s.items()}
                                   for k, s in results[-1]["steps"].items()},
                    "walls": [round(r["wall_s"], 2) for r in results],
                }
                for name, results in runs.items()
            },
        }
        out = REPO_ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "daily.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
