"""The Qdrant vector-store resource in local mode (a temporary folder) and against an unreachable
server: locks, collection mismatches and clear errors."""

from __future__ import annotations

import time

import pytest

from resources.vector_store import (
    CollectionMismatchError,
    QdrantVectorStore,
    VectorStoreLockedError,
    VectorStoreUnavailableError,
)
from tests.conftest import free_port


def test_lock_held_gives_a_clear_error(small_store):
    with small_store.open():
        with pytest.raises(VectorStoreLockedError) as err:
            with small_store.open():
                pass
    message = str(err.value)
    assert small_store.path in message and ".lock" in message
    assert "Wait for it to finish" in message and "QDRANT_URL" in message and "qdrant_local" in message
    # released afterwards
    with small_store.open() as client:
        assert client.count("c").count == 6


def test_lock_wait_then_fail_is_bounded(small_store):
    store = small_store.model_copy(update={"lock_timeout_seconds": 0.6})
    with small_store.open():
        started = time.monotonic()
        with pytest.raises(VectorStoreLockedError):
            with store.open():
                pass
        assert 0.5 <= time.monotonic() - started < 5


def test_dimension_mismatch_is_an_error_and_the_collection_is_intact(small_store):
    with small_store.open() as client:
        with pytest.raises(CollectionMismatchError, match=r"3-d vectors.*384-d"):
            small_store.ensure_collection(client, "c", 384, "toy")
        with pytest.raises(CollectionMismatchError, match="holds vectors of model toy"):
            small_store.ensure_collection(client, "c", 3, "another-model")
        assert small_store.collection_info(client, "c")["points"] == 6


def test_unreachable_server_is_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    store = QdrantVectorStore(path=str(tmp_path / "unused"), url=f"http://127.0.0.1:{port}", timeout_seconds=2)
    with pytest.raises(VectorStoreUnavailableError, match=rf"127.0.0.1:{port} is unreachable.*QDRANT_URL"):
        with store.open():
            pass


