"""Benchmark: the Dagster flights training job (tuning off) and the year's scoring against plain scripts.

Training: ``dagster job execute -f definitions.py -j flights_training_job`` (what the main job, the
weekly schedule and the drift sensor run; in-process executor) with
``FLIGHTS_TUNING_TRIALS=0`` (training set, one LightGBM fit with early stopping, MLflow logging and
registration, evaluation with baselines and plots) against ``bench/plain_training.py`` (the same work
with pandas / LightGBM / sklearn / matplotlib / MLflow used directly). Scoring: ``dagster asset
materialize --select flights/predictions --partition-range 2013-01-01...2013-12-31`` with the champion
the Dagster training run just registered, against ``bench/plain_scoring.py`` (the same rows scored
with the same registered model loaded through ``mlflow.pyfunc``, one Parquet file per day).

Every side runs as a subprocess from a cold start, in a fresh temporary folder: a new DAGSTER_HOME
(a copy of dagster_home/dagster.yaml), a new MLflow SQLite store (``MLFLOW_TRACKING_URI=sqlite:///
<tmp>/mlflow.db``) and an ``ML_DATA_DIR`` whose ``assets/flights/features`` is a symlink to the real
features in ``.data/assets/flights/features`` (read only; everything is written to the temporary
folder). The MLflow store and its ``flights`` experiment are created beforehand (untimed, the same
way for both sides) with the artifact location inside the temporary folder: with an sqlite
``MLFLOW_TRACKING_URI`` our tracking resource leaves the artifact root to MLflow, whose default is
``./mlruns`` in the working directory, i.e. the repository.

Wall time and the peak RSS of the whole process tree (sampled every 50 ms) are compared as ratios
(median of ``--repeat`` runs, the two sides interleaved, the order alternating). The Dagster run's
event log gives the breakdown: start-up until RUN_START, then per step the worker start
(STEP_WORKER_STARTING -> STEP_START), input loading, the compute and output handling, and the tail
after RUN_SUCCESS. The two trainings must agree: same best_iteration and test ROC-AUC within 1e-6.

    .venv/bin/python bench/bench_training.py [--repeat N] [--skip-scoring] [--wait-for /tmp/main2.log]
    BENCH_EXECUTOR=inprocess .venv/bin/python bench/bench_training.py --defs bench/defs_variants.py
    BENCH_EXECUTOR=preload   .venv/bin/python bench/bench_training.py --defs bench/defs_variants.py

Results are printed and written to bench/results/training.json and bench/results/scoring.json
(``training_<variant>.json`` / ``scoring_<variant>.json`` with ``--defs bench/defs_variants.py``,
the project's Definitions with an in-process executor or with heavy modules preloaded in the
forkserver, to measure what the executor costs).
``--wait-for FILE`` first polls FILE every 20 s until it contains "main job finished".
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import base_env, helper, measure

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FEATURES = REPO_ROOT / ".data" / "assets" / "flights" / "features"
TARGET_RATIO = 1.2

PREPARE_STORE = """
import sys, mlflow
db, artifacts = sys.argv[1], sys.argv[2]
client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
client.create_experiment("flights", artifact_location=artifacts)
"""

# Reads a finished run back from a DAGSTER_HOME (untimed): every event with its timestamp.
DAGSTER_EVENTS = """
import json, dagster as dg
instance = dg.DagsterInstance.get()
import sys
run = instance.get_runs(limit=int(sys.argv[1]) if len(sys.argv) > 1 else 1)[-1]
events = []
for entry in instance.all_logs(run.run_id):
    events.append({"t": entry.timestamp, "type": entry.dagster_event.event_type.name if entry.dagster_event else "LOG",
                   "step": entry.step_key, "message": (entry.user_message or "")[:200]})
print(json.dumps({"run_id": run.run_id, "status": run.status.value, "events": events}))
"""

MLFLOW_RESULT = """
import json, sys, mlflow
client = mlflow.MlflowClient(tracking_uri=sys.argv[1])
version = client.get_model_version_by_alias("flights_delay", "champion")
run = client.get_run(version.run_id)
print(json.dumps({"version": version.version, "best_iteration": int(run.data.params["best_iteration"]),
                  "threshold": float(run.data.params["threshold"]),
                  "test_roc_auc": run.data.metrics.get("test_roc_auc"),
                  "metrics": run.data.metrics}))
"""


def wait_for(path: Path) -> None:
    while not (path.exists() and "main job finished" in path.read_text(errors="replace")):
        print(f"waiting for 'main job finished' in {path} ...", flush=True)
        time.sleep(20)


def new_store(folder: Path, env: dict[str, str]) -> str:
    folder.mkdir(parents=True)
    helper(PREPARE_STORE, env, str(folder / "mlflow.db"), (folder / "artifacts" / "flights").as_uri())
    return f"sqlite:///{folder / 'mlflow.db'}"


def breakdown(events: list[dict], start_epoch: float, end_epoch: float) -> dict:
    """Where the Dagster run's time goes, from its event log."""
    first = {}
    for e in events:
        first.setdefault((e["type"], e["step"]), e["t"])
    run_start = first.get(("RUN_START", None))
    run_end = first.get(("RUN_SUCCESS", None))
    steps = {}
    for e in events:
        if e["type"] == "STEP_SUCCESS":
            step = e["step"]
            worker = first.get(("STEP_WORKER_STARTING", step))
            start = first.get(("STEP_START", step))
            loaded = [x["t"] for x in events if x["step"] == step and x["type"] == "LOADED_INPUT"]
            output = first.get(("STEP_OUTPUT", step)) or first.get(("ASSET_MATERIALIZATION", step))
            handled = [x["t"] for x in events if x["step"] == step and x["type"] == "HANDLED_OUTPUT"]
            steps[step] = {
                "worker_start_s": (start - worker) if worker and start else None,
                "load_inputs_s": (max(loaded) - start) if loaded else 0.0,
                "compute_s": (output - (max(loaded) if loaded else start)) if output else None,
                "handle_output_s": (max(handled) - output) if handled and output else 0.0,
                "step_s": e["t"] - start,
            }
    return {
        "startup_to_run_start_s": run_start - start_epoch if run_start else None,
        "run_s": (run_end - run_start) if run_start and run_end else None,
        "after_run_success_s": end_epoch - run_end if run_end else None,
        "steps": steps,
        "step_sum_s": sum(s["step_s"] for s in steps.values()),
        "logs": compact_log(events, start_epoch),
    }


def compact_log(events: list[dict], start_epoch: float) -> list[str]:
    """One line per event, runs of the same (step, type) collapsed (e.g. 365 ASSET_MATERIALIZATION)."""
    lines, i = [], 0
    while i < len(events):
        j = i
        while j + 1 < len(events) and (events[j + 1]["type"], events[j + 1]["step"]) == (events[i]["type"], events[i]["step"]):
            j += 1
        e = events[i]
        count = f" x{j - i + 1} until {events[j]['t'] - start_epoch:.2f}" if j > i else ""
        lines.append(f"{e['t'] - start_epoch:7.2f} {e['step'] or '':22s} {e['type']}{count} {e['message'][:110]}")
        i = j + 1
    return lines


def run_once(workdir: Path, index: int, scoring: bool, defs: str = "definitions.py") -> dict:
    env = base_env()
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    link = workdir / "data" / "assets" / "flights" / "features"
    link.parent.mkdir(parents=True)
    link.symlink_to(FEATURES)
    dagster_uri = new_store(workdir / "dagster_mlflow", env)
    plain_store = workdir / "plain_mlflow"
    new_store(plain_store, env)
    dagster_env = dict(env, DAGSTER_HOME=str(home), ML_DATA_DIR=str(workdir / "data"),
                       MLFLOW_TRACKING_URI=dagster_uri, FLIGHTS_TUNING_TRIALS="0")
    dagster_cmd = [str(BIN / "dagster"), "job", "execute", "-f", defs, "-j", "flights_training_job"]
    plain_cmd = [sys.executable, "bench/plain_training.py", str(FEATURES), str(plain_store),
                 str(workdir / "plain_result.json")]
    result: dict = {}
    order = ("plain", "dagster") if index % 2 == 0 else ("dagster", "plain")
    for side in order:
        if side == "plain":
            result["plain"] = measure(plain_cmd, env, workdir / "plain.log")
        else:
            result["dagster"] = measure(dagster_cmd, dagster_env, workdir / "dagster.log")
            run = json.loads(helper(DAGSTER_EVENTS, dagster_env))
            result["dagster"]["breakdown"] = breakdown(run["events"], result["dagster"]["start_epoch"],
                                                       result["dagster"]["end_epoch"])
    plain_model = json.loads((workdir / "plain_result.json").read_text())
    dagster_model = json.loads(helper(MLFLOW_RESULT, env, dagster_uri))
    result["models"] = {
        "dagster": {"best_iteration": dagster_model["best_iteration"], "test_roc_auc": dagster_model["test_roc_auc"],
                    "threshold": dagster_model["threshold"], "test_f1": dagster_model["metrics"].get("test_f1")},
        "plain": {"best_iteration": plain_model["best_iteration"], "test_roc_auc": plain_model["test"]["roc_auc"],
                  "threshold": plain_model["threshold"], "test_f1": plain_model["test"]["f1"],
                  "seconds": plain_model["seconds"]},
    }
    result["agree"] = (dagster_model["best_iteration"] == plain_model["best_iteration"]
                       and abs(dagster_model["test_roc_auc"] - plain_model["test"]["roc_auc"]) <= 1e-6)
    if scoring:
        score_env = dict(dagster_env)
        scoring_cmd = [str(BIN / "dagster"), "asset", "materialize", "-f", defs, "--select",
                       "flights/predictions", "--partition-range", "2013-01-01...2013-12-31"]
        plain_score_cmd = [sys.executable, "bench/plain_scoring.py", str(FEATURES), str(workdir / "plain_scores")]
        plain_score_env = dict(env, MLFLOW_TRACKING_URI=dagster_uri)
        for side in order:
            if side == "plain":
                result["score_plain"] = measure(plain_score_cmd, plain_score_env, workdir / "plain_scoring.log")
                lines = [l for l in (workdir / "plain_scoring.log").read_text().splitlines() if l.startswith("{")]
                result["score_plain"]["detail"] = json.loads(lines[-1])
            else:
                # the training run above is the newest run: its events are read before this one starts
                result["score_dagster"] = measure(scoring_cmd, score_env, workdir / "dagster_scoring.log")
                run = json.loads(helper(DAGSTER_EVENTS, score_env))
                result["score_dagster"]["breakdown"] = breakdown(
                    run["events"], result["score_dagster"]["start_epoch"], result["score_dagster"]["end_epoch"])
        log = (workdir / "dagster_scoring.log").read_text()
        found = re.findall(r"scored (\d+) rows", log)
        result["score_rows"] = {"dagster": int(found[-1]) if found else None,
                                "plain": result["score_plain"]["detail"]["rows"]}
    stray = REPO_ROOT / "mlruns"
    result["wrote_repo_mlruns"] = stray.exists()
    return result


def med(values) -> float:
    return statistics.median(list(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--wait-for", type=Path, default=None)
    parser.add_argument("--defs", default="definitions.py",
                        help="definitions file of the Dagster side (bench/defs_variants.py: other executors)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (printed)")
    args = parser.parse_args()
    if args.wait_for:
        wait_for(args.wait_for)
    if not FEATURES.is_dir() or len(list(FEATURES.glob("*.parquet"))) < 365:
        raise SystemExit(f"{FEATURES} needs the 365 daily feature files: run the main job first")
    runs = []
    for index in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench_training_"))
        try:
            runs.append(run_once(tmp, index, not args.skip_scoring, args.defs))
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        r = runs[-1]
        print(f"run {index + 1}: dagster {r['dagster']['wall_s']:.1f} s, plain {r['plain']['wall_s']:.1f} s,"
              f" models agree: {r['agree']}", flush=True)

    summary: dict = {}
    for name in ("plain", "dagster"):
        summary[name] = {"wall_s": med(r[name]["wall_s"] for r in runs),
                         "peak_rss_mib": med(r[name]["peak_rss_mib"] for r in runs),
                         "wall_s_runs": [round(r[name]["wall_s"], 2) for r in runs]}
    summary["ratio"] = {"wall": summary["dagster"]["wall_s"] / summary["plain"]["wall_s"],
                        "peak_rss": summary["dagster"]["peak_rss_mib"] / summary["plain"]["peak_rss_mib"],
                        "target": TARGET_RATIO}
    bds = [r["dagster"]["breakdown"] for r in runs]
    steps = sorted(bds[0]["steps"])
    summary["dagster_breakdown"] = {
        "startup_to_run_start_s": med(b["startup_to_run_start_s"] for b in bds),
        "after_run_success_s": med(b["after_run_success_s"] for b in bds),
        "steps": {s: {k: med(b["steps"][s][k] or 0.0 for b in bds) for k in bds[0]["steps"][s]} for s in steps},
    }
    summary["plain_breakdown"] = {k: med(r["models"]["plain"]["seconds"][k] for r in runs)
                                  for k in runs[0]["models"]["plain"]["seconds"]}
    summary["models"] = [r["models"] for r in runs]
    summary["agree"] = all(r["agree"] for r in runs)
    summary["runs"] = args.repeat
    summary["wrote_repo_mlruns"] = any(r["wrote_repo_mlruns"] for r in runs)
    summary["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    summary["last_dagster_event_log"] = bds[-1]["logs"]
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    summary["defs"] = args.defs
    summary["bench_executor"] = os.environ.get("BENCH_EXECUTOR") if args.defs != "definitions.py" else None
    suffix = "" if args.defs == "definitions.py" else f"_{os.environ.get('BENCH_EXECUTOR', 'inprocess')}"
    (out / f"training{suffix}.json").write_text(json.dumps(summary, indent=2))

    print("\ntraining (FLIGHTS_TUNING_TRIALS=0), median of", args.repeat)
    print(f"{'':10s} {'wall s':>8s} {'peak RSS MiB':>13s}")
    for name in ("plain", "dagster"):
        print(f"{name:10s} {summary[name]['wall_s']:8.1f} {summary[name]['peak_rss_mib']:13.0f}")
    print(f"{'ratio':10s} {summary['ratio']['wall']:8.2f} {summary['ratio']['peak_rss']:13.2f}  (target <= {TARGET_RATIO})")
    b = summary["dagster_breakdown"]
    print(f"dagster: start-up until RUN_START {b['startup_to_run_start_s']:.1f} s, after RUN_SUCCESS"
          f" {b['after_run_success_s']:.1f} s")
    for s, v in b["steps"].items():
        print(f"  {s:24s} step {v['step_s']:6.1f} s (worker start {v['worker_start_s']:.1f}, inputs"
              f" {v['load_inputs_s']:.1f}, compute {v['compute_s']:.1f}, output {v['handle_output_s']:.1f})")
    print("plain: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["plain_breakdown"].items()))
    for i, m in enumerate(summary["models"]):
        print(f"run {i + 1}: best_iteration dagster {m['dagster']['best_iteration']} plain {m['plain']['best_iteration']};"
              f" test ROC-AUC dagster {m['dagster']['test_roc_auc']:.9f} plain {m['plain']['test_roc_auc']:.9f};"
              f" threshold {m['dagster']['threshold']:.6f} / {m['plain']['threshold']:.6f}")
    print(f"models agree: {summary['agree']}")
    if summary["wrote_repo_mlruns"]:
        print("WARNING: a run wrote ./mlruns into the repository")

    if not args.skip_scoring:
        score: dict = {}
        for name, keyname in (("plain", "score_plain"), ("dagster", "score_dagster")):
            rows = runs[0]["score_rows"][name]
            score[name] = {"wall_s": med(r[keyname]["wall_s"] for r in runs),
                           "peak_rss_mib": med(r[keyname]["peak_rss_mib"] for r in runs),
                           "rows": rows, "wall_s_runs": [round(r[keyname]["wall_s"], 2) for r in runs]}
            score[name]["rows_per_s"] = rows / score[name]["wall_s"] if rows else None
        sb = [r["score_dagster"]["breakdown"] for r in runs]
        step = next(iter(sb[0]["steps"]))
        score["dagster"]["step_s"] = med(b["steps"][step]["step_s"] for b in sb)
        score["dagster"]["step"] = {k: med(b["steps"][step][k] or 0.0 for b in sb) for k in sb[0]["steps"][step]}
        score["dagster"]["startup_to_run_start_s"] = med(b["startup_to_run_start_s"] for b in sb)
        score["dagster"]["step_rows_per_s"] = score["dagster"]["rows"] / score["dagster"]["step_s"]
        score["plain"]["detail"] = {k: med(r["score_plain"]["detail"]["seconds"][k] for r in runs)
                                    for k in runs[0]["score_plain"]["detail"]["seconds"]}
        score["plain"]["predict_rows_per_s"] = score["plain"]["rows"] / score["plain"]["detail"]["predict"]
        score["ratio"] = {"wall": score["dagster"]["wall_s"] / score["plain"]["wall_s"],
                          "rows_per_s": score["plain"]["rows_per_s"] / score["dagster"]["rows_per_s"],
                          "peak_rss": score["dagster"]["peak_rss_mib"] / score["plain"]["peak_rss_mib"]}
        score["runs"] = args.repeat
        score["last_dagster_event_log"] = sb[-1]["logs"]
        (out / f"scoring{suffix}.json").write_text(json.dumps(score, indent=2))
        print("\nscoring 2013-01-01..2013-12-31 with the champion, median of", args.repeat)
        print(f"{'':10s} {'rows':>8s} {'wall s':>8s} {'rows/s':>9s} {'peak RSS MiB':>13s}")
        for name in ("plain", "dagster"):
            s = score[name]
            print(f"{name:10s} {s['rows']:8d} {s['wall_s']:8.1f} {s['rows_per_s']:9.0f} {s['peak_rss_mib']:13.0f}")
        print(f"{'ratio':10s} {'':8s} {score['ratio']['wall']:8.2f} {'':9s} {score['ratio']['peak_rss']:13.2f}"
              "  (wall and RSS: dagster / plain)")
        print(f"dagster step only: {score['dagster']['step_s']:.1f} s = {score['dagster']['step_rows_per_s']:.0f} rows/s"
              f" ({score['dagster']['step']}); plain predict only: {score['plain']['detail']['predict']:.1f} s ="
              f" {score['plain']['predict_rows_per_s']:.0f} rows/s")


if __name__ == "__main__":
    main()
