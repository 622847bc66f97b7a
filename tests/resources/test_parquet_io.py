"""Layer 2/3: the partitioned Parquet IO manager through real Dagster materializations."""


import os

import dagster as dg
import pandas as pd
import pytest

from resources.parquet_io import MissingPartitionError, PartitionedParquetIOManager, atomic_write_parquet

DAYS = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-11", fmt="%Y-%m-%d")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2013-01-02",
    "dagster/asset_partition_range_end": "2013-01-04",
}


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="parquet_io_manager",
    metadata={"partition_column": "partition_date"},
)
def daily_rows(context: dg.AssetExecutionContext) -> pd.DataFrame:
    rows = [
        {"partition_date": day, "value": i, "version": context.run.tags.get("version", "1")}
        for day in context.partition_keys
        for i in range(3)
        if day != "2013-01-03"  # a day with no rows still gets an (empty) file
    ]
    return pd.DataFrame(rows, columns=["partition_date", "value", "version"])


@dg.asset(partitions_def=DAYS, io_manager_key="parquet_io_manager",
          ins={"daily_rows": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))})
def two_day_sum(daily_rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"total": [int(daily_rows.value.sum())], "rows": [len(daily_rows)]})


def test_range_run_writes_one_file_per_day_including_empty_days(tmp_path):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    result = dg.materialize([daily_rows], resources={"parquet_io_manager": manager}, tags=RANGE_TAGS)
    assert result.success
    folder = tmp_path / "daily_rows"
    assert sorted(p.name for p in folder.glob("*.parquet")) == [
        "2013-01-02.parquet", "2013-01-03.parquet", "2013-01-04.parquet"
    ]
    assert len(pd.read_parquet(folder / "2013-01-02.parquet")) == 3
    empty = pd.read_parquet(folder / "2013-01-03.parquet")
    assert len(empty) == 0 and list(empty.columns) == ["partition_date", "value", "version"]
    assert not list(folder.glob(".*tmp")), "no temporary files are left behind"


def test_rematerializing_replaces_exactly_its_partition(tmp_path):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS).success
    assert dg.materialize(
        [daily_rows], resources=resources, partition_key="2013-01-04", tags={"version": "2"}
    ).success
    folder = tmp_path / "daily_rows"
    assert set(pd.read_parquet(folder / "2013-01-04.parquet").version) == {"2"}
    assert set(pd.read_parquet(folder / "2013-01-02.parquet").version) == {"1"}
    assert len(pd.read_parquet(folder / "2013-01-04.parquet")) == 3


def test_downstream_loads_mapped_partitions_and_names_missing_ones(tmp_path):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS).success
    result = dg.materialize(
        [daily_rows, two_day_sum], selection=[two_day_sum], resources=resources, partition_key="2013-01-04"
    )
    assert result.success
    out = pd.read_parquet(tmp_path / "two_day_sum" / "2013-01-04.parquet")
    assert out.rows.item() == 6  # 01-02 (3 rows) + 01-03 (0 rows) + 01-04 (3 rows)
    with pytest.raises(MissingPartitionError, match=r"daily_rows: partition\(s\) 2013-01-07, 2013-01-08"):
        dg.materialize([daily_rows, two_day_sum], selection=[two_day_sum], resources=resources,
                       partition_key="2013-01-09")


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "x" / "2013-01-01.parquet"
    atomic_write_parquet(pd.DataFrame({"a": [1, 2]}), target)

    class Unwritable(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):  # a crash half-way through writing
            with open(args[0], "wb") as handle:
                handle.write(b"PAR1 half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_parquet(Unwritable({"a": [9]}), target)
    assert pd.read_parquet(target).a.tolist() == [1, 2]
    assert os.listdir(target.parent) == ["2013-01-01.parquet"]


def test_output_outside_the_run_window_is_refused(tmp_path):
    @dg.asset(partitions_def=DAYS, io_manager_key="parquet_io_manager",
              metadata={"partition_column": "partition_date"})
    def wrong_days() -> pd.DataFrame:
        return pd.DataFrame({"partition_date": ["2013-01-05"], "value": [1]})

    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"outside the partitions being written"):
        dg.materialize([wrong_days], resources={"parquet_io_manager": manager}, partition_key="2013-01-04")
    assert not (tmp_path / "wrong_days").exists()


# --------------------------------------------------------------------------- faults


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_range_write_is_undone_for_every_day_its_run_did_not_record(tmp_path, instance):
    """Each day ends as the old file or the new file the instance recorded, never an unknown new one."""
    from resources.parquet_io import settle_all_staged_writes, staged_write

    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    folder = tmp_path / "daily_rows"
    clean = {p.name: _sha(p) for p in folder.glob("*.parquet")}

    @dg.asset(partitions_def=DAYS)
    def killed() -> None:
        raise RuntimeError("stands for a kill -9 after the files were renamed, before the events")

    dead = dg.materialize([killed], partition_key="2013-01-02", instance=instance, raise_on_error=False)
    new = pd.DataFrame({"partition_date": ["x"], "value": [99], "version": ["2"]})
    days = ["2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"]  # 01-05 had no file before
    staged_write({d: new for d in days}, {d: manager.path_for(dg.AssetKey("daily_rows"), d) for d in days},
                 dead.run_id)
    assert set(pd.read_parquet(folder / "2013-01-02.parquet").version) == {"2"}  # the crash state

    outcomes = settle_all_staged_writes(tmp_path, instance)

    assert {p.name: _sha(p) for p in folder.glob("*.parquet")} == clean  # byte-identical, 01-05 gone
    assert outcomes["daily_rows/2013-01-05"].startswith("removed an unrecorded new file")
    assert outcomes["daily_rows/2013-01-02"].startswith("restored the old file")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="parquet_io_manager",
    metadata={"partition_column": "partition_date"},
)
def chunked_rows(context: dg.AssetExecutionContext):
    """``daily_rows`` as an iterator of one-day chunks; the tag ``fail_on`` makes that day's chunk fail."""
    def chunks():
        for day in context.partition_keys:
            if day == context.run.tags.get("fail_on"):
                raise RuntimeError(f"the chunk of {day} failed")
            yield pd.DataFrame({"partition_date": [day] * 2, "value": [1, 2],
                                "version": [context.run.tags.get("version", "1")] * 2})
    return dg.Output(chunks())


def test_a_range_output_in_chunks_is_stored_whole_or_not_at_all(tmp_path, instance):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([chunked_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    folder = tmp_path / "chunked_rows"
    clean = {p.name: _sha(p) for p in folder.glob("*.parquet")}
    assert sorted(clean) == ["2013-01-02.parquet", "2013-01-03.parquet", "2013-01-04.parquet"]
    assert set(pd.read_parquet(folder / "2013-01-03.parquet").version) == {"1"}
    # the last chunk fails after two days were staged: no day changes, no temp file is left
    failed = dg.materialize([chunked_rows], resources=resources, instance=instance, raise_on_error=False,
                            tags={**RANGE_TAGS, "version": "2", "fail_on": "2013-01-04"})
    assert not failed.success and not failed.asset_materializations_for_node("chunked_rows")
    assert {p.name: _sha(p) for p in folder.glob("*.parquet")} == clean
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    # a run that succeeds records each day's own content hash, as a one-frame output does
    done = dg.materialize([chunked_rows], resources=resources, instance=instance, tags={**RANGE_TAGS, "version": "2"})
    recorded = {m.partition: m.metadata["content_hash"].value for m in done.asset_materializations_for_node("chunked_rows")}
    assert recorded == {p.stem: f"sha256:{_sha(p)}" for p in folder.glob("*.parquet")}
    assert set(pd.read_parquet(folder / "2013-01-04.parquet").version) == {"2"}


def test_a_recorded_range_write_keeps_its_files_and_the_next_write_drops_the_old_copies(tmp_path, instance):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    for version in ("1", "2"):
        assert dg.materialize([daily_rows], resources=resources, tags={**RANGE_TAGS, "version": version},
                              instance=instance).success
    folder = tmp_path / "daily_rows"
    assert set(pd.read_parquet(folder / "2013-01-04.parquet").version) == {"2"}
    hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    # only the last run's journal and its hard links to the files it replaced remain until settled
    assert len(hidden) == 4 and all(n.endswith(".prev") for n in hidden if not n.startswith(".staged-"))
    from resources.parquet_io import settle_all_staged_writes

    assert all(o.startswith("kept") for o in settle_all_staged_writes(tmp_path, instance).values())
    assert sorted(p.name for p in folder.iterdir()) == ["2013-01-02.parquet", "2013-01-03.parquet", "2013-01-04.parquet"]


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_stored_partition_fails_once_naming_asset_partition_file_and_repair(tmp_path, instance, damage):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    path = tmp_path / "daily_rows" / "2013-01-03.parquet"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()

    @dg.asset(partitions_def=DAYS, io_manager_key="parquet_io_manager",
              retry_policy=dg.RetryPolicy(max_retries=3, delay=0.1),
              ins={"daily_rows": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))})
    def reader(daily_rows: pd.DataFrame) -> pd.DataFrame:
        return daily_rows

    result = dg.materialize([daily_rows, reader], selection=[reader], resources=resources, instance=instance,
                            partition_key="2013-01-04", raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = str(failure.step_failure_data.user_failure_data.description)
    repair = "dagster asset materialize -f definitions.py --select 'daily_rows' --partition 2013-01-03"
    assert "2013-01-03" in text and "daily_rows" in text and str(path) in text and repair in text
    if damage == "truncated":
        assert "not a readable Parquet file" in text and "magic bytes" in text


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted by the test (needs root); unmounted afterwards."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder) -> None:
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    try:  # the last partial block too
        with open(folder / "filler2", "wb") as handle:
            while True:
                handle.write(b"\0" * 512)
                handle.flush()
    except OSError:
        pass


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_a_full_disk_or_read_only_folder_fails_once_and_keeps_the_stored_files(small_tmpfs, instance, fault):
    import subprocess

    manager = PartitionedParquetIOManager(base_dir=str(small_tmpfs))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    folder = small_tmpfs / "daily_rows"
    before = {p.name: _sha(p) for p in folder.glob("*.parquet")}
    if fault == "disk_full":
        _fill(small_tmpfs)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)

    result = dg.materialize([daily_rows], resources=resources, instance=instance, raise_on_error=False,
                            tags={**RANGE_TAGS, "version": "2"})

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = failure.step_failure_data.user_failure_data.description
    reason = "No space left on device" if fault == "disk_full" else "Read-only file system"
    assert f"daily_rows: could not write partition(s) 2013-01-02 .. 2013-01-04 under {folder} ({reason})" in text
    assert "--partition-range 2013-01-02...2013-01-04" in text
    assert {p.name: _sha(p) for p in folder.glob("*.parquet")} == before
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- verified reads


def _newest(instance, key, partition):
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    return record


def test_each_partition_records_the_hash_of_its_stored_bytes(tmp_path, instance):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    assert dg.materialize([daily_rows], resources=resources, partition_key="2013-01-05", instance=instance).success
    for day in ("2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"):
        materialization = _newest(instance, "daily_rows", day).asset_materialization
        stored = tmp_path / "daily_rows" / f"{day}.parquet"
        assert materialization.metadata["content_hash"].value == "sha256:" + _sha(stored)
        assert materialization.metadata["stored_at"].value == str(stored)
    # a one-partition run also records the hash as the Dagster data version
    one = _newest(instance, "daily_rows", "2013-01-05").event_log_entry.dagster_event.event_specific_data
    assert one.materialization.tags["dagster/data_version"] == "sha256:" + _sha(tmp_path / "daily_rows" / "2013-01-05.parquet")


@pytest.mark.parametrize("tamper", ["replaced_outside_dagster", "another_root"])
def test_a_read_of_an_object_that_is_not_the_recorded_one_fails_once_naming_both_hashes(tmp_path, instance, tamper):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path / "root"))
    assert dg.materialize([daily_rows], resources={"parquet_io_manager": manager}, tags=RANGE_TAGS,
                          instance=instance).success
    stored = tmp_path / "root" / "daily_rows" / "2013-01-04.parquet"
    recorded = "sha256:" + _sha(stored)
    if tamper == "replaced_outside_dagster":
        reader_manager = manager
        atomic_write_parquet(pd.read_parquet(stored).assign(value=7), stored)  # valid Parquet, other rows
        path = stored
    else:  # a worker whose root holds an older copy of the same day (another run, another instance)
        reader_manager = PartitionedParquetIOManager(base_dir=str(tmp_path / "other"))
        assert dg.materialize([daily_rows], resources={"parquet_io_manager": reader_manager},
                              tags={**RANGE_TAGS, "version": "old"}).success  # its own ephemeral instance
        path = tmp_path / "other" / "daily_rows" / "2013-01-04.parquet"

    @dg.asset(partitions_def=DAYS, io_manager_key="parquet_io_manager",
              retry_policy=dg.RetryPolicy(max_retries=3, delay=0.1))
    def reader(daily_rows: pd.DataFrame) -> pd.DataFrame:
        return daily_rows

    result = dg.materialize([daily_rows, reader], selection=[reader], instance=instance, partition_key="2013-01-04",
                            resources={"parquet_io_manager": reader_manager}, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = failure.step_failure_data.user_failure_data.description
    found = "sha256:" + _sha(path)
    assert found != recorded
    assert f"partition 2013-01-04 of daily_rows: the stored file {path} is not what run" in text
    assert f"recorded {recorded}, found {found}" in text
    if tamper == "another_root":
        assert f"recorded as stored at {stored}: this process reads another storage root" in text
    else:
        assert "replaced outside Dagster" in text
    assert not (tmp_path / "root" / "reader").exists() and not (tmp_path / "other" / "reader").exists()


def test_a_read_of_a_partition_stored_only_under_another_root_names_where_it_was_recorded(tmp_path, instance):
    writer = PartitionedParquetIOManager(base_dir=str(tmp_path / "root"))
    assert dg.materialize([daily_rows], resources={"parquet_io_manager": writer}, tags=RANGE_TAGS,
                          instance=instance).success
    reader = PartitionedParquetIOManager(base_dir=str(tmp_path / "empty"))
    with pytest.raises(MissingPartitionError, match=r"The instance recorded 2013-01-02 at .*root/daily_rows/2013-01-02\.parquet"):
        dg.materialize([daily_rows, two_day_sum], selection=[two_day_sum], instance=instance,
                       resources={"parquet_io_manager": reader}, partition_key="2013-01-04")


def test_an_unchanged_stored_partition_reads_verified(tmp_path, instance):
    manager = PartitionedParquetIOManager(base_dir=str(tmp_path))
    resources = {"parquet_io_manager": manager}
    assert dg.materialize([daily_rows], resources=resources, tags=RANGE_TAGS, instance=instance).success
    result = dg.materialize([daily_rows, two_day_sum], selection=[two_day_sum], resources=resources,
                            instance=instance, partition_key="2013-01-04")
    assert result.success
    warnings = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ENGINE_EVENT
                and "read unverified" in (e.message or "")]
    logs = [r.user_message for r in instance.all_logs(result.run_id) if "read unverified" in r.user_message]
    assert not warnings and not logs
    assert pd.read_parquet(tmp_path / "two_day_sum" / "2013-01-04.parquet").rows.item() == 6
