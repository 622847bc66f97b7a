"""ConfigurableResources and IO managers shared by every pipeline, each declared once here.

Resources take plain parameters (folders, URLs, model paths), never a pipeline spec; the code
location passes them (``ml_assets.resource_settings``). Embedded defaults need no server: files under
the data folder, MLflow in a local SQLite store, Qdrant in local mode. Secrets and server URLs are
read through ``dg.EnvVar`` only when they are set.

Storage root: with ``ML_STORAGE_ROOT`` set (a folder or an fsspec URL such as ``s3://bucket/prefix``,
read at run time through ``dg.EnvVar``) every stored output lives under it: Parquet partitions under
``<root>/assets``, pickled outputs under ``<root>/storage``. Unset: ``<data folder>/assets`` and
``$DAGSTER_HOME/storage``, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from resources.data_sources import DataSourceResource
from resources.embedder import SentenceTransformerEmbedder
from resources.notifier import Notifier
from resources.online_store import OnlineFeatureStore
from resources.parquet_io import PartitionedParquetIOManager
from resources.pickle_io import StoragePickleIOManager
from resources.tracking import MlflowTracking
from resources.vector_store import QdrantVectorStore


STORAGE_ROOT_ENV = "ML_STORAGE_ROOT"


def optional_env(name: str) -> dg.EnvVar | None:
    """``dg.EnvVar(name)`` when the variable is set (read at run time, hidden in the UI), else None:
    a ``dg.EnvVar`` of an unset variable would fail at launch."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources(
    *,
    base_dir: str,
    data_dir: str,
    mlflow_dir: str,
    embedder: dict[str, Any],
    qdrant_path: str,
    qdrant_lock_timeout_seconds: float = 30.0,
    alerts: dict[str, Any] | None = None,
    online_store_path: str | None = None,
) -> dict[str, Any]:
    """Every resource of the code location, by key."""
    storage_root = optional_env(STORAGE_ROOT_ENV)
    return {
        "data_source": DataSourceResource(base_dir=base_dir),
        "parquet_io_manager": (
            PartitionedParquetIOManager(base_dir=storage_root, subfolder="assets") if storage_root
            else PartitionedParquetIOManager(base_dir=str(Path(data_dir) / "assets"))
        ),
        "io_manager": StoragePickleIOManager(base_dir=storage_root, subfolder="storage" if storage_root else ""),
        "tracking": MlflowTracking(
            tracking_uri=optional_env("MLFLOW_TRACKING_URI"), local_dir=mlflow_dir,
            ui_url=optional_env("MLFLOW_UI_URL"), dagster_ui_url=optional_env("DAGSTER_UI_URL"),
        ),
        "embedder": SentenceTransformerEmbedder(**embedder),
        "vector_store": QdrantVectorStore(
            path=qdrant_path, url=optional_env("QDRANT_URL"), api_key=optional_env("QDRANT_API_KEY"),
            lock_timeout_seconds=qdrant_lock_timeout_seconds,
        ),
        "notifier": Notifier(urls=optional_env("ALERT_URLS"), **(alerts or {})),
        "online_store": OnlineFeatureStore(
            sqlite_path=online_store_path or str(Path(data_dir) / "online" / "features.sqlite"),
            redis_url=optional_env("ONLINE_STORE_REDIS_URL"),
        ),
    }
