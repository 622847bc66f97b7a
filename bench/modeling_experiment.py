"""Flight-delay model quality on the real 2013 year: baselines, LightGBM, Optuna-tuned LightGBM, and
candidate extra (leakage-free) features.

Train Jan-Aug, validate (early stopping, tuning) Sep, test Oct-Dec. Reads the materialized daily
features (and, for the candidate features, the raw flights and weather) and never writes them.

    .venv/bin/python bench/modeling_experiment.py [--tune-seconds 120] [--skip-extra]

Candidate features are computed here, not in ``feature_functions.py``. Label-based history uses only
days strictly before the flight's local day; weather uses only hours up to the scheduled departure
hour at the origin; the schedule count uses the published schedule (known in advance).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
DATA = REPO_ROOT / ".data" / "assets" / "flights"
KEY = ["year", "month", "day", "carrier", "flight", "origin"]


# --------------------------------------------------------------------------------------------------
# Candidate extra features
# --------------------------------------------------------------------------------------------------


def _read_days(folder: Path):
    import pandas as pd

    frames = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    return pd.concat([f for f in frames if len(f)], ignore_index=True)


def _history_rate(day: "np.ndarray", codes: "np.ndarray", label: "np.ndarray", window: int,
                  min_count: int = 1):
    """Per row: positive share of known labels of the same entity over the ``window`` days strictly
    before the row's day (NaN without enough history). ``day`` are 0-based day numbers."""
    import numpy as np

    n_days, n_ent = int(day.max()) + 1, int(codes.max()) + 1
    known = ~np.isnan(label)
    cell = day * n_ent + codes
    size = n_days * n_ent

    def cum(weights):
        daily = np.bincount(cell, weights=weights, minlength=size).reshape(n_days, n_ent)
        totals = np.zeros((n_days + 1, n_ent))
        np.cumsum(daily, axis=0, out=totals[1:])
        return totals

    k, p = cum(known.astype(float)), cum((known & (label > 0.5)).astype(float))
    lo = np.maximum(day - window, 0)
    den = k[day, codes] - k[lo, codes]
    num = p[day, codes] - p[lo, codes]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den >= min_count, num / den, np.nan)


def extra_features() -> "pd.DataFrame":
    """Candidate features keyed by the flights entity key."""
    import numpy as np
    import pandas as pd

    flights = _read_days(DATA / "raw_flights")
    weather = _read_days(DATA / "raw_weather")
    day = (pd.to_datetime(flights[["year", "month", "day"]]) - pd.Timestamp("2013-01-01")).dt.days.to_numpy()
    label = np.where(flights["arr_delay"].isna(), np.nan, (flights["arr_delay"] > 15).astype(float))
    dep_delayed = np.where(flights["dep_delay"].isna(), np.nan, (flights["dep_delay"] > 15).astype(float))
    hour = (flights["sched_dep_time"] // 100).to_numpy()
    out = flights[KEY].copy()

    def codes(*columns):
        return flights.groupby(list(columns), sort=False, dropna=False).ngroup().to_numpy()

    # --- label history, strictly earlier days ---
    hour_band = np.select([hour < 10, hour < 14, hour < 18], [0, 1, 2], 3)
    flights["_band"] = hour_band
    flights["_hour"] = hour
    groups = {
        "hist_origin_hour_28d": (codes("origin", "_hour"), 28),
        "hist_hour_28d": (codes("_hour"), 28),
        "hist_dest_28d": (codes("dest"), 28),
        "hist_origin_28d": (codes("origin"), 28),
        "hist_carrier_origin_28d": (codes("carrier", "origin"), 28),
        "hist_flight_28d": (codes("carrier", "flight"), 28),
        "hist_origin_1d": (codes("origin"), 1),
        "hist_all_1d": (np.zeros(len(flights), dtype=int), 1),
        "hist_origin_band_1d": (codes("origin", "_band"), 1),
        "hist_carrier_3d": (codes("carrier"), 3),
    }
    for name, (entity, window) in groups.items():
        out[name] = _history_rate(day, entity, label, window)
    # yesterday's evening (18h+) delay share at the origin: the freshest label information
    evening = np.where(hour >= 18, label, np.nan)
    out["hist_origin_evening_1d"] = _history_rate(day, codes("origin"), evening, 1, min_count=5)
    out["hist_origin_dep_1d"] = _history_rate(day, codes("origin"), dep_delayed, 1)

    # --- schedule (published in advance): departures from the origin in that hour / that day ---
    out["sched_origin_hour_count"] = flights.groupby(["origin", "year", "month", "day", "_hour"])["flight"].transform("size").to_numpy()
    out["sched_origin_day_count"] = flights.groupby(["origin", "year", "month", "day"])["flight"].transform("size").to_numpy()
    out["sched_arr_hour"] = (flights["sched_arr_time"] // 100).to_numpy()

    # --- origin weather over the hours up to the scheduled hour ---
    w = weather[["origin", "time_hour", "precip", "visib", "wind_speed", "wind_gust", "pressure", "temp"]].copy()
    w["time_hour"] = pd.to_datetime(w["time_hour"], utc=True)
    w = w.drop_duplicates(["origin", "time_hour"]).set_index("time_hour")
    w.loc[w["wind_speed"] > 150, "wind_speed"] = np.nan
    parts = []
    for origin, g in w.groupby("origin"):
        g = g.drop(columns="origin").sort_index().asfreq("h")
        r = pd.DataFrame(index=g.index)
        r["wx_precip_3h"] = g["precip"].rolling(3, min_periods=1).sum()
        r["wx_precip_12h"] = g["precip"].rolling(12, min_periods=1).sum()
        r["wx_visib_min_3h"] = g["visib"].rolling(3, min_periods=1).min()
        r["wx_gust_max_6h"] = g["wind_gust"].rolling(6, min_periods=1).max()
        r["wx_pressure_change_6h"] = g["pressure"] - g["pressure"].shift(6)
        r["wx_temp_min_12h"] = g["temp"].rolling(12, min_periods=1).min()
        r["origin"] = origin
        parts.append(r.reset_index())
    wx = pd.concat(parts, ignore_index=True)
    keys = pd.DataFrame({"origin": flights["origin"].to_numpy(),
                         "time_hour": pd.to_datetime(flights["time_hour"], utc=True).to_numpy()})
    keys["time_hour"] = pd.to_datetime(keys["time_hour"], utc=True)
    joined = keys.merge(wx, on=["origin", "time_hour"], how="left")
    for column in [c for c in wx.columns if c.startswith("wx_")]:
        out[column] = joined[column].to_numpy()
    return out


EXTRA_GROUPS = {
    "hour-of-day rate (origin x hour, hour; 28d)": ["hist_origin_hour_28d", "hist_hour_28d"],
    "dest / origin / carrier x origin rate 28d": ["hist_dest_28d", "hist_origin_28d", "hist_carrier_origin_28d"],
    "flight-number rate 28d": ["hist_flight_28d"],
    "yesterday's rates (origin, all, band, evening, dep)": [
        "hist_origin_1d", "hist_all_1d", "hist_origin_band_1d", "hist_origin_evening_1d", "hist_origin_dep_1d",
        "hist_carrier_3d"],
    "schedule congestion (origin hour/day count, arr hour)": [
        "sched_origin_hour_count", "sched_origin_day_count", "sched_arr_hour"],
    "origin weather up to dep hour (precip 3/12h, visib, gust, dP)": [
        "wx_precip_3h", "wx_precip_12h", "wx_visib_min_3h", "wx_gust_max_6h", "wx_pressure_change_6h",
        "wx_temp_min_12h"],
}


# --------------------------------------------------------------------------------------------------
# Experiment
# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tune-seconds", type=float, default=120.0)
    parser.add_argument("--skip-extra", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from ml_assets.modeling import (
        evaluate, load_feature_days, logistic_baseline, naive_rate_baseline, predict_proba,
        split_by_time, train_lightgbm, tune_lightgbm,
    )
    from ml_assets.pipeline_config import PIPELINES_DIR, load_pipeline

    spec = load_pipeline(PIPELINES_DIR / "flights.yaml")
    numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
    t0 = time.perf_counter()
    frame = load_feature_days(DATA / "features")
    splits = split_by_time(frame)
    train, validate, test = splits["train"], splits["validate"], splits["test"]
    print(f"loaded {len(frame)} rows in {time.perf_counter() - t0:.1f} s; labelled rows: train {len(train)} "
          f"(pos {train.delayed.mean():.3f}), validate {len(validate)} (pos {validate.delayed.mean():.3f}), "
          f"test {len(test)} (pos {test.delayed.mean():.3f})", flush=True)
    rows: list[tuple[str, dict, float | None, str]] = []

    def record(name, val_proba, test_proba, seconds=None, note=""):
        v = evaluate(validate.delayed, val_proba)
        t = evaluate(test.delayed, test_proba)
        rows.append((name, {"val_auc": v["roc_auc"], "test_auc": t["roc_auc"], "test_pr": t["pr_auc"],
                            "test_ll": t["log_loss"]}, seconds, note))
        print(f"  {name:<58} val {v['roc_auc']:.4f}  test {t['roc_auc']:.4f}  PR {t['pr_auc']:.4f}"
              + (f"  ({seconds:.1f} s)" if seconds is not None else "") + (f"  {note}" if note else ""), flush=True)

    base_rate = float(train.delayed.mean())
    record("naive: mean(route_28d, carrier_28d) rate", naive_rate_baseline(validate, base_rate),
           naive_rate_baseline(test, base_rate))
    started = time.perf_counter()
    logit = logistic_baseline(train, (numeric, categorical))
    lr_s = time.perf_counter() - started
    record("logistic regression (YAML features)", logit.predict_proba(validate)[:, 1],
           logit.predict_proba(test)[:, 1], lr_s)

    def lgbm(name, feats, params=None, seed=args.seed, data=(train, validate, test), note=""):
        tr, va, te = data
        bundle = train_lightgbm(tr, va, feats, params, seed=seed)
        record(name, predict_proba(bundle, va), predict_proba(bundle, te), bundle.train_seconds,
               note or f"best_iter={bundle.best_iteration}")
        return bundle

    def refit(name, feats, params, rounds, data=(train, validate, test)):
        """Final fit on train + validate (Jan-Sep) with a fixed round count (val AUC is then in-sample)."""
        tr, va, te = data
        import pandas as pd

        bundle = train_lightgbm(pd.concat([tr, va], ignore_index=True), None, feats, params, seed=args.seed,
                                num_boost_round=rounds)
        record(name, predict_proba(bundle, va), predict_proba(bundle, te), bundle.train_seconds,
               f"{rounds} rounds, val in-sample")
        return bundle

    lgbm("LightGBM defaults + early stopping (YAML features)", (numeric, categorical))
    for s in (1, 2):
        lgbm(f"  same, seed {s}", (numeric, categorical), seed=s)
    no_doy = [c for c in numeric if c != "day_of_year"]
    lgbm("LightGBM defaults, without day_of_year", (no_doy, categorical))
    lgbm("LightGBM regularised (31 leaves, min_child 400, lr .03)", (numeric, categorical),
         {"num_leaves": 31, "min_child_samples": 400, "learning_rate": 0.03})

    print(f"tuning LightGBM (YAML features) for {args.tune_seconds:.0f} s ...", flush=True)
    tuned = tune_lightgbm(train, validate, (numeric, categorical), n_trials=None, timeout_s=args.tune_seconds,
                          seed=args.seed)
    print(f"  {len(tuned.trials)} trials in {tuned.elapsed_s:.1f} s, best val AUC {tuned.best_value:.4f}: "
          f"{ {k: (round(v, 4) if isinstance(v, float) else v) for k, v in tuned.best_params.items()} }", flush=True)
    final = lgbm("LightGBM tuned (Optuna TPE, YAML features)", (numeric, categorical), tuned.best_params,
                 note=f"{len(tuned.trials)} trials / {tuned.elapsed_s:.0f} s")
    print("  top features (gain):", ", ".join(list(final.feature_importance)[:10]), flush=True)
    refit("  tuned, refit on Jan-Sep (YAML features)", (numeric, categorical), tuned.best_params,
          int(round(final.best_iteration * 1.1)))

    if not args.skip_extra:
        t0 = time.perf_counter()
        extra = extra_features()
        print(f"candidate features computed in {time.perf_counter() - t0:.1f} s", flush=True)
        data = tuple(d.merge(extra, on=KEY, how="left", validate="one_to_one") for d in (train, validate, test))
        assert all(len(d) == len(o) for d, o in zip(data, (train, validate, test)))
        for group, columns in EXTRA_GROUPS.items():
            lgbm(f"+ {group}", (numeric + columns, categorical), data=data)
        all_extra = [c for cols in EXTRA_GROUPS.values() for c in cols]
        ext_feats = (no_doy + all_extra, categorical)
        ext = lgbm("LightGBM defaults, YAML + all candidates - day_of_year", ext_feats, data=data)
        lgbm("LightGBM defaults, YAML + all candidates", (numeric + all_extra, categorical), data=data)
        started = time.perf_counter()
        logit_ext = logistic_baseline(data[0], ext_feats)
        record("logistic regression, YAML + all candidates - day_of_year",
               logit_ext.predict_proba(data[1])[:, 1], logit_ext.predict_proba(data[2])[:, 1],
               time.perf_counter() - started)
        record("naive, same rows (unchanged)", naive_rate_baseline(validate, base_rate),
               naive_rate_baseline(test, base_rate))
        print(f"tuning LightGBM (extended features) for {args.tune_seconds:.0f} s ...", flush=True)
        tuned_ext = tune_lightgbm(data[0], data[1], ext_feats, n_trials=None, timeout_s=args.tune_seconds,
                                  seed=args.seed)
        print(f"  {len(tuned_ext.trials)} trials in {tuned_ext.elapsed_s:.1f} s, best val AUC "
              f"{tuned_ext.best_value:.4f}", flush=True)
        final_ext = lgbm("LightGBM tuned, YAML + all candidates - day_of_year", ext_feats, tuned_ext.best_params,
                         data=data, note=f"{len(tuned_ext.trials)} trials / {tuned_ext.elapsed_s:.0f} s")
        print("  top features (gain):", ", ".join(list(final_ext.feature_importance)[:12]), flush=True)
        refit("  defaults, refit on Jan-Sep, YAML + all candidates - day_of_year", ext_feats, None,
              int(round(ext.best_iteration * 1.1)), data=data)
        refit("  tuned, refit on Jan-Sep, YAML + all candidates - day_of_year", ext_feats, tuned_ext.best_params,
              int(round(final_ext.best_iteration * 1.1)), data=data)

    print()
    print(f"{'model':<60} {'val AUC':>8} {'test AUC':>9} {'test PR-AUC':>12} {'test logloss':>13} {'fit s':>7}  note")
    print("-" * 130)
    for name, m, seconds, note in rows:
        print(f"{name:<60} {m['val_auc']:>8.4f} {m['test_auc']:>9.4f} {m['test_pr']:>12.4f} {m['test_ll']:>13.4f} "
              f"{(f'{seconds:.1f}' if seconds is not None else ''):>7}  {note}")
    _ = np


if __name__ == "__main__":
    main()
