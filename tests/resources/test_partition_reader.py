"""The lazy per-partition view of an input (``resources.partition_reader``) through real Dagster
materializations with the Parquet IO manager: an input declared ``metadata={"load": "lazy"}`` gets the
stored files of its partitions, read one at a time and only the columns asked for."""


import dagster as dg
import pandas as pd

from resources.parquet_io import PartitionedParquetIOManager
from resources.partition_reader import LAZY_LOAD, StoredPartitions, read_columns

DAYS = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-06", fmt="%Y-%m-%d")
SEEN: dict[str, object] = {}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(),
          io_manager_key="parquet_io_manager", metadata={"partition_column": "partition_date"})
def days(context: dg.AssetExecutionContext) -> pd.DataFrame:
    rows = [{"partition_date": day, "value": i, "text": f"{day}-{i}"}
            for day in context.partition_keys for i in range(int(day[-1]))]
    return pd.DataFrame(rows)


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(),
          io_manager_key="parquet_io_manager", ins={"days": dg.AssetIn(metadata=LAZY_LOAD)})
def per_day_sums(context: dg.AssetExecutionContext, days) -> dg.MaterializeResult:
    SEEN["range"] = days
    for key, frame in days.iter_frames(columns=["value"]):
        context.add_asset_metadata({"sum": int(frame["value"].sum()), "columns": list(frame.columns)},
                                   partition_key=key)
    return dg.MaterializeResult()


@dg.asset(io_manager_key="parquet_io_manager", ins={"days": dg.AssetIn(metadata=LAZY_LOAD)})
def summary(days) -> pd.DataFrame:
    SEEN["all"] = days
    return read_columns(days, ["value", "missing_column"])


def test_a_lazy_input_reads_each_stored_partition_on_demand(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        assert dg.materialize([days], resources={"parquet_io_manager": io}, instance=instance,
                              tags={"dagster/asset_partition_range_start": "2013-01-01",
                                    "dagster/asset_partition_range_end": "2013-01-05"}).success
        result = dg.materialize([days, per_day_sums], selection=[per_day_sums], resources={"parquet_io_manager": io},
                                instance=instance, tags={"dagster/asset_partition_range_start": "2013-01-02",
                                                         "dagster/asset_partition_range_end": "2013-01-04"})
        assert result.success
        view = SEEN["range"]
        assert isinstance(view, StoredPartitions) and view.keys == ("2013-01-02", "2013-01-03", "2013-01-04")
        assert [view.num_rows(k) for k in view.keys] == [2, 3, 4]
        assert list(view.read("2013-01-03").columns) == ["partition_date", "value", "text"]
        for day, expected in (("2013-01-02", 1), ("2013-01-03", 3), ("2013-01-04", 6)):
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("per_day_sums"), asset_partitions=[day]), limit=1).records
            metadata = records[0].asset_materialization.metadata
            assert metadata["sum"].value == expected and metadata["columns"].value == ["value"]
        # an unpartitioned asset over every partition: all five days, only the columns that exist
        assert dg.materialize([days, summary], selection=[summary], resources={"parquet_io_manager": io},
                              instance=instance).success
        assert SEEN["all"].keys == tuple(f"2013-01-0{i}" for i in range(1, 6))
        stored = pd.read_parquet(tmp_path / "summary.parquet")
        assert list(stored.columns) == ["value"] and len(stored) == 1 + 2 + 3 + 4 + 5


def test_a_lazy_input_with_a_missing_partition_fails_naming_it_and_the_repair(tmp_path):
    io = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        assert dg.materialize([days], resources={"parquet_io_manager": io}, instance=instance,
                              tags={"dagster/asset_partition_range_start": "2013-01-01",
                                    "dagster/asset_partition_range_end": "2013-01-02"}).success
        result = dg.materialize([days, per_day_sums], selection=[per_day_sums], resources={"parquet_io_manager": io},
                                instance=instance, raise_on_error=False,
                                tags={"dagster/asset_partition_range_start": "2013-01-02",
                                      "dagster/asset_partition_range_end": "2013-01-04"})
        assert not result.success
        message = str(result.all_events)
        assert "days: partition(s) 2013-01-03, 2013-01-04 not materialized" in message
        assert "--partition-range 2013-01-03...2013-01-04" in message
