"""The alerting policy: which observations become alerts. Pure functions over JSON-serialisable state.

Alerts are raised by Dagster sensors, which keep their state in the sensor cursor, so the policy is a
pure function over explicit, JSON-serialisable state::

    state, alerts = decide(state, Observation(key="check:flights/drift_report:data_drift", ok=False,
                                              title="Data drift", body="...", event_id=run_id), now)

Rules (per dedupe ``key``):

* the first failure (pass -> fail, or the first observation of a key) fires a ``failure`` alert;
* further consecutive failures are suppressed, unless ``suppression_minutes`` have passed since the
  last alert for that key: then a ``reminder`` fires;
* after ``escalate_after`` consecutive failures an ``escalation`` fires once (severity raised, title
  ``"ESCALATED: <title> failing N times in a row"``);
* a recovery (fail -> pass) fires a ``resolved`` alert once; passes while passing fire nothing;
* an observation whose ``event_id`` was already seen for its key (the same run or check evaluation
  seen twice) is dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

STATE_VERSION = 1


SEVERITIES = ("info", "success", "warning", "failure")


# An escalation raises the severity one step (failure is already the highest apprise type).
_RAISED_SEVERITY = {"info": "warning", "success": "warning", "warning": "failure", "failure": "failure"}


@dataclass(frozen=True)
class Observation:
    """One evaluation of something that can fail, e.g. an asset check or a run.

    ``key`` is the dedupe key (``"check:flights/drift_report:data_drift"``); ``event_id`` identifies
    this evaluation (a run id, a check evaluation id) so that seeing it twice alerts once.
    """

    key: str
    ok: bool
    title: str = ""
    body: str = ""
    severity: str = "failure"
    event_id: str | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("Observation.key must be a non-empty dedupe key")
        if self.severity not in SEVERITIES:
            raise ValueError(f"Observation.severity must be one of {SEVERITIES}, got {self.severity!r}")


@dataclass(frozen=True)
class Alert:
    """A notification to send. ``kind`` is failure, reminder, escalation or resolved."""

    key: str
    kind: str
    title: str
    body: str
    severity: str
    consecutive_failures: int
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AlertPolicy:
    """When to alert: ``suppression_minutes`` between reminders of a failing key, an escalation after
    ``escalate_after`` consecutive failures (0 disables it), and ``max_seen_events`` event ids
    remembered per key for deduplication."""

    suppression_minutes: float = 60
    escalate_after: int = 3
    max_seen_events: int = 50

    def __post_init__(self) -> None:
        if self.suppression_minutes < 0:
            raise ValueError("AlertPolicy.suppression_minutes must be >= 0")
        if self.escalate_after < 0:
            raise ValueError("AlertPolicy.escalate_after must be >= 0 (0 disables escalation)")
        if self.max_seen_events < 1:
            raise ValueError("AlertPolicy.max_seen_events must be >= 1")


def empty_state() -> dict[str, Any]:
    """The initial state: ``{"version": 1, "keys": {}}``."""
    return {"version": STATE_VERSION, "keys": {}}


def _new_key_state() -> dict[str, Any]:
    return {
        "status": "unknown",  # unknown | passing | failing
        "consecutive_failures": 0,
        "last_alert_at": None,  # ISO-8601 UTC
        "escalated": False,
        "seen_event_ids": [],  # oldest first, at most AlertPolicy.max_seen_events
    }


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def _normalise_state(state: Mapping[str, Any] | None) -> dict[str, Any]:
    if not state:
        return empty_state()
    if not isinstance(state, Mapping) or not isinstance(state.get("keys", {}), Mapping):
        raise ValueError(f"not a notifier state (expected {{'version': 1, 'keys': {{...}}}}): {state!r:.200}")
    version = state.get("version", STATE_VERSION)
    if version != STATE_VERSION:
        raise ValueError(f"notifier state version {version!r} is not supported (expected {STATE_VERSION})")
    new = copy.deepcopy(dict(state))
    new["version"] = STATE_VERSION
    new.setdefault("keys", {})
    return new


def decide(
    state: Mapping[str, Any] | None,
    observation: Observation,
    now: datetime,
    policy: AlertPolicy | None = None,
) -> tuple[dict[str, Any], list[Alert]]:
    """Apply ``observation`` to ``state`` at ``now``: the new state and the alerts to send.

    Pure: ``state`` is not modified; the returned state is a new JSON-serialisable dict. A naive
    ``now`` is taken as UTC.
    """
    policy = policy or AlertPolicy()
    now = _utc(now)
    new_state = _normalise_state(state)
    key_state = {**_new_key_state(), **new_state["keys"].get(observation.key, {})}
    seen = list(key_state["seen_event_ids"])

    if observation.event_id is not None:
        if observation.event_id in seen:
            return new_state, []  # the same evaluation seen again
        seen = (seen + [observation.event_id])[-policy.max_seen_events :]
    key_state["seen_event_ids"] = seen

    title = observation.title or observation.key
    alerts: list[Alert] = []

    def fire(kind: str, alert_title: str, severity: str, failures: int) -> None:
        alerts.append(
            Alert(
                key=observation.key,
                kind=kind,
                title=alert_title,
                body=observation.body,
                severity=severity,
                consecutive_failures=failures,
                event_id=observation.event_id,
            )
        )

    if observation.ok:
        if key_state["status"] == "failing":
            failures = key_state["consecutive_failures"]
            fire("resolved", f"RESOLVED: {title}", "success", failures)
            key_state["last_alert_at"] = now.isoformat()
        key_state.update(status="passing", consecutive_failures=0, escalated=False)
    else:
        failures = key_state["consecutive_failures"] + 1
        should_escalate = (
            policy.escalate_after > 0 and failures >= policy.escalate_after and not key_state["escalated"]
        )
        last = key_state["last_alert_at"]
        window_passed = last is None or now - datetime.fromisoformat(last) >= timedelta(
            minutes=policy.suppression_minutes
        )
        if should_escalate:
            fire(
                "escalation",
                f"ESCALATED: {title} failing {failures} times in a row",
                _RAISED_SEVERITY[observation.severity],
                failures,
            )
            key_state["escalated"] = True
        elif key_state["status"] != "failing":
            fire("failure", title, observation.severity, failures)
        elif window_passed:
            fire("reminder", f"REMINDER: {title} still failing ({failures} times in a row)",
                 observation.severity, failures)
        if alerts:
            key_state["last_alert_at"] = now.isoformat()
        key_state.update(status="failing", consecutive_failures=failures)

    new_state["keys"][observation.key] = key_state
    return new_state, alerts


def decide_all(
    state: Mapping[str, Any] | None,
    observations: Iterable[Observation],
    now: datetime,
    policy: AlertPolicy | None = None,
) -> tuple[dict[str, Any], list[Alert]]:
    """``decide`` over several observations in order."""
    new_state = _normalise_state(state)
    alerts: list[Alert] = []
    for observation in observations:
        new_state, fired = decide(new_state, observation, now, policy)
        alerts.extend(fired)
    return new_state, alerts
