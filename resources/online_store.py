"""The online feature store: a key-value store of JSON feature records, read by the scoring service.

Embedded default: one SQLite file (``<data_dir>/online/features.sqlite``, WAL mode, so the service
reads while an asset writes). Production option: Redis (``ONLINE_STORE_REDIS_URL``, e.g.
``redis://127.0.0.1:6379/0``). Both hold the same records under the same keys; writes of one
namespace (a pipeline's day) replace it as a whole. ``redis`` is imported only when used.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr


class KeyValueStore:
    """What the serving code needs: replace a namespace's records, and read many keys at once."""

    def replace(self, namespace: str, records: Mapping[str, Mapping[str, Any]]) -> int:
        raise NotImplementedError

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    def namespaces(self) -> list[str]:
        raise NotImplementedError

    def delete_namespace(self, namespace: str) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class SqliteKeyValueStore(KeyValueStore):
    """Records in one SQLite table ``(namespace, key, value)``; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS online_features"
                " (namespace TEXT NOT NULL, key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS online_features_ns ON online_features (namespace)")

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._local.conn = conn
        return conn

    def replace(self, namespace: str, records: Mapping[str, Mapping[str, Any]]) -> int:
        conn = self._connect()
        with conn:  # one transaction: readers see the old namespace or the new one, never half
            conn.execute("DELETE FROM online_features WHERE namespace = ?", (namespace,))
            conn.executemany(
                "INSERT OR REPLACE INTO online_features (namespace, key, value) VALUES (?, ?, ?)",
                [(namespace, key, json.dumps(value)) for key, value in records.items()],
            )
        return len(records)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        conn = self._connect()
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT key, value FROM online_features WHERE key IN ({marks})", chunk))
        return records_of([found.get(k) for k in keys])

    def namespaces(self) -> list[str]:
        rows = self._connect().execute("SELECT DISTINCT namespace FROM online_features ORDER BY namespace")
        return [row[0] for row in rows]

    def delete_namespace(self, namespace: str) -> int:
        conn = self._connect()
        with conn:
            return conn.execute("DELETE FROM online_features WHERE namespace = ?", (namespace,)).rowcount

    def describe(self) -> str:
        return f"SQLite {self.path}"


def records_of(texts: list[str | None]) -> list[dict[str, Any] | None]:
    """The JSON records ``texts`` (None stays None), decoded in one call: one ``json.loads`` per
    record costs more than the parsing on a request of many keys."""
    present = [t for t in texts if t is not None]
    decoded = iter(json.loads("[" + ",".join(present) + "]")) if present else iter(())
    return [None if t is None else next(decoded) for t in texts]


class RedisKeyValueStore(KeyValueStore):
    """Records as Redis strings; each namespace's keys listed in a set ``<prefix>ns:<namespace>``."""

    def __init__(self, url: str, prefix: str = "ml_platform:online:") -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def replace(self, namespace: str, records: Mapping[str, Mapping[str, Any]]) -> int:
        members = f"{self.prefix}ns:{namespace}"
        old = [k.decode() for k in self.client.smembers(members)]
        with self.client.pipeline(transaction=True) as pipe:
            stale = set(old) - set(records)
            if stale:
                pipe.delete(*[self.prefix + k for k in stale])
            pipe.delete(members)
            for start in range(0, len(records), 5000):
                chunk = dict(list(records.items())[start:start + 5000])
                pipe.mset({self.prefix + k: json.dumps(v) for k, v in chunk.items()})
                pipe.sadd(members, *chunk)
            pipe.sadd(f"{self.prefix}namespaces", namespace)
            pipe.execute()
        return len(records)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        values = self.client.mget([self.prefix + k for k in keys])
        return records_of([v.decode() if v is not None else None for v in values])

    def namespaces(self) -> list[str]:
        return sorted(k.decode() for k in self.client.smembers(f"{self.prefix}namespaces"))

    def delete_namespace(self, namespace: str) -> int:
        members = f"{self.prefix}ns:{namespace}"
        keys = [self.prefix + k.decode() for k in self.client.smembers(members)]
        with self.client.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.delete(members)
            pipe.srem(f"{self.prefix}namespaces", namespace)
            pipe.execute()
        return len(keys)

    def describe(self) -> str:
        from resources.tracking import redact_uri

        return f"Redis {redact_uri(self.url)}"


def open_store(sqlite_path: str, redis_url: str | None = None) -> KeyValueStore:
    """Redis when ``redis_url`` is set, else the SQLite file."""
    return RedisKeyValueStore(redis_url) if redis_url else SqliteKeyValueStore(sqlite_path)


class OnlineFeatureStore(dg.ConfigurableResource):
    """The online feature store the ``online_features`` assets write and the scoring service reads:
    a local SQLite file by default, Redis when ``redis_url`` is set (``ONLINE_STORE_REDIS_URL``)."""

    sqlite_path: str = Field(description="SQLite file of the embedded default.")
    redis_url: str | None = Field(default=None, description="Redis URL (production option); secrets via dg.EnvVar.")

    _store: KeyValueStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = open_store(self.sqlite_path, self.redis_url)

    def store(self) -> KeyValueStore:
        if self._store is None:
            self._store = open_store(self.sqlite_path, self.redis_url)
        return self._store
