"""The scoring service on real parts: the champion of a real embedded MLflow registry (the shared
``trained`` project), online features written by the ``online_features`` asset into a real SQLite
store, every flight of a real day scored online and offline (no training/serving skew), the shadow
challenger in the traffic log, bad requests, a moved alias, and no champion at all."""

from __future__ import annotations

import json
import math
import threading

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.config.tabular import PARTITION_COLUMN
from ml_assets.training.registry import CHAMPION
from tests.conftest import metadata_of

DAY = "2013-03-12"


def raw_day(flights_csv_path, day: str = DAY) -> pd.DataFrame:
    frame = pd.read_csv(flights_csv_path)
    year, month, dom = (int(p) for p in day.split("-"))
    return frame[(frame.year == year) & (frame.month == month) & (frame.day == dom)].reset_index(drop=True)


def as_rows(frame: pd.DataFrame) -> list[dict]:
    """JSON rows as a caller sends them (NaN as null), outcome columns included: they must be ignored."""
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def serving(trained, feature_store, tmp_path_factory):
    """The online features of DAY materialized into a SQLite store, and a service app on them."""
    from fastapi.testclient import TestClient

    from ml_assets.serving.app import ServiceSettings, create_app
    from ml_assets.serving.assets import build_online_features_asset
    from resources.online_store import OnlineFeatureStore, SqliteKeyValueStore
    from resources.parquet_io import PartitionedParquetIOManager

    from tests.conftest import failure_message

    project = trained["project"]
    # the shadow, alias and live-gate tests need the shared project's second version (the challenger)
    assert trained["second"].success, f"the shared second training run failed: {failure_message(trained['second'])}"
    tmp = tmp_path_factory.mktemp("serving")
    from ml_assets.ingest.assets import daily_partitions

    online = build_online_features_asset(project.spec, daily_partitions(project.spec))
    sqlite_path = tmp / "online.sqlite"
    result = dg.materialize(
        [*project.assets, online],
        selection=[project.keys.online_features], partition_key=DAY, instance=project.instance,
        resources={"parquet_io_manager": PartitionedParquetIOManager(base_dir=str(feature_store)),
                   "online_store": OnlineFeatureStore(sqlite_path=str(sqlite_path)),
                   "data_source": project.resources["data_source"], "tracking": project.tracking},
    )
    assert result.success
    settings = ServiceSettings(spec=project.spec, tracking=project.tracking,
                               store=SqliteKeyValueStore(sqlite_path), traffic_path=tmp / "traffic.sqlite")
    app = create_app(settings, start_background=False)
    with TestClient(app) as client:
        yield {"client": client, "app": app, "result": result, "settings": settings, "project": project,
               "tmp": tmp}


@pytest.mark.slow
def test_online_features_hold_one_record_per_key(serving, feature_store):
    md = metadata_of(serving["result"], "flights__online_features")
    features = pd.read_parquet(feature_store / "flights" / "features" / f"{DAY}.parquet")
    groups = json.loads(json.dumps(md["keys_per_group"]))
    assert "carrier" in groups and "origin+dest" in groups
    assert md["records"] == sum(
        features.groupby(cols).ngroups for cols in
        (["carrier"], ["origin", "dest"], ["carrier", "flight"], ["origin"], ["origin", "sched_dep_hour"]))
    record = serving["settings"].store.get_many([f"flights|{DAY}|carrier|UA"])[0]
    expected = features.loc[features.carrier == "UA", "carrier_delay_rate_28d"].iloc[0]
    assert record["carrier_delay_rate_28d"] == pytest.approx(expected)


@pytest.mark.slow
def test_every_flight_of_a_real_day_scores_the_same_online_and_offline(serving, flights_csv_path, feature_store):
    """No training/serving skew: the raw flights of DAY (outcome columns included, and ignored) sent
    to /predict get the offline features and the offline batch scores of the same champion."""
    client, project = serving["client"], serving["project"]
    raw = raw_day(flights_csv_path)
    response = client.post("/predict", json={"rows": as_rows(raw)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "flights_delay", "version": "1"}
    assert len(body["predictions"]) == len(raw) > 500
    online = raw[["carrier", "flight", "origin"]].assign(score=[p["score"] for p in body["predictions"]],
                                                          label=[p["label"] for p in body["predictions"]])
    offline = pd.read_parquet(feature_store / "flights" / "predictions" / f"{DAY}.parquet")
    merged = online.merge(offline, on=["carrier", "flight", "origin"], validate="one_to_one")
    assert len(merged) == len(raw)
    np.testing.assert_allclose(merged["score"], merged["delayed_score"], rtol=1e-9)
    assert (merged["label"] == merged["delayed_predicted"]).all()
    # the features the service used, from its traffic log, are the offline ones
    app = serving["app"]
    app.state.traffic.flush()
    from ml_assets.serving.traffic import read_day

    served = read_day(serving["settings"].traffic_path, DAY)
    served = served[served["request_id"] == served["request_id"].value_counts().index[0]]  # the whole day
    offline_features = pd.read_parquet(feature_store / "flights" / "features" / f"{DAY}.parquet")
    key = ["carrier", "flight", "origin"]
    columns = [*project.spec.features.numeric, *project.spec.features.categorical]
    a = served.drop_duplicates(key).sort_values(key).reset_index(drop=True)
    b = offline_features.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[columns].astype(b[columns].dtypes.to_dict()), b[columns], check_exact=False,
                                  rtol=1e-12)
    # a single row scores the same as in the batch
    one = client.post("/predict", json={"rows": as_rows(raw.iloc[[7]])}).json()
    assert one["predictions"][0]["score"] == pytest.approx(body["predictions"][7]["score"], rel=1e-12)


@pytest.mark.slow
def test_bad_requests_are_422_naming_the_field_and_unknowns_are_scored_and_counted(serving, flights_csv_path):
    client = serving["client"]
    row = as_rows(raw_day(flights_csv_path).iloc[[0]])[0]
    missing = {k: v for k, v in row.items() if k != "carrier"}
    response = client.post("/predict", json={"rows": [missing]})
    assert response.status_code == 422
    assert any(err["loc"][-1] == "carrier" and err["type"] == "missing" for err in response.json()["detail"])
    response = client.post("/predict", json={"rows": [{**row, "flight": "not a number"}]})
    assert response.status_code == 422
    assert [err["loc"] for err in response.json()["detail"]] == [["body", "rows", 0, "flight"]]
    assert client.post("/predict", json={"rows": []}).status_code == 422
    # an unknown carrier, and a day without online records: scored as missing values, and counted
    next_day = (pd.Timestamp(row["time_hour"]) + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    unknown = {**row, "carrier": "ZZ", "day": row["day"] + 1, "time_hour": next_day}
    response = client.post("/predict", json={"rows": [unknown]})
    assert response.status_code == 200, response.text
    assert 0 < response.json()["predictions"][0]["score"] < 1
    metrics = client.get("/metrics").text
    assert 'serving_unseen_categories_total{column="carrier"} 1.0' in metrics
    assert 'serving_online_missing_keys_total{group="carrier"} 1.0' in metrics
    assert 'serving_online_missing_keys_total{group="origin+sched_dep_hour"} 1.0' in metrics
    assert 'serving_model_version_info{alias="champion",name="flights_delay",version="1"} 1.0' in metrics
    assert "serving_request_latency_seconds_bucket" in metrics


@pytest.mark.slow
def test_health_ready_and_docs(serving):
    client = serving["client"]
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["model"]["version"] == "1" and ready["challenger"] == "2"
    schema = client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and client.get("/docs").status_code == 200


@pytest.mark.slow
def test_a_moved_alias_is_served_without_dropping_requests(serving, flights_csv_path):
    """Requests keep flowing from two threads while ``champion`` moves to version 2 and back."""
    client, app, project = serving["client"], serving["app"], serving["project"]
    rows = as_rows(raw_day(flights_csv_path).iloc[:3])
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = client.post("/predict", json={"rows": rows})
            statuses.append(response.status_code)
            versions.append(response.json()["model"]["version"])

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    registry = project.client()
    try:
        registry.set_registered_model_alias("flights_delay", CHAMPION, "2")
        app.state.models.refresh()
        assert app.state.models.champion.version == "2"
        assert app.state.models.challenger is None  # version 2 is both: nothing to compare
        seen = len(versions)
        while len(versions) < seen + 4:
            pass
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        registry.set_registered_model_alias("flights_delay", CHAMPION, "1")
        app.state.models.refresh()
    assert set(statuses) == {200}
    assert versions[0] == "1" and versions[-1] == "2"
    assert app.state.models.champion.version == "1" and app.state.models.challenger.version == "2"


@pytest.mark.slow
def test_no_champion_is_503_saying_what_to_run(serving, tmp_path, flights_csv_path):
    from fastapi.testclient import TestClient

    from ml_assets.serving.app import ServiceSettings, create_app
    from resources.tracking import MlflowTracking

    settings = ServiceSettings(spec=serving["project"].spec, tracking=MlflowTracking(local_dir=str(tmp_path / "empty")),
                               store=serving["settings"].store, traffic_path=tmp_path / "traffic.sqlite")
    with TestClient(create_app(settings, start_background=False)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and "flights_training_job" in ready.json()["reason"]
        response = client.post("/predict", json={"rows": as_rows(raw_day(flights_csv_path).iloc[[0]])})
        assert response.status_code == 503
        assert "no 'champion' version of model 'flights_delay'" in response.json()["detail"]
        assert "flights_training_job" in response.json()["detail"]


@pytest.mark.slow
def test_served_predictions_hold_the_traffic_with_the_shadow_challenger(serving, flights_csv_path):
    from ml_assets.serving.assets import build_served_predictions_asset
    from ml_assets.ingest.assets import daily_partitions
    from resources.parquet_io import PartitionedParquetIOManager

    project, app = serving["project"], serving["app"]
    client = serving["client"]
    # two requests of this test's own (other tests of the module may have served more of the day)
    rows = as_rows(raw_day(flights_csv_path).iloc[:5])
    for request in (rows[:3], rows[3:]):
        assert client.post("/predict", json={"rows": request}).status_code == 200
    app.state.traffic.flush()
    asset = build_served_predictions_asset(project.spec, daily_partitions(project.spec))
    store = assets_store(serving)
    result = dg.materialize(
        [asset], partition_key=DAY, instance=project.instance,
        resources={"parquet_io_manager": PartitionedParquetIOManager(base_dir=str(store))},
        run_config={"ops": {"flights__served_predictions": {"config": {
            "traffic_path": str(serving["settings"].traffic_path)}}}},
    )
    assert result.success
    md = metadata_of(result, "flights__served_predictions")
    served = pd.read_parquet(store / "flights" / "served_predictions" / f"{DAY}.parquet")
    assert len(served) == md["dagster/row_count"] >= 5 and md["requests"] >= 2
    assert (served[PARTITION_COLUMN] == DAY).all()
    with_challenger = served[served["challenger_version"].notna()]
    assert md["challenger_scored_rows"] == len(with_challenger) > 0
    assert (with_challenger["challenger_version"] == "2").all()
    # version 2 was trained on the same data with the same seed: the shadow scores are the champion's
    np.testing.assert_allclose(with_challenger["challenger_score"], with_challenger["delayed_score"])
    assert {"carrier_delay_rate_28d", "precip_sum_12h", "delayed_score", "model_version"} <= set(served.columns)
    # the served traffic feeds drift monitoring: the drift code on it against the champion's reference
    assets, resources = served_drift_project(serving)
    result = dg.materialize(assets, selection=[project.keys.served_drift_report], partition_key=DAY,
                            instance=project.instance, resources=resources)
    assert result.success
    md = metadata_of(result, "flights__served_drift_report")
    assert md["served_rows"] == served.drop_duplicates(["carrier", "flight", "origin"]).shape[0]
    assert md["rows"] == md["served_rows"] and isinstance(md["data_drift"], bool) and md["prediction_score"] >= 0


def assets_store(serving):
    """This module's asset store: served predictions and the reference, next to the shared project's
    training set and features (the reference reads every row of the training window)."""
    project = serving["project"]
    store = serving["tmp"] / "assets"
    (store / "flights").mkdir(parents=True, exist_ok=True)
    for name in ("training_set.parquet", "features"):
        if not (store / "flights" / name).exists():
            (store / "flights" / name).symlink_to(project.store / "flights" / name)
    return store


def served_drift_project(serving):
    """The shared project's assets with served_predictions and served_drift_report on this module's
    store, and the champion's reference (built once in the shared instance)."""
    from ml_assets.ingest.assets import daily_partitions
    from ml_assets.serving.assets import build_served_drift_asset, build_served_predictions_asset
    from resources.parquet_io import PartitionedParquetIOManager

    project = serving["project"]
    partitions_def = daily_partitions(project.spec)
    assets = [*project.assets, build_served_predictions_asset(project.spec, partitions_def),
              build_served_drift_asset(project.spec, partitions_def)]
    resources = {**project.resources,
                 "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(assets_store(serving)))}
    if project.instance.get_latest_materialization_event(project.keys.reference) is None:
        assert dg.materialize(assets, selection=[project.keys.reference], instance=project.instance,
                              resources=resources).success
    return assets, resources


ORDINARY_DAY, SHIFTED_DAY = "2013-03-13", "2013-03-14"  # dry days (DAY rained all day: precip drifts)


@pytest.mark.slow
def test_a_served_day_with_a_shifted_input_fails_its_drift_checks_retrains_and_alerts(
    serving, flights_csv_path, receiver
):
    """Real traffic: every flight of ORDINARY_DAY as it is, every flight of SHIFTED_DAY with its
    distance doubled by the caller. The served drift report's data_drift check passes on ORDINARY_DAY
    and fails on SHIFTED_DAY;
    the drift sensor (asked to retrain on one alarm day) requests a rolling retrain for that day, and the alerts sensor's tick
    sends an alert naming the served report to a real HTTP receiver on loopback."""
    from ml_assets.ingest.assets import daily_partitions
    from ml_assets.keys import DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK, REASON_TAG
    from ml_assets.serving.assets import build_online_features_asset
    from resources.notifier import Notifier
    from resources.online_store import OnlineFeatureStore
    from resources.parquet_io import PartitionedParquetIOManager
    from sensors.alerts import evaluate_alerts
    from sensors.drift import build_drift_sensor
    from tests.conftest import sensor_tick

    project, client, app = serving["project"], serving["client"], serving["app"]
    # the two days' online features next to DAY's (the store keeps 3 days)
    online = build_online_features_asset(project.spec, daily_partitions(project.spec))
    for day in (ORDINARY_DAY, SHIFTED_DAY):
        assert dg.materialize([*project.assets, online], selection=[project.keys.online_features],
                              partition_key=day, instance=project.instance, resources={
                                  "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(project.store)),
                                  "online_store": OnlineFeatureStore(sqlite_path=str(serving["tmp"] / "online.sqlite")),
                                  "data_source": project.resources["data_source"], "tracking": project.tracking}).success
    shifted = raw_day(flights_csv_path, SHIFTED_DAY)
    for rows in (raw_day(flights_csv_path, ORDINARY_DAY), shifted.assign(distance=shifted["distance"] * 2)):
        assert client.post("/predict", json={"rows": as_rows(rows)}).status_code == 200
    app.state.traffic.flush()
    assets, resources = served_drift_project(serving)
    traffic = {"ops": {"flights__served_predictions": {"config": {
        "traffic_path": str(serving["settings"].traffic_path)}}}}
    checks = {}
    for day in (ORDINARY_DAY, SHIFTED_DAY):
        assert dg.materialize(assets, selection=[project.keys.served_predictions], partition_key=day,
                              instance=project.instance, resources=resources, run_config=traffic).success
        result = dg.materialize(assets, selection=[project.keys.served_drift_report], partition_key=day,
                                instance=project.instance, resources=resources)
        checks[day] = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert {e.partition for e in checks[day].values()} == {day}
    assert checks[ORDINARY_DAY][DATA_DRIFT_CHECK].passed, checks[ORDINARY_DAY][DATA_DRIFT_CHECK].description
    failed = checks[SHIFTED_DAY][DATA_DRIFT_CHECK]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert "distance" in failed.metadata["drifted_columns"].value.split(", ")

    # one alarm day retrains a pipeline whose YAML asks for one (flights asks for 3 of 7 days)
    retrain = project.spec.monitoring.retrain.model_copy(update={"failures": 1})
    one_day = project.spec.model_copy(update={"monitoring": project.spec.monitoring.model_copy(update={"retrain": retrain})})
    request, _ = sensor_tick(build_drift_sensor(one_day), project.instance)
    assert isinstance(request, dg.RunRequest), request
    # the alarm days in the key: SHIFTED_DAY, never ORDINARY_DAY (DAY too when the module served it:
    # it rained, precip drifts)
    prefix, _, alarm_days = request.run_key.rpartition(":")
    assert prefix == "drift-retrain:flights:served"
    assert SHIFTED_DAY in alarm_days.split(",") and ORDINARY_DAY not in alarm_days.split(",")
    assert request.run_config["ops"]["flights__training_set"]["config"] == {"mode": "rolling", "end": SHIFTED_DAY}
    assert request.tags[REASON_TAG].startswith(
        f"{len(alarm_days.split(','))} served drift alarm day(s) of flights/served_drift_report among the 7 days"
        f" up to {SHIFTED_DAY}:")
    assert f"{SHIFTED_DAY}: data drift (" in request.tags[REASON_TAG]

    served_checks = [dg.AssetCheckKey(project.keys.served_drift_report, c)
                     for c in (DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK)]
    _, alerts, deliveries = evaluate_alerts(project.instance, served_checks, Notifier(urls=receiver.url()), None)
    assert deliveries and all(d["delivered"] for d in deliveries)
    titles = [r["json"]["title"] for r in receiver.requests]
    assert (f"Warning check data_drift on flights/served_drift_report failed (partition {SHIFTED_DAY})"
            in titles), titles
    assert f"Warning check data_drift on flights/served_drift_report failed (partition {ORDINARY_DAY})" not in titles


def served_frame(feature_store, day: str, champion_scores=None) -> pd.DataFrame:
    """A day of served traffic as ``served_predictions`` stores it, from the real offline predictions
    of version 1: the challenger (version 2) gets those scores, the champion ``champion_scores``
    (default: the same ones)."""
    predictions = pd.read_parquet(feature_store / "flights" / "predictions" / f"{day}.parquet")
    out = predictions.rename(columns={})[["year", "month", "day", "carrier", "flight", "origin", PARTITION_COLUMN]].copy()
    out["challenger_score"] = predictions["delayed_score"].to_numpy()
    out["challenger_predicted"] = predictions["delayed_predicted"].to_numpy().astype(float)
    scores = predictions["delayed_score"].to_numpy() if champion_scores is None else champion_scores
    out["delayed_score"] = scores
    out["delayed_predicted"] = (scores >= 0.5).astype(float)
    out["model_version"], out["challenger_version"] = "1", "2"
    return out


@pytest.mark.slow
def test_live_comparison_uses_the_gate_test_on_served_rows_and_real_outcomes(serving, flights_csv_path, feature_store):
    from ml_assets.serving.live import compare_day

    spec = serving["project"].spec
    outcomes = raw_day(flights_csv_path)
    same = compare_day(spec, served_frame(feature_store, DAY), outcomes, min_rows=200)
    assert same["status"] == "compared" and same["labelled_rows"] > 900
    assert same["delta"] == 0 and not same["significant"]
    assert (same["champion_version"], same["challenger_version"]) == ("1", "2")
    # a champion scoring at random loses to the real scores of the challenger
    rng = np.random.default_rng(0)
    worse = compare_day(spec, served_frame(feature_store, DAY, rng.random(len(outcomes))), outcomes, min_rows=200)
    assert worse["significant"] and worse["delta"] > 0.1 and worse["p_value"] < 0.05
    assert worse["challenger_auc"] > 0.7 > 0.6 > worse["champion_auc"]
    too_few = compare_day(spec, served_frame(feature_store, DAY).head(50), outcomes, min_rows=200)
    assert too_few["status"] == "insufficient" and too_few["labelled_rows"] <= 50
    assert f"{too_few['labelled_rows']} served rows with a known outcome, 200 needed" == too_few["reason"]


@pytest.mark.slow
def test_live_promotion_sensor_promotes_after_consecutive_wins_with_cooldown_and_audit(
    serving, flights_csv_path, feature_store, tmp_path
):
    """On a copy of the registry: three significant days promote version 2, tag both versions and
    observe the asset; the cursor's cooldown holds a second promotion back."""
    import shutil

    from ml_assets.keys import pipeline_keys
    from ml_assets.serving.live import compare_day
    from resources.tracking import MlflowTracking
    from sensors.live_promotion import EVIDENCE_TAG, PROMOTED_TAG, REPLACED_TAG, build_live_promotion_sensor

    project = serving["project"]
    spec = project.spec
    source = project.tracking.resolved_tracking_uri()[len("sqlite:///"):]
    shutil.copy(source, tmp_path / "mlflow.db")
    tracking = MlflowTracking(local_dir=str(tmp_path))
    key = pipeline_keys(spec).live_comparison
    sensor = build_live_promotion_sensor(spec)
    rng = np.random.default_rng(1)
    with dg.instance_for_test() as instance:
        def tick(cursor=None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"tracking": tracking})
            return sensor(context), context.cursor

        result, cursor = tick()
        assert isinstance(result, dg.SkipReason) and "no flights/live_comparison" in result.skip_message
        outcomes = raw_day(flights_csv_path)
        for i, day in enumerate(["2013-03-10", "2013-03-11", "2013-03-12"]):
            verdict = compare_day(spec, served_frame(feature_store, DAY, rng.random(len(outcomes))), outcomes, 200)
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=key, partition=day, metadata={k: v for k, v in verdict.items() if v is not None}))
            result, cursor = tick(cursor)
            if i < 2:
                assert isinstance(result, dg.SkipReason) and f"{i + 1} day(s) compared" in result.skip_message
        assert isinstance(result, dg.SensorResult)
        (observation,) = result.asset_events
        assert observation.metadata["promoted_version"].value == "2"
        assert observation.metadata["evidence_days"].value == "2013-03-10, 2013-03-11, 2013-03-12"
        client = tracking.client()
        assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "2"
        assert tracking.alias_version("flights_delay", "challenger") is None
        new, old = client.get_model_version("flights_delay", "2"), client.get_model_version("flights_delay", "1")
        assert PROMOTED_TAG in new.tags and "2013-03-12" in new.tags[EVIDENCE_TAG]
        assert old.tags[REPLACED_TAG] == "2"
        # the original registry is untouched
        assert str(project.tracking.alias_version("flights_delay", CHAMPION).version) == "1"
        # version 1 as challenger again, winning: the cooldown holds it back
        client.set_registered_model_alias("flights_delay", "challenger", "1")
        for day in ["2013-03-13", "2013-03-14", "2013-03-15"]:
            verdict = compare_day(spec, served_frame(feature_store, DAY, rng.random(len(outcomes))), outcomes, 200)
            verdict.update(champion_version="2", challenger_version="1")
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=key, partition=day, metadata={k: v for k, v in verdict.items() if v is not None}))
        result, cursor = tick(cursor)
        assert isinstance(result, dg.SkipReason) and "cooling down" in result.skip_message


@pytest.mark.slow
def test_the_server_command_serves_on_loopback(serving, flights_csv_path, tmp_path):
    """``python -m ml_assets.serving.server`` (what ``./run.sh serve`` runs): real HTTP on 127.0.0.1."""
    import os
    import subprocess
    import sys

    import requests

    from tests.conftest import REPO_ROOT, free_port, wait_for_http

    import sqlite3

    (tmp_path / "online").mkdir()
    with sqlite3.connect(serving["tmp"] / "online.sqlite") as source, \
            sqlite3.connect(tmp_path / "online" / "features.sqlite") as copy:
        source.backup(copy)  # the store is in WAL mode: a file copy could miss recent writes
    port = free_port()
    env = dict(os.environ, ML_DATA_DIR=str(tmp_path), PORT=str(port),
               MLFLOW_TRACKING_URI=serving["project"].tracking.resolved_tracking_uri())
    server = subprocess.Popen([sys.executable, "-m", "ml_assets.serving.server"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ready", server, "the scoring service")
        rows = as_rows(raw_day(flights_csv_path).iloc[:2])
        response = requests.post(f"{url}/predict", json={"rows": rows}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": "flights_delay", "version": "1"} and len(body["predictions"]) == 2
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'serving_requests_total{endpoint="/predict",status="200"} 1.0' in metrics
        assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert "Traceback" not in errors, errors[-3000:]
    assert (tmp_path / "serving" / "flights" / "traffic.sqlite").exists()
