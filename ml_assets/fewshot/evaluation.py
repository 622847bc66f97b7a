"""How well the store selects few-shot examples: label agreement and k-nearest-neighbour votes on
held-out examples against random examples, and retrieval latency. numpy loads inside the functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ml_assets.config.fewshot import FewshotSpec
from ml_assets.fewshot.examples import FewshotInputError, is_nonempty_text, validate_for_embedding
from ml_assets.fewshot.prompts import RenderedPrompt, render_prompt
from ml_assets.fewshot.selection import SelectionParams, select_examples
from ml_assets.fewshot.store import prepare_points
from resources.vector_store import QdrantVectorStore


def majority_vote(labels: list[str], scores: list[float] | None = None) -> str | None:
    """The most frequent label; ties go to the higher summed score (then the first seen)."""
    if not labels:
        return None
    counts: dict[str, list[float]] = {}
    for i, label in enumerate(labels):
        entry = counts.setdefault(label, [0.0, 0.0])
        entry[0] += 1
        entry[1] += scores[i] if scores else 0.0
    return max(counts, key=lambda lab: (counts[lab][0], counts[lab][1]))


def percentile_ms(seconds: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else 0.0


def selection_latency(
    store: QdrantVectorStore, client: Any, collection: str, query_vectors: Any, variants: dict[str, Any],
    labels: list[str],
) -> dict[str, dict[str, float]]:
    """p50 and p95 milliseconds of ``select_examples`` per named ``SelectionParams`` variant, one
    selection per query vector, on an open client (used by the benchmarks)."""
    def search(vec: Any, limit: int, label: str | None, threshold: float | None, with_vectors: bool):
        return store.search(client, collection, vec, limit, label, threshold, with_vectors)

    latency = {}
    for name, params in variants.items():
        times = []
        for vec in query_vectors:
            started = time.perf_counter()
            select_examples(search, vec, params, labels)
            times.append(time.perf_counter() - started)
        latency[name] = {"p50_ms": round(percentile_ms(times, 50), 3), "p95_ms": round(percentile_ms(times, 95), 3)}
    return latency


@dataclass(frozen=True)
class EvaluationSettings:
    """What the few-shot evaluation selects and measures (seeded from the YAML, overridable per run)."""

    k: int
    vote_k: int
    seed: int
    latency_queries: int
    balance_labels: bool = False
    mmr_lambda: float | None = None
    min_score: float | None = None

    def selection(self) -> SelectionParams:
        return SelectionParams(k=self.k, min_score=self.min_score, balance_labels=self.balance_labels,
                               mmr_lambda=self.mmr_lambda)


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, float]
    run_params: dict[str, Any]
    sample_prompt: RenderedPrompt
    pool_points: int
    queries: int
    collection: str

    @property
    def beats_random(self) -> bool:
        m = self.metrics
        return m["knn_vote_accuracy"] > m["random_vote_accuracy"] and (
            m["label_agreement_selected"] > m["label_agreement_random"]
        )


def evaluate_selection(
    spec: FewshotSpec, examples: Any, holdout_examples: Any, embedder: Any, store: QdrantVectorStore,
    settings: EvaluationSettings, log: Any = print,
) -> EvaluationResult:
    """Embed the held-out examples, select examples for each from the store, and compare label
    agreement and kNN-vote accuracy with randomly chosen examples and the majority class; time the
    retrieval of the first ``latency_queries`` selections."""
    import numpy as np

    validate_for_embedding(holdout_examples, spec, "fewshot/holdout_examples")
    pool = prepare_points(examples[examples["text"].map(is_nonempty_text)], spec, embedder.name)
    queries = prepare_points(holdout_examples, spec, embedder.name + "/holdout")
    if queries.empty or pool.empty:
        raise FewshotInputError("the few-shot evaluation needs at least one pool and one held-out example")
    collection = spec.collection_name(embedder.name)
    params = settings.selection()
    log(f"embedding {len(queries)} held-out queries")
    vectors = embedder.embed(queries["embed_text"].tolist(), log=log)
    truth = queries["label"].astype(str).tolist()

    agreement, votes, latencies = [], [], []
    first_selection = None
    with store.open() as client:
        info = store.require_collection(client, collection)

        def search(vec: Any, limit: int, label: str | None, threshold: float | None, with_vectors: bool):
            return store.search(client, collection, vec, limit, label, threshold, with_vectors)

        for i, vec in enumerate(vectors):
            t0 = time.perf_counter()
            selected = select_examples(search, vec, params, spec.labels)
            if i < settings.latency_queries:
                latencies.append(time.perf_counter() - t0)
            if first_selection is None:
                first_selection = selected
            agreement.append(np.mean([e.label == truth[i] for e in selected]) if selected else 0.0)
            hits = search(vec, settings.vote_k, None, None, False)
            votes.append(majority_vote([str(h["payload"].get("label")) for h in hits], [h["score"] for h in hits]))

    rng = np.random.default_rng(settings.seed)
    pool_labels = pool["label"].astype(str).to_numpy()
    random_agreement, random_votes = [], []
    for label in truth:
        picked = pool_labels[rng.choice(len(pool_labels), size=min(settings.k, len(pool_labels)), replace=False)]
        random_agreement.append(float(np.mean(picked == label)))
        voters = pool_labels[rng.choice(len(pool_labels), size=min(settings.vote_k, len(pool_labels)), replace=False)]
        random_votes.append(majority_vote(list(voters)))
    majority_label = majority_vote(list(pool_labels))
    metrics = {
        "label_agreement_selected": float(np.mean(agreement)),
        "label_agreement_random": float(np.mean(random_agreement)),
        "knn_vote_accuracy": float(np.mean([v == t for v, t in zip(votes, truth)])),
        "random_vote_accuracy": float(np.mean([v == t for v, t in zip(random_votes, truth)])),
        "majority_class_accuracy": float(np.mean([majority_label == t for t in truth])),
        "retrieval_p50_ms": percentile_ms(latencies, 50),
        "retrieval_p95_ms": percentile_ms(latencies, 95),
    }
    run_params = {
        "collection": collection,
        "model": embedder.name,
        "precision": embedder.precision,
        "k": settings.k,
        "vote_k": settings.vote_k,
        "seed": settings.seed,
        "balance_labels": settings.balance_labels,
        "mmr_lambda": settings.mmr_lambda,
        "min_score": settings.min_score,
        "pool_points": info["points"],
        "holdout_queries": len(queries),
        "store": "local" if store.is_local else "server",
    }
    template_name = spec.prompts.default
    template = spec.prompts.templates[template_name]
    sample_prompt = render_prompt(
        template, queries["text"].iloc[0], first_selection or [], name=template_name, labels=spec.labels
    )
    return EvaluationResult(metrics=metrics, run_params=run_params, sample_prompt=sample_prompt,
                            pool_points=info["points"], queries=len(queries), collection=collection)
