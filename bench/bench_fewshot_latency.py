"""Benchmark: selection latency on the real few-shot collection built by the main job.

Times top-4, label-filtered, balanced and MMR selection for held-out reviews against the collection
that `./run.sh main` stores under `.data/qdrant` (3,980 points), and the same top-4 as an exact
NumPy search over the same vectors (the plain baseline). Run after `./run.sh main`:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_fewshot_latency.py [--queries 200]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    import numpy as np

    from ml_assets.config import data_dir, load_fewshot_spec
    from ml_assets.fewshot.evaluation import percentile_ms, selection_latency
    from ml_assets.fewshot.examples import read_examples
    from harness import fewshot_latency_variants
    from ml_assets.fewshot.store import embedder_settings
    from resources.embedder import SentenceTransformerEmbedder
    from resources.vector_store import QdrantVectorStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    spec = load_fewshot_spec()
    embedder = SentenceTransformerEmbedder(**embedder_settings(spec))
    store = QdrantVectorStore(path=str(data_dir() / "qdrant"), lock_timeout_seconds=0)
    collection = spec.collection_name(embedder.name)
    holdout = read_examples(spec, "holdout", args.queries)
    queries = embedder.embed([t.strip() for t in holdout["text"]])
    variants = fewshot_latency_variants()
    with store.open() as client:
        points = client.scroll(collection, limit=100_000, with_vectors=True)[0]
        matrix = np.array([p.vector for p in points], dtype=np.float32)
        results = selection_latency(store, client, collection, queries, variants, spec.labels)
    times = []
    for vec in queries:
        started = time.perf_counter()
        np.argpartition(-(matrix @ np.asarray(vec, dtype=np.float32)), 4)[:4]
        times.append(time.perf_counter() - started)
    results["plain_numpy_top4"] = {"p50_ms": percentile_ms(times, 50), "p95_ms": percentile_ms(times, 95)}
    results["points"] = len(matrix)
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "fewshot_latency.json").write_text(json.dumps(results, indent=2))
    for name, value in results.items():
        if isinstance(value, dict):
            print(f"{name:20s} p50 {value['p50_ms']:7.2f} ms   p95 {value['p95_ms']:7.2f} ms")
    print(f"points: {results['points']} (target: p95 <= 20 ms)")


if __name__ == "__main__":
    main()
