"""The drift sensor: drift alarms on enough recent days launch the training job.

It reads new materializations of ``<name>/drift_report`` (each day's ``data_drift`` and
``prediction_drift`` metadata, written by the daily run or by a range run) and keeps the latest
verdict per day in its cursor. When at least ``retrain.failures`` of the last ``retrain.within_days``
days (up to the newest day reported) alarm, it requests ``<name>_training_job`` on the rolling
windows ending on that day, unless a drift retrain ran within ``cooldown_hours`` or the budget of
``max_per_week`` drift retrains in 7 days is spent. The run key is deterministic (the alarm days), so
the same evidence never launches twice; the reason is in the run tags. Otherwise a ``SkipReason``
says why. The evaluation gate of the training job then decides whether the new model is promoted.

It also reads ``<name>/served_drift_report`` (the same checks on the traffic the scoring service
scored) under the same rule: ``failures`` served alarm days among the last ``within_days`` request the
same rolling retrain (run key ``drift-retrain:<name>:served:<alarm days>``), within the same cooldown
and weekly budget.

A pipeline without partitions has one drift report of its whole table instead of days: its sensor
(``build_table_drift_sensor``) retrains when the newest report alarms.
"""

import datetime as dt
import json
from typing import Any

import dagster as dg

from ml_assets.config import PipelineSpec
from ml_assets.keys import DRIFT_TRIGGER, PIPELINE_TAG, REASON_TAG, TRIGGER_TAG, pipeline_keys
from ml_assets.training.assets import rolling_run_config
from sensors.records import newest_metadata_since, partition_metadata_since

CURSOR_DAYS = 60  # days of verdicts kept in the cursor


def load_cursor(cursor: str | None) -> dict[str, Any]:
    """The sensor's state: read positions and per-day verdicts of the batch and the served report."""
    state = json.loads(cursor) if cursor else {}
    for name, empty in (("storage_id", 0), ("days", {}), ("served_storage_id", 0), ("served_days", {})):
        state.setdefault(name, empty)
    return state


def _verdicts(instance: dg.DagsterInstance, key: dg.AssetKey, after: int) -> tuple[int, dict[str, dict]]:
    """Per day, the newest drift verdict among materializations after storage id ``after``."""
    latest, days = partition_metadata_since(instance, key, after)
    verdicts = {
        day: {"data": bool(metadata["data_drift"]), "prediction": bool(metadata["prediction_drift"]),
              "columns": metadata.get("drifted_columns", "")}
        for day, metadata in days.items()
        if "data_drift" in metadata  # not a day with no rows
    }
    return latest, verdicts


def alarm_days(days: dict[str, dict], newest: str, within_days: int) -> list[str]:
    """Days among the ``within_days`` days ending on ``newest`` whose drift checks failed."""
    end = dt.date.fromisoformat(newest)
    start = (end - dt.timedelta(days=within_days - 1)).isoformat()
    return sorted(d for d, v in days.items() if start <= d <= newest and (v["data"] or v["prediction"]))


def _recent_drift_runs(instance: dg.DagsterInstance, pipeline: str, since: dt.datetime) -> list[Any]:
    return list(instance.get_run_records(
        filters=dg.RunsFilter(tags={TRIGGER_TAG: DRIFT_TRIGGER, PIPELINE_TAG: pipeline}, created_after=since),
    ))


def held_back(instance: dg.DagsterInstance, spec: PipelineSpec, evidence: str) -> dg.SkipReason | None:
    """Why a drift retrain must wait (the weekly budget is spent, or one ran within the cooldown), or None."""
    retrain = spec.monitoring.retrain
    now = dt.datetime.now(dt.timezone.utc)
    last_week = _recent_drift_runs(instance, spec.name, now - dt.timedelta(days=7))
    if len(last_week) >= retrain.max_per_week:
        return dg.SkipReason(
            f"drift retrain budget spent: {len(last_week)} drift retrain(s) in the last 7 days"
            f" (max_per_week {retrain.max_per_week}); {evidence}"
        )
    cooldown_start = now - dt.timedelta(hours=retrain.cooldown_hours)
    recent = [r for r in last_week if r.create_timestamp >= cooldown_start]
    if recent:
        return dg.SkipReason(
            f"cooling down: a drift retrain ({recent[0].dagster_run.run_id[:8]}) started at"
            f" {recent[0].create_timestamp:%Y-%m-%d %H:%M} UTC, within {retrain.cooldown_hours:g} h; {evidence}"
        )
    return None


def build_table_drift_sensor(spec: PipelineSpec) -> dg.SensorDefinition:
    """The drift sensor of a pipeline without partitions: each materialization of the drift report is
    one verdict on the whole current table (its compared chunks), so the newest report decides. When
    it alarms (data or prediction drift), the training job is requested on the current table (its
    YAML windows), once per report (the run key is the report's storage id), within the same
    cooldown and weekly budget as a daily pipeline; ``failures`` and ``within_days`` count days and
    do not apply."""
    keys = pipeline_keys(spec)
    drift_key, job_name = keys.drift_report, keys.training_job

    @dg.sensor(
        name=keys.drift_sensor,
        job_name=job_name,
        minimum_interval_seconds=spec.monitoring.retrain.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Launches {job_name} when the newest {drift_key.to_user_string()} (the whole table) alarms"
            f" (data or prediction drift in a compared chunk); cooldown {spec.monitoring.retrain.cooldown_hours:g} h,"
            f" at most {spec.monitoring.retrain.max_per_week} drift retrains per 7 days."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {"storage_id": 0, "report": None}
        latest, metadata = newest_metadata_since(context.instance, drift_key, state["storage_id"])
        if metadata is not None and "data_drift" in metadata:
            state["report"] = {"storage_id": latest, "data": bool(metadata["data_drift"]),
                               "prediction": bool(metadata["prediction_drift"]),
                               "columns": metadata.get("drifted_columns", ""), "chunks": metadata.get("alarm_chunks", 0)}
        state["storage_id"] = latest
        context.update_cursor(json.dumps(state, sort_keys=True))
        report = state["report"]
        if report is None:
            return dg.SkipReason(f"no drift reports of {drift_key.to_user_string()} yet")
        if not (report["data"] or report["prediction"]):
            return dg.SkipReason(f"the newest drift report ({report['storage_id']}) does not alarm")
        evidence = (f"the newest drift report ({report['storage_id']}) alarms:"
                    f"{' data drift (' + (report['columns'] or '?') + ')' if report['data'] else ''}"
                    f"{' prediction drift' if report['prediction'] else ''}"
                    f" in {report['chunks']} chunk(s)")
        held = held_back(context.instance, spec, evidence)
        if held is not None:
            return held
        return dg.RunRequest(
            run_key=f"drift-retrain:{spec.name}:report-{report['storage_id']}",
            tags={TRIGGER_TAG: DRIFT_TRIGGER, PIPELINE_TAG: spec.name, REASON_TAG: evidence[:4000]},
        )

    return _sensor


def keep_recent(days: dict[str, dict]) -> dict[str, dict]:
    """The newest ``CURSOR_DAYS`` days of verdicts."""
    return {d: days[d] for d in sorted(days)[-CURSOR_DAYS:]}


def alarm_details(days: dict[str, dict], alarms: list[str]) -> str:
    """``<day>: data drift (<columns>) prediction drift; ...`` for the alarm days."""
    return "; ".join(
        f"{d}: {'data drift (' + (days[d]['columns'] or '?') + ')' if days[d]['data'] else ''}"
        f"{' ' if days[d]['data'] and days[d]['prediction'] else ''}"
        f"{'prediction drift' if days[d]['prediction'] else ''}"
        for d in alarms
    )


def drift_request(spec: PipelineSpec, days: dict[str, dict], served: bool = False) -> dg.RunRequest | str:
    """The rolling retrain a drift report's per-day verdicts ask for (``failures`` alarm days among
    the last ``within_days``; the run key names the alarm days), or why not. ``served`` reads the
    served traffic's report (``served_drift_report``) under the same rule, with its own run keys."""
    retrain, keys = spec.monitoring.retrain, pipeline_keys(spec)
    report = (keys.served_drift_report if served else keys.drift_report).to_user_string()
    label = f"served drift alarm day(s) of {report}" if served else "drift alarm day(s)"
    if not days:
        return f"no {'served ' if served else ''}drift reports of {report} yet"
    newest = max(days)
    alarms = alarm_days(days, newest, retrain.within_days)
    if len(alarms) < retrain.failures:
        return (f"{len(alarms)} {label} among the {retrain.within_days} days up to {newest}"
                f" ({', '.join(alarms) or 'none'}); {retrain.failures} needed to retrain")
    label = label if served else "drift alarm days"
    reason = (f"{len(alarms)} {label} among the {retrain.within_days} days up to {newest}:"
              f" {alarm_details(days, alarms)}")
    return dg.RunRequest(
        run_key=f"drift-retrain:{spec.name}:{'served:' if served else ''}{','.join(alarms)}",
        run_config=rolling_run_config(spec, end=newest),
        tags={TRIGGER_TAG: DRIFT_TRIGGER, PIPELINE_TAG: spec.name, REASON_TAG: reason[:4000]},
    )


def build_drift_sensor(spec: PipelineSpec) -> dg.SensorDefinition:
    if spec.partitioning is None:
        return build_table_drift_sensor(spec)
    retrain = spec.monitoring.retrain
    keys = pipeline_keys(spec)
    drift_key, served_key, job_name = keys.drift_report, keys.served_drift_report, keys.training_job

    @dg.sensor(
        name=keys.drift_sensor,
        job_name=job_name,
        minimum_interval_seconds=retrain.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Launches {job_name} on the rolling windows when at least {retrain.failures} of the last"
            f" {retrain.within_days} days of {drift_key.to_user_string()} alarm (data or prediction drift),"
            f" or as many of {served_key.to_user_string()} (the traffic the service scored) do;"
            f" cooldown {retrain.cooldown_hours:g} h, at most {retrain.max_per_week} drift retrains per 7 days."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):
        state = load_cursor(context.cursor)
        for days, position, key in (("days", "storage_id", drift_key), ("served_days", "served_storage_id", served_key)):
            state[position], verdicts = _verdicts(context.instance, key, state[position])
            state[days] = keep_recent({**state[days], **verdicts})
        context.update_cursor(json.dumps(state, sort_keys=True))
        decisions = [drift_request(spec, state["days"]), drift_request(spec, state["served_days"], served=True)]
        requests = [d for d in decisions if isinstance(d, dg.RunRequest)]
        if not requests:
            return dg.SkipReason("; ".join(decisions))
        held = held_back(context.instance, spec, requests[0].tags[REASON_TAG])
        if held is not None:
            return held
        return requests[0]

    return _sensor
