"""A second tabular pipeline is a YAML file and no code; without `partitioning` it is unpartitioned."""

import dagster as dg
import pandas as pd
import yaml

from ml_assets import build_asset_defs, load_tabular_pipelines
from ml_assets.keys import pipeline_keys
from resources.data_sources import DataSourceResource
from resources.parquet_io import PartitionedParquetIOManager


def test_unpartitioned_pipeline_from_yaml_only(tmp_path, march_flights, instance):
    rows = march_flights[["carrier", "flight", "origin", "dest", "distance", "arr_delay", "time_hour"]]
    rows = rows.drop_duplicates(["carrier", "flight", "origin", "time_hour"]).head(400)
    (tmp_path / "routes.json").write_text(rows.to_json(orient="records"))
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "routes.yaml").write_text(yaml.safe_dump({
        "name": "routes",
        "sources": {"legs": {
            "kind": "json", "path": str(tmp_path / "routes.json"),
            "entity_key": ["carrier", "flight", "origin", "time_hour"],
            "validation": {"columns": {"distance": "number", "carrier": "str", "origin": "str", "dest": "str",
                                       "arr_delay": "float"},
                           "ranges": {"distance": {"min": 0, "strict_min": True}}},
        }},
        "target": {"name": "late", "column": "arr_delay", "rule": ">= 30"},
        "features": {"function": "passthrough", "numeric": ["distance"], "categorical": ["carrier", "origin", "dest"],
                     "exclude": ["arr_delay"]},
    }))
    # A file of another kind in the same folder is not a tabular pipeline and is skipped.
    (pipelines / "notes.yaml").write_text("kind: fewshot\nname: other\n")

    resources = {"data_source": DataSourceResource(base_dir=str(tmp_path)),
                 "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "data"))}
    (pipeline,) = load_tabular_pipelines(pipelines)
    keys = pipeline_keys(pipeline.spec)
    pipeline_defs = build_asset_defs([pipeline], fewshot_file=None)
    defs = dg.Definitions.merge(pipeline_defs, dg.Definitions(resources=resources))
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"routes/raw_legs", "routes/features"}
    assert graph.get(keys.features).partitions_def is None
    assert defs.resolve_job_def(keys.ingest_job).name == "routes_ingest_job"

    result = dg.materialize(list(pipeline_defs.assets), resources=resources, instance=instance)
    assert result.success
    features = pd.read_parquet(tmp_path / "data" / "routes" / "features.parquet")
    assert len(features) == len(rows)
    assert "arr_delay" not in features.columns
    expected = (rows.arr_delay >= 30).astype(float).where(rows.arr_delay.notna())
    assert features.late.sum() == expected.sum()
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 6 and all(e.event_specific_data.passed for e in checks)


def test_missing_feature_column_fails_the_schema_check_naming_yaml_key_and_column(tmp_path, march_flights, instance):
    rows = march_flights[["carrier", "flight", "origin", "distance", "arr_delay", "time_hour"]].head(50)
    (tmp_path / "legs.json").write_text(rows.to_json(orient="records"))
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    file = pipelines / "legs.yaml"
    file.write_text(yaml.safe_dump({
        "name": "legs",
        "sources": {"legs": {"kind": "json", "path": str(tmp_path / "legs.json")}},  # no declared columns
        "target": {"name": "late", "column": "arr_delay", "rule": ">= 30"},
        "features": {"numeric": ["distance", "seats"], "categorical": ["carrier"]},
    }))
    resources = {"data_source": DataSourceResource(base_dir=str(tmp_path)),
                 "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "data"))}
    (pipeline,) = load_tabular_pipelines(pipelines)
    assets = list(build_asset_defs([pipeline], fewshot_file=None).assets)
    result = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    (schema,) = [e.event_specific_data for e in result.all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "schema"]
    assert not schema.passed
    text = " ".join(str(v.value) for v in schema.metadata.values()) + str(schema.description)
    assert "seats" in text and f"features.numeric[1] in {file}" in text
    assert not (tmp_path / "data" / "legs").exists()  # nothing stored
