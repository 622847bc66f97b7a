"""The alerts sensor: failed checks, drift, freshness failures and run failures, to people.

Each tick it reads what happened since its cursor and turns it into notifier observations, one
dedupe key per thing that can fail:

* every asset check of the code location (blocking quality checks, the drift checks, the model
  gate): ``check:<asset>:<check>``, failing when the evaluation did not pass;
* freshness state changes written by Dagster's freshness daemon: ``freshness:<asset>``, failing
  on ``FAIL``, recovered on ``PASS``;
* runs: ``run:<job>``, failing on a run failure, recovered by the job's next success.

The notifier (``resources.notifier``) fires on state changes only (pass to fail, and recovery),
suppresses repeats within its window, escalates after K consecutive failures and drops duplicate
events; its state lives in this sensor's cursor with the read positions, so nothing is sent twice
across ticks or restarts.
"""

import datetime as dt
import json
from typing import Any

import dagster as dg

from resources.notifier import Notifier, Observation, empty_state

RUN_EVENTS = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS)
HISTORY_LIMIT = 100  # check executions read per check and tick


def _check_observations(instance: dg.DagsterInstance, check_keys, seen: dict[str, int]) -> list[Observation]:
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    observations = []
    for check_key in sorted(check_keys, key=lambda k: k.to_user_string()):
        name = check_key.to_user_string()
        last = seen.get(name, 0)
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=HISTORY_LIMIT)
        new = sorted((r for r in history if r.id > last), key=lambda r: r.id)
        for record in new:
            seen[name] = max(seen.get(name, 0), record.id)
            if record.status == AssetCheckExecutionRecordStatus.PLANNED or record.event is None:
                continue
            evaluation = record.event.dagster_event.event_specific_data
            if not hasattr(evaluation, "passed"):
                continue
            asset = check_key.asset_key.to_user_string()
            blocking = evaluation.severity == dg.AssetCheckSeverity.ERROR
            description = evaluation.description or ""
            where = f" (partition {record.partition})" if getattr(record, "partition", None) else ""
            observations.append(Observation(
                key=f"check:{asset}:{check_key.name}",
                ok=bool(evaluation.passed),
                title=f"{'Check' if blocking else 'Warning check'} {check_key.name} on {asset}"
                      f" {'passed' if evaluation.passed else 'failed'}{where}",
                body=f"{description}\nrun {record.run_id}",
                severity="failure" if blocking else "warning",
                event_id=f"check-execution:{record.id}",
            ))
    return observations


def _run_observations(instance: dg.DagsterInstance, cursors: dict[str, str | None]) -> list[Observation]:
    observations: list[tuple[int, Observation]] = []
    for event_type in RUN_EVENTS:
        cursor = cursors.get(event_type.value)
        while True:
            result = instance.fetch_run_status_changes(event_type, limit=500, cursor=cursor, ascending=True)
            for record in result.records:
                entry = record.event_log_entry
                failed = event_type == dg.DagsterEventType.RUN_FAILURE
                job = entry.job_name or "unknown job"
                message = entry.dagster_event.message if entry.dagster_event else ""
                observations.append((record.storage_id, Observation(
                    key=f"run:{job}",
                    ok=not failed,
                    title=f"Run of {job} {'failed' if failed else 'succeeded'}",
                    body=f"run {entry.run_id}: {message or ''}",
                    severity="failure",
                    event_id=f"run-event:{record.storage_id}",
                )))
            cursor = result.cursor
            if not result.has_more:
                break
        cursors[event_type.value] = cursor
    return [o for _, o in sorted(observations, key=lambda pair: pair[0])]


def _freshness_observations(instance: dg.DagsterInstance, state: dict[str, Any]) -> list[Observation]:
    records = instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=state.get("freshness", 0)
        ),
        limit=1000,
        ascending=True,
    )
    observations = []
    for record in records:
        state["freshness"] = max(state.get("freshness", 0), record.storage_id)
        change = record.event_log_entry.dagster_event.event_specific_data
        new_state = str(getattr(change.new_state, "value", change.new_state))
        if new_state not in ("PASS", "WARN", "FAIL"):
            continue
        asset = change.key.to_user_string()
        observations.append(Observation(
            key=f"freshness:{asset}",
            ok=new_state == "PASS",
            title=f"{asset} is {'fresh again' if new_state == 'PASS' else 'overdue' if new_state == 'FAIL' else 'almost overdue'}",
            body=f"freshness state {getattr(change.previous_state, 'value', change.previous_state)} -> {new_state}",
            severity="failure" if new_state == "FAIL" else "warning" if new_state == "WARN" else "success",
            event_id=f"freshness-event:{record.storage_id}",
        ))
    return observations


def evaluate_alerts(
    instance: dg.DagsterInstance, check_keys, notifier: Notifier, cursor: str | None, now: dt.datetime | None = None
) -> tuple[str, list[Any], list[dict]]:
    """One tick: read new events, decide, deliver. Returns the new cursor, the alerts and deliveries."""
    state = json.loads(cursor) if cursor else {}
    state.setdefault("checks", {})
    state.setdefault("runs", {})
    state.setdefault("freshness", 0)
    state.setdefault("alerts", empty_state())
    observations = [
        *_check_observations(instance, check_keys, state["checks"]),
        *_freshness_observations(instance, state),
        *_run_observations(instance, state["runs"]),
    ]
    state["alerts"], alerts, deliveries = notifier.observe(
        state["alerts"], observations, now or dt.datetime.now(dt.timezone.utc)
    )
    return json.dumps(state, sort_keys=True), alerts, deliveries


def build_alerts_sensor(interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="alerts_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Sends alerts (apprise URLs in ALERT_URLS) on failed asset checks, drift checks, freshness"
            " failures and run failures: on state changes and recoveries, with suppression and escalation."
        ),
    )
    def _alerts(context: dg.SensorEvaluationContext, notifier: Notifier):
        check_keys = context.repository_def.asset_graph.asset_check_keys if context.repository_def else []
        cursor, alerts, deliveries = evaluate_alerts(context.instance, check_keys, notifier, context.cursor)
        context.update_cursor(cursor)
        for delivery in deliveries:
            if not delivery.get("delivered"):
                context.log.warning(f"alert '{delivery.get('title')}' not delivered: {delivery.get('message')}")
        if not alerts:
            return dg.SkipReason("nothing new to alert on")
        return dg.SkipReason(
            f"sent {len(alerts)} alert(s): " + "; ".join(f"{a.kind}: {a.title}" for a in alerts)[:1000]
        )

    return _alerts
