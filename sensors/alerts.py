"""The alerts sensor: failed checks, drift, freshness failures and run failures, to people.

Each tick it reads what happened since its cursor and turns it into notifier observations, one
dedupe key per thing that can fail:

* every asset check of the code location (blocking quality checks, the drift checks, the model
  gate): ``check:<asset>:<check>``, failing when the evaluation did not pass (read from the
  instance's ``ASSET_CHECK_EVALUATION`` event records);
* the freshness state Dagster's freshness daemon records for each asset with a freshness policy:
  ``freshness:<asset>``, failing on ``FAIL``, recovered on ``PASS``;
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

from resources.alert_policy import Observation, empty_state
from resources.notifier import Notifier

FIRST_TICK_HOURS = 24  # how far back the first tick reads check evaluations
RECHECK_SECONDS = 60  # runs updated this long before the newest seen are read again (with their cursor)
RUN_EVENTS = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS)


def check_observations(instance: dg.DagsterInstance, check_keys, state: dict[str, Any]) -> list[Observation]:
    """Asset check evaluations of ``check_keys`` recorded since the last tick, read run by run:
    runs updated since ``state["check_runs_since"]`` (the public run records), and in each the
    ``ASSET_CHECK_EVALUATION`` events after that run's own event cursor (``state["check_runs"]``).
    Works alike on SQLite (events sharded by run) and PostgreSQL storage."""
    wanted = set(check_keys)
    since = state.get("check_runs_since")
    if since is None:  # first tick: the last day's runs, not the whole history
        since = dt.datetime.now(dt.timezone.utc).timestamp() - FIRST_TICK_HOURS * 3600
    cursors: dict[str, list] = state.get("check_runs", {})  # run id -> [event cursor, update timestamp]
    updated_after = dt.datetime.fromtimestamp(since - RECHECK_SECONDS, dt.timezone.utc)
    runs = instance.get_run_records(filters=dg.RunsFilter(updated_after=updated_after),
                                    order_by="update_timestamp", ascending=True)
    observations = []
    for run in runs:
        run_id = run.dagster_run.run_id
        connection = instance.get_records_for_run(
            run_id, cursor=cursors.get(run_id, [None])[0], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        cursors[run_id] = [connection.cursor, run.update_timestamp.timestamp()]
        # one observation per check and run: the checks of daily assets report once per day, so a
        # range run's days are gathered (failing if any day failed, naming the failed days)
        by_check: dict[Any, list] = {}
        for record in connection.records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.asset_check_key not in wanted:
                continue
            by_check.setdefault(evaluation.asset_check_key, []).append((record.storage_id, evaluation))
        for evaluations in by_check.values():
            observations.append(check_observation(run_id, evaluations))
        since = max(since, run.update_timestamp.timestamp())
    state["check_runs_since"] = since
    # runs updated within RECHECK_SECONDS of the newest are read again (same-instant updates): keep
    # their cursors so nothing is read twice; older ones are done
    state["check_runs"] = {r: c for r, c in cursors.items() if c[1] >= since - 2 * RECHECK_SECONDS}
    return observations


def check_observation(run_id: str, evaluations: list[tuple[int, Any]]) -> Observation:
    """One check's evaluations in one run (``(storage id, evaluation)``, one per partition of a
    daily check, or one) as one observation: failing when any failed, naming the failed partitions."""
    first = evaluations[0][1]
    asset = first.asset_key.to_user_string()
    failed = [evaluation for _, evaluation in evaluations if not evaluation.passed]
    shown = failed or [first]
    blocking = any(e.severity == dg.AssetCheckSeverity.ERROR for e in shown)
    if len(evaluations) == 1:
        where = f" (partition {first.partition})" if first.partition else ""
    else:
        days = ", ".join(str(e.partition) for e in failed[:10]) + (" ..." if len(failed) > 10 else "")
        where = f" on {len(failed)} of {len(evaluations)} partitions: {days}" if failed else \
            f" on {len(evaluations)} partitions"
    return Observation(
        key=f"check:{asset}:{first.check_name}",
        ok=not failed,
        title=f"{'Check' if blocking else 'Warning check'} {first.check_name} on {asset}"
              f" {'passed' if not failed else 'failed'}{where}",
        body="\n".join(e.description or "" for e in shown[:10]) + f"\nrun {run_id}",
        severity="failure" if blocking else "warning",
        event_id=f"check-evaluation:{run_id}:{evaluations[-1][0]}",
    )


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


def freshness_observations(instance: dg.DagsterInstance, asset_keys) -> list[Observation]:
    """The freshness state Dagster's freshness daemon last recorded for each of ``asset_keys``; an
    unchanged state has the same event id, so the notifier sees each change once."""
    observations = []
    records = instance.get_freshness_state_records(list(asset_keys)) if asset_keys else {}
    for key, record in sorted(records.items(), key=lambda item: item[0].to_user_string()):
        state = str(getattr(record.freshness_state, "value", record.freshness_state))
        if state not in ("PASS", "WARN", "FAIL"):
            continue
        asset = key.to_user_string()
        observations.append(Observation(
            key=f"freshness:{asset}",
            ok=state == "PASS",
            title=f"{asset} is {'fresh again' if state == 'PASS' else 'overdue' if state == 'FAIL' else 'almost overdue'}",
            body=f"freshness state {state} since {record.updated_at:%Y-%m-%d %H:%M} UTC",
            severity="failure" if state == "FAIL" else "warning" if state == "WARN" else "success",
            event_id=f"freshness:{asset}:{record.updated_at.isoformat()}",
        ))
    return observations


def evaluate_alerts(
    instance: dg.DagsterInstance, check_keys, notifier: Notifier, cursor: str | None, now: dt.datetime | None = None,
    freshness_keys=(),
) -> tuple[str, list[Any], list[dict]]:
    """One tick: read new events, decide, deliver. Returns the new cursor, the alerts and deliveries."""
    state = json.loads(cursor) if cursor else {}
    state.setdefault("runs", {})
    state.setdefault("alerts", empty_state())
    observations = [
        *check_observations(instance, check_keys, state),
        *freshness_observations(instance, freshness_keys),
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
        graph = context.repository_def.asset_graph if context.repository_def else None
        check_keys = graph.asset_check_keys if graph else []
        fresh = [key for key in graph.get_all_asset_keys() if graph.get(key).freshness_policy] if graph else []
        cursor, alerts, deliveries = evaluate_alerts(
            context.instance, check_keys, notifier, context.cursor, freshness_keys=fresh
        )
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
