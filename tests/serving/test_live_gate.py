"""The live A/B gate end to end on real parts: a real embedded MLflow registry with two real models
trained small on real features, a weak champion (LightGBM on one feature) and a challenger on the
pipeline's features, the service scoring every flight of two real days with online features the
``online_features`` asset wrote (the store keeping one day, as configured), ``served_predictions``
and ``live_comparison`` materialized against the real outcomes, then the live promotion sensor:
it waits for the configured days, promotes with an audit trail, and holds back during the cooldown."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.training.registry import CHALLENGER, CHAMPION
from tests.conftest import metadata_of
from tests.serving.test_service import as_rows, raw_day

DAYS = ["2013-03-11", "2013-03-12"]
MODEL = "flights_delay"


def register_model(tracking, train, numeric, categorical, rounds, workdir) -> str:
    """A LightGBM model trained on ``train`` with these features, registered like every model of the
    project (its model code and two artifacts); returns its version."""
    import lightgbm
    import mlflow

    from ml_assets.training.registry import MODEL_CODE
    from ml_assets.training.tabular_model import Preprocessing, ScoringModel

    prep = Preprocessing.fit(train, numeric, categorical, task="classification", target="delayed")
    data = lightgbm.Dataset(prep.transform(train), label=train["delayed"].to_numpy())
    booster = lightgbm.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1,
                              "seed": 0, "deterministic": True, "num_threads": 1}, data, num_boost_round=rounds)
    scoring = ScoringModel(booster, prep)
    with tracking.start_run("flights-live-gate-test", run_name=f"{len(numeric) + len(categorical)} features"):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                       artifacts=scoring.save(workdir / f"model_{rounds}"),
                                       registered_model_name=MODEL)
    return str(info.registered_model_version)


@pytest.fixture()
def live_registry(feature_store, tmp_path):
    """A real embedded MLflow registry with two real models trained small on the real features of
    2013-01-15 .. 2013-03-05: the challenger on the pipeline's features (version 1), and a weak
    champion on ``distance`` alone (version 2)."""
    from ml_assets.config import load_pipeline
    from resources.tracking import MlflowTracking
    from tests.conftest import small_pipeline

    spec = load_pipeline(small_pipeline(tmp_path))
    files = sorted((feature_store / "flights" / "features").glob("*.parquet"))
    train = pd.concat([pd.read_parquet(f) for f in files if "2013-01-15" <= f.stem <= "2013-03-05"],
                      ignore_index=True)
    train = train[train["delayed"].notna()].reset_index(drop=True)
    tracking = MlflowTracking(local_dir=str(tmp_path / "mlflow"))
    strong = register_model(tracking, train, spec.features.numeric, spec.features.categorical, 60, tmp_path)
    weak = register_model(tracking, train, ["distance"], [], 10, tmp_path)
    client = tracking.client()
    client.set_registered_model_alias(MODEL, CHAMPION, weak)
    client.set_registered_model_alias(MODEL, CHALLENGER, strong)
    return tracking, weak, strong


def live_spec(spec):
    """The shared project's spec with the live gate over 2 days and an online store keeping 1 day."""
    serving = spec.serving.model_copy(update={
        "online_days": 1,
        "live_gate": spec.serving.live_gate.model_copy(update={"days": 2, "min_rows": 200, "cooldown_hours": 24}),
    })
    return spec.model_copy(update={"serving": serving})


@pytest.mark.slow
def test_served_traffic_drives_the_live_gate_and_the_promotion_sensor(
    feature_store, flights_csv_path, live_registry, instance, tmp_path
):
    from fastapi.testclient import TestClient

    from ml_assets.evaluation.gate import compare_with_champion
    from ml_assets.evaluation.stats import roc_auc
    from ml_assets.features.functions import target_values
    from ml_assets.ingest.assets import daily_partitions
    from ml_assets.serving.app import ServiceSettings, create_app
    from ml_assets.serving.assets import build_serving_defs
    from ml_assets.serving.online import stored_days
    from resources.online_store import OnlineFeatureStore, SqliteKeyValueStore
    from resources.parquet_io import PartitionedParquetIOManager
    from sensors.live_promotion import EVIDENCE_TAG, PROMOTED_TAG, REPLACED_TAG, build_live_promotion_sensor

    from tests.conftest import Project, own_store, small_pipeline

    tracking, weak, strong = live_registry
    project = Project(small_pipeline(tmp_path), own_store(tmp_path, feature_store), tracking, instance)
    spec = live_spec(project.spec)
    keys = project.keys
    serving_assets = list(build_serving_defs(spec, daily_partitions(spec)).assets)
    assets = [*project.assets, *serving_assets]
    online_path, traffic_path, store = tmp_path / "online.sqlite", tmp_path / "traffic.sqlite", project.store
    resources = {**project.resources, "tracking": tracking,
                 "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(store)),
                 "online_store": OnlineFeatureStore(sqlite_path=str(online_path))}
    settings = ServiceSettings(spec=spec, tracking=tracking, store=SqliteKeyValueStore(online_path),
                               traffic_path=traffic_path)
    sensor = build_live_promotion_sensor(spec)
    verdicts = {}
    with TestClient(create_app(settings, start_background=False)) as client:
        app = client.app
        assert (app.state.models.champion.version, app.state.models.challenger.version) == (weak, strong)

        def tick(cursor):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"tracking": tracking})
            return sensor(context), context.cursor

        cursor = None
        for i, day in enumerate(DAYS):
            # the day's online features, then every flight of the day served (outcome columns included:
            # the service ignores them)
            online = dg.materialize(assets, selection=[keys.online_features], partition_key=day,
                                    instance=instance, resources=resources)
            assert online.success
            md = metadata_of(online, "flights__online_features")
            assert md["days_in_store"] == day and md["days_removed"] == i  # the store keeps 1 day
            assert stored_days(settings.store, "flights") == [day]
            raw = raw_day(flights_csv_path, day)
            response = client.post("/predict", json={"rows": as_rows(raw)})
            assert response.status_code == 200, response.text
            assert response.json()["model"]["version"] == weak
            app.state.traffic.flush()
            result = dg.materialize(
                assets, selection=[keys.raw("flights"), keys.served_predictions, keys.live_comparison],
                partition_key=day, instance=instance, resources=resources,
                run_config={"ops": {"flights__served_predictions": {"config": {"traffic_path": str(traffic_path)}}}},
            )
            assert result.success
            served = pd.read_parquet(store / "flights" / "served_predictions" / f"{day}.parquet")
            assert len(served) == len(raw) and (served["challenger_version"] == strong).all()
            assert (served["model_version"] == weak).all()
            verdict = metadata_of(result, "flights__live_comparison")
            verdicts[day] = verdict
            # the same numbers, recomputed here from the stored rows and the real outcomes with the
            # evaluation gate's own test
            y_all = target_values(raw, spec.target).to_numpy()
            labelled = ~np.isnan(y_all)
            joined = served.merge(raw.assign(_y=y_all)[["carrier", "flight", "origin", "_y"]],
                                  on=["carrier", "flight", "origin"], validate="one_to_one")
            joined = joined[joined["_y"].notna()]
            y = joined["_y"].to_numpy()
            new = pd.DataFrame({"score": joined["challenger_score"].to_numpy(),
                                "label": joined["challenger_predicted"].to_numpy()})
            old = pd.DataFrame({"score": joined["delayed_score"].to_numpy(),
                                "label": joined["delayed_predicted"].to_numpy()})
            expected = compare_with_champion(spec, y, new, old)
            assert verdict["status"] == "compared" and verdict["method"] == expected["method"]
            assert (verdict["champion_version"], verdict["challenger_version"]) == (weak, strong)
            assert verdict["labelled_rows"] == int(labelled.sum()) == len(joined) > 800
            assert verdict["p_value"] == pytest.approx(expected["p_value"])
            assert verdict["delta"] == pytest.approx(expected["delta_auc"], abs=1e-5)
            assert verdict["champion_auc"] == pytest.approx(roc_auc(y, old["score"]), abs=1e-5)
            assert verdict["challenger_auc"] == pytest.approx(roc_auc(y, new["score"]), abs=1e-5)
            assert verdict["significant"] is True and verdict["p_value"] < spec.evaluation.alpha
            assert verdict["challenger_auc"] > verdict["champion_auc"] + 0.05
            result, cursor = tick(cursor)
            if i == 0:  # one significant day of the configured two: no promotion yet
                assert isinstance(result, dg.SkipReason)
                assert result.skip_message == (f"1 day(s) compared champion v{weak} with challenger v{strong}; 2 needed")

        # two significant days: promoted, with the audit trail
        assert isinstance(result, dg.SensorResult), result
        (observation,) = result.asset_events
        assert observation.asset_key == keys.live_comparison
        meta = {k: v.value for k, v in observation.metadata.items()}
        assert (meta["promoted_version"], meta["replaced_version"]) == (strong, weak)
        assert meta["evidence_days"] == ", ".join(DAYS)
        assert f"challenger v{strong} significantly better than champion v{weak} on 2 consecutive" in meta["live_promotion"]
        registry = tracking.client()
        assert str(registry.get_model_version_by_alias(MODEL, CHAMPION).version) == strong
        assert tracking.alias_version(MODEL, CHALLENGER) is None
        promoted, replaced = registry.get_model_version(MODEL, strong), registry.get_model_version(MODEL, weak)
        evidence = json.loads(promoted.tags[EVIDENCE_TAG])
        assert sorted(evidence) == DAYS
        assert all(evidence[d]["p_value"] == pytest.approx(verdicts[d]["p_value"]) for d in DAYS)
        promoted_at = dt.datetime.fromisoformat(promoted.tags[PROMOTED_TAG])
        assert abs((dt.datetime.now(dt.timezone.utc) - promoted_at).total_seconds()) < 600
        assert replaced.tags[REPLACED_TAG] == strong
        # the service picks up the moved alias
        app.state.models.refresh()
        assert app.state.models.champion.version == strong and app.state.models.challenger is None

        # rolled back by hand within the cooldown: the same evidence does not promote again ...
        registry.set_registered_model_alias(MODEL, CHAMPION, weak)
        registry.set_registered_model_alias(MODEL, CHALLENGER, strong)
        result, cursor = tick(cursor)
        assert isinstance(result, dg.SkipReason) and result.skip_message.startswith("cooling down: the last live")
        assert "(cooldown 24 h)" in result.skip_message
        assert str(registry.get_model_version_by_alias(MODEL, CHAMPION).version) == weak
        # ... and does once the cooldown is over (the last promotion moved 25 hours back)
        state = json.loads(cursor)
        state["last_promotion"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)).isoformat()
        result, cursor = tick(json.dumps(state))
        assert isinstance(result, dg.SensorResult)
        assert str(registry.get_model_version_by_alias(MODEL, CHAMPION).version) == strong
