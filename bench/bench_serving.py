"""Benchmark: the scoring service under load from a second process, against the MLflow model in process.

Builds the online features of one real day (the same code as the ``online_features`` asset) into a
SQLite store in a temporary data folder, starts ``python -m ml_assets.serving.server`` on a free
loopback port against an MLflow registry that has a ``champion`` (the project's ``.mlflow`` after
``./run.sh main``, or ``--tracking-uri``), then runs ``bench/serving_load.py`` in another process:

* single rows at a fixed rate (``--rate``, 50 per second) for ``--seconds``: p50, p95, p99 latency
  measured from each request's scheduled send time;
* batches of ``--batch`` rows back to back: rows per second.

The baseline is the same registered model loaded with ``mlflow.pyfunc.load_model`` in this process,
fed the day's precomputed offline features: single-row ``predict`` latency and batch rows per second.

    .venv/bin/python bench/bench_serving.py [--tracking-uri sqlite:///.mlflow/mlflow.db] [--day 2013-03-12]

It prints the JSON of the run, then the README's table (markdown, with the load average before and
after the run and the CPU count in its header), and writes both to ``bench/results/serving.json`` and
``bench/results/serving.md``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def offline_features(spec, day: str):
    """The day's offline features, by the pipeline's feature function on the packaged data."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from ml_assets.features.functions import get_feature_function
    from ml_assets.ingest.sources import read_source
    from resources.data_sources import DataSourceResource, Window

    tz = ZoneInfo(spec.partitioning.timezone)
    start = dt.datetime.fromisoformat(day).replace(tzinfo=tz)
    reader = DataSourceResource(base_dir=str(REPO_ROOT))
    sources = {}
    for name, source in spec.sources.items():
        before = spec.features.history_days if name == spec.primary_source else spec.features.context_days.get(name, 0)
        window = Window(start - dt.timedelta(days=before), start + dt.timedelta(days=1))
        sources[name] = read_source(reader, source, name=name, time_column=spec.time_column_for(name),
                                    timezone=spec.partitioning.timezone, window=window)
    features = get_feature_function(spec.features.function)(sources, [day], spec, **spec.features.params)
    return features, sources[spec.primary_source]


def percentiles(values):
    import numpy as np

    ms = np.asarray(values) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def in_process(spec, tracking_uri: str, features, n_single: int, batch: int):
    import mlflow

    from ml_assets.training.registry import model_input

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{spec.registered_model_name}@champion")
    frame = model_input(features, spec.features.numeric, spec.features.categorical)
    model.predict(frame.iloc[[0]])
    single = []
    for i in range(n_single):
        row = frame.iloc[[i % len(frame)]]
        started = time.perf_counter()
        model.predict(row)
        single.append(time.perf_counter() - started)
    chunks = [frame.iloc[i:i + batch] for i in range(0, len(frame), batch)]
    rows, started = 0, time.perf_counter()
    for _ in range(5):
        for chunk in chunks:
            model.predict(chunk)
            rows += len(chunk)
    return {"single": percentiles(single), "batch_rows_per_s": rows / (time.perf_counter() - started)}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{REPO_ROOT / '.mlflow' / 'mlflow.db'}")
    parser.add_argument("--day", default="2013-03-12")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batch-requests", type=int, default=20)
    args = parser.parse_args()

    import requests

    from ml_assets.config import load_pipeline
    from ml_assets.config.tabular import PARTITION_COLUMN
    from ml_assets.serving.online import namespace, online_records, request_columns
    from resources.online_store import SqliteKeyValueStore

    load_before = os.getloadavg()
    spec = load_pipeline(REPO_ROOT / "pipelines" / "flights.yaml")
    features, raw = offline_features(spec, args.day)
    year, month, dom = (int(p) for p in args.day.split("-"))
    raw = raw[(raw["year"] == year) & (raw["month"] == month) & (raw["day"] == dom)]
    data = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    store = SqliteKeyValueStore(data / "online" / "features.sqlite")
    records, _ = online_records(features[features[PARTITION_COLUMN] == args.day].reset_index(drop=True), spec)
    store.replace(namespace(spec.name, args.day), records)
    rows_file = data / "rows.json"
    rows_file.write_text(raw[list(request_columns(spec))].to_json(orient="records", date_format="iso"))
    n_rows = len(raw)

    port = free_port()
    env = dict(os.environ, ML_DATA_DIR=str(data), MLFLOW_TRACKING_URI=args.tracking_uri, PYTHONUNBUFFERED="1")
    server = subprocess.Popen([sys.executable, "-m", "ml_assets.serving.server", "--port", str(port)],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(data / "server.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/ready", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not become ready:\n{(data / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        load = [sys.executable, str(REPO_ROOT / "bench" / "serving_load.py")]
        single = json.loads(subprocess.run(
            [*load, "single", url, str(rows_file), "--rate", str(args.rate), "--seconds", str(args.seconds)],
            capture_output=True, text=True, check=True).stdout)
        batch = json.loads(subprocess.run(
            [*load, "batch", url, str(rows_file), "--batch", str(args.batch), "--requests", str(args.batch_requests)],
            capture_output=True, text=True, check=True).stdout)
    finally:
        server.terminate()
        server.wait(30)
    baseline = in_process(spec, args.tracking_uri, features, n_single=int(args.rate * args.seconds), batch=args.batch)
    result = {"day": args.day, "rows_of_day": n_rows, "rate": args.rate, "seconds": args.seconds,
              "batch": args.batch, "service_single": single, "service_batch": batch,
              "in_process_mlflow": baseline, "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "cpus": os.cpu_count()}
    table = markdown_table(result)
    print(json.dumps(result, indent=1))
    print(table)
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(result, indent=1))
    (out / "serving.md").write_text(table)


def ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def markdown_table(r: dict) -> str:
    """The README's table of one run."""
    single, batch, base = r["service_single"], r["service_batch"], r["in_process_mlflow"]
    before = ", ".join(f"{x:.1f}" for x in r["load_average_before"])
    after = ", ".join(f"{x:.1f}" for x in r["load_average_after"])
    lines = [
        f"| {r['day']} ({r['rows_of_day']} flights), {r['cpus']} CPUs, load average (1, 5, 15 min) {before}"
        f" before, {after} after | p50 | p95 | p99 | batch rows/s |",
        "| --- | --- | --- | --- | --- |",
        f"| service, single rows at {r['rate']:g} req/s for {r['seconds']:g} s (from schedule;"
        f" {single['achieved_rps']:.1f} req/s achieved, {single['errors']} errors)"
        f" | {ms(single['p50_ms'])} | {ms(single['p95_ms'])} | {ms(single['p99_ms'])} | |",
        f"| service, single rows, time of each response alone | {ms(single['response_only']['p50_ms'])}"
        f" | {ms(single['response_only']['p95_ms'])} | {ms(single['response_only']['p99_ms'])} | |",
        f"| service, {batch['requests']} batches of {r['batch']:,} rows ({batch['errors']} errors) | {ms(batch['p50_ms'])}"
        f" | {ms(batch['p95_ms'])} | {ms(batch['p99_ms'])} | **{batch['rows_per_s']:,.0f}** |",
        f"| MLflow pyfunc in process, single rows / {r['batch']:,}-row batches | {ms(base['single']['p50_ms'])}"
        f" | {ms(base['single']['p95_ms'])} | {ms(base['single']['p99_ms'])} | {base['batch_rows_per_s']:,.0f} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
