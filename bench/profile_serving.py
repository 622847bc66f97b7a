"""Profile of the scoring service in process: where a request's time goes (single rows and batches).

Builds the online features of one real day into a SQLite store (as ``bench_serving.py`` does), creates
the service app against an MLflow registry with a ``champion`` and calls its ASGI ``POST /predict``
directly in this thread (no network, no test client threads, so cProfile sees the whole request:
body parsing and validation, features, join, scoring, response), then waits for the traffic writer;
prints the time per request and the top functions.

    .venv/bin/python bench/profile_serving.py --tracking-uri sqlite:////tmp/mlflow/mlflow.db [--rows 1] [--requests 300]
"""

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))


async def post(app, body: bytes) -> tuple[int, bytes]:
    """One ``POST /predict`` through the app's ASGI interface: (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "root_path": "",
             "query_string": b"", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "app": app}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    out: list[dict] = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        out.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in out if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")


async def drive(app, bodies: list[bytes], requests: int, profiler) -> tuple[float, float]:
    """Warm up, then ``requests`` requests (profiled): seconds until the traffic log has them all, and
    the CPU seconds of the process (every thread: requests and traffic writer) in that time."""
    async with app.router.lifespan_context(app):
        for body in bodies[:5]:
            status, text = await post(app, body)
            assert status == 200, text
        app.state.traffic.flush()
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for i in range(requests):
            status, text = await post(app, bodies[i % len(bodies)])
            assert status == 200, text
        if profiler:
            profiler.disable()
        app.state.traffic.flush()
        return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{REPO_ROOT / '.mlflow' / 'mlflow.db'}")
    parser.add_argument("--day", default="2013-03-12")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative or tottime")
    parser.add_argument("--no-profile", action="store_true", help="only time the requests")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from bench_serving import offline_features

    from ml_assets.config import load_pipeline
    from ml_assets.config.tabular import PARTITION_COLUMN
    from ml_assets.serving.app import ServiceSettings, create_app
    from ml_assets.serving.online import namespace, online_records, request_columns
    from resources.online_store import SqliteKeyValueStore
    from resources.tracking import MlflowTracking

    spec = load_pipeline(REPO_ROOT / "pipelines" / "flights.yaml")
    features, raw = offline_features(spec, args.day)
    year, month, dom = (int(p) for p in args.day.split("-"))
    raw = raw[(raw["year"] == year) & (raw["month"] == month) & (raw["day"] == dom)]
    data = Path(tempfile.mkdtemp(prefix="profile-serving-"))
    store = SqliteKeyValueStore(data / "features.sqlite")
    records, _ = online_records(features[features[PARTITION_COLUMN] == args.day].reset_index(drop=True), spec)
    store.replace(namespace(spec.name, args.day), records)
    rows = json.loads(raw[list(request_columns(spec))].to_json(orient="records", date_format="iso"))
    bodies = [json.dumps({"rows": rows[i:i + args.rows]}).encode() for i in range(0, len(rows), args.rows)]
    settings = ServiceSettings(spec=spec, tracking=MlflowTracking(tracking_uri=args.tracking_uri, local_dir=str(data / "mlflow")),
                               store=store, traffic_path=data / "traffic.sqlite")
    app = create_app(settings, start_background=False)
    # CPU time of this thread: the figures do not depend on what else the machine runs
    profiler = None if args.no_profile else cProfile.Profile(time.thread_time)
    elapsed, cpu = asyncio.run(drive(app, bodies, args.requests, profiler))
    print(f"{args.requests} requests of {args.rows} rows: {elapsed / args.requests * 1000:.2f} ms per request,"
          f" {args.requests * args.rows / elapsed:,.0f} rows/s; CPU {cpu / args.requests * 1000:.2f} ms per request,"
          f" {args.requests * args.rows / cpu:,.0f} rows per CPU second (load average {os.getloadavg()[0]:.1f})")
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
