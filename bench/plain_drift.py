"""Baseline for bench_drift.py: the year's daily drift reports as a plain script (no Dagster).

    .venv/bin/python bench/plain_drift.py FEATURES_DIR PREDICTIONS_DIR REFERENCE_PKL OUT_DIR [--html alarms|never]

The same work as the Dagster ``flights/drift_report`` asset over 2013-01-01..2013-12-31: read the 365
daily feature and prediction files, join the scores on the entity key, ``ml_assets.monitoring.drift.compute_drift``
per day against the reference (the pickled ``Reference`` given, the same object the Dagster side
loads) with the YAML's ``DriftConfig`` (``monitoring.drift`` of pipelines/flights.yaml, absent keys
keep the calibrated defaults), one Parquet file of per-column scores per day, and the Evidently HTML
report of the days that alarm (``--html alarms``, the YAML's policy) or of none (``--html never``).
Not done here: Dagster's per-day metadata, the asset checks and logging the HTML files to MLflow.

Prints one JSON line: phase seconds, per-day compute seconds, alarm days, HTML seconds and bytes.
"""

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
DATE = "partition_date"


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser()
    parser.add_argument("features_dir", type=Path)
    parser.add_argument("predictions_dir", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--html", choices=("alarms", "never"), default="alarms")
    args = parser.parse_args()

    import pandas as pd
    import yaml

    from ml_assets.monitoring.drift import DriftColumns, DriftConfig, compute_drift, render_html  # noqa: F401

    spec = yaml.safe_load((REPO_ROOT / "pipelines" / "flights.yaml").read_text())
    settings = dict(spec["monitoring"]["drift"])
    config = DriftConfig(**{k: v for k, v in settings.items()
                            if k not in ("numeric", "categorical", "reference_rows", "html") and v is not None})
    key = list(spec["sources"][spec["features"]["primary_source"]]["entity_key"])
    score_column = f"{spec['target']['name']}_score"
    with args.reference.open("rb") as fh:
        reference = pickle.load(fh)
    imported = time.monotonic()

    feature_files = sorted(args.features_dir.glob("*.parquet"))
    days = [p.stem for p in feature_files]
    features = pd.concat([pd.read_parquet(p) for p in feature_files], ignore_index=True)
    predictions = pd.concat([pd.read_parquet(args.predictions_dir / f"{d}.parquet") for d in days],
                            ignore_index=True)
    joined = features.merge(predictions[[*key, score_column]], on=key, how="left", validate="one_to_one")
    by_day = dict(tuple(joined.groupby(DATE)))
    loaded = time.monotonic()

    scores_dir = args.out_dir / "drift_report"
    html_dir = args.out_dir / "reports"
    scores_dir.mkdir(parents=True, exist_ok=True)
    per_day, alarms, html_seconds, html_bytes, write_seconds = {}, {"data": [], "prediction": []}, 0.0, 0, 0.0
    for day in days:
        current = by_day[day].reset_index(drop=True)
        result = compute_drift(reference, current, config)
        per_day[day] = result.seconds
        frame = result.to_frame().assign(**{DATE: day})
        frame["score"] = frame["score"].astype("float64")
        t = time.perf_counter()
        frame.to_parquet(scores_dir / f"{day}.parquet", index=False)
        write_seconds += time.perf_counter() - t
        if result.data_drift:
            alarms["data"].append(day)
        if result.prediction_drift:
            alarms["prediction"].append(day)
        if args.html == "alarms" and (result.data_drift or result.prediction_drift):
            t = time.perf_counter()
            path = render_html(reference, current, config, html_dir / f"{day}.html")
            html_seconds += time.perf_counter() - t
            html_bytes += path.stat().st_size
    finished = time.monotonic()
    alarm_days = sorted(set(alarms["data"]) | set(alarms["prediction"]))
    print(json.dumps({
        "days": len(per_day), "rows": int(len(joined)), "html": args.html,
        "alarms": alarms, "alarm_days": alarm_days,
        "html_reports": len(alarm_days) if args.html == "alarms" else 0,
        "html_seconds": html_seconds, "html_bytes": html_bytes,
        "per_day_seconds": per_day,
        "seconds": {"import_and_reference": imported - started, "read_join": loaded - imported,
                    "days_loop": finished - loaded, "compute": sum(per_day.values()),
                    "write_parquet": write_seconds, "html": html_seconds, "total": finished - started},
    }))


if __name__ == "__main__":
    main()
