"""The scoring stage on real data: daily predictions from the version the ``champion`` alias points
to, the registered model scoring outside this project, and clear failures when there is no champion
or its files are gone (shared ``trained`` project: tests/conftest.py)."""

import json
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.training.registry import CHAMPION, load_model, model_input
from resources.tracking import MlflowTracking
from tests.conftest import (
    REPO_ROOT,
    Project,
    failure_message,
    metadata_of,
    own_store,
    small_pipeline,
    training_keys,
)

@pytest.mark.slow
def test_predictions_use_the_champion_and_record_its_version(trained, feature_store):
    assert trained["scored"].success
    project = trained["project"]
    md = metadata_of(trained["scored"], "flights__predictions")
    assert md["model_version"] == "1"
    stored = pd.read_parquet(feature_store / "flights" / "predictions" / "2013-03-12.parquet")
    features = pd.read_parquet(feature_store / "flights" / "features" / "2013-03-12.parquet")
    assert len(stored) == len(features) == md["dagster/row_count"] > 500
    assert (stored["model_version"] == "1").all() and stored["delayed_score"].between(0, 1).all()
    assert set(stored["delayed_predicted"].unique()) <= {0, 1}
    # the same scores as the registered model loaded by version, straight from MLflow
    import mlflow

    mlflow.set_tracking_uri(project.tracking.resolved_tracking_uri())
    spec = project.spec
    direct = mlflow.pyfunc.load_model("models:/flights_delay/1").predict(
        model_input(features, spec.features.numeric, spec.features.categorical))
    np.testing.assert_allclose(stored["delayed_score"].to_numpy(), direct["score"].to_numpy())


@pytest.mark.slow
def test_a_range_run_scores_in_chunks_of_the_yamls_chunk_days(trained, feature_store, tmp_path):
    """``partitioning.chunk_days`` in the YAML sets the predictions' chunk (three days in chunks of
    two: two chunks, said in the run summary), and each day's scores are the one-day run's."""
    from ml_assets.metadata import RUN_SUMMARY

    base = trained["project"]
    project = Project(small_pipeline(tmp_path, partitioning={"chunk_days": 2}), own_store(tmp_path, feature_store),
                      base.tracking, base.instance)
    assert project.spec.partitioning.chunk_days == 2
    days = ["2013-03-12", "2013-03-13", "2013-03-14"]
    result = project.materialize([project.keys.predictions], tags={
        "dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
    assert result.success
    per_day = {m.partition: m.metadata for m in result.asset_materializations_for_node("flights__predictions")}
    assert sorted(per_day) == days
    table = [line for line in per_day[days[-1]][RUN_SUMMARY].value.splitlines() if line.startswith("|")]
    header, _, summary = ([c.strip() for c in line.strip("|").split("|")] for line in table)
    figures = dict(zip(header, summary))
    assert figures["days"] == "3" and figures["chunks scored"] == "2", figures
    one_day = pd.read_parquet(feature_store / "flights" / "predictions" / "2013-03-12.parquet")
    ranged = pd.read_parquet(tmp_path / "store" / "flights" / "predictions" / "2013-03-12.parquet")
    pd.testing.assert_frame_equal(ranged, one_day)


@pytest.mark.slow
def test_the_registered_model_scores_outside_this_project(trained, feature_store, tmp_path):
    """The model carries its scoring code: a fresh interpreter in another folder loads it from the
    registry and scores the stored features (numeric columns float64, as the signature says) with
    the model's own copy of the code, importing nothing of this project."""
    project = trained["project"]
    columns = [*project.spec.features.numeric, *project.spec.features.categorical]
    script = f"""
import inspect, json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri({project.tracking.resolved_tracking_uri()!r})
model = mlflow.pyfunc.load_model("models:/flights_delay@champion")
frame = pd.read_parquet({str(feature_store / "flights" / "features" / "2013-03-12.parquet")!r})
scores = model.predict(frame[{columns!r}])["score"].tolist()
code = inspect.getfile(type(model.unwrap_python_model()))
project = sorted(m for m in sys.modules if m.split(".")[0] in ("ml_assets", "resources", "sensors", "definitions"))
print(json.dumps({{"module": code, "project_modules": project, "scores": scores}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["module"].startswith(str(REPO_ROOT))  # the model's copy of the code
    assert out["module"].endswith("tabular_model.py")
    assert out["project_modules"] == []
    stored = pd.read_parquet(feature_store / "flights" / "predictions" / "2013-03-12.parquet")
    np.testing.assert_allclose(out["scores"], stored["delayed_score"].to_numpy())


@pytest.mark.slow
def test_unseen_categories_and_missing_weather_are_scored_as_missing(trained, feature_store):
    project = trained["project"]
    model = load_model(project.tracking, "models:/flights_delay/1")
    day = pd.read_parquet(feature_store / "flights" / "features" / "2013-03-12.parquet").head(50)
    odd = day.copy()
    odd["carrier"] = "ZZ"  # never seen in training
    odd[["temp", "visib", "precip", "wind_speed"]] = np.nan
    scores = model.score(odd)["score"]
    assert scores.notna().all() and scores.between(0, 1).all()
    missing_carrier = day.assign(carrier=None)
    np.testing.assert_allclose(scores, model.score(missing_carrier.assign(
        temp=np.nan, visib=np.nan, precip=np.nan, wind_speed=np.nan))["score"])


def test_scoring_with_no_registered_model_fails_clearly_and_writes_nothing(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    project = Project(small_pipeline(tmp_path), store, MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "no 'champion' version of model 'flights_delay'" in message and "no registered version" in message
    assert not (store / "flights" / "predictions").exists()
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert restarts == []  # a data problem is not retried


@pytest.mark.slow
def test_alias_to_a_deleted_version_or_one_whose_files_are_gone_is_a_clear_error(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    tracking = MlflowTracking(local_dir=str(tmp_path / "mlflow"))
    project = Project(small_pipeline(tmp_path, model={"tuning": {"n_trials": 0}}), store, tracking, instance)
    assert project.materialize(training_keys()).success
    assert str(tracking.client().get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    removed = list((tmp_path / "mlflow" / "artifacts").rglob("booster.txt"))
    assert removed
    for path in removed:  # the registry still points there, the model's booster file is gone
        path.unlink()
    result = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "alias 'champion' of model 'flights_delay' points to version 1, which cannot be loaded" in message
    assert not (store / "flights" / "predictions").exists()

    # Deleting the version the alias points to: MLflow drops the alias with it; version 2 remains.
    client = tracking.client()
    first = client.get_model_version("flights_delay", "1")
    client.create_model_version("flights_delay", first.source, run_id=first.run_id)
    client.delete_model_version("flights_delay", "1")
    result = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "no 'champion' version of model 'flights_delay'" in message
    assert "it has version(s) 2 but none holds 'champion' (deleting a version removes its aliases" in message
    assert "Nothing was scored" in message
    assert not (store / "flights" / "predictions").exists()
