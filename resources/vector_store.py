"""The vector-store resource: Qdrant in local mode on disk (default) or a Qdrant server.

One resource in front of both backends, so tests use the real embedded backend. Local mode takes an
exclusive lock on its folder (a second client, even in the same process, fails with "already accessed
by another instance"), so this resource never holds a client: ``open()`` is a context manager that
opens the client for one unit of work and always closes it. When the folder is locked it retries for
``lock_timeout_seconds`` and then raises ``VectorStoreLockedError`` saying who may hold the lock and
what to do. In Dagster, every asset that touches the local store runs in the ``qdrant_local`` pool,
so steps of ``dagster dev`` runs and jobs queue for it instead of failing.

qdrant-client is imported inside the methods that use it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import numpy as np
    from qdrant_client import QdrantClient

QDRANT_POOL = "qdrant_local"
LABEL_FIELD = "label"


class VectorStoreError(RuntimeError):
    """A vector-store operation failed; the message names the store, the collection and the fix."""


class VectorStoreLockedError(VectorStoreError):
    """The local Qdrant folder is locked by another client."""


class VectorStoreUnavailableError(VectorStoreError):
    """The Qdrant server cannot be reached."""


class CollectionMismatchError(VectorStoreError):
    """A collection exists with a vector size or model that does not match the embedder."""


class CollectionNotFoundError(VectorStoreError):
    """The collection does not exist yet (materialize the embeddings asset first)."""


class QdrantVectorStore(dg.ConfigurableResource):
    """Qdrant vector store: local mode in ``path`` (embedded, no server) or a server at ``url``.

    Set ``url`` (and ``api_key``) through ``dg.EnvVar("QDRANT_URL")`` / ``dg.EnvVar("QDRANT_API_KEY")``
    for a server. Clients are opened and closed around each use (``with store.open() as client``):
    local mode allows one client per folder at a time.
    """

    path: str = Field(description="Folder of the local-mode store.")
    url: str | None = Field(default=None, description="Qdrant server URL; when set, path is unused.")
    api_key: str | None = Field(default=None, description="Qdrant server API key (use dg.EnvVar).")
    timeout_seconds: int = Field(default=10, ge=1, description="Server request timeout.")
    lock_timeout_seconds: float = Field(
        default=30.0, ge=0, description="How long to wait for a locked local folder before failing."
    )

    @property
    def is_local(self) -> bool:
        return not self.url

    @property
    def location(self) -> str:
        return f"Qdrant server {self.url}" if self.url else f"local Qdrant store {self.path}"

    @contextmanager
    def open(self) -> Iterator[QdrantClient]:
        """A client for one unit of work, closed on exit (releasing the local-mode lock)."""
        client = self._connect_server() if self.url else self._connect_local()
        try:
            yield client
        finally:
            client.close()

    def _connect_server(self) -> QdrantClient:
        from qdrant_client import QdrantClient

        client = QdrantClient(
            url=self.url, api_key=self.api_key, timeout=self.timeout_seconds, check_compatibility=False
        )
        try:
            client.get_collections()
        except Exception as exc:  # httpx / grpc / qdrant response errors: all mean "not reachable"
            client.close()
            raise VectorStoreUnavailableError(
                f"Qdrant server {self.url} is unreachable ({type(exc).__name__}: {exc}). Start the"
                f" server or fix QDRANT_URL / QDRANT_API_KEY; unset QDRANT_URL to use local mode."
                f" Nothing was changed."
            ) from exc
        return client

    def _connect_local(self) -> QdrantClient:
        from qdrant_client import QdrantClient

        Path(self.path).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        while True:
            try:
                return QdrantClient(path=self.path)
            except RuntimeError as exc:
                if "already accessed" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise VectorStoreLockedError(
                        f"the local Qdrant store {self.path} is locked (its .lock file is held by"
                        f" another client) and stayed locked for {self.lock_timeout_seconds:g} s."
                        f" Local mode allows one client at a time: another process (`dagster dev`"
                        f" running a few-shot asset, a job, or `fewshot-select`) or another open"
                        f" client in this process is using it. Wait for it to finish and retry, stop"
                        f" that process, or run a Qdrant server and set QDRANT_URL for concurrent"
                        f" access. Dagster assets that use the store share the '{QDRANT_POOL}' pool,"
                        f" so give that pool a limit of 1 (dagster_home/dagster.yaml)."
                    ) from exc
                time.sleep(0.25)

    # -- collections ---------------------------------------------------------------------------

    def collection_info(self, client: QdrantClient, collection: str) -> dict[str, Any] | None:
        """``{"size", "distance", "model", "points"}`` of a collection, or None when it is missing."""
        if not client.collection_exists(collection):
            return None
        info = client.get_collection(collection)
        vectors = info.config.params.vectors
        size = getattr(vectors, "size", None)
        distance = getattr(getattr(vectors, "distance", None), "value", None)
        metadata = info.config.metadata or {}
        return {
            "size": size,
            "distance": distance,
            "model": metadata.get("model"),
            "points": client.count(collection, exact=True).count,
        }

    def ensure_collection(
        self, client: QdrantClient, collection: str, dimension: int, model: str
    ) -> bool:
        """Create the collection (cosine, ``dimension``) or check that it matches; True if created.

        A collection with another vector size or model raises ``CollectionMismatchError`` and is
        left exactly as it is.
        """
        from qdrant_client import models

        info = self.collection_info(client, collection)
        if info is None:
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                metadata={"model": model, "dimension": dimension},
            )
            if not self.is_local:
                client.create_payload_index(collection, LABEL_FIELD, models.PayloadSchemaType.KEYWORD)
            return True
        if info["size"] != dimension:
            raise CollectionMismatchError(
                f"collection '{collection}' in the {self.location} stores {info['size']}-d vectors"
                f" (model {info['model'] or 'unknown'}), but the embedder {model} makes"
                f" {dimension}-d vectors. The collection was left intact. Keep '{{model}}' in"
                f" vector_store.collection so each model gets its own collection, or delete this one"
                f" to re-embed."
            )
        if info["model"] is not None and info["model"] != model:
            raise CollectionMismatchError(
                f"collection '{collection}' in the {self.location} holds vectors of model"
                f" {info['model']}, not {model}; mixing models would make similarities meaningless."
                f" The collection was left intact. Keep '{{model}}' in vector_store.collection so each"
                f" model gets its own collection, or delete this one to re-embed."
            )
        return False

    def require_collection(self, client: QdrantClient, collection: str) -> dict[str, Any]:
        info = self.collection_info(client, collection)
        if info is None:
            raise CollectionNotFoundError(
                f"collection '{collection}' does not exist in the {self.location}; materialize the"
                f" fewshot/example_embeddings asset first (dagster asset materialize or the UI)"
            )
        return info

    def point_ids(self, client: QdrantClient, collection: str) -> set[str]:
        """Every point id in the collection (ids only, no vectors or payloads)."""
        ids: set[str] = set()
        offset = None
        while True:
            points, offset = client.scroll(
                collection, limit=2048, offset=offset, with_payload=False, with_vectors=False
            )
            ids.update(str(p.id) for p in points)
            if offset is None:
                return ids

    def upsert(
        self,
        client: QdrantClient,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        batch_size: int = 512,
    ) -> int:
        from qdrant_client import models

        for begin in range(0, len(ids), batch_size):
            end = begin + batch_size
            client.upsert(
                collection,
                points=models.Batch(
                    ids=list(ids[begin:end]),
                    vectors=vectors[begin:end].tolist(),
                    payloads=list(payloads[begin:end]),
                ),
                wait=True,
            )
        return len(ids)

    def delete(self, client: QdrantClient, collection: str, ids: Sequence[str]) -> int:
        from qdrant_client import models

        if ids:
            client.delete(collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)
        return len(ids)

    def search(
        self,
        client: QdrantClient,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        limit: int,
        label: str | None = None,
        score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[dict[str, Any]]:
        """Nearest points by cosine similarity: ``[{"id", "score", "payload", "vector"}]``, best first."""
        from qdrant_client import models

        query_filter = None
        if label is not None:
            query_filter = models.Filter(
                must=[models.FieldCondition(key=LABEL_FIELD, match=models.MatchValue(value=label))]
            )
        response = client.query_points(
            collection,
            query=[float(x) for x in vector],
            limit=limit,
            query_filter=query_filter,
            score_threshold=score_threshold,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [
            {"id": str(p.id), "score": float(p.score), "payload": p.payload or {}, "vector": p.vector}
            for p in response.points
        ]
