"""Sensors, schedules and jobs that run the pipelines unattended."""

from __future__ import annotations

import dagster as dg


def build_automation_defs() -> dg.Definitions:
    """Sensors and schedules (none yet beyond the pipeline jobs)."""
    return dg.Definitions()
