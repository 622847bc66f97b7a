"""Reading what assets recorded, for sensors: the newest metadata of each partition."""

from __future__ import annotations

from typing import Any

import dagster as dg


def partition_metadata_since(instance: dg.DagsterInstance, key: dg.AssetKey,
                             after: int) -> tuple[int, dict[str, dict[str, Any]]]:
    """Per partition of ``key``, the metadata values of its newest materialization recorded after
    storage id ``after``; and the newest storage id seen (the sensor's next cursor)."""
    latest, by_partition = after, {}
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=latest), limit=1000, ascending=True
        )
        for record in result.records:
            latest = max(latest, record.storage_id)
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            by_partition[materialization.partition] = {k: v.value for k, v in materialization.metadata.items()}
        if not result.has_more:
            return latest, by_partition


def newest_metadata_since(instance: dg.DagsterInstance, key: dg.AssetKey,
                          after: int) -> tuple[int, dict[str, Any] | None]:
    """The metadata values of the newest materialization of (unpartitioned) ``key`` recorded after
    storage id ``after`` (None when there is none), and its storage id (else ``after``)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1, ascending=False
    )
    for record in result.records:
        materialization = record.asset_materialization
        if materialization is not None:
            return record.storage_id, {k: v.value for k, v in materialization.metadata.items()}
    return after, None
