"""Every name the graph shows, defined once: asset keys, groups, jobs, check names and run tags.

A tabular pipeline named ``p`` gets ``p/raw_<source>`` and ``p/features`` (group ``p``),
``p/training_set``, ``p/model`` and ``p/model_evaluation`` (group ``p_training``), ``p/predictions``
(group ``p_scoring``), ``p/online_features``, ``p/served_predictions`` and ``p/live_comparison``
(group ``p_serving``) and ``p/reference`` and ``p/drift_report`` (group ``p_monitoring``). Stage
assets, sensors and the main job take their names from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from resources.tracking import TRACKING_URI_TAG  # noqa: F401  (set at launch, enforced by the resource)

# -- checks ---------------------------------------------------------------------------------------
MIN_ROC_AUC_CHECK = "min_roc_auc"
MIN_R2_CHECK = "min_r2"
DATA_DRIFT_CHECK = "data_drift"
PREDICTION_DRIFT_CHECK = "prediction_drift"

# -- run tags -------------------------------------------------------------------------------------
TRIGGER_TAG = "ml_platform/trigger"
REASON_TAG = "ml_platform/reason"
PIPELINE_TAG = "ml_platform/pipeline"
DRIFT_TRIGGER = "drift"
SCHEDULE_TRIGGER = "schedule"


@dataclass(frozen=True)
class PipelineKeys:
    """Asset keys, groups and job names of the tabular pipeline ``name``."""

    name: str

    def asset(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def raw(self, source: str) -> dg.AssetKey:
        return self.asset(f"raw_{source}")

    @property
    def features(self) -> dg.AssetKey:
        return self.asset("features")

    @property
    def training_set(self) -> dg.AssetKey:
        return self.asset("training_set")

    @property
    def model(self) -> dg.AssetKey:
        return self.asset("model")

    @property
    def evaluation(self) -> dg.AssetKey:
        return self.asset("model_evaluation")

    @property
    def predictions(self) -> dg.AssetKey:
        return self.asset("predictions")

    @property
    def online_features(self) -> dg.AssetKey:
        return self.asset("online_features")

    @property
    def served_predictions(self) -> dg.AssetKey:
        return self.asset("served_predictions")

    @property
    def served_drift_report(self) -> dg.AssetKey:
        return self.asset("served_drift_report")

    @property
    def live_comparison(self) -> dg.AssetKey:
        return self.asset("live_comparison")

    @property
    def reference(self) -> dg.AssetKey:
        return self.asset("reference")

    @property
    def drift_report(self) -> dg.AssetKey:
        return self.asset("drift_report")

    # groups
    @property
    def ingest_group(self) -> str:
        return self.name

    @property
    def training_group(self) -> str:
        return f"{self.name}_training"

    @property
    def scoring_group(self) -> str:
        return f"{self.name}_scoring"

    @property
    def serving_group(self) -> str:
        return f"{self.name}_serving"

    @property
    def monitoring_group(self) -> str:
        return f"{self.name}_monitoring"

    # jobs
    @property
    def ingest_job(self) -> str:
        return f"{self.name}_ingest_job"

    @property
    def training_job(self) -> str:
        return f"{self.name}_training_job"

    @property
    def scoring_job(self) -> str:
        return f"{self.name}_scoring_job"

    @property
    def drift_job(self) -> str:
        return f"{self.name}_drift_job"

    @property
    def daily_job(self) -> str:
        return f"{self.name}_daily_job"

    # automation
    @property
    def daily_schedule(self) -> str:
        return f"{self.name}_daily_schedule"

    @property
    def weekly_retrain_schedule(self) -> str:
        return f"{self.name}_weekly_retrain_schedule"

    @property
    def drift_sensor(self) -> str:
        return f"{self.name}_drift_retrain_sensor"

    @property
    def live_promotion_sensor(self) -> str:
        return f"{self.name}_live_promotion_sensor"


def pipeline_keys(spec_or_name) -> PipelineKeys:
    """The names of a pipeline, from its spec or its name."""
    return PipelineKeys(spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name)


# -- the few-shot store ---------------------------------------------------------------------------
FEWSHOT_GROUP = "fewshot"
FEWSHOT_JOB = "fewshot_job"
FEWSHOT_EXAMPLES = dg.AssetKey(["fewshot", "examples"])
FEWSHOT_HOLDOUT = dg.AssetKey(["fewshot", "holdout_examples"])
FEWSHOT_EMBEDDINGS = dg.AssetKey(["fewshot", "example_embeddings"])
FEWSHOT_EVALUATION = dg.AssetKey(["fewshot", "fewshot_evaluation"])
TEXT_NOT_EMPTY_CHECK = "text_not_empty"
LABELS_KNOWN_CHECK = "labels_known"
TEXT_LENGTH_CHECK = "text_length"
NO_DUPLICATES_CHECK = "no_duplicates"
BEATS_RANDOM_CHECK = "beats_random_examples"

ALERTS_SENSOR = "alerts_sensor"
