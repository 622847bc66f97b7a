"""Sensors and schedules that run the pipelines unattended.

For every pipeline with a model and daily partitions: the live promotion sensor (a challenger that
beats the champion on served traffic becomes champion). For every tabular pipeline with a
``monitoring`` section: the drift sensor (drift alarms launch the
training job on rolling windows; without partitions, an alarming report of the whole table launches
it), the daily schedule (a day's ingest, features, predictions and drift; daily pipelines only) and
the weekly retraining schedule. For the whole code location: the alerts sensor (its
notifier resource comes from ``resources``). Sensors and schedules start STOPPED: turn them on in the
UI (Automation) or with ``dagster sensor start`` / ``dagster schedule start``.

This package imports ``ml_assets`` (keys, run config); ``ml_assets`` never imports it.
"""

import dagster as dg

from ml_assets import TabularPipeline


def build_automation_defs(pipelines: list[TabularPipeline]) -> dg.Definitions:
    """Schedules and sensors of every monitored pipeline, the alerts sensor, and the live promotion
    sensor of every served pipeline (a model and daily partitions)."""
    from sensors.live_promotion import build_live_promotion_sensor

    served = [build_live_promotion_sensor(p.spec) for p in pipelines
              if p.spec.model is not None and p.spec.partitioning is not None]
    monitored = [p for p in pipelines if p.spec.monitoring is not None]
    if not monitored:
        return dg.Definitions(sensors=served)
    from sensors.alerts import build_alerts_sensor
    from sensors.drift import build_drift_sensor
    from sensors.schedules import build_schedules

    alerts = monitored[0].spec.monitoring.alerts  # one notifier for the code location
    sensors = [build_alerts_sensor(alerts.sensor_interval_seconds), *(build_drift_sensor(p.spec) for p in monitored),
               *served]
    schedules = [schedule for p in monitored for schedule in build_schedules(p)]
    return dg.Definitions(sensors=sensors, schedules=schedules)
