"""Scale benchmark: each stage of the main job at 1x and N-times the demo data (bench/make_scaled_flights.py),
wall time and peak resident memory of the whole process tree (sampled every 50 ms), in one run.

    .venv/bin/python bench/bench_scale.py [--scales 1 10] [--full-main-at 30]

Stages, as ./run.sh main runs them (tuning off: FLIGHTS_TUNING_TRIALS=0):

  backfill     raw flights, raw weather, checks and features for 2013 (one single-run backfill)
  training     flights_training_job (training set, model, evaluation and gate)
  predictions  flights/predictions for 2013
  reference    flights/reference
  drift        flights/drift_report for 2013

Each scale gets a fresh DAGSTER_HOME, data folder and MLflow store. ``--full-main-at N`` also runs
the whole main job (./run.sh main's stages, few-shot excluded) at N times the data and records
whether it completes. Results go to bench/results/scale.json and are printed as a table with the
targets of issue 16 (at 10x: every range stage <= 2.5 GiB, training <= 5 GiB, wall <= 8x of 1x).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness import base_env, measure

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
YEAR = "2013-01-01...2013-12-31"
#: a stage whose process tree passes this is stopped (the machine is shared); ML_BENCH_MAX_RSS_MIB overrides
MAX_RSS_MIB = float(os.environ.get("ML_BENCH_MAX_RSS_MIB", 10_240))


def stage_commands() -> dict[str, list[str]]:
    dagster = [str(BIN / "dagster")]
    materialize = [*dagster, "asset", "materialize", "-f", "definitions.py", "--select"]
    return {
        "backfill": [*materialize, "group:flights", "--partition-range", YEAR],
        "training": [*dagster, "job", "execute", "-f", "definitions.py", "-j", "flights_training_job"],
        "predictions": [*materialize, "flights/predictions", "--partition-range", YEAR],
        "reference": [*materialize, "flights/reference"],
        "drift": [*materialize, "flights/drift_report", "--partition-range", YEAR],
    }


def run_scale(times: int, workdir: Path, stages: list[str] | None = None) -> dict[str, dict[str, float]]:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from make_scaled_flights import make

    source = workdir / f"flights_x{times}.csv"
    # a kept workdir (--keep-data) is reused: its data, instance and MLflow store stay, so a later
    # stage can be rerun without redoing the ones before it
    rows = make(times, source) if not source.exists() else sum(1 for _ in source.open()) - 1
    home = workdir / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = base_env() | {
        "DAGSTER_HOME": str(home), "ML_DATA_DIR": str(workdir / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}",
        "FLIGHTS_SOURCE_PATH": str(source), "FLIGHTS_TUNING_TRIALS": "0",
    }
    (workdir / "mlflow").mkdir(exist_ok=True)
    results: dict[str, dict[str, float]] = {"rows": {"flights": rows}}
    for name, cmd in stage_commands().items():
        if stages and name not in stages:
            continue
        print(f"  x{times} {name} ...", flush=True)
        load_before = os.getloadavg()[0]
        results[name] = measure(cmd, env, workdir / f"{name}.log", max_rss_mib=MAX_RSS_MIB)
        # the machine is shared: the 1-minute load average at the start and the end of the stage
        results[name]["load_avg"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        print(f"  x{times} {name}: {results[name]['wall_s']:.1f} s, {results[name]['peak_rss_mib']:.0f} MiB,"
              f" load {results[name]['load_avg'][0]} -> {results[name]['load_avg'][1]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--full-main-at", type=int, default=0, help="also run every stage at this scale")
    parser.add_argument("--workdir", default=None, help="where the data of each scale goes (default: a temp folder)")
    parser.add_argument("--out", default="scale.json", help="file name under bench/results")
    parser.add_argument("--stages", nargs="+", choices=list(stage_commands()), default=None,
                        help="run only these stages (in the job's order; a later stage needs the earlier ones)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep each scale's data, instance and MLflow store in --workdir and reuse them on the"
                             " next run (rerun a later stage without the earlier ones)")
    args = parser.parse_args()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    summary: dict = {"scales": {}, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    for times in args.scales:
        workdir = base / f"x{times}"
        workdir.mkdir(parents=True, exist_ok=args.keep_data)
        summary["scales"][str(times)] = run_scale(times, workdir, args.stages)
        if not args.keep_data:
            shutil.rmtree(workdir / "data", ignore_errors=True)
    if args.full_main_at:
        workdir = base / f"x{args.full_main_at}"
        workdir.mkdir(parents=True)
        try:
            summary["full_main"] = {"scale": args.full_main_at, **run_scale(args.full_main_at, workdir), "completed": True}
        except SystemExit as exc:
            summary["full_main"] = {"scale": args.full_main_at, "completed": False, "error": str(exc)[-2000:]}
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(summary, indent=2))
    scales = [str(s) for s in args.scales]
    print(f"\n{'stage':12s}" + "".join(f"{'x' + s + ' wall s':>14s}{'x' + s + ' MiB':>12s}" for s in scales))
    for name in args.stages or stage_commands():
        cells = "".join(f"{summary['scales'][s][name]['wall_s']:14.1f}{summary['scales'][s][name]['peak_rss_mib']:12.0f}"
                        for s in scales)
        print(f"{name:12s}{cells}")
    if "full_main" in summary:
        print(f"\nwhole main job at x{args.full_main_at}: {'completed' if summary['full_main']['completed'] else 'FAILED'}")


if __name__ == "__main__":
    main()
