"""What a daily example pipeline reaches on a few days, measured the way its end-to-end test runs it.

``tests/test_example_pipelines.py::test_daily_yes_no_target_minneapolis_stops_through_drift`` takes
``pipelines/examples/minneapolis_stops.yaml`` through the graph on 2017-01-01 .. 01-21 with 2 tuning
trials; this script does the same runs, in process, in its own instance, data folder and MLflow store
under ``--work`` (nothing of the project's is touched), and prints the figures the README quotes:

1. ingest and features over the range (one run), then the training job (training set, model,
   evaluation and gate) on the YAML's windows (70/15/15 of the range by time);
2. the evaluation's metrics: the tuned model's test ROC-AUC against the generic baselines (the
   logistic regression on the same features, the class prior), the paired test, the alias;
3. the predictions of the range, the reference (rows, labelled rows, calibrated thresholds) and the
   drift report of the last ``--drift-days`` days, with the days that alarm.

    PYTHONPATH=$PWD .venv/bin/python bench/example_metrics.py                  # Minneapolis, as the test
    PYTHONPATH=$PWD .venv/bin/python bench/example_metrics.py --trials 10      # the YAML's default trials

Results vary a little with the machine's load only through the tuning timeout (600 s here, as in
the test, so 2 trials always finish): the split, the seeds and the data are fixed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
for name, value in {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "ML_EXECUTOR": "in_process"}.items():
    os.environ.setdefault(name, value)


def table(text: str) -> list[list[str]]:
    """Body rows of a markdown table as lists of cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines()[2:] if line.strip().startswith("|")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "examples" / "minneapolis_stops.yaml"))
    parser.add_argument("--end", default="2017-01-21", help="last day of the range (the test's: 2017-01-21)")
    parser.add_argument("--trials", type=int, default=2, help="tuning trials (the test's: 2)")
    parser.add_argument("--drift-days", type=int, default=6, help="drift report of the range's last N days")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()

    import dagster as dg
    import yaml

    from harness import pipeline_project
    from ml_assets.config.base import read_yaml
    from ml_assets.ingest.assets import daily_partitions

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="example_metrics-"))
    raw = read_yaml(Path(args.pipeline))
    raw["partitioning"] = {**raw["partitioning"], "end": args.end}
    raw["model"] = {**raw["model"], "tuning": {**raw["model"].get("tuning", {}), "n_trials": args.trials,
                                               "timeout_seconds": 600}}
    folder = work / "pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / Path(args.pipeline).name).write_text(yaml.safe_dump(raw, sort_keys=False))
    spec, keys, defs, resources = pipeline_project(folder, work)
    os.environ["ML_DATA_DIR"] = str(work / "reports")
    days = daily_partitions(spec).get_partition_keys()
    drift_days = days[-args.drift_days:]

    def span(first: str, last: str) -> dict[str, str]:
        return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}

    def run(what: str, selection: list, tags: dict):
        t = time.perf_counter()
        result = dg.materialize(list(defs.assets), selection=selection, resources=resources, instance=instance,
                                tags=tags, raise_on_error=False)
        if not result.success:
            raise SystemExit(f"{what} failed: {[e.message for e in result.all_events if e.is_failure]}")
        print(f"{what}: {time.perf_counter() - t:.0f}s", flush=True)
        return result

    def metadata(result, key) -> dict:
        (m,) = result.asset_materializations_for_node("__".join(key.path))
        return {k: v.value for k, v in m.metadata.items()}

    (work / "home").mkdir(exist_ok=True)
    try:
        with dg.instance_for_test(temp_dir=str(work / "home")) as instance:
            run("ingest and features", [*(keys.raw(s) for s in spec.sources), keys.features], span(days[0], days[-1]))
            training = run("training job", [keys.training_set, keys.model, keys.evaluation], {})
            run("predictions", [keys.predictions], span(days[0], days[-1]))
            reference = metadata(run("reference", [keys.reference], {}), keys.reference)
            drift = run("drift report", [keys.drift_report], span(drift_days[0], drift_days[-1]))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    windows = metadata(training, keys.training_set)
    print(f"\n== {spec.name}: {days[0]} .. {days[-1]} ({len(days)} days), {args.trials} tuning trials")
    for row in table(windows["windows"]):
        print("  window " + " | ".join(row))
    evaluation = metadata(training, keys.evaluation)
    print("evaluation:")
    for k, v in evaluation.items():
        if isinstance(v, (int, float, bool, str)) and (not isinstance(v, str) or len(v) < 120):
            print(f"  {k}: {v}")
    print(f"reference: {reference['source_rows']} rows, {reference['labelled_rows']} labelled,"
          f" calibrated on {reference['calibration']['chunks']} {reference['calibration']['by']}s")
    for row in table(reference["thresholds"]):
        print("  threshold " + " | ".join(row))
    verdicts = {m.partition: {k: v.value for k, v in m.metadata.items()}
                for m in drift.asset_materializations_for_node("__".join(keys.drift_report.path))}
    alarmed = [d for d, md in sorted(verdicts.items()) if md["data_drift"] or md["prediction_drift"]]
    named = ", ".join(f"{d} ({verdicts[d].get('drifted_columns', '')})" for d in alarmed) or "none"
    print(f"drift {drift_days[0]} .. {drift_days[-1]}: {len(alarmed)} of {len(verdicts)} days alarm: {named}")


if __name__ == "__main__":
    main()
