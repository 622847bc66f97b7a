"""How often the calibrated drift thresholds alarm, on a whole year of a daily pipeline.

For a daily pipeline YAML (``pipelines/flights.yaml``, ``pipelines/examples/minneapolis_stops.yaml``),
with **no hand-set thresholds** unless the YAML sets some:

1. ``--prepare`` materializes what the measurement reads, in process, into ``--work`` (its own
   instance, data folder and MLflow store; nothing of the project's is touched): the ingest and
   features over the whole partition range (one run), the training job on the YAML's windows, and
   the predictions of the range with the champion. Tuning trials default to 0 here (the YAML's fixed
   parameters; ``FLIGHTS_TUNING_TRIALS`` / ``MPLS_TUNING_TRIALS`` override).
2. The reference is built the way ``<name>/reference`` builds it (every feature row of the training
   window with the champion's scores, ``build_reference`` + ``calibrate_thresholds`` with the YAML's
   drift settings) and every day of the range is scored the way ``<name>/drift_report`` scores it
   (``compute_drift`` on the day's features joined to its predictions). The scores are computed
   with Evidently's formulas in numpy (``fast_scores``: the same numbers without Evidently's
   per-report overhead, about 0.2 s a day), checked against ``compute_drift`` on six days of every run.
3. Figures: the share of days that alarm (data or prediction drift) over the range, in the training
   window and after it; the false-alarm share on **held-out reference-like days** (two-fold: the
   training window's even days build a reference and calibrate it, its odd days are scored, and the
   other way round); and, for flights, the injected shifts of the tests (distance x1.5, half the
   flights moved to one carrier, visibility halved, precipitation +0.1 in, scores +0.5) on the 15th of
   every month.

    .venv/bin/python bench/drift_calibration.py --pipeline pipelines/flights.yaml --prepare
    .venv/bin/python bench/drift_calibration.py --pipeline pipelines/examples/minneapolis_stops.yaml --prepare

``--work`` defaults to ``.data/bench/drift_calibration/<pipeline name>`` (git-ignored). Without
``--prepare`` the stored partitions of ``--work`` are read as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
for name, value in {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "FLIGHTS_TUNING_TRIALS": "0",
                    "MPLS_TUNING_TRIALS": "0", "ML_EXECUTOR": "in_process"}.items():
    os.environ.setdefault(name, value)


def prepare(pipeline_file: Path, work: Path) -> None:
    """Ingest, features, training and the range's predictions of the pipeline into ``work``."""
    import shutil

    import dagster as dg

    from harness import pipeline_project
    from ml_assets.ingest.assets import daily_partitions

    folder = work / "pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(pipeline_file, folder / pipeline_file.name)
    spec, keys, defs, resources = pipeline_project(folder, work)
    (work / "home").mkdir(exist_ok=True)
    days = daily_partitions(spec).get_partition_keys()
    span = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    with dg.instance_for_test(temp_dir=str(work / "home")) as instance:
        steps = [("ingest and features", [*(keys.raw(s) for s in spec.sources), keys.features], span),
                 ("training", [keys.training_set, keys.model, keys.evaluation], {}),
                 ("predictions", [keys.predictions], span)]
        for what, selection, tags in steps:
            t = time.perf_counter()
            result = dg.materialize(list(defs.assets), selection=selection, resources=resources, instance=instance,
                                    tags=tags, raise_on_error=False)
            if not result.success:
                raise SystemExit(f"{what} failed: {[e.message for e in result.all_events if e.is_failure]}")
            print(f"prepared {what} in {time.perf_counter() - t:.0f}s", flush=True)


def load(work: Path, spec):
    """Features of every stored day joined to their predictions' scores, and the training window days."""
    import pandas as pd

    from ml_assets.config.tabular import PARTITION_COLUMN, SPLIT_COLUMN

    base = work / "data" / spec.name
    key = spec.sources[spec.primary_source].entity_key
    score = f"{spec.target.name}_score"
    frames = {}
    for file in sorted((base / "features").glob("*.parquet")):
        day = file.stem
        features = pd.read_parquet(file)
        predictions = pd.read_parquet(base / "predictions" / file.name, columns=[*key, score])
        frames[day] = features.merge(predictions, on=key, how="left", validate="one_to_one")
    training = pd.read_parquet(base / "training_set.parquet", columns=[PARTITION_COLUMN, SPLIT_COLUMN])
    train_days = training.loc[training[SPLIT_COLUMN] == "train", PARTITION_COLUMN].astype(str)
    window = sorted(d for d in frames if train_days.min() <= d <= train_days.max())
    return frames, window


def fast_scores(reference, current, config) -> dict[str, float]:
    """What ``compute_drift`` scores, with the formulas of Evidently's two methods used here
    (normalized Wasserstein: distance / reference std, at least 0.001; Jensen-Shannon distance of the
    value shares) in plain numpy/scipy, without Evidently's per-report overhead. ``main`` checks it
    against ``compute_drift`` on every run."""
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    from ml_assets.monitoring.drift import prepared_current

    data = prepared_current(reference, current, config)
    columns, out = reference.columns, {}
    for column in data.columns:
        ref, cur = reference.sample[column].dropna(), data[column].dropna()
        if len(cur) == 0:
            continue
        if column in columns.categorical:
            assert config.categorical_method == "jensenshannon", config.categorical_method
            keys = sorted(set(ref.unique()) | set(cur.unique()))
            p = ref.value_counts().reindex(keys, fill_value=0).to_numpy() / len(ref)
            q = cur.value_counts().reindex(keys, fill_value=0).to_numpy() / len(cur)
            out[column] = float(distance.jensenshannon(p, q))
        else:
            assert config.numeric_method == config.prediction_method == "wasserstein"
            values = ref.to_numpy()
            out[column] = float(stats.wasserstein_distance(values, cur.to_numpy()) / max(float(np.std(values)), 0.001))
    return out


def verdict(reference, scores: dict[str, float], config) -> dict:
    """``compute_drift``'s verdict from the scores: a column drifts at its threshold; data drift when
    the share of drifted (scored) feature columns reaches ``share_threshold``."""
    columns = reference.columns
    drifted = [c for c in columns.features if c in scores
               and scores[c] >= config.threshold_for(c, columns.type_of(c), reference.thresholds)]
    scored = [c for c in columns.features if c in scores]
    prediction = columns.prediction
    data = bool(scored) and len(drifted) / len(scored) >= config.share_threshold
    pred = prediction in scores and scores[prediction] >= config.threshold_for(prediction, "prediction", reference.thresholds)
    return {"data": data, "prediction": pred, "alarm": data or pred, "drifted": ", ".join(drifted),
            "missing": ", ".join(c for c in columns.features if c not in scores)}


def reference_of(frames: dict, days: list[str], spec, columns, config):
    """What ``<name>/reference`` builds from these days (with their champion scores)."""
    import pandas as pd

    from ml_assets.config.tabular import PARTITION_COLUMN
    from ml_assets.monitoring.drift import build_reference, calibrate_thresholds

    window = pd.concat([frames[d] for d in days], ignore_index=True)
    reference = build_reference(window, columns, sample_size=spec.monitoring.drift.reference_rows, seed=spec.model.seed)
    return calibrate_thresholds(reference, window, config, day_column=PARTITION_COLUMN, scorer=fast_scores)


def score_days(reference, frames: dict, days: list[str], config) -> list[dict]:
    return [{"day": day, **verdict(reference, fast_scores(reference, frames[day], config), config)} for day in days]


def check_fast_scores(reference, frames: dict, days: list[str], config) -> None:
    """The benchmark's scores and verdicts are ``compute_drift``'s (the drift report asset's)."""
    from ml_assets.monitoring.drift import drift_scores

    for day in days:
        real, fast = drift_scores(reference, frames[day], config), fast_scores(reference, frames[day], config)
        assert real.keys() == fast.keys() and all(abs(real[c] - fast[c]) < 1e-9 for c in real), (day, real, fast)
    print(f"scores equal to compute_drift's on {len(days)} days ({', '.join(days)})")


def share(rows: list[dict], field: str = "alarm") -> str:
    hits = sum(bool(r[field]) for r in rows)
    return f"{hits}/{len(rows)} = {hits / max(len(rows), 1):.1%}"


def flights_shifts(score: str):
    import numpy as np

    def carrier(frame):
        moved = np.arange(len(frame)) % 2 == 0
        return frame.assign(carrier=np.where(moved, "UA", frame["carrier"]))

    return {
        "distance x1.5": (lambda f: f.assign(distance=f["distance"] * 1.5), "distance"),
        "carrier 50% -> UA": (carrier, "carrier"),
        "visibility halved": (lambda f: f.assign(visib=f["visib"] / 2), "visib"),
        "precipitation +0.1 in": (lambda f: f.assign(precip=f["precip"] + 0.1), "precip"),
        "scores +0.5": (lambda f: f.assign(**{score: (f[score] + 0.5).clip(upper=1.0)}), score),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "flights.yaml"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--prepare", action="store_true", help="materialize features, model and predictions first")
    parser.add_argument("--days", action="store_true", help="print every alarm day")
    args = parser.parse_args()

    from ml_assets.config import load_pipeline
    from ml_assets.monitoring.drift import drift_settings

    pipeline_file = Path(args.pipeline).resolve()
    spec = load_pipeline(pipeline_file)
    work = Path(args.work) if args.work else REPO / ".data" / "bench" / "drift_calibration" / spec.name
    started = time.perf_counter()
    if args.prepare:
        prepare(pipeline_file, work)
    columns, config = drift_settings(spec)
    frames, window = load(work, spec)
    days = sorted(frames)
    print(f"{spec.name}: {len(days)} days {days[0]} .. {days[-1]}, training window {window[0]} .. {window[-1]}"
          f" ({len(window)} days); hand-set thresholds in the YAML: {dict(config.thresholds) or 'none'}"
          f"{'' if config.prediction_threshold is None else f', prediction {config.prediction_threshold}'}")

    t = time.perf_counter()
    reference = reference_of(frames, window, spec, columns, config)
    print(f"reference of {reference.source_rows} rows, calibrated on {reference.calibration['chunks']} days"
          f" in {time.perf_counter() - t:.0f}s: quantile {config.calibration_quantile}, margin {config.calibration_margin}")
    for column, row in reference.calibration["columns"].items():
        print(f"  {column:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))

    check_fast_scores(reference, frames, days[:: max(1, len(days) // 6)], config)
    t = time.perf_counter()
    rows = score_days(reference, frames, days, config)
    print(f"\n== every day against the reference ({time.perf_counter() - t:.0f}s)")
    inside = [r for r in rows if window[0] <= r["day"] <= window[-1]]
    after = [r for r in rows if r["day"] > window[-1]]
    print(f"alarm days (data or prediction drift): {share(rows)}; data {share(rows, 'data')},"
          f" prediction {share(rows, 'prediction')}")
    print(f"  in the training window: {share(inside)}; after it: {share(after)}")
    for r in rows:
        if r["alarm"] and args.days:
            print(f"  {r['day']}: {'data (' + r['drifted'] + ')' if r['data'] else ''}"
                  f"{' prediction' if r['prediction'] else ''}")
    missing = [r["day"] for r in rows if r["missing"]]
    print(f"days with an entirely-null column (missing data, not drift): {', '.join(missing) or 'none'}")

    t = time.perf_counter()
    held = []
    for built, scored in ((window[0::2], window[1::2]), (window[1::2], window[0::2])):
        held += score_days(reference_of(frames, built, spec, columns, config), frames, scored, config)
    print(f"\n== held-out reference-like days (two-fold over the training window, {time.perf_counter() - t:.0f}s)")
    print(f"alarm days: {share(held)}; data {share(held, 'data')}, prediction {share(held, 'prediction')}")

    if spec.name == "flights":
        print("\n== injected shifts (the tests' shifts, on the 15th of every month)")
        targets = [d for d in days if d.endswith("-15")]
        score = f"{spec.target.name}_score"
        for name, (change, column) in flights_shifts(score).items():
            caught = named = 0
            for day in targets:
                result = verdict(reference, fast_scores(reference, change(frames[day]), config), config)
                caught += result["prediction"] if column == score else result["data"]
                named += result["prediction"] if column == score else column in result["drifted"].split(", ")
            print(f"  {name:24s} caught on {caught}/{len(targets)} days, column named on {named}/{len(targets)}"
                  f" (threshold {reference.thresholds.get(column)})")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
