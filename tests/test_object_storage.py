"""The storage root on an object store: a real S3-compatible server (moto's server mode on a free
127.0.0.1 port, started and stopped here), the code location's IO managers with
``ML_STORAGE_ROOT=s3://bucket/prefix``, real flights ingest and features.

Asserts that the objects in the bucket are byte-identical to the embedded (local) run's files, at
the same relative paths, that pickled outputs go under the same root, and that a run pointed at
another root fails loudly when it reads its inputs (verified reads), without retrying.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_assets.features.assets import build_features_asset
from ml_assets.ingest.assets import build_ingest_defs, daily_partitions
from ml_assets.keys import pipeline_keys
from tests.conftest import S3_BUCKET as BUCKET
from tests.conftest import s3_objects

pytestmark = pytest.mark.slow

DAYS = ("2013-01-01", "2013-01-03")  # the first days of the year: features need no earlier raw day
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[1]}


def objects(client, prefix: str) -> dict[str, bytes]:
    return s3_objects(client, prefix)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def code_location_resources() -> dict:
    """The IO managers and data source exactly as the code location builds them (from the env)."""
    from ml_assets import load_tabular_pipelines, resource_settings
    from resources import build_resources

    built = build_resources(**resource_settings(load_tabular_pipelines()))
    return {key: built[key] for key in ("data_source", "parquet_io_manager", "io_manager")}


def flights_assets(flights_spec) -> list[dg.AssetsDefinition]:
    partitions_def = daily_partitions(flights_spec)
    return [*build_ingest_defs(flights_spec, partitions_def).assets, build_features_asset(flights_spec, partitions_def)]


@dg.asset(group_name="storage_test")
def summary() -> dict:
    """A small pickled output (the default io_manager)."""
    return {"rows": 3, "names": ["a", "b", "c"]}


@dg.asset(group_name="storage_test")
def summary_rows(summary: dict) -> int:
    return summary["rows"]


def home(path: Path) -> str:
    path.mkdir(parents=True)
    return str(path)


def run_all(flights_spec, instance) -> dg.ExecuteInProcessResult:
    assets = flights_assets(flights_spec)
    keys = pipeline_keys(flights_spec)
    selection = [*(keys.raw(s) for s in flights_spec.sources), keys.features]
    resources = code_location_resources()
    result = dg.materialize(assets, selection=selection, resources=resources, instance=instance, tags=RANGE)
    assert result.success
    pickled = dg.materialize([summary, summary_rows], resources=resources, instance=instance)
    assert pickled.success and pickled.output_for_node("summary_rows") == 3
    return result


def read_features(flights_spec, instance, day: str) -> dg.ExecuteInProcessResult:
    """Rebuild one day of features: the step reads that day's raw inputs through the IO manager."""
    keys = pipeline_keys(flights_spec)
    return dg.materialize(flights_assets(flights_spec), selection=[keys.features], partition_key=day,
                          resources=code_location_resources(), instance=instance, raise_on_error=False)


def failure_text(result) -> str:
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.user_failure_data.description or ""


def test_object_store_root_holds_the_embedded_runs_bytes_and_reads_are_verified(s3, flights_spec, tmp_path, monkeypatch):
    # the embedded default: ML_STORAGE_ROOT unset, files under the data folder, pickles in DAGSTER_HOME
    monkeypatch.delenv("ML_STORAGE_ROOT", raising=False)
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "local"))
    with dg.instance_for_test(temp_dir=home(tmp_path / "home_local")) as local_instance:
        run_all(flights_spec, local_instance)
        local_pickle = Path(local_instance.storage_directory()) / "summary"
        assert local_pickle.exists()
    local = files(tmp_path / "local" / "assets")
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range(*DAYS)]
    assert sorted(local) == sorted(f"flights/{a}/{d}.parquet" for a in ("raw_flights", "raw_weather", "features")
                                   for d in days)

    monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/prod")
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "unused"))
    with dg.instance_for_test(temp_dir=home(tmp_path / "home_s3")) as instance:
        result = run_all(flights_spec, instance)
        stored = objects(s3, "prod/assets")
        assert sorted(stored) == sorted(local)
        assert [k for k in local if stored[k] != local[k]] == []  # byte-identical, same layout
        assert objects(s3, "prod/storage")["summary"] == local_pickle.read_bytes()
        assert not (tmp_path / "unused").exists() and not (tmp_path / "home_s3" / "storage" / "summary").exists()
        # each partition's materialization records the hash of the object and where it is
        features = {m.partition: m.metadata for m in result.asset_materializations_for_node("flights__features")}
        digest = "sha256:" + hashlib.sha256(stored[f"flights/features/{DAYS[1]}.parquet"]).hexdigest()
        assert features[DAYS[1]]["content_hash"].value == digest
        assert features[DAYS[1]]["stored_at"].value == f"s3://{BUCKET}/prod/assets/flights/features/{DAYS[1]}.parquet"

        # the same root: a verified re-read of the raw inputs succeeds
        assert read_features(flights_spec, instance, DAYS[1]).success

        # another root with other bytes for a recorded day (a worker with a stale copy): loud failure
        for key, data in stored.items():
            s3.put_object(Bucket=BUCKET, Key=f"stale/assets/{key}", Body=data)
        weather = f"flights/raw_weather/{DAYS[1]}.parquet"
        s3.put_object(Bucket=BUCKET, Key=f"stale/assets/{weather}", Body=stored[f"flights/raw_weather/{DAYS[0]}.parquet"])
        monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/stale")
        text = failure_text(read_features(flights_spec, instance, DAYS[1]))
        recorded = "sha256:" + hashlib.sha256(stored[weather]).hexdigest()
        found = "sha256:" + hashlib.sha256(stored[f"flights/raw_weather/{DAYS[0]}.parquet"]).hexdigest()
        assert f"partition {DAYS[1]} of flights/raw_weather: the stored file s3://{BUCKET}/stale/assets/{weather}" in text
        assert f"recorded {recorded}, found {found}" in text
        assert f"recorded as stored at s3://{BUCKET}/prod/assets/{weather}" in text

        # an empty root: the instance says where the partition was recorded
        monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/empty")
        text = failure_text(read_features(flights_spec, instance, DAYS[1]))
        assert f"not materialized under s3://{BUCKET}/empty/assets" in text
        assert f"recorded {DAYS[0]} at s3://{BUCKET}/prod/assets/flights/raw_" in text

        # a pickled object replaced behind Dagster's back on the object store
        monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/prod")
        s3.put_object(Bucket=BUCKET, Key="prod/storage/summary", Body=__import__("pickle").dumps({"rows": 4}))
        result = dg.materialize([summary, summary_rows], selection=[summary_rows], instance=instance,
                                resources=code_location_resources(), raise_on_error=False)
        text = failure_text(result)
        assert f"summary: the stored file s3://{BUCKET}/prod/storage/summary is not what run" in text


def test_drift_html_reports_are_copied_under_the_storage_root(s3, tmp_path, monkeypatch):
    from ml_assets.monitoring.assets import publish_reports
    from ml_assets.monitoring.reports import DayDrift

    html = tmp_path / "2013-01-02.html"
    html.write_text("<html>drift of 2013-01-02</html>")
    days = [DayDrift("2013-01-02", None, html), DayDrift("2013-01-03", None, None)]  # 01-03 not rendered
    monkeypatch.delenv("ML_STORAGE_ROOT", raising=False)
    assert publish_reports(days, "flights", "drift") == {}  # the embedded default: the local copy only
    monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/prod")
    stored = publish_reports(days, "flights", "drift")
    assert stored == {"2013-01-02": f"s3://{BUCKET}/prod/reports/flights/drift/2013-01-02.html"}
    assert objects(s3, "prod/reports") == {"flights/drift/2013-01-02.html": html.read_bytes()}


def test_compute_logs_go_to_the_bucket_with_dagster_aws(s3, tmp_path, monkeypatch):
    """The instance's compute log manager (not the code location) puts step stdout/stderr on S3:
    the README's ``compute_logs`` block, with dagster-aws's S3ComputeLogManager."""
    pytest.importorskip("dagster_aws", reason="dagster-aws (distributed extra) is not installed")
    import os

    monkeypatch.setenv("ML_STORAGE_ROOT", f"s3://{BUCKET}/prod")
    compute_logs = {"module": "dagster_aws.s3.compute_log_manager", "class": "S3ComputeLogManager",
                    "config": {"bucket": BUCKET, "prefix": "prod/compute_logs",
                               "endpoint_url": os.environ["AWS_ENDPOINT_URL"], "use_ssl": False}}

    @dg.asset
    def talks() -> dict:
        print("stdout of the talking step")
        return {"said": True}

    with dg.instance_for_test(temp_dir=home(tmp_path / "home"), overrides={"compute_logs": compute_logs}) as instance:
        result = dg.materialize([talks], resources=code_location_resources(), instance=instance)
        assert result.success
    logs = objects(s3, "prod/compute_logs")
    assert any(key.endswith(".out") and b"stdout of the talking step" in data for key, data in logs.items()), sorted(logs)
    assert "talks" in objects(s3, "prod/storage")
