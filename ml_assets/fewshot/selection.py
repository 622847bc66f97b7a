"""Few-shot example selection: the nearest examples to a query vector, then, in order, an optional
label filter and minimum score (pushed down to Qdrant), label balancing (each label gets an equal
share of ``k``; labels with too few candidates leave their share to the others) and MMR diversity
(maximal marginal relevance: ``lambda * relevance - (1 - lambda) * max similarity to the examples
already chosen``). The helpers work on plain ``Example`` objects and numpy vectors, so they are
tested without a store.

Only the standard library is imported at module level; numpy loads inside ``mmr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


# search(vector, limit, label, score_threshold, with_vectors) -> [{"id", "score", "payload", "vector"}]
SearchFn = Callable[[Any, int, "str | None", "float | None", bool], list[dict[str, Any]]]


class SelectionError(ValueError):
    """Invalid selection parameters."""


@dataclass(frozen=True)
class Example:
    """A labeled example with its similarity ``score`` to the query (and its vector when fetched)."""

    id: str
    text: str
    label: str
    score: float = 0.0
    vector: Any = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "label": self.label, "text": self.text}


@dataclass(frozen=True)
class SelectionParams:
    """What to select: ``k`` examples, optionally of one ``label``, scoring at least ``min_score``,
    balanced across labels, and diversified with MMR (``mmr_lambda`` in [0, 1]; None = plain top-k).
    """

    k: int = 4
    label: str | None = None
    min_score: float | None = None
    balance_labels: bool = False
    mmr_lambda: float | None = None
    fetch_k: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise SelectionError(f"k must be at least 1, got {self.k}")
        if self.mmr_lambda is not None and not 0.0 <= self.mmr_lambda <= 1.0:
            raise SelectionError(f"mmr_lambda must be between 0 and 1, got {self.mmr_lambda}")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise SelectionError(f"min_score is a cosine similarity in [-1, 1], got {self.min_score}")
        if self.fetch_k is not None and self.fetch_k < self.k:
            raise SelectionError(f"fetch_k ({self.fetch_k}) must be at least k ({self.k})")

    @property
    def needs_candidates(self) -> bool:
        return self.mmr_lambda is not None or (self.balance_labels and self.label is None)

    @property
    def candidates(self) -> int:
        """How many candidates to fetch (per label when balancing)."""
        if not self.needs_candidates:
            return self.k
        return self.fetch_k or max(4 * self.k, 20)


def to_examples(points: Sequence[Mapping[str, Any]]) -> list[Example]:
    """Examples from store hits (``{"id", "score", "payload", "vector"}``)."""
    return [
        Example(
            id=str(p["id"]),
            text=str(p["payload"].get("text", "")),
            label=str(p["payload"].get("label", "")),
            score=float(p["score"]),
            vector=p.get("vector"),
            payload=p["payload"],
        )
        for p in points
    ]


def filter_label(candidates: Sequence[Example], label: str | None) -> list[Example]:
    return [c for c in candidates if label is None or c.label == label]


def filter_min_score(candidates: Sequence[Example], min_score: float | None) -> list[Example]:
    return [c for c in candidates if min_score is None or c.score >= min_score]


def top_k(candidates: Sequence[Example], k: int) -> list[Example]:
    """The ``k`` highest-scoring candidates, best first (ties keep their order)."""
    return sorted(candidates, key=lambda c: -c.score)[:k]


def mmr(candidates: Sequence[Example], k: int, lambda_: float) -> list[Example]:
    """Maximal marginal relevance: greedily pick ``argmax lambda*score - (1-lambda)*max_sim``.

    ``score`` is the similarity to the query; ``max_sim`` the highest cosine similarity to the
    examples already picked (vectors are normalized, so cosine = dot product). Returned in pick order.
    """
    import numpy as np

    pool = list(candidates)
    if not pool or k <= 0:
        return []
    if any(c.vector is None for c in pool):
        raise SelectionError("MMR needs the candidates' vectors (fetch them with with_vectors=True)")
    vectors = np.asarray([c.vector for c in pool], dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1.0, norms)
    relevance = np.asarray([c.score for c in pool], dtype=np.float64)
    chosen: list[int] = []
    max_sim = np.full(len(pool), -np.inf)
    available = np.ones(len(pool), dtype=bool)
    for _ in range(min(k, len(pool))):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = lambda_ * relevance - (1.0 - lambda_) * redundancy
        value[~available] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return [pool[i] for i in chosen]


def label_quotas(labels: Sequence[str], k: int) -> dict[str, int]:
    """Split ``k`` as evenly as possible over ``labels``; the first labels get the remainder."""
    if not labels:
        return {}
    base, extra = divmod(k, len(labels))
    return {label: base + (1 if i < extra else 0) for i, label in enumerate(labels)}


def balance_labels(
    candidates: Sequence[Example],
    k: int,
    labels: Sequence[str] | None = None,
    pick: Callable[[Sequence[Example], int], list[Example]] = top_k,
) -> list[Example]:
    """``k`` examples with labels as even as the candidates allow, best first.

    Labels are ordered by their best candidate (so the remainder of ``k`` goes to the most similar
    labels); each label's share is picked with ``pick`` (top-k or MMR); a label with too few
    candidates leaves its share to the best remaining candidates of any label.
    """
    by_label: dict[str, list[Example]] = {}
    for c in sorted(candidates, key=lambda c: -c.score):
        by_label.setdefault(c.label, []).append(c)
    present = sorted(by_label, key=lambda lab: -by_label[lab][0].score)
    if labels is not None:
        present = [lab for lab in present if lab in set(labels)]
    chosen: list[Example] = []
    for label, quota in label_quotas(present, k).items():
        chosen.extend(pick(by_label[label], quota))
    if len(chosen) < k:
        taken = {c.id for c in chosen}
        rest = [c for lab in present for c in by_label[lab] if c.id not in taken]
        chosen.extend(pick(rest, k - len(chosen)))
    return sorted(chosen, key=lambda c: -c.score)[:k]


def select_from_candidates(
    candidates: Sequence[Example], params: SelectionParams, labels: Sequence[str] | None = None
) -> list[Example]:
    """Apply the label filter, minimum score, balancing and MMR of ``params`` to ``candidates``."""
    pool = filter_min_score(filter_label(candidates, params.label), params.min_score)
    if params.mmr_lambda is not None:
        lam = params.mmr_lambda

        def pick(cands: Sequence[Example], n: int) -> list[Example]:
            return mmr(cands, n, lam)
    else:
        pick = top_k
    if params.balance_labels and params.label is None:
        return balance_labels(pool, params.k, labels, pick=pick)
    return pick(pool, params.k)


def select_examples(
    search: SearchFn,
    query_vector: Any,
    params: SelectionParams,
    labels: Sequence[str] | None = None,
) -> list[Example]:
    """Select few-shot examples for one query vector from a store ``search`` function.

    The minimum score is pushed down to the store. A label filter or label balancing first reads the
    top ``candidates x labels`` hits unfiltered and filters them here (exact: the best examples of a
    label are the first ones of that label in the global ranking); only a label with too few hits
    among them is searched again with a store-side filter. Filtered searches are slow in Qdrant local
    mode (the filter runs in Python over every point), so this keeps selection fast there. MMR
    fetches ``params.candidates`` candidates with their vectors.
    """
    with_vectors = params.mmr_lambda is not None
    wanted = [params.label] if params.label is not None else list(labels or []) if params.balance_labels else []
    if not wanted:
        hits = search(query_vector, params.candidates, None, params.min_score, with_vectors)
        return select_from_candidates(to_examples(hits), params, labels)
    # MMR needs its candidates per label; plain top-k (balanced or not) needs at most k per label.
    per_label = params.candidates if with_vectors else params.k
    limit = max(2 * per_label * max(len(labels or []), 2), 50)
    hits = search(query_vector, limit, None, params.min_score, with_vectors)
    complete = len(hits) < limit  # the store had no more hits above min_score
    kept = [h for h in hits if str(h["payload"].get("label")) in wanted]
    if not complete:
        for label in wanted:
            if sum(1 for h in kept if str(h["payload"].get("label")) == label) < per_label:
                kept = [h for h in kept if str(h["payload"].get("label")) != label]
                kept.extend(search(query_vector, per_label, label, params.min_score, with_vectors))
    if params.label is None:  # balancing: each label contributes at most its candidates
        seen: dict[str, int] = {}
        trimmed = []
        for h in sorted(kept, key=lambda h: -h["score"]):
            label = str(h["payload"].get("label"))
            seen[label] = seen.get(label, 0) + 1
            if seen[label] <= per_label:
                trimmed.append(h)
        kept = trimmed
    else:
        kept = sorted(kept, key=lambda h: -h["score"])[:per_label]
    return select_from_candidates(to_examples(kept), params, labels)
