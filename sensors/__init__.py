"""Sensors and schedules that run the pipelines unattended.

For every tabular pipeline YAML with a ``monitoring`` section: the drift sensor (drift alarms launch
the training job on rolling windows); ``build_schedules`` gives its daily schedule (a day's ingest,
features, predictions and drift) and weekly retraining schedule, registered with the pipeline's jobs
by ``ml_assets.build_tabular_defs``. For the whole code location: the alerts sensor and its
notifier (apprise URLs from ``ALERT_URLS``). Sensors and schedules start STOPPED: turn them on in the
UI (Automation) or with ``dagster sensor start`` / ``dagster schedule start``.
"""

from pathlib import Path

import dagster as dg

from ml_assets.pipeline_config import PIPELINES_DIR, load_pipeline, tabular_pipeline_files


def build_schedules(spec, daily_job) -> list:
    """The daily schedule of ``daily_job`` (the day before each tick: its partition) and the weekly
    retraining schedule of ``<name>_training_job`` on rolling windows."""
    from ml_assets.model_lifecycle import rolling_run_config
    from sensors.drift import PIPELINE_TAG, TRIGGER_TAG

    schedules = spec.monitoring.schedules
    timezone = spec.partitioning.timezone
    hour, minute = (int(part) for part in schedules.daily_at.split(":"))
    daily = dg.build_schedule_from_partitioned_job(
        daily_job,
        name=f"{spec.name}_daily_schedule",
        hour_of_day=hour,
        minute_of_hour=minute,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every day at {schedules.daily_at} ({timezone}): the previous day's partition of"
            f" {daily_job.name} (ingest, validation, features, predictions, drift)."
        ),
    )
    weekly = dg.ScheduleDefinition(
        name=f"{spec.name}_weekly_retrain_schedule",
        cron_schedule=schedules.weekly_retrain,
        execution_timezone=timezone,
        job_name=f"{spec.name}_training_job",
        run_config=rolling_run_config(spec),
        tags={TRIGGER_TAG: "schedule", PIPELINE_TAG: spec.name},
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Weekly ({schedules.weekly_retrain}, {timezone}): retrain on the rolling windows ending on the"
            " last feature day; the evaluation gate decides promotion."
        ),
    )
    return [daily, weekly]


def build_automation_defs(directory: Path = PIPELINES_DIR) -> dg.Definitions:
    """Sensors and the notifier of every monitored pipeline in ``directory``."""
    specs = [spec for spec in map(load_pipeline, tabular_pipeline_files(directory)) if spec.monitoring is not None]
    if not specs:
        return dg.Definitions()
    from resources.notifier import notifier_resource
    from sensors.alerts import build_alerts_sensor
    from sensors.drift import build_drift_sensor

    alerts = specs[0].monitoring.alerts  # one notifier for the code location
    sensors = [build_alerts_sensor(alerts.sensor_interval_seconds), *map(build_drift_sensor, specs)]
    return dg.Definitions(
        sensors=sensors,
        resources={
            "notifier": notifier_resource(
                suppression_minutes=alerts.suppression_minutes, escalate_after=alerts.escalate_after
            )
        },
    )
