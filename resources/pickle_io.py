"""The default IO manager (``io_manager``): pickled outputs under the storage root, verified on read.

Built on Dagster's ``UPathIOManager`` (universal-pathlib): outputs that are not DataFrames in Parquet
(the trained model's output, few-shot frames, evaluation results) are pickled to
``<root>/<asset key path>`` (``/<partition>`` when partitioned), the same layout as Dagster's default
filesystem IO manager. The root is ``base_dir`` joined with ``subfolder`` (``ML_STORAGE_ROOT`` and
``storage`` in the code location) or, when unset, the instance's storage folder
(``$DAGSTER_HOME/storage``, Dagster's own default). Every object is written atomically (local:
temp file and rename; object stores: one PUT), its SHA-256 is recorded in the materialization
(``content_hash``, and as the data version), and loading an asset's value checks the stored bytes
against what the instance recorded: a mismatch fails naming the asset, the file and both hashes,
never retried (``resources.parquet_io.verify_stored``).
"""

from __future__ import annotations

import pickle
from typing import Any

import dagster as dg
from pydantic import Field

from resources.parquet_io import (
    CONTENT_HASH_KEY,
    STORED_AT_KEY,
    MissingPartitionError,
    recorded_objects,
    repair_command,
    verify_stored,
)
from resources.storage import content_hash, describe, put_atomic, root_path


class VerifiedPickleIOManager(dg.UPathIOManager):
    """Pickles each output to one object under ``base_path``; records and verifies its hash."""

    extension = ""  # the file names of Dagster's default filesystem IO manager

    def __init__(self, base_path: Any, verify_reads: bool = True) -> None:
        super().__init__(base_path=base_path)
        self.verify_reads = verify_reads

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: Any) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        put_atomic(path, data)
        if not context.has_asset_key:
            return
        digest = content_hash(data)
        context.add_output_metadata({CONTENT_HASH_KEY: dg.MetadataValue.text(digest),
                                     STORED_AT_KEY: dg.MetadataValue.path(describe(path))})
        try:
            context.step_context.set_data_version(context.asset_key, dg.DataVersion(digest))
        except dg.DagsterInvariantViolationError:  # an output context built outside a run
            pass

    def load_from_path(self, context: dg.InputContext, path: Any) -> Any:
        partition = None
        if context.has_asset_key and context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            partition = keys[0] if len(keys) == 1 else path.name  # UPathIOManager loads each partition's path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            what = context.asset_key.to_user_string() if context.has_asset_key else context.name
            raise MissingPartitionError(
                f"{what}{f' partition {partition}' if partition else ''} is not stored (no file {describe(path)})."
                + (f" Materialize it first: {repair_command(context.asset_key, [partition] if partition else None)}"
                   if context.has_asset_key else "")
            ) from None
        if context.has_asset_key and self.verify_reads:
            try:
                instance = context.step_context.instance
            except dg.DagsterInvariantViolationError:
                instance = None
            if instance is not None:
                recorded = recorded_objects(instance, context.asset_key, [partition] if partition else None)
                verify_stored(data, path, context.asset_key, partition, recorded.get(partition))
        return pickle.loads(data)


class StoragePickleIOManager(dg.ConfigurableIOManagerFactory):
    """Pickled outputs under the storage root (or the instance's storage folder), verified on read."""

    base_dir: str | None = Field(
        default=None,
        description="Storage root: a folder or fsspec URL (s3://bucket/prefix); unset: $DAGSTER_HOME/storage.",
    )
    subfolder: str = Field(default="", description="Folder under base_dir (e.g. 'storage').")
    verify_reads: bool = Field(default=True, description="Check each read against the recorded content hash.")

    def create_io_manager(self, context: dg.InitResourceContext) -> VerifiedPickleIOManager:
        if self.base_dir:
            root = root_path(self.base_dir, *[p for p in self.subfolder.split("/") if p])
        else:
            root = root_path(context.instance.storage_directory())
        if not hasattr(root, "protocol"):  # UPathIOManager wants a UPath; local roots too
            from upath import UPath

            root = UPath(str(root))
        return VerifiedPickleIOManager(root, verify_reads=self.verify_reads)
