"""The live promotion sensor: a challenger that beats the champion on served traffic becomes champion.

It reads new materializations of ``<name>/live_comparison`` (one verdict per day: which versions were
compared, the paired test's delta and p-value, significant or not) into its cursor. When the last
``serving.live_gate.days`` compared days all compared the versions the ``champion`` and
``challenger`` aliases hold now and all found the challenger significantly better, and no live
promotion happened within ``cooldown_hours``, it moves ``champion`` to the challenger's version and
removes the ``challenger`` alias. The audit trail: MLflow tags on both versions (what, when, the
evidence) and an asset observation of ``live_comparison`` with the same metadata. The scoring service
picks up the moved alias on its next refresh. Otherwise a ``SkipReason`` says why.
"""


import datetime as dt
import json
from typing import Any

import dagster as dg

from ml_assets.config import PipelineSpec
from ml_assets.keys import pipeline_keys
from ml_assets.training.registry import CHALLENGER, CHAMPION
from resources.tracking import MlflowTracking
from sensors.records import partition_metadata_since

CURSOR_DAYS = 60
#: MLflow version tags of the audit trail.
PROMOTED_TAG = "live_gate.promoted_at"
EVIDENCE_TAG = "live_gate.evidence"
REPLACED_TAG = "live_gate.replaced_by"


def build_live_promotion_sensor(spec: PipelineSpec) -> dg.SensorDefinition:
    gate = spec.serving.live_gate
    keys = pipeline_keys(spec)
    name = spec.registered_model_name

    @dg.sensor(
        name=keys.live_promotion_sensor,
        minimum_interval_seconds=gate.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Moves the `{CHAMPION}` alias of {name} to the `{CHALLENGER}` when"
            f" {keys.live_comparison.to_user_string()} finds it significantly better on {gate.days}"
            f" consecutive days of served traffic; cooldown {gate.cooldown_hours:g} h; audit in MLflow tags."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, tracking: MlflowTracking):
        state = json.loads(context.cursor) if context.cursor else {"storage_id": 0, "days": {}, "last_promotion": None}
        latest, verdicts = partition_metadata_since(context.instance, keys.live_comparison, state["storage_id"])
        state["storage_id"] = latest
        state["days"].update(verdicts)
        state["days"] = {d: state["days"][d] for d in sorted(state["days"])[-CURSOR_DAYS:]}
        context.update_cursor(json.dumps(state, sort_keys=True, default=str))
        if not state["days"]:
            return dg.SkipReason(f"no {keys.live_comparison.to_user_string()} yet")
        from ml_assets.serving.live import promotion

        champion = tracking.alias_version(name, CHAMPION)
        challenger = tracking.alias_version(name, CHALLENGER)
        last = state.get("last_promotion")
        now = dt.datetime.now(dt.timezone.utc)
        hours = (now - dt.datetime.fromisoformat(last)).total_seconds() / 3600 if last else None
        decision = promotion(
            state["days"], str(champion.version) if champion else None, str(challenger.version) if challenger else None,
            gate.days, hours, gate.cooldown_hours,
        )
        if not decision.promote:
            return dg.SkipReason(decision.reason)
        client = tracking.client()
        old, new = str(champion.version), str(challenger.version)
        evidence = json.dumps({d: state["days"][d] for d in decision.days}, sort_keys=True, default=str)
        client.set_model_version_tag(name, new, PROMOTED_TAG, now.isoformat())
        client.set_model_version_tag(name, new, EVIDENCE_TAG, evidence[:4900])
        client.set_model_version_tag(name, old, REPLACED_TAG, new)
        client.set_registered_model_alias(name, CHAMPION, new)
        client.delete_registered_model_alias(name, CHALLENGER)
        state["last_promotion"] = now.isoformat()
        context.update_cursor(json.dumps(state, sort_keys=True, default=str))
        context.log.info(decision.reason)
        metadata: dict[str, Any] = {
            "live_promotion": dg.MetadataValue.text(decision.reason),
            "promoted_version": dg.MetadataValue.text(new),
            "replaced_version": dg.MetadataValue.text(old),
            "evidence_days": dg.MetadataValue.text(", ".join(decision.days)),
        }
        url = tracking.model_version_url(name, new)
        if url:
            metadata["model_version_url"] = dg.MetadataValue.url(url)
        return dg.SensorResult(asset_events=[dg.AssetObservation(asset_key=keys.live_comparison, metadata=metadata)])

    return _sensor
