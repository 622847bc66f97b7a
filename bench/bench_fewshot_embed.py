"""Benchmark: the few-shot embedding path against a plain sentence-transformers encode, in one run.

1. plain:  ``SentenceTransformer.encode`` of the 4000 training reviews (batch 32, normalized).
2. asset:  ``ml_assets.fewshot.store.sync_embeddings`` (what ``fewshot/example_embeddings`` runs: validate,
           hash, diff against the store, embed with progress logging, upsert) into a fresh local
           Qdrant store. Same model object, same batch size. Target: asset / plain <= 1.05.
3. 1% changed (40 reviews edited): target <= 5% of the full asset run; nothing changed: embeds 0.
4. retrieval latency at 4000 points (local mode): top-k, label-filtered, balanced and MMR selection.
5. ``--int8`` (opt-in): torch dynamic int8 quantization: speed, cosine agreement with fp32 and the
   effect on the few-shot evaluation (kNN vote accuracy and label agreement on the held-out reviews).

Run (about 5 minutes on 2 cores; 8 with --int8):
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python bench/bench_fewshot_embed.py [--int8]
Results: printed, and written to bench/results/fewshot_embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from harness import fewshot_latency_variants  # noqa: E402
from ml_assets.config import load_fewshot_spec  # noqa: E402
from ml_assets.fewshot.evaluation import majority_vote, selection_latency  # noqa: E402
from ml_assets.fewshot.examples import read_examples  # noqa: E402
from ml_assets.fewshot.store import embedder_settings, sync_embeddings  # noqa: E402
from resources.embedder import SentenceTransformerEmbedder  # noqa: E402
from resources.vector_store import QdrantVectorStore  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def evaluate(store, collection, query_vectors, truth, k=4, vote_k=25):
    """Label agreement of the top-k and accuracy of the vote_k-nearest vote (plain code)."""
    agreement, correct = [], []
    with store.open() as client:
        for vec, label in zip(query_vectors, truth):
            hits = store.search(client, collection, vec, vote_k)
            labels = [h["payload"]["label"] for h in hits]
            agreement.append(np.mean([lab == label for lab in labels[:k]]))
            correct.append(majority_vote(labels, [h["score"] for h in hits]) == label)
    return float(np.mean(agreement)), float(np.mean(correct))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="training reviews (default: all 4000)")
    parser.add_argument("--queries", type=int, default=200, help="queries timed for retrieval latency")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved plain/asset pairs")
    parser.add_argument("--int8", action="store_true", help="also measure the opt-in int8 path")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "fewshot_embed.json"))
    args = parser.parse_args()

    spec = load_fewshot_spec()
    frame = read_examples(spec, "train", args.limit)
    texts = [t.strip()[: spec.limits.max_chars] for t in frame["text"]]
    words = np.array([len(t.split()) for t in texts])
    log(f"{len(texts)} reviews, median {np.median(words):.0f} words, p95 {np.percentile(words, 95):.0f}")

    embedder = SentenceTransformerEmbedder(**{**embedder_settings(spec), "precision": "fp32"})
    model = embedder.model()
    model.encode(texts[:64], batch_size=embedder.batch_size, normalize_embeddings=True)  # warm-up
    results: dict = {"reviews": len(texts), "batch_size": embedder.batch_size, "torch_threads": None}
    import torch

    results["torch_threads"] = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        collection = spec.collection_name(embedder.name)
        # Interleaved repeats (plain, asset, plain, asset ...): other work on the machine shifts both.
        plain_wall, plain_cpu, asset_wall, asset_cpu = [], [], [], []
        for rep in range(args.repeats):
            log(f"[{rep + 1}/{args.repeats}] plain encode ...")
            w0, c0 = time.perf_counter(), time.process_time()
            plain = model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            plain_wall.append(time.perf_counter() - w0)
            plain_cpu.append(time.process_time() - c0)
            log(f"plain encode: {plain_wall[-1]:.1f} s wall, {plain_cpu[-1]:.1f} s CPU")

            store = QdrantVectorStore(path=str(Path(tmp) / f"qdrant{rep}"), lock_timeout_seconds=0)
            log(f"[{rep + 1}/{args.repeats}] asset path (full, empty store) ...")
            w0, c0 = time.perf_counter(), time.process_time()
            full = sync_embeddings(frame, spec, embedder, store, collection, log=log)
            asset_wall.append(time.perf_counter() - w0)
            asset_cpu.append(time.process_time() - c0)
            log(f"asset path: {asset_wall[-1]:.1f} s wall, {asset_cpu[-1]:.1f} s CPU, embedded {full.embedded}")
        ratios = [a / p for a, p in zip(asset_wall, plain_wall)]
        plain_s = float(np.median(plain_wall))

        # the asset stored the same vectors as the plain encode
        with store.open() as client:
            stored = client.scroll(collection, limit=4096, with_payload=["example_id"], with_vectors=True)[0]
        by_id = {str(p.payload["example_id"]): np.asarray(p.vector) for p in stored}
        ids = frame["example_id"].astype(str).tolist()
        cos = [float(by_id[i] @ plain[j]) for j, i in enumerate(ids) if i in by_id]
        results.update(
            plain_seconds=[round(x, 2) for x in plain_wall],
            plain_cpu_seconds=[round(x, 2) for x in plain_cpu],
            asset_seconds=[round(x, 2) for x in asset_wall],
            asset_cpu_seconds=[round(x, 2) for x in asset_cpu],
            asset_over_plain_per_pair=[round(r, 4) for r in ratios],
            asset_over_plain=round(float(np.median(asset_wall)) / plain_s, 4),
            asset_over_plain_cpu=round(float(np.median(asset_cpu)) / float(np.median(plain_cpu)), 4),
            asset_vs_plain_min_cosine=round(min(cos), 6),
            points=full.points,
            truncated_by_model=full.truncated_by_model,
        )

        changed = frame.copy()
        step = max(1, len(changed) // 100)
        edited = list(range(0, len(changed), step))[: max(1, len(changed) // 100)]
        changed.loc[changed.index[edited], "text"] = changed["text"].iloc[edited] + " (edited)"
        log(f"1% changed ({len(edited)} reviews) ...")
        inc = sync_embeddings(changed, spec, embedder, store, collection)
        log(f"1% changed: {inc.seconds:.2f} s, embedded {inc.embedded}, deleted {inc.deleted}")
        same = sync_embeddings(changed, spec, embedder, store, collection)
        log(f"nothing changed: {same.seconds:.2f} s, embedded {same.embedded}")
        results.update(
            changed_1pct_seconds=round(inc.seconds, 3),
            changed_1pct_embedded=inc.embedded,
            changed_1pct_deleted=inc.deleted,
            changed_1pct_over_full=round(inc.seconds / float(np.median(asset_wall)), 4),
            unchanged_seconds=round(same.seconds, 3),
            unchanged_embedded=same.embedded,
        )

        # retrieval latency at 4000 points, queries = held-out reviews embedded by the same model
        holdout = read_examples(spec, "holdout", args.queries)
        queries = embedder.embed([t.strip() for t in holdout["text"]])
        latency = {}
        variants = fewshot_latency_variants()
        with store.open() as client:
            latency = selection_latency(store, client, collection, queries, variants, spec.labels)
        for name, value in latency.items():
            log(f"retrieval {name}: p50 {value['p50_ms']} ms, p95 {value['p95_ms']} ms")
        results["retrieval_ms_at_4000"] = latency

        if args.int8:
            truth = holdout["label"].tolist()
            fp32_agree, fp32_vote = evaluate(store, collection, queries, truth)
            int8 = SentenceTransformerEmbedder(**{**embedder_settings(spec), "precision": "int8"})
            int8.model().encode(texts[:64], batch_size=32, normalize_embeddings=True)
            log("int8 encode ...")
            t0 = time.perf_counter()
            q8 = int8.model().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            int8_s = time.perf_counter() - t0
            cos8 = np.sum(q8 * plain, axis=1)
            store8 = QdrantVectorStore(path=str(Path(tmp) / "qdrant8"), lock_timeout_seconds=0)
            with store8.open() as client:
                store8.ensure_collection(client, "int8", q8.shape[1], int8.name)
                ids8 = [str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))) for i in range(len(texts))]
                store8.upsert(client, "int8", ids8, q8, [{"label": lab} for lab in frame["label"]])
            q8_queries = int8.embed([t.strip() for t in holdout["text"]])
            int8_agree, int8_vote = evaluate(store8, "int8", q8_queries, truth)
            results["int8"] = {
                "seconds": round(int8_s, 2),
                "speedup_vs_fp32": round(plain_s / int8_s, 3),
                "cosine_to_fp32_min": round(float(cos8.min()), 4),
                "cosine_to_fp32_mean": round(float(cos8.mean()), 4),
                "holdout_queries": len(truth),
                "fp32_label_agreement": round(fp32_agree, 4),
                "int8_label_agreement": round(int8_agree, 4),
                "fp32_knn25_vote_accuracy": round(fp32_vote, 4),
                "int8_knn25_vote_accuracy": round(int8_vote, 4),
            }
            log(f"int8: {results['int8']}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    ok = (
        results["asset_over_plain"] <= 1.05
        and results["changed_1pct_over_full"] <= 0.05
        and results["unchanged_embedded"] == 0
        and latency["top4"]["p95_ms"] <= 20
    )
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
