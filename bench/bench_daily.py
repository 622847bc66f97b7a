"""Benchmark: one day of ``flights_daily_job`` (ingest, 12 checks, features, predictions, drift), in
process (the default for small runs) against the multiprocess executor (``ML_EXECUTOR=multiprocess``).

Preparation (untimed, once): a fresh temporary folder with its own DAGSTER_HOME (a copy of
dagster_home/dagster.yaml), ``ML_DATA_DIR`` and MLflow SQLite store; the flights year is ingested
(one single-run backfill), the training job runs with tuning off (``FLIGHTS_TUNING_TRIALS=0``) and
registers a champion, and the drift reference is built. Then the daily job runs for ``--day``
``--repeat`` times per executor, interleaved, each a cold ``dagster job execute`` subprocess:
wall time of the command (code location load, run, steps) and the run's own time from its event log
(RUN_START -> RUN_SUCCESS), with the per-step breakdown of the last repetition.

    .venv/bin/python bench/bench_daily.py [--day 2013-12-30] [--repeat 3]

Results are printed and written to bench/results/daily.json.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", default="2013-12-30")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-daily-"))
    try:
        (tmp / "home").mkdir()
        (tmp / "logs").mkdir()
        shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", tmp / "home" / "dagster.yaml")
        env = dict(base_env(), DAGSTER_HOME=str(tmp / "home"), ML_DATA_DIR=str(tmp / "data"))
        env.pop("ML_EXECUTOR", None)
        uri = new_store(tmp / "mlflow", env)
        env["MLFLOW_TRACKING_URI"] = uri
        helper(EXPERIMENTS, env, uri, (tmp / "mlflow" / "artifacts" / "flights-monitoring").as_uri())
        prepare(tmp, env)
        variants = {"in_process (default)": {}, "multiprocess": {"ML_EXECUTOR": "multiprocess"}}
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for i in range(args.repeat):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                result = daily(dict(env, **variants[name]), args.day, tmp / "logs" / f"daily_{i}_{name[:5]}.log")
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
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
