"""The drift sensor through ``dg.build_sensor_context`` on a real instance: drift verdicts of many days
are reported to the instance as the same materialization events the drift report writes; the sensor
skips with a reason, or requests a rolling retrain with a stable run key, within its cooldown and
weekly budget."""

import json

import dagster as dg
import pandas as pd
import pytest

from ml_assets.keys import DRIFT_TRIGGER, PIPELINE_TAG, REASON_TAG, TRIGGER_TAG, pipeline_keys
from sensors.drift import build_drift_sensor
from tests.conftest import sensor_tick as tick


def report_verdict(instance, day: str, data: bool, prediction: bool = False, columns: str = "distance"):
    """The per-day drift metadata a drift_report materialization carries."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=pipeline_keys("flights").drift_report, partition=day,
        metadata={"data_drift": data, "prediction_drift": prediction,
                  "drifted_columns": columns if data else "none", "share_drifted": 0.14 if data else 0.0},
    ))


@pytest.fixture
def drift_sensor(flights_spec):
    return build_drift_sensor(flights_spec)


def test_stable_days_skip_and_say_why(instance, drift_sensor):
    result, _ = tick(drift_sensor, instance)
    assert isinstance(result, dg.SkipReason) and "no drift reports" in result.skip_message
    for day in pd.date_range("2013-10-01", "2013-10-10").strftime("%Y-%m-%d"):
        report_verdict(instance, day, data=day == "2013-10-04")
    result, cursor = tick(drift_sensor, instance)
    assert isinstance(result, dg.SkipReason)
    assert "1 drift alarm day(s) among the 7 days up to 2013-10-10 (2013-10-04); 3 needed" in result.skip_message
    assert json.loads(cursor)["storage_id"] > 0


def test_injected_drift_requests_a_rolling_retrain_with_a_stable_run_key(instance, drift_sensor):
    for day in pd.date_range("2013-11-01", "2013-11-10").strftime("%Y-%m-%d"):
        report_verdict(instance, day, data=day in ("2013-11-05", "2013-11-08"), prediction=day == "2013-11-09")
    result, cursor = tick(drift_sensor, instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "drift-retrain:flights:2013-11-05,2013-11-08,2013-11-09"
    assert result.tags[TRIGGER_TAG] == DRIFT_TRIGGER and result.tags[PIPELINE_TAG] == "flights"
    assert "3 drift alarm days among the 7 days up to 2013-11-10" in result.tags[REASON_TAG]
    assert "2013-11-05: data drift (distance)" in result.tags[REASON_TAG]
    assert result.run_config == {"ops": {"flights__training_set": {"config": {"mode": "rolling", "end": "2013-11-10"}}}}
    # the next tick reads only new events and asks for the same run (Dagster runs a run_key once)
    again, _ = tick(drift_sensor, instance, cursor)
    assert isinstance(again, dg.RunRequest) and again.run_key == result.run_key
    # a later re-run of an alarm day that now passes removes it from the evidence
    report_verdict(instance, "2013-11-08", data=False)
    calmer, _ = tick(drift_sensor, instance, cursor)
    assert isinstance(calmer, dg.SkipReason) and "2 drift alarm day(s)" in calmer.skip_message


def drift_run(instance):
    """A real run carrying the drift-retrain tags (what a launched RunRequest creates)."""
    @dg.asset(name="stand_in")
    def stand_in():
        return 1

    result = dg.materialize([stand_in], instance=instance, tags={TRIGGER_TAG: DRIFT_TRIGGER, PIPELINE_TAG: "flights"})
    assert result.success


def test_cooldown_and_budget_stop_a_retrain_and_say_so(instance, flights_spec):
    for day in ("2013-12-01", "2013-12-02", "2013-12-03"):
        report_verdict(instance, day, data=True)
    spec = flights_spec
    drift_run(instance)
    cooling, _ = tick(build_drift_sensor(spec), instance)
    assert isinstance(cooling, dg.SkipReason) and "cooling down" in cooling.skip_message
    assert "within 24 h" in cooling.skip_message
    no_cooldown = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={
        "retrain": spec.monitoring.retrain.model_copy(update={"cooldown_hours": 0.0, "max_per_week": 1})})})
    spent, _ = tick(build_drift_sensor(no_cooldown), instance)
    assert isinstance(spent, dg.SkipReason) and "budget spent: 1 drift retrain(s) in the last 7 days" in spent.skip_message
    more = no_cooldown.model_copy(update={"monitoring": no_cooldown.monitoring.model_copy(update={
        "retrain": no_cooldown.monitoring.retrain.model_copy(update={"max_per_week": 2})})})
    allowed, _ = tick(build_drift_sensor(more), instance)
    assert isinstance(allowed, dg.RunRequest)


# --------------------------------------------------------------------------- a table without partitions


@pytest.fixture
def table_spec():
    from ml_assets.config import load_pipeline
    from ml_assets.config.paths import REPO_ROOT

    return load_pipeline(REPO_ROOT / "pipelines" / "examples" / "boston_housing.yaml")


def report_table(instance, spec, data: bool, prediction: bool = False):
    """The metadata an unpartitioned drift_report materialization carries (the whole table)."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=pipeline_keys(spec).drift_report,
        metadata={"data_drift": data, "prediction_drift": prediction, "drifted_columns": "rm" if data else "none",
                  "alarm_chunks": 10 if data or prediction else 0, "chunks": 10},
    ))


def test_a_table_retrains_when_its_newest_report_alarms_once_per_report(instance, table_spec):
    sensor = build_drift_sensor(table_spec)
    assert sensor.name == "boston_housing_drift_retrain_sensor" and sensor.job_name == "boston_housing_training_job"
    result, _ = tick(sensor, instance)
    assert isinstance(result, dg.SkipReason) and "no drift reports" in result.skip_message
    report_table(instance, table_spec, data=False)
    result, cursor = tick(sensor, instance)
    assert isinstance(result, dg.SkipReason) and "does not alarm" in result.skip_message
    report_table(instance, table_spec, data=True)
    request, cursor = tick(sensor, instance, cursor)
    assert isinstance(request, dg.RunRequest)
    report_id = json.loads(cursor)["report"]["storage_id"]
    assert request.run_key == f"drift-retrain:boston_housing:report-{report_id}"
    assert request.run_config == {}  # the YAML's split of the current table
    assert request.tags[TRIGGER_TAG] == DRIFT_TRIGGER and request.tags[PIPELINE_TAG] == "boston_housing"
    assert "data drift (rm) in 10 chunk(s)" in request.tags[REASON_TAG]
    again, cursor = tick(sensor, instance, cursor)  # no new report: the same request (Dagster runs a key once)
    assert isinstance(again, dg.RunRequest) and again.run_key == request.run_key
    report_table(instance, table_spec, data=False, prediction=True)
    newer, cursor = tick(sensor, instance, cursor)
    assert isinstance(newer, dg.RunRequest) and newer.run_key != request.run_key
    assert "prediction drift" in newer.tags[REASON_TAG]
    report_table(instance, table_spec, data=False)
    calm, _ = tick(sensor, instance, cursor)
    assert isinstance(calm, dg.SkipReason) and "does not alarm" in calm.skip_message
    drift_run_for(instance, "boston_housing")
    report_table(instance, table_spec, data=True)
    cooling, _ = tick(sensor, instance, cursor)
    assert isinstance(cooling, dg.SkipReason) and "cooling down" in cooling.skip_message


def drift_run_for(instance, pipeline: str):
    @dg.asset(name="stand_in_table")
    def stand_in_table():
        return 1

    assert dg.materialize([stand_in_table], instance=instance,
                          tags={TRIGGER_TAG: DRIFT_TRIGGER, PIPELINE_TAG: pipeline}).success


# --------------------------------------------------------------------------- the served drift report


def report_served_verdict(instance, day: str, data: bool, prediction: bool = False):
    """The per-day drift metadata a served_drift_report materialization carries."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=pipeline_keys("flights").served_drift_report, partition=day,
        metadata={"data_drift": data, "prediction_drift": prediction, "served_rows": 900,
                  "drifted_columns": "distance" if data else "none", "share_drifted": 0.14 if data else 0.0},
    ))


def test_served_alarm_days_request_a_retrain_under_the_batch_rule(instance, drift_sensor):
    """The served report counts its own alarm days with the same rule (3 of the last 7 in the YAML):
    two served days and one batch day are not three of either."""
    report_verdict(instance, "2014-01-05", data=True)  # one batch alarm day: not enough on its own
    report_served_verdict(instance, "2014-01-03", data=False)
    for day in ("2014-01-04", "2014-01-05"):
        report_served_verdict(instance, day, data=True)
    calm, cursor = tick(drift_sensor, instance)
    assert isinstance(calm, dg.SkipReason)
    assert ("2 served drift alarm day(s) of flights/served_drift_report among the 7 days up to 2014-01-05"
            " (2014-01-04, 2014-01-05); 3 needed to retrain") in calm.skip_message
    assert "1 drift alarm day(s) among the 7 days up to 2014-01-05 (2014-01-05)" in calm.skip_message
    report_served_verdict(instance, "2014-01-06", data=False, prediction=True)
    request, cursor = tick(drift_sensor, instance, cursor)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "drift-retrain:flights:served:2014-01-04,2014-01-05,2014-01-06"
    assert request.run_config == {"ops": {"flights__training_set": {"config": {"mode": "rolling", "end": "2014-01-06"}}}}
    assert request.tags[TRIGGER_TAG] == DRIFT_TRIGGER
    assert request.tags[REASON_TAG] == (
        "3 served drift alarm day(s) of flights/served_drift_report among the 7 days up to 2014-01-06:"
        " 2014-01-04: data drift (distance); 2014-01-05: data drift (distance); 2014-01-06: prediction drift")
    again, cursor = tick(drift_sensor, instance, cursor)  # same evidence: the same key (Dagster runs it once)
    assert isinstance(again, dg.RunRequest) and again.run_key == request.run_key
    state = json.loads(cursor)
    assert sorted(state["served_days"]) == ["2014-01-03", "2014-01-04", "2014-01-05", "2014-01-06"]
    assert sorted(state["days"]) == ["2014-01-05"]
    drift_run(instance)  # the cooldown holds served requests back too
    cooling, _ = tick(drift_sensor, instance, cursor)
    assert isinstance(cooling, dg.SkipReason) and "cooling down" in cooling.skip_message
    assert "served drift alarm day(s)" in cooling.skip_message
