"""Calibration of ml_assets.monitoring.drift on the real 2013 partitions (reads .data/assets/flights, never writes).

Reference: a 20,000-row sample of the training window 2013-01-01..2013-08-31 (features joined with
the model's scores). Every day of 2013 is compared with it using the default DriftConfig; then
shifts are injected into 12 days (the 15th of each month): distance x1.5, half the rows reassigned
to one carrier, visibility halved, precipitation +0.1 in, scores +0.3 / +0.5 / inverted.

    .venv/bin/python bench/drift_calibration.py [--data .data/assets/flights] [--quiet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

KEY = ["year", "month", "day", "carrier", "flight", "origin"]


def load_day(base: Path, day: str):
    import pandas as pd

    features = pd.read_parquet(base / "features" / f"{day}.parquet")
    pred_file = base / "predictions" / f"{day}.parquet"
    if pred_file.exists():
        scores = pd.read_parquet(pred_file, columns=KEY + ["delayed_score"])
        features = features.merge(scores, on=KEY, how="left")
    return features


def shifts():
    def distance(f):
        return f.assign(distance=f["distance"] * 1.5)

    def carrier(f):
        f = f.copy()
        rows = f.sample(frac=0.5, random_state=0).index
        f.loc[rows, "carrier"] = "UA" if (f["carrier"] != "UA").mean() > 0.5 else "B6"
        return f

    def visib(f):
        return f.assign(visib=f["visib"] * 0.5)

    def precip(f):
        return f.assign(precip=f["precip"] + 0.1)

    def scores(f):
        return f.assign(delayed_score=(f["delayed_score"] + 0.3).clip(upper=1.0))

    def scores_big(f):
        return f.assign(delayed_score=(f["delayed_score"] + 0.5).clip(upper=1.0))

    def scores_inverted(f):
        return f.assign(delayed_score=1.0 - f["delayed_score"])

    return {"distance x1.5": (distance, "distance"), "carrier 50%->one": (carrier, "carrier"),
            "visib x0.5": (visib, "visib"), "precip +0.1": (precip, "precip"),
            "scores +0.3": (scores, "delayed_score"),
            "scores +0.5": (scores_big, "delayed_score"), "scores 1-s": (scores_inverted, "delayed_score")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO / ".data" / "assets" / "flights"))
    parser.add_argument("--quiet", action="store_true", help="summary only, no per-day table")
    args = parser.parse_args()
    base = Path(args.data)

    import pandas as pd

    from ml_assets.config import load_pipeline
    from ml_assets.monitoring.drift import build_reference, compute_drift, drift_settings, render_html

    # the flights pipeline's drift columns and thresholds live in its YAML
    columns, config = drift_settings(load_pipeline(REPO / "pipelines" / "flights.yaml"))

    t0 = time.perf_counter()
    days = sorted(p.stem for p in (base / "features").glob("2013-*.parquet"))
    frames = {d: load_day(base, d) for d in days}
    load_s = time.perf_counter() - t0
    train = pd.concat([frames[d] for d in days if d <= "2013-08-31"], ignore_index=True)
    t = time.perf_counter()
    reference = build_reference(train, columns, sample_size=20_000, seed=0)
    ref_s = time.perf_counter() - t
    print(f"{len(days)} days loaded in {load_s:.1f}s; reference {len(reference.sample)} of "
          f"{reference.source_rows} training rows built in {ref_s:.2f}s")
    print(f"config: {config}")

    compute_drift(reference, frames[days[0]], config)  # warm-up
    rows, seconds = [], []
    for d in days:
        r = compute_drift(reference, frames[d], config)
        seconds.append(r.seconds)
        scores = {c.column: c.score for c in r.columns}
        rows.append({"day": d, "rows": r.current_rows, "share": r.share_drifted, "alarm": r.data_drift,
                     "drifted": ",".join(r.drifted_columns), "missing": ",".join(r.missing_columns),
                     "pred_score": r.prediction_score, "pred_alarm": r.prediction_drift, **scores})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_rows", 400)
    pd.set_option("display.max_columns", 30)
    if not args.quiet:
        print(table.round(3).to_string(index=False))

    print("\n== summary (real 2013, every day against the Jan-Aug reference)")
    n = len(table)
    alarms = table[table.alarm]
    print(f"data-drift alarm share: {len(alarms)}/{n} = {len(alarms) / n:.1%}")
    for _, a in alarms.iterrows():
        print(f"  {a.day}  drifted: {a.drifted}")
    for label, part in (("train Jan-Aug", table[table.day <= "2013-08-31"]),
                        ("Sep", table[(table.day >= "2013-09") & (table.day < "2013-10")]),
                        ("Oct-Dec", table[table.day >= "2013-10"])):
        print(f"  {label}: {part.alarm.mean():.1%} alarm, pred-drift {part.pred_alarm.mean():.1%}")
    per_col = {c.column: int(table[c.column].ge(c.threshold).sum())
               for c in compute_drift(reference, frames[days[0]], config).columns}
    print(f"days flagged per column: {per_col}")
    print(f"missing-data days: {table[table.missing != ''][['day', 'missing']].to_dict('records')}")
    pa = table[table.pred_alarm]
    q = table.pred_score.quantile([0.5, 0.9, 0.95, 0.99, 1.0]).round(2).to_dict()
    print(f"prediction score (normalized Wasserstein) quantiles: {q}")
    print(f"prediction-drift alarm share: {len(pa)}/{n} = {len(pa) / n:.1%}: {list(pa.day)}")

    print("\n== injected shifts (15th of each month)")
    targets = [d for d in days if d.endswith("-15")]
    for name, (fn, column) in shifts().items():
        caught, named, detail = 0, 0, []
        for d in targets:
            r = compute_drift(reference, fn(frames[d]), config)
            hit = r.prediction_drift if column == "delayed_score" else r.data_drift
            col = r.prediction if column == "delayed_score" else next(c for c in r.columns if c.column == column)
            caught += hit
            named += col.drifted
            detail.append(f"{col.score:.2f}")
        print(f"  {name:18s} caught {caught}/{len(targets)}, column named {named}/{len(targets)}; "
              f"scores {' '.join(detail)} (threshold {col.threshold})")

    print("\n== timing")
    print(f"compute_drift per day after warm-up: median {statistics.median(seconds):.3f}s, "
          f"max {max(seconds):.3f}s, mean rows {table.rows.mean():.0f}")
    big = pd.concat([frames[d] for d in days[150:200]], ignore_index=True)
    for size in (5_000, 20_000, len(big)):
        part = big.iloc[:size]
        r = compute_drift(reference, part, config)
        print(f"  {len(part):6d} rows -> compared {r.sampled_rows}: {r.seconds:.3f}s")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "drift_report_2013-03-08.html"
    t = time.perf_counter()
    render_html(reference, frames["2013-03-08"], config, out)
    print(f"render_html 2013-03-08: {time.perf_counter() - t:.2f}s, {out.stat().st_size / 1e6:.2f} MB -> {out}")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
