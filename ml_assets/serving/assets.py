"""Dagster definitions of the serving stage: the online feature store the scoring service reads, the
traffic it served as a daily asset, and the live champion/challenger comparison on that traffic.

* ``<name>/online_features`` (daily, after the features; Declarative Automation keeps it up to date):
  the day's offline features split into one record per key (carrier, route, flight, origin, the
  origin's weather and schedule per hour) in the online store (SQLite file, or Redis).
* ``<name>/served_predictions`` (daily): every row the service scored for flights of that day, with
  its features, the champion's score and the challenger's shadow score.
* ``<name>/live_comparison`` (daily): champion and challenger on that traffic against the day's
  outcomes, with the evaluation gate's paired test; the live promotion sensor (``sensors``) reads it.
* ``<name>/served_drift_report`` (daily, with a ``monitoring`` section): the drift report's code and
  per-day ``data_drift`` / ``prediction_drift`` checks on the served traffic; the drift sensor and
  the alerts sensor watch them like the batch report's.
"""


import dagster as dg
from pydantic import Field

from ml_assets.config.paths import data_dir
from ml_assets.config.tabular import PARTITION_COLUMN, PipelineSpec
from ml_assets.execution import backfill_policy
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import code_version, data_failure, markdown_table, partition_keys
from resources.online_store import OnlineFeatureStore

SERVING_CODE_VERSION = "2"


def build_online_features_asset(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)

    @dg.asset(
        key=keys.online_features,
        group_name=keys.serving_group,
        kinds={"sqlite", "redis"},
        ins={"features": dg.AssetIn(key=keys.features)},
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(spec),
        automation_condition=dg.AutomationCondition.eager(),
        code_version=code_version(SERVING_CODE_VERSION, spec.target, spec.features, spec.serving),
        description=(
            f"Online features of the {spec.name} pipeline for the scoring service: each day's offline"
            " features (the same feature function) split into one record per key (history per"
            " entity, the origin's weather and schedule per hour) in the online store, under the"
            " day, replacing that day's records. A request row joins the records of its own day."
            f" The store keeps the newest {spec.serving.online_days} day(s) (serving.online_days) and"
            " removes older days' records."
        ),
    )
    def _online_features(context: dg.AssetExecutionContext, online_store: OnlineFeatureStore, features):
        from ml_assets.serving.online import namespace, online_records, prune_days, retained_days, stored_days

        store = online_store.store()
        days = partition_keys(context) or []
        # the store keeps the newest `serving.online_days` days: days of this run older than those are
        # not written, and older stored days are removed
        keep = retained_days(stored_days(store, spec.name), days, spec.serving.online_days)
        totals: dict[str, int] = {}
        written = 0
        for day in days:
            if day not in keep:
                continue
            frame = features[features[PARTITION_COLUMN] == day]
            if frame.empty:
                store.delete_namespace(namespace(spec.name, day))
                context.log.warning(f"no features for {day}: its online records were removed")
                continue
            try:
                records, counts = online_records(frame.reset_index(drop=True), spec)
            except ValueError as exc:
                raise data_failure(f"{keys.features.to_user_string()} {day}: {exc}") from None
            written += store.replace(namespace(spec.name, day), records)
            if len(days) > 1:
                context.add_asset_metadata({f"keys_{g}": dg.MetadataValue.int(n) for g, n in counts.items()},
                                           partition_key=day)
            for group, n in counts.items():
                totals[group] = totals.get(group, 0) + n
        removed = prune_days(store, spec.name, keep)
        skipped = [d for d in days if d not in keep]
        context.log.info(
            f"wrote {written} online records for {len(days) - len(skipped)} day(s) to {store.describe()};"
            f" the store keeps {', '.join(keep)} (serving.online_days {spec.serving.online_days}),"
            f" removed {len(removed)} older day(s), skipped {len(skipped)} day(s) of this run older than those"
        )
        return dg.MaterializeResult(metadata={
            "records": dg.MetadataValue.int(written),
            "store": dg.MetadataValue.text(store.describe()),
            "keys_per_group": dg.MetadataValue.md(markdown_table(
                [{"group": g, "keys": n} for g, n in totals.items()])),
            "days_in_store": dg.MetadataValue.text(", ".join(keep)),
            "days_removed": dg.MetadataValue.int(len(removed)),
            **({"run_days": dg.MetadataValue.int(len(days)),
                "run_days_not_kept": dg.MetadataValue.int(len(skipped))} if len(days) > 1 else {}),
        })

    return _online_features


class ServedConfig(dg.Config):
    traffic_path: str = Field(
        default="", description="SQLite traffic log the scoring service writes; empty: <data>/serving/<pipeline>/traffic.sqlite."
    )


def build_served_predictions_asset(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    from ml_assets.serving.server import traffic_path

    keys = pipeline_keys(spec)
    target = spec.target.name
    default_path = str(traffic_path(spec.name))

    @dg.asset(
        key=keys.served_predictions,
        group_name=keys.serving_group,
        kinds={"pandas", "parquet", "sqlite"},
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        metadata={"partition_column": PARTITION_COLUMN},
        code_version=code_version(SERVING_CODE_VERSION, spec.target, spec.features, spec.serving),
        # the day's traffic is complete after midnight in the pipeline's timezone
        automation_condition=dg.AutomationCondition.on_cron("30 0 * * *", spec.partitioning.timezone),
        description=(
            f"Rows the scoring service scored for `{spec.primary_source}` rows of the day, from its traffic"
            f" log: the features it used, the champion's `{target}_score` and `{target}_predicted` with"
            " `model_version`, and the challenger's shadow score. Feeds drift monitoring and the live"
            " champion/challenger comparison."
        ),
    )
    def _served_predictions(context: dg.AssetExecutionContext, config: ServedConfig):
        from ml_assets.serving.traffic import read_day

        day = context.partition_key
        path = config.traffic_path or default_path
        served = read_day(path, day)
        out = served.rename(columns={
            "champion_score": f"{target}_score", "champion_label": f"{target}_predicted",
            "champion_version": "model_version", "challenger_label": "challenger_predicted",
        })
        missing_keys: dict[str, int] = {}
        unseen: dict[str, int] = {}
        import json

        for text in served.get("missing_keys", []):
            for group in json.loads(text):
                missing_keys[group] = missing_keys.get(group, 0) + 1
        for text in served.get("unseen_categories", []):
            for column in json.loads(text):
                unseen[column] = unseen.get(column, 0) + 1
        versions = sorted(out["model_version"].dropna().unique().tolist()) if len(out) else []
        challengers = sorted(out["challenger_version"].dropna().unique().tolist()) if len(out) else []
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(len(out)),
            "requests": dg.MetadataValue.int(int(served["request_id"].nunique()) if len(served) else 0),
            "champion_versions": dg.MetadataValue.text(", ".join(versions) or "none"),
            "challenger_versions": dg.MetadataValue.text(", ".join(challengers) or "none"),
            "challenger_scored_rows": dg.MetadataValue.int(int(out["challenger_score"].notna().sum()) if len(out) else 0),
            "rows_with_missing_keys": dg.MetadataValue.json(missing_keys),
            "unseen_categories": dg.MetadataValue.json(unseen),
            "traffic_log": dg.MetadataValue.path(path),
        }
        if len(out):
            metadata["mean_score"] = dg.MetadataValue.float(round(float(out[f"{target}_score"].mean()), 4))
        context.log.info(f"{len(out)} served rows for {day} from {path}")
        return dg.Output(out.reset_index(drop=True), metadata=metadata)

    return _served_predictions


def build_live_comparison_asset(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    keys = pipeline_keys(spec)
    gate = spec.serving.live_gate

    @dg.asset(
        key=keys.live_comparison,
        group_name=keys.serving_group,
        kinds={"pandas", "scipy"},
        ins={"served": dg.AssetIn(key=keys.served_predictions),
             "outcomes": dg.AssetIn(key=keys.raw(spec.primary_source))},
        partitions_def=partitions_def,
        code_version=code_version(SERVING_CODE_VERSION, spec.target, spec.features, spec.serving),
        automation_condition=dg.AutomationCondition.eager(),
        description=(
            "Champion against the shadow challenger on the day's served traffic, once the day's outcomes"
            f" are in, with the evaluation gate's paired test ({spec.evaluation.comparison}, alpha"
            f" {spec.evaluation.alpha:g}). The live promotion sensor promotes the challenger after"
            f" {gate.days} consecutive significant days (cooldown {gate.cooldown_hours:g} h)."
        ),
    )
    def _live_comparison(context: dg.AssetExecutionContext, served, outcomes):
        from ml_assets.serving.live import compare_day

        result = compare_day(spec, served, outcomes, gate.min_rows)
        context.log.info(f"live comparison {context.partition_key}: {result}")
        metadata: dict = {"status": dg.MetadataValue.text(result["status"])}
        for name, value in result.items():
            if name == "status" or value is None:
                continue
            if isinstance(value, bool):
                metadata[name] = dg.MetadataValue.bool(value)
            elif isinstance(value, int):
                metadata[name] = dg.MetadataValue.int(value)
            elif isinstance(value, float):
                metadata[name] = dg.MetadataValue.float(value if name == "p_value" else round(value, 5))
            else:
                metadata[name] = dg.MetadataValue.text(str(value))
        return dg.MaterializeResult(metadata=metadata)

    return _live_comparison


def build_served_drift_asset(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The drift report of the served traffic: the drift stage's own code on ``served_predictions``
    (each flight once, its last answer) against the champion's reference, with the batch drift
    report's per-day ``data_drift`` and ``prediction_drift`` checks (``ml_assets.monitoring.checks``),
    which the drift sensor and the alerts sensor watch."""
    from ml_assets.monitoring.checks import daily_drift_check_specs

    keys = pipeline_keys(spec)
    key_columns = list(spec.sources[spec.primary_source].entity_key)

    @dg.asset(
        key=keys.served_drift_report,
        group_name=keys.serving_group,
        kinds={"evidently"},
        ins={"served": dg.AssetIn(key=keys.served_predictions), "reference": dg.AssetIn(key=keys.reference)},
        check_specs=daily_drift_check_specs(keys.served_drift_report, partitions_def),
        partitions_def=partitions_def,
        automation_condition=dg.AutomationCondition.eager(),
        code_version=code_version(SERVING_CODE_VERSION, spec.target, spec.features, spec.serving),
        description=(
            "Daily drift of the served traffic (features the service used and the champion's scores)"
            " against the reference, with the drift report's methods, thresholds and its `data_drift`"
            " and `prediction_drift` checks (WARN): a failing day alerts and counts for the drift sensor."
        ),
    )
    def _served_drift(context: dg.AssetExecutionContext, served, reference):
        from ml_assets.monitoring.checks import day_metadata, drift_checks
        from ml_assets.monitoring.drift import drift_settings
        from ml_assets.monitoring.reports import drift_by_day

        day = context.partition_key
        rows = served.drop_duplicates(key_columns, keep="last").reset_index(drop=True) if len(served) else served
        _, config = drift_settings(spec)
        score = f"{spec.target.name}_score"
        features = rows.drop(columns=[score]) if score in rows else rows
        reports = drift_by_day(reference, features, rows, [day], key_columns, config, render=lambda _: False,
                               report_folder=data_dir() / "reports" / spec.name / "served_drift",
                               log=context.log.warning)
        metadata = day_metadata(reports[0]) if reports else {"days": dg.MetadataValue.int(0)}
        return dg.MaterializeResult(metadata={**metadata, "served_rows": dg.MetadataValue.int(len(rows))},
                                    check_results=drift_checks(day, reports[0] if reports else None))

    return _served_drift


def build_serving_defs(spec: PipelineSpec, partitions_def: dg.PartitionsDefinition) -> dg.Definitions:
    """The serving stage's assets (kept up to date by Declarative Automation; no job of their own)."""
    assets = [build_online_features_asset(spec, partitions_def), build_served_predictions_asset(spec, partitions_def),
              build_live_comparison_asset(spec, partitions_def)]
    if spec.monitoring is not None:
        assets.append(build_served_drift_asset(spec, partitions_def))
    return dg.Definitions(assets=assets)
