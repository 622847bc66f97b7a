"""The alert notifier (``resources.notifier``), end to end against a real HTTP receiver on 127.0.0.1
(apprise json:// posts): delivery, suppression, escalation, recovery, and secrets kept out of results
and logs."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta

import pytest

from resources import optional_env
from resources.alert_policy import AlertPolicy, decide
from resources.notifier import NO_URLS_MESSAGE, NotificationError, Notifier, redact_url
from tests.conftest import ALERT_KEY as KEY
from tests.conftest import ALERT_T0 as T0
from tests.conftest import Receiver, free_port
from tests.conftest import drift_failure as fail
from tests.conftest import drift_passing as ok

SECRET = "s3cr3t-Passw0rd"
TOKEN = "Zq8xTokenAbCdEf0123456789"


def roundtrip(state: dict) -> dict:
    return json.loads(json.dumps(state))


# --- delivery ---------------------------------------------------------------------------------------


def test_first_failure_delivers_one_json_post(receiver):
    notifier = Notifier(urls=receiver.url("/hooks/ml"), timeout_seconds=5)
    state, alerts, deliveries = notifier.observe({}, [fail("run-1")], T0)

    assert [a.kind for a in alerts] == ["failure"]
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/hooks/ml"
    assert request["headers"]["Content-Type"] == "application/json"
    payload = request["json"]
    # apprise's custom_json payload: version, title, message, attachments, type
    assert payload["version"] == "1.0"
    assert payload["title"] == "Data drift on flights"
    assert payload["message"] == "share of drifted columns 0.6 > 0.3"
    assert payload["type"] == "failure"
    assert payload["attachments"] == []

    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery["delivered"] is True and delivery["status"] == "SUCCESS"
    assert delivery["kind"] == "failure" and delivery["key"] == KEY
    assert [t["ok"] for t in delivery["targets"]] == [True]
    assert delivery["targets"][0]["url"] == f"json://127.0.0.1:{receiver.port}/hooks/ml"
    json.dumps(deliveries)  # results are plain data too


def test_repeated_failures_suppressed_then_reminder_after_window(receiver):
    notifier = Notifier(urls=receiver.url(), suppression_minutes=30, escalate_after=0)
    state, alerts, _ = notifier.observe({}, [fail("r1")], T0)
    assert len(alerts) == 1
    state, alerts, deliveries = notifier.observe(state, [fail("r2")], T0 + timedelta(minutes=10))
    assert alerts == [] and deliveries == []
    state, alerts, _ = notifier.observe(state, [fail("r3")], T0 + timedelta(minutes=29, seconds=59))
    assert alerts == []
    assert len(receiver.requests) == 1

    state, alerts, deliveries = notifier.observe(state, [fail("r4")], T0 + timedelta(minutes=30))
    assert [a.kind for a in alerts] == ["reminder"]
    assert deliveries[0]["delivered"]
    assert len(receiver.requests) == 2
    assert receiver.requests[1]["json"]["title"] == "REMINDER: Data drift on flights still failing (4 times in a row)"
    # the window restarts from the reminder
    state, alerts, _ = notifier.observe(state, [fail("r5")], T0 + timedelta(minutes=45))
    assert alerts == []
    assert state["keys"][KEY]["consecutive_failures"] == 5


def test_escalation_fires_once_after_k_failures(receiver):
    notifier = Notifier(urls=receiver.url(), suppression_minutes=60, escalate_after=3)
    state: dict = {}
    kinds = []
    for i in range(6):
        state, alerts, _ = notifier.observe(
            roundtrip(state), [fail(f"r{i}", severity="warning")], T0 + timedelta(minutes=i)
        )
        kinds.append([a.kind for a in alerts])
    assert kinds == [["failure"], [], ["escalation"], [], [], []]
    assert len(receiver.requests) == 2
    escalation = receiver.requests[1]["json"]
    assert escalation["title"] == "ESCALATED: Data drift on flights failing 3 times in a row"
    assert escalation["type"] == "failure"  # raised from warning
    assert receiver.requests[0]["json"]["type"] == "warning"
    assert state["keys"][KEY]["escalated"] is True


def test_recovery_fires_once_and_passes_fire_nothing(receiver):
    notifier = Notifier(urls=receiver.url(), escalate_after=3)
    state, alerts, _ = notifier.observe({}, [ok("r0")], T0)
    assert alerts == []  # passing while passing (and the first pass) is silent
    state, alerts, _ = notifier.observe(state, [fail("r1")], T0 + timedelta(minutes=1))
    state, alerts, _ = notifier.observe(state, [fail("r2")], T0 + timedelta(minutes=2))
    state, alerts, deliveries = notifier.observe(state, [ok("r3")], T0 + timedelta(minutes=3))
    assert [a.kind for a in alerts] == ["resolved"]
    assert deliveries[0]["delivered"]
    state, alerts, _ = notifier.observe(state, [ok("r4")], T0 + timedelta(minutes=4))
    assert alerts == []
    assert [r["json"]["title"] for r in receiver.requests] == [
        "Data drift on flights",
        "RESOLVED: Data drift on flights",
    ]
    assert receiver.requests[1]["json"]["type"] == "success"
    assert state["keys"][KEY]["status"] == "passing"
    assert state["keys"][KEY]["consecutive_failures"] == 0
    # a new failure after recovery is a new state change: it fires again, and escalation is re-armed
    state, alerts, _ = notifier.observe(state, [fail("r5")], T0 + timedelta(minutes=5))
    assert [a.kind for a in alerts] == ["failure"]


def test_duplicate_event_ids_are_dropped(receiver):
    notifier = Notifier(urls=receiver.url(), suppression_minutes=0, escalate_after=0)
    state, alerts, _ = notifier.observe({}, [fail("run-42"), fail("run-42")], T0)
    assert len(alerts) == 1
    # the same evaluation delivered again later (a sensor re-reading an event) is still a duplicate,
    # even with a zero suppression window that would otherwise fire a reminder
    state, alerts, _ = notifier.observe(roundtrip(state), [fail("run-42")], T0 + timedelta(hours=2))
    assert alerts == []
    assert state["keys"][KEY]["consecutive_failures"] == 1
    assert len(receiver.requests) == 1
    # the seen ids are bounded
    policy = AlertPolicy(max_seen_events=5)
    for i in range(20):
        state, _ = decide(state, fail(f"e{i}"), T0, policy)
    assert state["keys"][KEY]["seen_event_ids"] == [f"e{i}" for i in range(15, 20)]


def test_several_urls_each_receive(receiver):
    second = Receiver()
    try:
        notifier = Notifier(urls=f"{receiver.url('/a')}, {second.url('/b')}")
        _, alerts, deliveries = notifier.observe({}, [fail("r1")], T0)
        assert len(receiver.requests) == 1 and len(second.requests) == 1
        assert receiver.requests[0]["path"] == "/a" and second.requests[0]["path"] == "/b"
        assert second.requests[0]["json"]["title"] == "Data drift on flights"
        targets = deliveries[0]["targets"]
        assert sorted(t["url"] for t in targets) == sorted(
            [f"json://127.0.0.1:{receiver.port}/a", f"json://127.0.0.1:{second.port}/b"]
        )
        assert all(t["ok"] for t in targets)
        # space separated works too
        Notifier(urls=f"{receiver.url('/a')}   {second.url('/b')}").send(alerts)
        assert len(receiver.requests) == 2 and len(second.requests) == 2
    finally:
        second.close()


# --- failures and secrets ----------------------------------------------------------------------------


def test_receiver_down_is_a_clear_non_raising_failure(caplog):
    port = free_port()  # nothing listens here
    url = f"json://alice:{SECRET}@127.0.0.1:{port}/hooks/{TOKEN}"
    notifier = Notifier(urls=url, timeout_seconds=2)
    caplog.set_level(logging.DEBUG)

    state, alerts, deliveries = notifier.observe({}, [fail("r1")], T0)

    assert len(alerts) == 1
    (delivery,) = deliveries
    assert delivery["delivered"] is False and delivery["status"] == "FAILURE"
    (target,) = delivery["targets"]
    assert target["ok"] is False
    assert target["url"] == f"json://alice:****@127.0.0.1:{port}/hooks/****"
    assert "Connection error" in target["error"]
    assert "Data drift on flights" in delivery["message"] and target["url"] in delivery["message"]
    # the state still advances: the failure was decided, only its delivery failed
    assert state["keys"][KEY]["status"] == "failing"
    assert any("not delivered" in r.getMessage() and target["url"] in r.getMessage() for r in caplog.records)

    everything = json.dumps(deliveries) + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything and TOKEN not in everything

    with pytest.raises(NotificationError, match=r"not delivered") as excinfo:
        notifier.send(alerts, raise_on_failure=True)
    assert SECRET not in str(excinfo.value) and TOKEN not in str(excinfo.value)


def test_secrets_never_in_results_or_logs(receiver, caplog):
    caplog.set_level(logging.DEBUG)  # apprise's debug logs print request URLs
    url = receiver.url(f"/hooks/{TOKEN}", auth=f"alice:{SECRET}@") + f"?apikey={TOKEN}x"
    notifier = Notifier(urls=url)

    _, _, deliveries = notifier.observe({}, [fail("r1")], T0)

    assert deliveries[0]["delivered"] is True
    request = receiver.requests[0]
    # the credentials did reach the receiver (as HTTP basic auth) ...
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(
        f"alice:{SECRET}".encode()
    ).decode()
    assert request["path"].startswith(f"/hooks/{TOKEN}")
    # ... and nowhere else
    assert deliveries[0]["targets"][0]["url"] == f"json://alice:****@127.0.0.1:{receiver.port}/hooks/****"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged, "expected apprise/urllib3 debug logs to be captured"
    for text in (json.dumps(deliveries), logged):
        assert SECRET not in text and TOKEN not in text
    assert redact_url(url) == f"json://alice:****@127.0.0.1:{receiver.port}/hooks/****"


def test_slow_receiver_times_out_without_raising():
    slow = Receiver(delay=3)
    try:
        notifier = Notifier(urls=slow.url(), timeout_seconds=0.5)
        started = time.monotonic()
        _, _, deliveries = notifier.observe({}, [fail("r1")], T0)
        assert time.monotonic() - started < 2.5
        assert deliveries[0]["delivered"] is False
        assert deliveries[0]["targets"][0]["ok"] is False
    finally:
        slow.close()


def test_non_2xx_answer_is_a_failure():
    rejecting = Receiver(status=500)
    try:
        _, _, deliveries = Notifier(urls=rejecting.url()).observe({}, [fail("r1")], T0)
        assert len(rejecting.requests) == 1
        assert deliveries[0]["delivered"] is False
        assert "500" in deliveries[0]["targets"][0]["error"]
    finally:
        rejecting.close()


def test_invalid_url_is_reported_and_valid_ones_still_deliver(receiver, caplog):
    notifier = Notifier(urls=f"nosuchscheme://{TOKEN}@x, {receiver.url()}")
    _, _, deliveries = notifier.observe({}, [fail("r1")], T0)
    assert len(receiver.requests) == 1
    statuses = sorted(t["status"] for t in deliveries[0]["targets"])
    assert statuses == ["INVALID_URL", "SUCCESS"]
    assert deliveries[0]["status"] == "PARTIAL"
    everything = json.dumps(deliveries) + "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in everything


@pytest.mark.parametrize("urls", [None, "", "   "])
def test_no_urls_never_crashes(urls, caplog):
    caplog.set_level(logging.WARNING)
    notifier = Notifier(urls=urls)
    state, alerts, deliveries = notifier.observe({}, [fail("r1")], T0)
    assert len(alerts) == 1
    assert deliveries[0]["delivered"] is False
    assert deliveries[0]["status"] == "NOT_DELIVERED"
    assert deliveries[0]["message"] == NO_URLS_MESSAGE == "not delivered: no ALERT_URLS"
    assert NO_URLS_MESSAGE in caplog.text
    assert notifier.send([]) == []


def test_urls_from_env_var(receiver, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("ALERT_URLS", receiver.url("/from-env"))

    @dg.asset
    def alerting_asset(notifier: Notifier) -> None:
        _, _, deliveries = notifier.observe({}, [fail("r1")], T0)
        assert deliveries[0]["delivered"]

    result = dg.materialize(
        [alerting_asset], resources={"notifier": Notifier(urls=dg.EnvVar("ALERT_URLS"))}
    )
    assert result.success
    assert [r["path"] for r in receiver.requests] == ["/from-env"]

    monkeypatch.delenv("ALERT_URLS")

    @dg.asset
    def no_urls_asset(notifier: Notifier) -> None:
        _, _, deliveries = notifier.observe({}, [fail("r1")], T0)
        assert deliveries[0]["status"] == "NOT_DELIVERED"

    unset = dg.materialize([no_urls_asset], resources={"notifier": Notifier(urls=optional_env("ALERT_URLS"))})
    assert unset.success


# --- state ---------------------------------------------------------------------------------------------


def test_state_round_trips_through_json(receiver):
    notifier = Notifier(urls=receiver.url(), suppression_minutes=15, escalate_after=2)
    state: dict = {}
    timeline = [fail("a"), fail("b"), fail("c"), ok("d"), fail("e")]
    direct: dict = {}
    for i, observation in enumerate(timeline):
        now = T0 + timedelta(minutes=20 * i)
        state, alerts, _ = notifier.observe(roundtrip(state), [observation], now)
        direct, direct_alerts = decide(direct, observation, now, notifier.policy())
        assert alerts == direct_alerts
        assert json.loads(json.dumps(state)) == state
    assert state == direct
    key_state = state["keys"][KEY]
    assert set(key_state) == {"status", "consecutive_failures", "last_alert_at", "escalated", "seen_event_ids"}
    assert key_state["status"] == "failing" and key_state["consecutive_failures"] == 1
    assert key_state["last_alert_at"] == (T0 + timedelta(minutes=80)).isoformat()
    assert state["version"] == 1
