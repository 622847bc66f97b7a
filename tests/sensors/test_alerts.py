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
