"""Monitoring on a real instance: reference, daily drift report and checks, the drift sensor, the
alerts sensor (to a real HTTP receiver on 127.0.0.1), freshness policies and schedules.

Real parts: features from the packaged data, a trained champion in an embedded MLflow store,
Evidently, apprise. Sensor inputs that would take a year of runs to produce (drift verdicts of many
days) are reported to the instance as the same events those runs write; freshness is evaluated by
Dagster's own freshness daemon with the clock frozen.
"""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.model_lifecycle import CHAMPION
from ml_assets.monitoring import DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK
from resources.notifier import Notifier
from resources.parquet_io import atomic_write_parquet
from resources.tracking import MlflowTracking
from sensors import build_automation_defs
from sensors.alerts import build_alerts_sensor, evaluate_alerts
from sensors.drift import DRIFT_TRIGGER, PIPELINE_TAG, REASON_TAG, TRIGGER_TAG, build_drift_sensor
from tests.test_model_lifecycle import (  # noqa: F401 - fixtures
    TRAINING,
    Project,
    failure_message,
    feature_store,
    metadata_of,
    own_store,
    small_pipeline,
)
from tests.test_notifier import Receiver

REFERENCE = dg.AssetKey(["flights", "reference"])
PREDICTIONS = dg.AssetKey(["flights", "predictions"])
DRIFT = dg.AssetKey(["flights", "drift_report"])
DAYS = ["2013-03-13", "2013-03-14"]  # dry days (2013-03-12 rained all day)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, feature_store):  # noqa: F811
    """A champion, its reference, and two real days scored and checked for drift."""
    tmp = tmp_path_factory.mktemp("monitored")
    store = own_store(tmp, feature_store)
    home = tmp / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        project = Project(small_pipeline(tmp, model={"tuning": {"n_trials": 0}}), store,
                          MlflowTracking(local_dir=str(tmp / "mlflow")), instance)
        assert project.materialize(TRAINING).success
        reference = project.materialize([REFERENCE])
        runs = {day: (project.materialize([PREDICTIONS], day), project.materialize([DRIFT], day)) for day in DAYS}
        yield {"project": project, "store": store, "reference": reference, "runs": runs, "tmp": tmp}


# --------------------------------------------------------------------------- reference and drift


def test_reference_belongs_to_the_champion_and_is_kept_while_it_is(monitored):
    project = monitored["project"]
    md = metadata_of(monitored["reference"], "flights__reference")
    assert md["model_version"] == "1"
    assert md["window"] == "2013-01-15 .. 2013-02-20"  # the champion's training window
    assert md["sample_rows"] == min(20_000, md["source_rows"]) > 1000
    assert set(md["columns"]["numeric"]) >= {"distance", "sched_dep_hour"}
    assert md["columns"]["prediction"] == "delayed_score"
    again = project.materialize([REFERENCE])
    assert again.success and again.asset_materializations_for_node("flights__reference") == []
    client = project.tracking.client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"


def test_ordinary_days_do_not_alarm_and_report_every_column(monitored):
    for day in DAYS:
        scored, drift = monitored["runs"][day]
        assert scored.success and drift.success
        md = metadata_of(drift, "flights__drift_report")
        assert md["data_drift"] is False and md["drifted_columns"] == "none", (day, md["scores"])
        assert 0.0 <= md["share_drifted"] < 0.1 and md["missing_columns"] == "none"
        assert md["prediction_score"] >= 0 and md["rows"] > 500
        assert "html_report" not in md  # rendered only where a person will look
        checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
                  for e in drift.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
        assert checks[DATA_DRIFT_CHECK].passed and checks[DATA_DRIFT_CHECK].severity == dg.AssetCheckSeverity.WARN
        assert PREDICTION_DRIFT_CHECK in checks
        stored = pd.read_parquet(monitored["store"] / "flights" / "drift_report" / f"{day}.parquet")
        assert {"distance", "carrier", "delayed_score"} <= set(stored["column"])
        assert stored["score"].notna().all() and (stored["partition_date"] == day).all()


def shifted_store(monitored, tmp_path, change) -> "Project":
    """The monitored project's champion and reference, with a store whose 2013-03-14 features are
    the real ones changed by ``change``."""
    source = monitored["store"]
    store = tmp_path / "store"
    (store / "flights" / "features").mkdir(parents=True)
    day = "2013-03-15"
    real = pd.read_parquet(source / "flights" / "features" / f"{day}.parquet")
    atomic_write_parquet(change(real.copy()), store / "flights" / "features" / f"{day}.parquet")
    project = monitored["project"]
    shifted = Project(project.file, store, project.tracking, project.instance)
    return shifted


def carrier_mix(frame: pd.DataFrame) -> pd.DataFrame:
    """Half the flights moved to one carrier (new flight numbers keep the entity key unique)."""
    moved = np.arange(len(frame)) % 2 == 0
    return frame.assign(carrier=np.where(moved, "UA", frame["carrier"]),
                        flight=np.where(moved, 100_000 + np.arange(len(frame)), frame["flight"]))


@pytest.mark.parametrize(
    ("name", "change", "column"),
    [
        ("distance x1.5", lambda f: f.assign(distance=f["distance"] * 1.5), "distance"),
        ("carrier mix", lambda f: carrier_mix(f), "carrier"),
        ("visibility halved", lambda f: f.assign(visib=f["visib"] / 2), "visib"),
    ],
)
def test_injected_shifts_alarm_name_the_column_and_render_the_html(monitored, tmp_path, monkeypatch, name, change, column):
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "data"))
    project = shifted_store(monitored, tmp_path, change)
    assert project.materialize([PREDICTIONS], "2013-03-15").success
    result = project.materialize([DRIFT], "2013-03-15")
    assert result.success
    md = metadata_of(result, "flights__drift_report")
    assert md["data_drift"] is True and column in md["drifted_columns"].split(", "), (name, md["scores"])
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert checks[DATA_DRIFT_CHECK] is False
    html = md["html_report"]
    assert html.startswith(str(tmp_path / "data" / "reports")) and md["html_bytes"] > 100_000
    runs = project.tracking.client().search_runs(
        [project.tracking.client().get_experiment_by_name("flights-monitoring").experiment_id]
    )
    assert any(r.data.tags.get("dagster_run_id") == result.run_id for r in runs)


def test_a_day_without_weather_is_missing_data_not_drift_or_a_crash(monitored, tmp_path):
    project = shifted_store(monitored, tmp_path, lambda f: f.assign(precip=np.nan, visib=np.nan))
    assert project.materialize([PREDICTIONS], "2013-03-15").success
    result = project.materialize([DRIFT], "2013-03-15")
    assert result.success
    md = metadata_of(result, "flights__drift_report")
    assert md["missing_columns"] == "precip, visib" and md["data_drift"] is False


# --------------------------------------------------------------------------- drift sensor


def report_verdict(instance, day: str, data: bool, prediction: bool = False, columns: str = "distance"):
    """The per-day drift metadata a drift_report materialization carries."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=DRIFT, partition=day,
        metadata={"data_drift": data, "prediction_drift": prediction,
                  "drifted_columns": columns if data else "none", "share_drifted": 0.14 if data else 0.0},
    ))


@pytest.fixture
def drift_sensor(monitored):
    return build_drift_sensor(monitored["project"].spec)


def tick(sensor, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = sensor(context)
    return result, context.cursor


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


def test_cooldown_and_budget_stop_a_retrain_and_say_so(instance, monitored):
    for day in ("2013-12-01", "2013-12-02", "2013-12-03"):
        report_verdict(instance, day, data=True)
    spec = monitored["project"].spec
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


# --------------------------------------------------------------------------- alerts


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def checked_asset(passes: bool):
    @dg.asset(name="orders", check_specs=[dg.AssetCheckSpec("not_empty", asset="orders")])
    def orders():
        yield dg.Output(1)
        yield dg.AssetCheckResult(check_name="not_empty", passed=passes, description="rows > 0")

    return orders


def failing_asset():
    @dg.asset(name="orders")
    def orders():
        raise ValueError("source unreachable")

    return orders


def test_alerts_fire_on_changes_suppress_repeats_escalate_and_resolve(instance, receiver):
    notifier = Notifier(urls=receiver.url(), suppression_minutes=60, escalate_after=3)
    check_keys = [dg.AssetCheckKey(dg.AssetKey("orders"), "not_empty")]
    t0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)

    def run(asset, minutes):
        dg.materialize([asset], instance=instance, raise_on_error=False)
        return evaluate_alerts(instance, check_keys, notifier, state["cursor"], t0 + dt.timedelta(minutes=minutes))

    state = {"cursor": None}
    state["cursor"], alerts, _ = run(checked_asset(True), 0)
    assert alerts == [] and receiver.requests == []  # passing from the start: nothing to say
    state["cursor"], alerts, deliveries = run(checked_asset(False), 1)
    assert [a.kind for a in alerts] == ["failure"] and deliveries[0]["delivered"]
    assert receiver.requests[-1]["json"]["title"].startswith("Check not_empty on orders failed")
    state["cursor"], alerts, _ = run(checked_asset(False), 2)
    assert alerts == []  # still failing, within the suppression window
    state["cursor"], alerts, _ = run(checked_asset(False), 3)
    assert [a.kind for a in alerts] == ["escalation"] and "ESCALATED" in receiver.requests[-1]["json"]["title"]
    state["cursor"], alerts, _ = run(checked_asset(True), 4)
    assert [a.kind for a in alerts] == ["resolved"] and receiver.requests[-1]["json"]["type"] == "success"
    sent = len(receiver.requests)
    state["cursor"], alerts, _ = evaluate_alerts(instance, check_keys, notifier, state["cursor"], t0)
    assert alerts == [] and len(receiver.requests) == sent  # nothing read twice

    # a failed run alerts once, and its job's next success resolves it
    state["cursor"], alerts, _ = run(failing_asset(), 10)
    assert any(a.kind == "failure" and a.title.startswith("Run of __ephemeral_asset_job__ failed") for a in alerts)
    state["cursor"], alerts, _ = run(checked_asset(True), 11)
    assert [a.kind for a in alerts] == ["resolved"] and alerts[0].key == "run:__ephemeral_asset_job__"


def test_freshness_failure_from_the_freshness_daemon_alerts_and_recovers(instance, receiver):
    """Dagster's own freshness daemon evaluates the YAML's policy on flights/predictions (clock
    frozen): fresh after a materialization, overdue two days later, fresh again after the next."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import (
        InProcessTestWorkspaceLoadTarget,
        create_test_daemon_workspace_context,
        freeze_time,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._daemon.freshness import FreshnessDaemon

    from tests.conftest import REPO_ROOT

    notifier = Notifier(urls=receiver.url())
    key = dg.AssetKey(["flights", "predictions"])
    t0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)  # 03:00 in New York, before the 09:00 deadline
    origin = LoadableTargetOrigin(python_file=str(REPO_ROOT / "definitions.py"), working_directory=str(REPO_ROOT))
    target = InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin))
    with create_test_daemon_workspace_context(target, instance) as workspace:

        def at(when: dt.datetime, materialize: bool = False):
            with freeze_time(when):
                if materialize:
                    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="2013-03-13"))
                list(FreshnessDaemon().run_iteration(workspace))

        at(t0, materialize=True)
        cursor, alerts, _ = evaluate_alerts(instance, [], notifier, None, t0)
        assert alerts == []  # fresh from the start: nothing to say
        at(t0 + dt.timedelta(days=2))  # two deadlines passed without a materialization
        cursor, alerts, deliveries = evaluate_alerts(instance, [], notifier, cursor, t0 + dt.timedelta(days=2))
        assert [a.kind for a in alerts] == ["failure"] and alerts[0].title == "flights/predictions is overdue"
        assert deliveries[0]["delivered"] and receiver.requests[-1]["json"]["type"] == "failure"
        at(t0 + dt.timedelta(days=2, hours=1), materialize=True)
        cursor, alerts, _ = evaluate_alerts(instance, [], notifier, cursor, t0 + dt.timedelta(days=2, hours=1))
        assert [a.kind for a in alerts] == ["resolved"] and "fresh again" in receiver.requests[-1]["json"]["title"]


def test_alerts_sensor_reads_the_code_locations_checks_and_keeps_its_state_in_the_cursor(instance, receiver):
    asset = checked_asset(False)
    defs = dg.Definitions(assets=[asset], sensors=[build_alerts_sensor()],
                          resources={"notifier": Notifier(urls=receiver.url())})
    dg.materialize([asset], instance=instance)
    sensor = defs.resolve_sensor_def("alerts_sensor")
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources={"notifier": Notifier(urls=receiver.url())})
    result = sensor(context)
    assert isinstance(result, dg.SkipReason) and "sent 1 alert(s): failure: Check not_empty on orders failed" in result.skip_message
    assert len(receiver.requests) == 1
    state = json.loads(context.cursor)
    assert state["alerts"]["keys"]["check:orders:not_empty"]["status"] == "failing"
    second = dg.build_sensor_context(instance=instance, cursor=context.cursor, definitions=defs,
                                     resources={"notifier": Notifier(urls=receiver.url())})
    assert "nothing new" in sensor(second).skip_message and len(receiver.requests) == 1


# --------------------------------------------------------------------------- wiring


def test_freshness_policies_schedules_and_sensors_come_from_the_yaml(monitored):
    from definitions import defs

    graph = defs.resolve_asset_graph()
    for key in (["flights", "raw_flights"], ["flights", "raw_weather"], ["flights", "predictions"]):
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        assert policy.deadline_cron == "0 9 * * *" and policy.timezone == "America/New_York"
    assert graph.get(dg.AssetKey(["flights", "features"])).freshness_policy is None
    assert {"alerts_sensor", "flights_drift_retrain_sensor"} <= {s.name for s in defs.sensors}
    automation = build_automation_defs()
    assert "notifier" in automation.resources
    daily = defs.resolve_schedule_def("flights_daily_schedule")
    weekly = defs.resolve_schedule_def("flights_weekly_retrain_schedule")
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
    job = defs.resolve_job_def("flights_daily_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "flights/raw_flights", "flights/raw_weather", "flights/features", "flights/predictions",
        "flights/drift_report"}
    reference = graph.get(dg.AssetKey(["flights", "reference"]))
    assert reference.automation_condition is not None  # rebuilt after each training run


# --------------------------------------------------------------------------- the closed loop (last: it adds a model)


def test_injected_drift_on_real_days_launches_a_rolling_retrain_that_the_gate_decides(monitored, tmp_path):
    """Three real days with a doubled distance feed -> three drift alarms -> the sensor's RunRequest
    -> a real training run on the rolling windows -> the evaluation gate decides."""
    source = monitored["store"] / "flights" / "features"
    store = tmp_path / "store"
    folder = store / "flights" / "features"
    folder.mkdir(parents=True)
    broken = ["2013-03-16", "2013-03-17", "2013-03-18"]
    for file in source.glob("*.parquet"):
        if file.stem in broken:
            frame = pd.read_parquet(file)
            atomic_write_parquet(frame.assign(distance=frame["distance"] * 2), folder / file.name)
        else:
            (folder / file.name).symlink_to(file)
    project = monitored["project"]
    loop = Project(project.file, store, project.tracking, project.instance)
    for day in broken:
        assert loop.materialize([PREDICTIONS], day).success
        drift = loop.materialize([DRIFT], day)
        assert metadata_of(drift, "flights__drift_report")["drifted_columns"] == "distance"
    request, _ = tick(build_drift_sensor(loop.spec), loop.instance)
    assert isinstance(request, dg.RunRequest), request
    assert request.run_key == "drift-retrain:flights:" + ",".join(broken)
    retrain = dg.materialize(loop.assets, selection=TRAINING, resources=loop.resources, instance=loop.instance,
                             run_config=request.run_config, tags=request.tags)
    assert retrain.success
    windows = metadata_of(retrain, "flights__training_set")["windows"]
    assert "| test | 2013-03-12 | 2013-03-18 |" in windows and "| train | 2013-02-03 | 2013-03-04 |" in windows
    decision = metadata_of(retrain, "flights__evaluation")
    assert decision["champion_before"] == "1" and decision["alias"] in (CHAMPION, "challenger")
    assert decision["comparison_method"] == "paired_bootstrap" and 0.0 <= decision["p_value"] <= 1.0
    run = loop.instance.get_run_by_id(retrain.run_id)
    assert run.tags[TRIGGER_TAG] == DRIFT_TRIGGER and "3 drift alarm days" in run.tags[REASON_TAG]
