"""Benchmark: the Dagster daily drift report over the full year against a plain script.

Dagster side: ``dagster asset materialize -f definitions.py --select flights/drift_report
--partition-range 2013-01-01...2013-12-31`` (one single-run backfill, one step). Plain side:
``bench/plain_drift.py`` (read, join, ``compute_drift`` per day against the same reference with the
YAML's DriftConfig, one Parquet of per-column scores per day, HTML of the days that alarm), and the
same script with ``--html never`` (the HTML share; ``monitoring.drift.html`` is a literal in
pipelines/flights.yaml, so the Dagster side cannot turn it off per run).

Set-up, untimed, in a fresh temporary folder: a DAGSTER_HOME (copy of dagster_home/dagster.yaml), an
``ML_DATA_DIR`` whose ``assets/flights/{features,predictions,training_set.parquet}`` are symlinks to
the real files in ``.data`` (read only; everything is written to the temporary folder), and a copy of
the embedded MLflow store ``.mlflow`` (``MLFLOW_TRACKING_URI=sqlite:///<tmp>/mlflow/mlflow.db``; the
champion's artifacts are read from /work/main/.mlflow/artifacts through their absolute URIs; the
``flights-monitoring`` experiment's artifact location is pointed into the temporary folder in the
copy, so the HTML files the Dagster side logs do not land in the repository's store). Then
``flights/reference`` is materialized in the temporary instance; the plain side gets that same
reference (the pickle of Dagster's default IO manager). A reference built independently from the
train split of training_set.parquet with the scores of the predictions files (``build_reference``,
20,000 rows, seed of the YAML) is compared with it.

Every side is a subprocess from a cold start; wall time and peak RSS of the process tree (sampled
every 50 ms; ``harness.measure``); median of ``--repeat`` runs, order alternating. From the
Dagster instance: the per-day ``compute_seconds`` metadata of the drift report (the Evidently import is
not counted in it; the first day, with cold caches, is still left out of "after warm-up") and the event-log
breakdown. The per-day score files of both sides must agree. Last, one large partition: 30 days
(2013-07-01..2013-07-30, ~27k rows) as one frame through ``compute_drift`` after a warm-up, with the
default sampling (``max_current_rows`` 20,000) and without it, time and peak RSS.

    .venv/bin/python bench/bench_drift.py [--repeat N] [--keep]

Results are printed and written to bench/results/drift.json.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import DAGSTER_EVENTS, breakdown  # noqa: E402
from harness import base_env, helper, measure  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ASSETS = REPO_ROOT / ".data" / "assets" / "flights"
FEATURES, PREDICTIONS, TRAINING_SET = ASSETS / "features", ASSETS / "predictions", ASSETS / "training_set.parquet"
TARGET_RATIO = 1.5
TARGET_DAY_S = 1.0

# Untimed: the Dagster reference pickle vs a reference built from training_set + predictions scores.
BUILD_REFERENCE = """
import json, pickle, sys
from pathlib import Path
import pandas as pd, yaml
sys.path.insert(0, sys.argv[1])
from ml_assets.config import load_pipeline
from ml_assets.monitoring.drift import build_reference, drift_settings
spec = yaml.safe_load(Path(sys.argv[1], "pipelines", "flights.yaml").read_text())
key = list(spec["sources"][spec["features"]["primary_source"]]["entity_key"])
score = f"{spec['target']['name']}_score"
train = pd.read_parquet(sys.argv[2])
train = train[train["split"] == "train"].reset_index(drop=True)
days = sorted(train["partition_date"].astype(str).unique())
preds = pd.concat([pd.read_parquet(Path(sys.argv[3]) / f"{d}.parquet") for d in days], ignore_index=True)
scored = train.merge(preds[[*key, score]], on=key, how="left", validate="one_to_one")
mine = build_reference(scored, drift_settings(load_pipeline(Path(sys.argv[1], "pipelines", "flights.yaml")))[0],
                       sample_size=spec["monitoring"]["drift"].get("reference_rows", 20000), seed=spec["model"]["seed"])
with open(sys.argv[4], "rb") as fh:
    dagster_ref = pickle.load(fh)
a, b = mine.sample, dagster_ref.sample
same_rows = a.shape == b.shape and all(a[c].equals(b[c]) for c in a.columns if c != score)
max_score_diff = float((a[score] - b[score]).abs().max())
print(json.dumps({"window": f"{days[0]}..{days[-1]}", "train_rows": len(train), "sample_rows": len(a),
                  "same_sample_rows": bool(same_rows), "max_score_diff": max_score_diff,
                  "missing_scores": int(scored[score].isna().sum())}))
"""

# Untimed: per-partition metadata of the drift report, from the newest run's materializations.
DAGSTER_DAYS = """
import json, dagster as dg
instance = dg.DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
days = {}
for entry in instance.all_logs(run.run_id):
    ev = entry.dagster_event
    if ev is None or ev.event_type_value != "ASSET_MATERIALIZATION":
        continue
    m = ev.event_specific_data.materialization
    if m.partition is None:
        continue
    md = {k: getattr(v, "value", None) for k, v in m.metadata.items()}
    days[m.partition] = {"compute_seconds": md.get("compute_seconds"), "data_drift": md.get("data_drift"),
                         "prediction_drift": md.get("prediction_drift"), "html_bytes": md.get("html_bytes")}
print(json.dumps(days))
"""

# One large partition: 30 days as one frame, compute_drift after warm-up, time and peak RSS.
LARGE = """
import json, pickle, resource, sys, time
from dataclasses import replace
from pathlib import Path
import pandas as pd, psutil
sys.path.insert(0, sys.argv[1])
from ml_assets.config import load_pipeline
from ml_assets.monitoring.drift import compute_drift, drift_settings
key = ["year", "month", "day", "carrier", "flight", "origin"]
with open(sys.argv[2], "rb") as fh:
    reference = pickle.load(fh)
days = [f"2013-07-{d:02d}" for d in range(1, 31)]
def load(d):
    f = pd.read_parquet(Path(sys.argv[3]) / f"{d}.parquet")
    p = pd.read_parquet(Path(sys.argv[4]) / f"{d}.parquet")
    return f.merge(p[[*key, "delayed_score"]], on=key, how="left", validate="one_to_one")
frames = [load(d) for d in days]
big = pd.concat(frames, ignore_index=True)
config = drift_settings(load_pipeline(Path(sys.argv[1], "pipelines", "flights.yaml")))[1]
compute_drift(reference, frames[0], config)  # warm-up (imports Evidently)
def rss():
    return psutil.Process().memory_info().rss / 2**20
out = {"rows": len(big), "frame_mib": big.memory_usage(deep=True).sum() / 2**20,
       "max_current_rows": config.max_current_rows}
day_times = [compute_drift(reference, frames[i], config).seconds for i in range(1, 4)]
out["one_day_s"] = sorted(day_times)[1]
for name, cfg in (("sampled", config), ("unsampled", replace(config, max_current_rows=10**9))):
    before = rss()
    times = []
    for _ in range(3):
        r = compute_drift(reference, big, cfg)
        times.append(r.seconds)
    out[name] = {"seconds_median": sorted(times)[1], "seconds": times, "sampled_rows": r.sampled_rows,
                 "rss_before_mib": before, "rss_after_mib": rss(),
                 "peak_rss_process_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "share_drifted": r.share_drifted, "prediction_score": r.prediction_score}
print(json.dumps(out))
"""


def setup(workdir: Path) -> dict[str, str]:
    env = base_env()
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    flights = workdir / "data" / "assets" / "flights"
    flights.mkdir(parents=True)
    (flights / "features").symlink_to(FEATURES)
    (flights / "predictions").symlink_to(PREDICTIONS)
    (flights / "training_set.parquet").symlink_to(TRAINING_SET)
    store = workdir / "mlflow"
    shutil.copytree(REPO_ROOT / ".mlflow", store)
    with sqlite3.connect(store / "mlflow.db") as db:  # HTML artifacts of the copy go to the temp folder
        db.execute("UPDATE experiments SET artifact_location = ? WHERE name = 'flights-monitoring'",
                   ((store / "artifacts" / "flights-monitoring").as_uri(),))
    dagster_env = dict(env, DAGSTER_HOME=str(home), ML_DATA_DIR=str(workdir / "data"),
                       MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}")
    ref_cmd = [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "flights/reference"]
    ref = measure(ref_cmd, dagster_env, workdir / "reference.log")
    print(f"  reference materialized ({ref['wall_s']:.1f} s, untimed)", flush=True)
    return dagster_env


def dir_bytes(folder: Path) -> tuple[int, int]:
    files = list(folder.rglob("*.html")) if folder.exists() else []
    return len(files), sum(f.stat().st_size for f in files)


def compare_scores(a: Path, b: Path) -> dict:
    code = """
import json, sys
from pathlib import Path
import pandas as pd
a, b = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p.name for p in a.glob("*.parquet"))
worst, mismatched = 0.0, []
for name in files:
    x, y = pd.read_parquet(a / name), pd.read_parquet(b / name)
    if list(x["column"]) != list(y["column"]) or list(x["drifted"]) != list(y["drifted"]):
        mismatched.append(name)
        continue
    worst = max(worst, float((x["score"] - y["score"]).abs().fillna(0).max()))
print(json.dumps({"files": len(files), "files_other": len(list(b.glob("*.parquet"))),
                  "mismatched": mismatched, "max_score_diff": worst}))
"""
    return json.loads(helper(code, base_env(), str(a), str(b)))


def last_json(log: Path) -> dict:
    return json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])


def run_once(workdir: Path, index: int) -> dict:
    dagster_env = setup(workdir)
    ref_pkl = workdir / "dagster_home" / "storage" / "flights" / "reference"
    result: dict = {"reference_check": json.loads(helper(BUILD_REFERENCE, base_env(), str(REPO_ROOT),
                                                         str(TRAINING_SET), str(PREDICTIONS), str(ref_pkl)))}
    env = base_env()
    dagster_cmd = [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select",
                   "flights/drift_report", "--partition-range", "2013-01-01...2013-12-31"]

    def plain_cmd(html: str) -> list[str]:
        return [sys.executable, "bench/plain_drift.py", str(FEATURES), str(PREDICTIONS), str(ref_pkl),
                str(workdir / f"plain_{html}"), "--html", html]

    order = ("plain", "dagster") if index % 2 == 0 else ("dagster", "plain")
    for side in order:
        if side == "plain":
            for html in ("alarms", "never"):
                name = "plain" if html == "alarms" else "plain_no_html"
                result[name] = measure(plain_cmd(html), env, workdir / f"{name}.log")
                result[name]["detail"] = last_json(workdir / f"{name}.log")
                print(f"  {name}: {result[name]['wall_s']:.1f} s", flush=True)
        else:
            result["dagster"] = measure(dagster_cmd, dagster_env, workdir / "dagster.log")
            print(f"  dagster: {result['dagster']['wall_s']:.1f} s", flush=True)
            run = json.loads(helper(DAGSTER_EVENTS, dagster_env))
            result["dagster"]["status"] = run["status"]
            result["dagster"]["breakdown"] = breakdown(run["events"], result["dagster"]["start_epoch"],
                                                       result["dagster"]["end_epoch"])
            mats = [e["t"] for e in run["events"] if e["type"] == "ASSET_MATERIALIZATION"]
            result["dagster"]["materialization_events"] = {
                "count": len(mats), "first_to_last_s": (max(mats) - min(mats)) if mats else None}
            result["dagster"]["days"] = json.loads(helper(DAGSTER_DAYS, dagster_env))
            count, size = dir_bytes(workdir / "data" / "reports")
            result["dagster"]["html_files"], result["dagster"]["html_bytes"] = count, size
    result["agreement"] = compare_scores(workdir / "data" / "assets" / "flights" / "drift_report",
                                         workdir / "plain_alarms" / "drift_report")
    d_alarm = sorted(d for d, v in result["dagster"]["days"].items() if v["data_drift"] or v["prediction_drift"])
    result["agreement"]["same_alarm_days"] = d_alarm == result["plain"]["detail"]["alarm_days"]
    result["wrote_repo_mlruns"] = (REPO_ROOT / "mlruns").exists()
    if index == 0:
        large = measure([sys.executable, "-c", LARGE, str(REPO_ROOT), str(ref_pkl), str(FEATURES), str(PREDICTIONS)],
                        env, workdir / "large.log")
        result["large_partition"] = dict(last_json(workdir / "large.log"), process_peak_rss_tree_mib=large["peak_rss_mib"])
    return result


def dist(values: list[float]) -> dict:
    v = sorted(values)
    return {"n": len(v), "median": statistics.median(v), "p95": v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))],
            "max": v[-1], "sum": sum(v)}


def med(values) -> float:
    return statistics.median(list(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (printed)")
    args = parser.parse_args()
    runs = []
    for index in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench_drift_"))
        print(f"run {index + 1} in {tmp}", flush=True)
        try:
            runs.append(run_once(tmp, index))
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    summary: dict = {"runs": args.repeat, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    for name in ("plain", "plain_no_html", "dagster"):
        summary[name] = {"wall_s": med(r[name]["wall_s"] for r in runs),
                         "peak_rss_mib": med(r[name]["peak_rss_mib"] for r in runs),
                         "wall_s_runs": [round(r[name]["wall_s"], 2) for r in runs]}
    summary["ratio"] = {"wall": summary["dagster"]["wall_s"] / summary["plain"]["wall_s"],
                        "peak_rss": summary["dagster"]["peak_rss_mib"] / summary["plain"]["peak_rss_mib"],
                        "wall_vs_plain_no_html": summary["dagster"]["wall_s"] / summary["plain_no_html"]["wall_s"],
                        "target": TARGET_RATIO}
    last = runs[-1]
    days = last["dagster"]["days"]
    ordered = [days[d]["compute_seconds"] for d in sorted(days)]
    summary["dagster_compute_seconds"] = {"all_days": dist(ordered), "after_warmup": dist(ordered[1:]),
                                          "first_day": ordered[0], "target_s": TARGET_DAY_S}
    pd_ = last["plain"]["detail"]["per_day_seconds"]
    plain_ordered = [pd_[d] for d in sorted(pd_)]
    summary["plain_compute_seconds"] = {"after_warmup": dist(plain_ordered[1:]), "first_day": plain_ordered[0]}
    summary["plain"]["phases"] = {k: med(r["plain"]["detail"]["seconds"][k] for r in runs)
                                  for k in last["plain"]["detail"]["seconds"]}
    summary["plain_no_html"]["phases"] = {k: med(r["plain_no_html"]["detail"]["seconds"][k] for r in runs)
                                          for k in last["plain_no_html"]["detail"]["seconds"]}
    alarms = last["plain"]["detail"]["alarms"]
    summary["alarms"] = {"data": alarms["data"], "prediction": alarms["prediction"],
                         "days": last["plain"]["detail"]["alarm_days"]}
    summary["html"] = {
        "reports": last["plain"]["detail"]["html_reports"],
        "plain_seconds": med(r["plain"]["detail"]["html_seconds"] for r in runs),
        "plain_mb": last["plain"]["detail"]["html_bytes"] / 1e6,
        "dagster_files": last["dagster"]["html_files"], "dagster_mb": last["dagster"]["html_bytes"] / 1e6,
        "mb_per_report": (last["plain"]["detail"]["html_bytes"] / 1e6 / max(1, last["plain"]["detail"]["html_reports"])),
    }
    b = last["dagster"]["breakdown"]
    summary["dagster_breakdown"] = {k: b[k] for k in ("startup_to_run_start_s", "run_s", "after_run_success_s",
                                                     "steps", "step_sum_s")}
    summary["dagster_breakdown"]["materialization_events"] = last["dagster"]["materialization_events"]
    summary["dagster_breakdown"]["sum_compute_seconds_metadata"] = sum(ordered)
    summary["reference_check"] = last["reference_check"]
    summary["agreement"] = [r["agreement"] for r in runs]
    summary["wrote_repo_mlruns"] = any(r["wrote_repo_mlruns"] for r in runs)
    summary["large_partition"] = runs[0]["large_partition"]
    summary["last_dagster_event_log"] = b["logs"]
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "drift.json").write_text(json.dumps(summary, indent=2))

    print(f"\ndrift report 2013-01-01..2013-12-31 (365 days), median of {args.repeat}")
    print(f"{'':16s} {'wall s':>8s} {'peak RSS MiB':>13s}")
    for name in ("plain", "plain_no_html", "dagster"):
        print(f"{name:16s} {summary[name]['wall_s']:8.1f} {summary[name]['peak_rss_mib']:13.0f}")
    r = summary["ratio"]
    print(f"{'ratio':16s} {r['wall']:8.2f} {r['peak_rss']:13.2f}  (dagster / plain; target <= {TARGET_RATIO});"
          f" dagster / plain_no_html {r['wall_vs_plain_no_html']:.2f}")
    c, pc = summary["dagster_compute_seconds"], summary["plain_compute_seconds"]
    print(f"per-day compute_seconds (dagster metadata, after warm-up): median {c['after_warmup']['median']:.3f}"
          f" p95 {c['after_warmup']['p95']:.3f} max {c['after_warmup']['max']:.3f} (first day {c['first_day']:.2f};"
          f" target <= {TARGET_DAY_S}); plain: median {pc['after_warmup']['median']:.3f} p95"
          f" {pc['after_warmup']['p95']:.3f} max {pc['after_warmup']['max']:.3f}")
    h = summary["html"]
    print(f"alarm days {len(summary['alarms']['days'])} (data {len(summary['alarms']['data'])}, prediction"
          f" {len(summary['alarms']['prediction'])}); HTML {h['reports']} reports, {h['plain_mb']:.1f} MB"
          f" ({h['mb_per_report']:.2f} MB each), {h['plain_seconds']:.1f} s (plain); dagster {h['dagster_files']}"
          f" files {h['dagster_mb']:.1f} MB")
    print(f"dagster: start-up until RUN_START {b['startup_to_run_start_s']:.1f} s, run {b['run_s']:.1f} s,"
          f" after RUN_SUCCESS {b['after_run_success_s']:.1f} s; sum of per-day compute_seconds {sum(ordered):.1f} s")
    for s, v in b["steps"].items():
        print(f"  {s:24s} step {v['step_s']:6.1f} s (worker start {v['worker_start_s'] or 0:.1f}, inputs"
              f" {v['load_inputs_s']:.1f}, compute {v['compute_s'] or 0:.1f}, output {v['handle_output_s']:.1f})")
    print("plain phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["plain"]["phases"].items()))
    print(f"reference check: {summary['reference_check']}")
    print(f"agreement: {summary['agreement']}")
    lp = summary["large_partition"]
    print(f"large partition {lp['rows']} rows ({lp['frame_mib']:.0f} MiB frame): sampled to"
          f" {lp['sampled']['sampled_rows']} {lp['sampled']['seconds_median']:.2f} s; unsampled"
          f" {lp['unsampled']['seconds_median']:.2f} s; one day {lp['one_day_s']:.2f} s; process peak RSS"
          f" {lp['unsampled']['peak_rss_process_mib']:.0f} MiB (after sampled {lp['sampled']['peak_rss_process_mib']:.0f})")
    if summary["wrote_repo_mlruns"]:
        print("WARNING: ./mlruns exists in the repository")


if __name__ == "__main__":
    main()
