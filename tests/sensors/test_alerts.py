"""The alerts sensor on a real instance, to a real HTTP receiver on 127.0.0.1: failed checks, failed
runs alert on state changes, repeats are suppressed, escalate and resolve;
the sensor keeps its state in its cursor."""

import datetime as dt
import json

import dagster as dg

from resources.notifier import Notifier
from sensors.alerts import build_alerts_sensor, evaluate_alerts


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


DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_date="2026-11-05")


class NoStorage(dg.IOManager):
    """Stores nothing: only the checks matter here."""

    def handle_output(self, context, obj) -> None:
        pass

    def load_input(self, context):
        return None


def daily_checked_asset(failing_days: set[str]):
    """A daily asset whose check is partitioned like it and reports once per day (the project's
    helper for the raw data and drift checks)."""
    from ml_assets.metadata import partition_check_results

    @dg.asset(name="orders", partitions_def=DAYS,
              check_specs=[dg.AssetCheckSpec("not_empty", asset="orders", partitions_def=DAYS)])
    def orders(context: dg.AssetExecutionContext):
        yield dg.Output(None)
        yield from partition_check_results(context, {
            day: [dg.AssetCheckResult(check_name="not_empty", passed=day not in failing_days,
                                      severity=dg.AssetCheckSeverity.WARN, description=f"{day}: rows")]
            for day in context.partition_keys
        })

    return orders


def test_a_range_run_of_a_daily_check_is_one_alert_naming_its_failed_days(instance, receiver):
    """Four days in one run: the check history holds one real verdict per day (nothing "Skipped"),
    and the sensor turns the run into one alert naming the failed day, then one resolution."""
    from tests.conftest import check_history

    notifier = Notifier(urls=receiver.url(), suppression_minutes=60, escalate_after=3)
    key = dg.AssetCheckKey(dg.AssetKey("orders"), "not_empty")
    t0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    tags = {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-04"}
    assert dg.materialize([daily_checked_asset({"2026-11-03"})], instance=instance, tags=tags,
                          resources={"io_manager": NoStorage()}).success
    history = check_history(instance, key)
    assert sorted((partition, status) for status, partition, _ in history) == [
        ("2026-11-01", "SUCCEEDED"), ("2026-11-02", "SUCCEEDED"), ("2026-11-03", "FAILED"), ("2026-11-04", "SUCCEEDED")]
    cursor, alerts, _ = evaluate_alerts(instance, [key], notifier, None, t0)
    assert [a.kind for a in alerts] == ["failure"] and len(receiver.requests) == 1
    assert receiver.requests[0]["json"]["title"] == \
        "Warning check not_empty on orders failed on 1 of 4 partitions: 2026-11-03"
    assert dg.materialize([daily_checked_asset(set())], instance=instance, tags=tags,
                          resources={"io_manager": NoStorage()}).success
    cursor, alerts, _ = evaluate_alerts(instance, [key], notifier, cursor, t0 + dt.timedelta(minutes=1))
    assert [a.kind for a in alerts] == ["resolved"] and len(receiver.requests) == 2
    assert all(status == "SUCCEEDED" for status, _, _ in check_history(instance, key)[:4])
