"""Benchmark: how long the code location takes to load, against a one-asset project.

Runs `dagster definitions validate -w workspace.yaml` on this project and on a temporary project with
a single trivial asset, alternating, N times each (default 5), and compares the medians. Target: at
most 1.5x. Run:

    .venv/bin/python bench/bench_load_time.py [--repeat N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")

ONE_ASSET = '''import dagster as dg


@dg.asset
def one():
    return 1


defs = dg.Definitions(assets=[one])
'''
WORKSPACE = "load_from:\n  - python_file:\n      relative_path: definitions.py\n      working_directory: .\n"


def timed(cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=cwd, env=env,
                            capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"validate failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="one_asset_") as tmp:
        floor_dir = Path(tmp) / "project"
        floor_dir.mkdir()
        (floor_dir / "definitions.py").write_text(ONE_ASSET)
        (floor_dir / "workspace.yaml").write_text(WORKSPACE)
        home = Path(tmp) / "home"
        home.mkdir()
        env = dict(os.environ, DAGSTER_HOME=str(home))
        timed(REPO_ROOT, env)  # warm the file-system cache for both, untimed
        timed(floor_dir, env)
        ours, floor = [], []
        for _ in range(args.repeat):
            ours.append(timed(REPO_ROOT, env))
            floor.append(timed(floor_dir, env))
    result = {"project_s": statistics.median(ours), "one_asset_s": statistics.median(floor),
              "runs": args.repeat, "project_all": ours, "one_asset_all": floor}
    result["ratio"] = result["project_s"] / result["one_asset_s"]
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "load_time.json").write_text(json.dumps(result, indent=2))
    print(f"dagster definitions validate: project {result['project_s']:.2f} s, one-asset "
          f"{result['one_asset_s']:.2f} s, ratio {result['ratio']:.2f} (target <= 1.5; median of {args.repeat})")


if __name__ == "__main__":
    main()
