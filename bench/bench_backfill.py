"""Benchmark: the Dagster single-run backfill of the flights year against a plain script.

Both do the same ingestion, Great Expectations validation and feature building for 2013-01-01 ..
2013-12-31 and write one Parquet file per day and asset. Each runs as a subprocess from a cold start
(a fresh DAGSTER_HOME and data folder); wall time and the peak resident memory of the whole process
tree (sampled every 50 ms) are compared as ratios. Run:

    .venv/bin/python bench/bench_backfill.py [--repeat N] [--instance sqlite|postgres]

Results are printed and written to bench/results/backfill_<instance>.json. With --instance postgres
each run uses a new database on the PostgreSQL server at 127.0.0.1:5432 (trust auth).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import measure

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def fresh_postgres_db() -> str:
    import psycopg2

    name = f"bench_backfill_{int(time.time())}"
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    return name


def run_once(workdir: Path, instance: str) -> dict[str, dict[str, float]]:
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    template = "dagster_home/dagster.yaml" if instance == "sqlite" else "dagster_home/postgres/dagster.yaml"
    shutil.copy(REPO_ROOT / template, home / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(home), ML_DATA_DIR=str(workdir / "dagster_data"),
               GX_ANALYTICS_ENABLED="false")
    if instance == "postgres":
        env |= {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "postgres",
                "DAGSTER_PG_PASSWORD": "unused-with-trust-auth", "DAGSTER_PG_DB": fresh_postgres_db()}
    results = {}
    results["plain"] = measure([str(BIN / "python"), "bench/plain_flights.py", str(workdir / "plain_data")], env,
                               workdir / "plain.log")
    results["dagster"] = measure(
        [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "group:flights",
         "--partition-range", "2013-01-01...2013-12-31"], env, workdir / "dagster.log")
    plain_files = sorted(p.relative_to(workdir / "plain_data") for p in (workdir / "plain_data").rglob("*.parquet"))
    dagster_root = workdir / "dagster_data" / "assets" / "flights"
    dagster_files = sorted(p.relative_to(dagster_root) for p in dagster_root.rglob("*.parquet"))
    if plain_files != dagster_files:
        raise SystemExit(f"the two runs wrote different files: {len(plain_files)} vs {len(dagster_files)}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite",
                        help="Dagster instance storage: the embedded SQLite default or the local PostgreSQL")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
            runs.append(run_once(Path(tmp), args.instance))
    summary = {}
    for name in ("plain", "dagster"):
        summary[name] = {"wall_s": statistics.median(r[name]["wall_s"] for r in runs),
                         "peak_rss_mib": statistics.median(r[name]["peak_rss_mib"] for r in runs)}
    summary["ratio"] = {"wall": summary["dagster"]["wall_s"] / summary["plain"]["wall_s"],
                        "peak_rss": summary["dagster"]["peak_rss_mib"] / summary["plain"]["peak_rss_mib"]}
    summary["runs"] = args.repeat
    summary["instance"] = args.instance
    summary["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"backfill_{args.instance}.json").write_text(json.dumps(summary, indent=2))
    print(f"instance storage: {args.instance}")
    print(f"{'':10s} {'wall s':>8s} {'peak RSS MiB':>13s}")
    for name in ("plain", "dagster"):
        print(f"{name:10s} {summary[name]['wall_s']:8.1f} {summary[name]['peak_rss_mib']:13.0f}")
    print(f"{'ratio':10s} {summary['ratio']['wall']:8.2f} {summary['ratio']['peak_rss']:13.2f}  (target <= 1.30)")


if __name__ == "__main__":
    main()
