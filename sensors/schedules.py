"""Schedules of every monitored pipeline: the daily run of yesterday's partition (ingest, validation,
features, predictions, drift) and the weekly retraining on rolling windows. They start STOPPED: turn
them on in the UI (Automation) or with ``dagster schedule start``.
"""

from typing import Any

import dagster as dg

from ml_assets import TabularPipeline
from ml_assets.keys import PIPELINE_TAG, SCHEDULE_TRIGGER, TRIGGER_TAG, pipeline_keys
from ml_assets.training.assets import rolling_run_config


def build_schedules(pipeline: TabularPipeline) -> list[Any]:
    """The daily schedule of the pipeline's daily job (the day before each tick: its partition) and
    the weekly retraining schedule of its training job on rolling windows (a pipeline without
    partitions: the weekly retraining only, on its YAML windows)."""
    spec, keys = pipeline.spec, pipeline_keys(pipeline.spec)
    schedules = spec.monitoring.schedules
    if spec.partitioning is None:
        # a table without partitions: no daily run; the weekly retraining on the current table
        return [dg.ScheduleDefinition(
            name=keys.weekly_retrain_schedule, cron_schedule=schedules.weekly_retrain, execution_timezone="UTC",
            job_name=keys.training_job, tags={TRIGGER_TAG: SCHEDULE_TRIGGER, PIPELINE_TAG: spec.name},
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description=(f"Weekly ({schedules.weekly_retrain}, UTC): retrain on the current table (the YAML's"
                         " split); the evaluation gate decides promotion."),
        )]
    timezone = spec.partitioning.timezone
    hour, minute = (int(part) for part in schedules.daily_at.split(":"))
    daily = dg.build_schedule_from_partitioned_job(
        pipeline.daily_job,
        name=keys.daily_schedule,
        hour_of_day=hour,
        minute_of_hour=minute,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Every day at {schedules.daily_at} ({timezone}): the previous day's partition of"
            f" {keys.daily_job} (ingest, validation, features, predictions, drift)."
        ),
    )
    weekly = dg.ScheduleDefinition(
        name=keys.weekly_retrain_schedule,
        cron_schedule=schedules.weekly_retrain,
        execution_timezone=timezone,
        job_name=keys.training_job,
        run_config=rolling_run_config(spec),
        tags={TRIGGER_TAG: SCHEDULE_TRIGGER, PIPELINE_TAG: spec.name},
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Weekly ({schedules.weekly_retrain}, {timezone}): retrain on the rolling windows ending on the"
            " last feature day; the evaluation gate decides promotion."
        ),
    )
    return [daily, weekly]
