"""Range runs stream: a run over many days reads, validates and builds features ``chunk_days`` days
at a time (issue 16). On real flights, a run in chunks of 3 days stores byte-identical partitions,
with the same per-day metadata, as the same run in one chunk; a day of a later chunk that fails a
blocking check stores nothing of the range."""

import hashlib

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config.tabular import FileSource
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import RUN_SUMMARY
from tests.ingest.test_assets import check_evaluations, ingest_assets, range_tags

DAYS = [f"2013-01-0{d}" for d in range(1, 9)]


def home(path):
    path.mkdir(parents=True)
    return str(path)


def chunked(spec, chunk_days: int, **features):
    return spec.model_copy(update={
        "partitioning": spec.partitioning.model_copy(update={"chunk_days": chunk_days}),
        "features": spec.features.model_copy(update=features),
    })


def resources_at(root):
    from resources.data_sources import DataSourceResource
    from resources.parquet_io import PartitionedParquetIOManager
    from tests.conftest import REPO_ROOT

    return {"data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
            "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(root))}


def stored(root) -> dict[str, str]:
    """``{asset/day.parquet: sha256}`` of every file under ``root``, and no hidden file left."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert [p.name for p in files if p.name.startswith(".") and not p.name.startswith(".staged-")
            and not p.name.endswith(".prev")] == []
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if not p.name.startswith(".")}


def summary_rows(text: str) -> list[dict[str, str]]:
    """The rows of the markdown table in a run summary, as ``{column: cell}``."""
    lines = [line.strip().strip("|") for line in text.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.split("|")))) for line in lines[2:]]


def day_metadata(instance, key) -> dict[str, dict]:
    """Each day's newest materialization metadata, without where it is stored or the run summary."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=100).records
    found = {}
    for record in records:
        m = record.asset_materialization
        found.setdefault(m.partition, {k: v for k, v in m.metadata.items() if k not in {"stored_at", RUN_SUMMARY}})
    return found


@pytest.mark.slow  # two runs of the three ingest assets: about 25 s of CPU
def test_a_range_run_in_chunks_of_3_days_stores_what_one_chunk_stores(flights_spec, tmp_path):
    runs = {}
    for chunk_days in (31, 3):
        spec = chunked(flights_spec, chunk_days)
        root = tmp_path / f"chunks-{chunk_days}"
        with dg.instance_for_test(temp_dir=home(tmp_path / f"home-{chunk_days}")) as instance:
            result = dg.materialize(ingest_assets(spec), resources=resources_at(root), instance=instance,
                                    tags=range_tags(DAYS[0], DAYS[-1]))
            assert result.success
            keys = pipeline_keys(spec)
            runs[chunk_days] = {
                "files": stored(root),
                "metadata": {k.path[-1]: day_metadata(instance, k) for k in
                             [keys.raw("flights"), keys.raw("weather"), keys.features]},
                "summary": summary_rows(instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=keys.features, asset_partitions=[DAYS[-1]]), limit=1
                ).records[0].asset_materialization.metadata[RUN_SUMMARY].value),
                "runs": len(instance.get_runs()),
            }
    whole, chunks = runs[31], runs[3]
    assert chunks["runs"] == 1  # one run, not one per chunk
    assert len(whole["files"]) == 3 * len(DAYS)  # raw flights, raw weather, features: one file a day
    assert chunks["files"] == whole["files"]  # byte-identical partitions
    for asset, days in whole["metadata"].items():
        assert sorted(days) == DAYS
        assert chunks["metadata"][asset] == days, asset  # per-day metadata, content hashes included
    assert whole["summary"][0]["chunks"] == "1" and chunks["summary"][0]["chunks"] == "3"
    assert {k: v for k, v in chunks["summary"][0].items() if k != "chunks"} == \
        {k: v for k, v in whole["summary"][0].items() if k != "chunks"}
    features = pd.read_parquet(tmp_path / "chunks-3" / "flights" / "features" / "2013-01-05.parquet")
    # history reaches across the chunk boundary (01-04 starts the second chunk): rates are known
    assert len(features) > 500 and features.carrier_delay_rate_28d.notna().mean() > 0.95


def test_a_bad_day_in_a_later_chunk_stores_nothing_of_the_range(flights_spec, flights_csv_path, tmp_path):
    rows = pd.read_csv(flights_csv_path)
    rows = rows[(rows.month == 1) & (rows.day <= 8)].reset_index(drop=True)
    path = tmp_path / "flights.csv"
    original = flights_spec.sources["flights"]
    source = FileSource(kind="csv", path=str(path), entity_key=original.entity_key, validation=original.validation)
    spec = chunked(flights_spec.model_copy(update={"sources": {**flights_spec.sources, "flights": source}}), 3)
    assets, root = ingest_assets(spec), tmp_path / "data"
    with dg.instance_for_test(temp_dir=home(tmp_path / "home")) as instance:
        rows.to_csv(path, index=False)
        raw = [a for a in assets if a.key == pipeline_keys(spec).raw("flights")]
        assert dg.materialize(raw, resources=resources_at(root), instance=instance,
                              tags=range_tags(DAYS[0], DAYS[-1])).success
        before = stored(root)
        bad = rows.copy()
        bad.loc[bad.index[bad.day == 7][:3], "distance"] = -100  # 01-07: the third chunk
        bad["version"] = 2  # every other day changes too, so a partial write would show
        bad.to_csv(path, index=False)
        result = dg.materialize(raw, resources=resources_at(root), instance=instance,
                                tags=range_tags(DAYS[0], DAYS[-1]), raise_on_error=False)
        assert not result.success
        evaluations = check_evaluations(result)
        assert evaluations[("raw_flights", "ranges", "2013-01-07")].passed is False
        assert all(evaluations[("raw_flights", "ranges", day)].passed for day in DAYS if day != "2013-01-07")
        assert not result.asset_materializations_for_node("flights__raw_flights")
        assert {k: v for k, v in stored(root).items() if "raw_flights" in k} == \
            {k: v for k, v in before.items() if "raw_flights" in k}  # every day as it was
        assert not [p for p in (root / "flights" / "raw_flights").iterdir() if p.name.endswith(".tmp")]
