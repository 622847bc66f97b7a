"""Freshness policies, schedules and sensors of the code location come from the pipeline YAML; the
schedules' ticks through ``dg.build_schedule_context``."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from ml_assets import load_tabular_pipelines
from ml_assets.keys import ALERTS_SENSOR, pipeline_keys
from resources.notifier import Notifier
from sensors import build_automation_defs


def test_freshness_policies_schedules_and_sensors_come_from_the_yaml():
    from definitions import defs

    flights = pipeline_keys("flights")
    graph = defs.resolve_asset_graph()
    for key in (flights.raw("flights"), flights.raw("weather"), flights.predictions):
        policy = graph.get(key).freshness_policy
        assert policy.deadline_cron == "0 9 * * *" and policy.timezone == "America/New_York"
    assert graph.get(flights.features).freshness_policy is None
    assert {"alerts_sensor", "flights_drift_retrain_sensor"} <= {s.name for s in defs.sensors}
    automation = build_automation_defs(load_tabular_pipelines())
    assert {s.name for s in automation.sensors} == {ALERTS_SENSOR, flights.drift_sensor, flights.live_promotion_sensor}
    assert {s.name for s in automation.schedules} == {flights.daily_schedule, flights.weekly_retrain_schedule}
    assert isinstance(defs.resources["notifier"], Notifier)  # what the alerts sensor sends with
    daily = defs.resolve_schedule_def(flights.daily_schedule)
    weekly = defs.resolve_schedule_def(flights.weekly_retrain_schedule)
    assert daily.cron_schedule == "0 6 * * *" and daily.execution_timezone == "America/New_York"  # 06:00
    assert daily.job_name == "flights_daily_job"
    new_york = ZoneInfo("America/New_York")
    tick = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2013, 3, 14, 6, 0, tzinfo=new_york))
    (request,) = daily.evaluate_tick(tick).run_requests
    assert request.partition_key == "2013-03-13"  # yesterday's partition
    assert weekly.job_name == "flights_training_job" and weekly.cron_schedule == "0 3 * * 1"
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 23, 3, 0))
    (request,) = weekly.evaluate_tick(context).run_requests
    assert request.run_config == {"ops": {"flights__training_set": {"config": {"mode": "rolling"}}}}
    job = defs.resolve_job_def(flights.daily_job)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "flights/raw_flights", "flights/raw_weather", "flights/features", "flights/predictions",
        "flights/drift_report"}
    reference = graph.get(flights.reference)
    assert reference.automation_condition is not None  # rebuilt after each training run
