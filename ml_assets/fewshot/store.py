"""The few-shot vector store in sync with the examples: deterministic point ids from a content hash
(model, label, text), so a re-run embeds only new or changed examples and deletes removed ones.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_assets.config.fewshot import FewshotSpec
from ml_assets.config.paths import resolve_location
from ml_assets.fewshot.examples import EXAMPLE_COLUMNS, validate_for_embedding
from resources.embedder import SentenceTransformerEmbedder
from resources.vector_store import QdrantVectorStore

if TYPE_CHECKING:
    import pandas as pd

# Fixed namespace for point ids: uuid5(POINT_NAMESPACE, content hash). Never change it.
POINT_NAMESPACE = uuid.UUID("6f1c9a52-3a55-4b8e-9d1e-2f6c0c2a7e11")


def embedder_settings(spec: FewshotSpec) -> dict[str, Any]:
    """The embedder resource's plain parameters from the YAML (the model folder resolved)."""
    embedding = spec.embedding
    return {
        "model_path": str(resolve_location(embedding.model_path)),
        "model_name": spec.model_name(),
        "batch_size": embedding.batch_size,
        "device": embedding.device,
        "precision": embedding.precision,
    }


def embedder_for(spec: FewshotSpec) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(**embedder_settings(spec))


def vector_store_for(spec: FewshotSpec, *, path: str | None = None, lock_timeout_seconds: float | None = None,
                     **server: Any) -> QdrantVectorStore:
    """The vector store of ``spec`` (local folder from the YAML unless ``path``; ``url`` / ``api_key``
    for a server)."""
    timeout = spec.vector_store.lock_timeout_seconds if lock_timeout_seconds is None else lock_timeout_seconds
    return QdrantVectorStore(path=path or spec.store_path(), lock_timeout_seconds=timeout, **server)


def content_hash(text: str, label: str, model: str) -> str:
    """sha256 of what is embedded and stored: model, label and text."""
    return hashlib.sha256(f"{model}\x1f{label}\x1f{text}".encode()).hexdigest()


def point_id(digest: str) -> str:
    """The deterministic Qdrant point id of a content hash."""
    return str(uuid.uuid5(POINT_NAMESPACE, digest))


def prepare_points(frame: "pd.DataFrame", spec: FewshotSpec, model: str) -> "pd.DataFrame":
    """One row per distinct point: embed text (cut to ``max_chars``), hash, id and payload fields.

    Rows with the same text and label share an id and are stored once (the first is kept).
    """
    max_chars = spec.limits.max_chars
    out = frame[EXAMPLE_COLUMNS].copy()
    out["text"] = out["text"].map(str.strip)
    out["truncated"] = out["text"].map(lambda t: len(t) > max_chars)
    out["embed_text"] = out["text"].map(lambda t: t[:max_chars])
    out["content_hash"] = [content_hash(t, str(lab), model) for t, lab in zip(out["embed_text"], out["label"])]
    out["point_id"] = out["content_hash"].map(point_id)
    return out.drop_duplicates("point_id", keep="first").reset_index(drop=True)


@dataclass
class SyncStats:
    """What one embedding run did."""

    points: int
    desired: int
    embedded: int
    skipped: int
    deleted: int
    dimension: int
    created: bool
    duplicates_collapsed: int
    truncated_by_chars: int
    truncated_by_model: int
    embed_seconds: float
    seconds: float


def sync_embeddings(
    frame: "pd.DataFrame",
    spec: FewshotSpec,
    embedder: SentenceTransformerEmbedder,
    store: QdrantVectorStore,
    collection: str,
    *,
    full_refresh: bool = False,
    log: Any = None,
) -> SyncStats:
    """Make ``collection`` hold exactly the examples of ``frame``: embed new or changed examples,
    delete removed ones, skip the rest. The asset and the benchmark both run this.

    Bad input, a mismatched collection, a locked or unreachable store: each raises before anything is
    written. Writes are upserts first, deletes last, so a failure never loses stored points. The
    store stays open (locked, in local mode) for the whole run; the model is loaded before.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    validate_for_embedding(frame, spec, "fewshot/examples")
    points = prepare_points(frame, spec, embedder.name)
    dimension = embedder.dimension()  # loads the model before the store is locked

    with store.open() as client:
        created = store.ensure_collection(client, collection, dimension, embedder.name)
        existing = store.point_ids(client, collection)
        desired = set(points["point_id"])
        todo = points if full_refresh else points[~points["point_id"].isin(existing)]
        removed = sorted(existing - desired)
        texts = todo["embed_text"].tolist()
        if log is not None:
            log(
                f"{collection}: {len(points)} examples, {len(todo)} to embed, {len(points) - len(todo)}"
                f" unchanged, {len(removed)} to delete"
            )
        ids = todo["point_id"].tolist()
        payloads = [
            {
                "label": str(r.label),
                "text": r.text,
                "source": r.source,
                "example_id": r.example_id,
                "content_hash": r.content_hash,
                "model": embedder.name,
                "truncated": bool(r.truncated),
            }
            for r in todo.itertuples()
        ]
        truncated_by_model = embedder.count_truncated_by_model(texts)

        # Each embedded chunk is upserted by one writer thread while the next chunk is embedded:
        # local-mode upserts commit point by point (about 1 ms each), which would otherwise add
        # several percent to a full run; and an interrupted run keeps what it already stored.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-upsert") as writer:
            pending = []

            def store_chunk(positions: list[int], vectors: Any) -> None:
                pending.append(
                    writer.submit(
                        store.upsert,
                        client,
                        collection,
                        [ids[i] for i in positions],
                        vectors,
                        [payloads[i] for i in positions],
                    )
                )

            embed_started = time.perf_counter()
            embedder.embed(texts, log=log, on_chunk=store_chunk)
            embed_seconds = time.perf_counter() - embed_started
            for future in pending:
                future.result()  # re-raises a failed upsert
        store.delete(client, collection, removed)
        count = client.count(collection, exact=True).count
    return SyncStats(
        points=count,
        desired=len(points),
        embedded=len(todo),
        skipped=len(points) - len(todo),
        deleted=len(removed),
        dimension=dimension,
        created=created,
        duplicates_collapsed=len(frame) - len(points),
        truncated_by_chars=int(todo["truncated"].sum()),
        truncated_by_model=truncated_by_model,
        embed_seconds=embed_seconds,
        seconds=time.perf_counter() - started,
    )
