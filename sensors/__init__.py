"""Sensors and schedules that run the pipelines unattended.

For every tabular pipeline YAML with a ``monitoring`` section: the drift sensor (drift alarms launch
the training job on rolling windows), the daily schedule (a day's ingest, features, predictions and
drift) and the weekly retraining schedule. For the whole code location: the alerts sensor and its
notifier (apprise URLs from ``ALERT_URLS``). Sensors and schedules start STOPPED: turn them on in the
UI (Automation) or with ``dagster sensor start`` / ``dagster schedule start``.
"""

from pathlib import Path

import dagster as dg

from ml_assets.pipeline_config import PIPELINES_DIR, load_pipeline, tabular_pipeline_files


def build_schedules(spec) -> list:
    from ml_assets.model_lifecycle import asset_key

    schedules = spec.monitoring.schedules
    timezone = spec.partitioning.timezone
    daily = dg.ScheduleDefinition(
        name=f"{spec.name}_daily_schedule",
        cron_schedule=schedules.daily,
        execution_timezone=timezone,
        job_name=f"{spec.name}_daily_job",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every day ({schedules.daily}, {timezone}): yesterday's partition of {spec.name}_daily_job"
            " (ingest, validation, features, predictions, drift)."
        ),
    )
    training_step = "__".join(asset_key(spec, "training_set").path)
    weekly = dg.ScheduleDefinition(
        name=f"{spec.name}_weekly_retrain_schedule",
        cron_schedule=schedules.weekly_retrain,
        execution_timezone=timezone,
        job_name=f"{spec.name}_training_job",
        run_config={"ops": {training_step: {"config": {"mode": "rolling"}}}},
        tags={"ml_platform/trigger": "schedule", "ml_platform/pipeline": spec.name},
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Weekly ({schedules.weekly_retrain}, {timezone}): retrain on the rolling windows ending on the"
            " last feature day; the evaluation gate decides promotion."
        ),
    )
    return [daily, weekly]


def build_automation_defs(directory: Path = PIPELINES_DIR) -> dg.Definitions:
    """Sensors, schedules and the notifier of every monitored pipeline in ``directory``."""
    specs = [spec for spec in map(load_pipeline, tabular_pipeline_files(directory)) if spec.monitoring is not None]
    if not specs:
        return dg.Definitions()
    from resources.notifier import notifier_resource
    from sensors.alerts import build_alerts_sensor
    from sensors.drift import build_drift_sensor

    alerts = specs[0].monitoring.alerts  # one notifier for the code location
    sensors = [build_alerts_sensor(alerts.sensor_interval_seconds), *map(build_drift_sensor, specs)]
    schedules = [schedule for spec in specs for schedule in build_schedules(spec)]
    return dg.Definitions(
        sensors=sensors,
        schedules=schedules,
        resources={
            "notifier": notifier_resource(
                suppression_minutes=alerts.suppression_minutes, escalate_after=alerts.escalate_after
            )
        },
    )
