"""Benchmark: Qdrant local mode at scale, with synthetic normalized 384-d vectors (MiniLM's size).

The collection grows in steps (default 4k, 20k, 50k, 100k points, upserted in batches of 1000 the
way the embeddings asset does); at each step it times plain top-4 queries and label-filtered top-4
queries. At the end it closes the store and times reopening it (local mode loads every point into
memory on open, and warns above 20,000 points). The baseline is plain numpy doing the same exact
search, so the numbers separate "brute force is slow" from "local mode overhead".

Run once (a few minutes on 2 cores):
    .venv/bin/python bench/bench_qdrant_scale.py [--sizes 4000,20000,50000,100000]
Results: printed, and written to bench/results/qdrant_scale.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from resources.vector_store import QdrantVectorStore  # noqa: E402

DIM = 384
COLLECTION = "scale"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(times: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(times) * 1000, q)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4000,20000,50000,100000")
    parser.add_argument("--queries", type=int, default=20, help="plain queries timed per size")
    parser.add_argument("--filtered-queries", type=int, default=5, help="filtered queries timed per size")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "qdrant_scale.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rng = np.random.default_rng(0)
    total = sizes[-1]
    vectors = rng.standard_normal((total, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.where(rng.random(total) < 0.35, "other", "great")
    queries = rng.standard_normal((max(args.queries, args.filtered_queries), DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    results: dict = {"dim": DIM, "steps": []}

    with tempfile.TemporaryDirectory() as tmp:
        store = QdrantVectorStore(path=str(Path(tmp) / "qdrant"), lock_timeout_seconds=0)
        with store.open() as client:
            store.ensure_collection(client, COLLECTION, DIM, "synthetic")
        done = 0
        upsert_total = 0.0
        for size in sizes:
            with store.open() as client:
                t0 = time.perf_counter()
                for begin in range(done, size, 1000):
                    end = min(begin + 1000, size)
                    ids = [str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))) for i in range(begin, end)]
                    payloads = [{"label": str(lab), "text": f"synthetic {i}"} for i, lab in zip(range(begin, end), labels[begin:end])]
                    store.upsert(client, COLLECTION, ids, vectors[begin:end], payloads, batch_size=1000)
                upsert_s = time.perf_counter() - t0
                upsert_total += upsert_s
                plain, filtered = [], []
                for q in queries[: args.queries]:
                    t0 = time.perf_counter()
                    store.search(client, COLLECTION, q, 4)
                    plain.append(time.perf_counter() - t0)
                for q in queries[: args.filtered_queries]:
                    t0 = time.perf_counter()
                    store.search(client, COLLECTION, q, 4, label="other")
                    filtered.append(time.perf_counter() - t0)
            numpy_times = []
            for q in queries[: args.queries]:
                t0 = time.perf_counter()
                scores = vectors[:size] @ q
                np.argpartition(-scores, 4)[:4]
                numpy_times.append(time.perf_counter() - t0)
            step = {
                "points": size,
                "upsert_seconds_this_step": round(upsert_s, 1),
                "upsert_points_per_second": round((size - done) / upsert_s, 1),
                "query_p50_ms": pct(plain, 50),
                "query_p95_ms": pct(plain, 95),
                "filtered_query_p50_ms": pct(filtered, 50),
                "filtered_query_p95_ms": pct(filtered, 95),
                "plain_numpy_query_p50_ms": pct(numpy_times, 50),
            }
            results["steps"].append(step)
            log(json.dumps(step))
            done = size

        results["upsert_seconds_total"] = round(upsert_total, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            with store.open() as client:
                reopen_s = time.perf_counter() - t0
                count = client.count(COLLECTION).count
        results["reopen_seconds"] = round(reopen_s, 1)
        results["reopen_points"] = count
        results["reopen_warnings"] = [str(w.message)[:200] for w in caught]
        results["store_megabytes"] = round(
            sum(f.stat().st_size for f in Path(tmp, "qdrant").rglob("*") if f.is_file()) / 1e6, 1
        )
        log(f"reopen {count} points: {reopen_s:.1f} s; warnings: {results['reopen_warnings']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
