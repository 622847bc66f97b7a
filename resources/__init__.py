"""ConfigurableResources and IO managers shared by every pipeline.

Embedded defaults need no server: files under ``ML_DATA_DIR`` (default ``<repo>/.data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from resources.data_sources import DataSourceResource
from resources.parquet_io import PartitionedParquetIOManager
from resources.tracking import tracking_resource

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where assets are stored: ``$ML_DATA_DIR`` or ``<repo>/.data`` (not a secret, so read here)."""
    return Path(os.environ.get("ML_DATA_DIR") or REPO_ROOT / ".data")


def build_resource_defs() -> dg.Definitions:
    """The shared resources: data sources, the partitioned Parquet IO manager and MLflow tracking."""
    return dg.Definitions(
        resources={
            "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
            "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(data_dir() / "assets")),
            "tracking": tracking_resource(),
        }
    )
