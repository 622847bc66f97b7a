"""``ml_assets.memory.release_freed_memory``: memory a step freed goes back to the operating system.

Run in a fresh interpreter (the test process's own allocations would blur the figures): a range of
Parquet days is read one at a time, the labelled rows kept and concatenated, written and dropped, as
the training set's step does. Freed, most of it stays resident; released, it goes back."""

import json
import subprocess
import sys

import pytest

from ml_assets.config.paths import REPO_ROOT

SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd, psutil
from ml_assets.memory import release_freed_memory

rss = lambda: psutil.Process().memory_info().rss / 2**20
folder = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
for day in range(60):
    frame = pd.DataFrame({f"x{i}": rng.random(8_000) for i in range(30)})
    frame["carrier"] = rng.choice(["AA", "B6", "DL", "EV", "UA"], 8_000)
    frame["delayed"] = np.where(rng.random(8_000) < 0.1, np.nan, rng.integers(0, 2, 8_000))
    frame.to_parquet(folder / f"{day:03d}.parquet")
del frame
start = rss()
parts = []
for path in sorted(folder.glob("*.parquet")):
    day = pd.read_parquet(path)
    parts.append(day[day["delayed"].notna()].assign(split="train"))
    del day
out = pd.concat(parts, ignore_index=True)
del parts
held = rss()
out.to_parquet(folder / "set.parquet")
del out
freed = rss()
release_freed_memory()
print(json.dumps({"start": start, "held": held, "freed": freed, "released": rss()}))
"""


@pytest.mark.slow
def test_freed_frames_go_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    grown = rss["held"] - rss["start"]
    assert grown > 50, rss  # the frames took memory
    # after the release, at most a quarter of it is still resident
    assert rss["released"] - rss["start"] < 0.25 * grown, rss
